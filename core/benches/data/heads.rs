// The request heads the parse benches measure, shared by `benches/core.rs` and
// `examples/parse_instr.rs` (included, so both measure the same bytes).

const BROWSER_GET: &[u8] = b"GET /users/42?tab=posts HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Connection: keep-alive\r\n\
Cookie: session=3f2a9c1e8b7d4f60a1c2; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Mode: navigate\r\n\r\n";

const POST_JSON: &[u8] = b"POST /api/v1/compute/fast HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: weir-load/0.1\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"number\": 42}";

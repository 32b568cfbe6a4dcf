//! weir's whole head parse beside httparse alone on the same bytes, for callgrind: the
//! criterion pair (`parse/…` in `benches/core.rs`) in instructions, which do not drift
//! between runs as timings do here. `benches/scripts/parse-instr-per-head.sh` counts
//! `weir_parse` and `httparse_parse` and divides by `N`.
//!
//! usage: parse_instr browser|post N
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::mem::MaybeUninit;

use weir_core::http::{Limits, ParsedHead};

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

#[inline(never)]
fn weir_parse(head: &mut ParsedHead, raw: &[u8], limits: &Limits, n: usize) -> usize {
    let mut total = 0;
    for _ in 0..n {
        total += head.parse(black_box(raw), limits).unwrap().unwrap();
    }
    total
}

#[inline(never)]
fn httparse_parse(raw: &[u8], n: usize) -> usize {
    let mut total = 0;
    for _ in 0..n {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 64];
        let mut req = httparse::Request::new(&mut []);
        let status = httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, black_box(raw), &mut slots)
            .unwrap();
        total += status.unwrap() + req.headers.len();
    }
    total
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "browser".into());
    let n: usize = args
        .next()
        .map_or(10_000, |a| a.parse().expect("N is a number"));
    let raw = match kind.as_str() {
        "browser" => BROWSER_GET,
        "post" => POST_JSON,
        other => panic!("unknown kind {other}: browser or post"),
    };
    let limits = Limits::default();
    let mut head = ParsedHead::default();
    let a = weir_parse(&mut head, raw, &limits, n);
    let b = httparse_parse(raw, n);
    println!("{kind}: {a} {b}");
}

//! Responses: status codes, the reusable [`Response`] a handler fills, and wire encoding.
//!
//! Invariants: every response carries `Date`, `Server` and either `Content-Length` or
//! `Transfer-Encoding: chunked`; a `HEAD` response has the headers of its `GET` and no body;
//! encoding appends to the session's output buffer and allocates nothing once it is warm.

use std::io::Write as _;

use crate::time::http_date;

/// The `Server` header value.
pub const SERVER: &str = concat!("weir/", env!("CARGO_PKG_VERSION"));

/// An HTTP status code with its reason phrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status(u16);

impl Status {
    /// 100
    pub const CONTINUE: Status = Status(100);
    /// 200
    pub const OK: Status = Status(200);
    /// 400
    pub const BAD_REQUEST: Status = Status(400);
    /// 401
    pub const UNAUTHORIZED: Status = Status(401);
    /// 404
    pub const NOT_FOUND: Status = Status(404);
    /// 405
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    /// 408
    pub const REQUEST_TIMEOUT: Status = Status(408);
    /// 413
    pub const PAYLOAD_TOO_LARGE: Status = Status(413);
    /// 414
    pub const URI_TOO_LONG: Status = Status(414);
    /// 417
    pub const EXPECTATION_FAILED: Status = Status(417);
    /// 429
    pub const TOO_MANY_REQUESTS: Status = Status(429);
    /// 431
    pub const HEADERS_TOO_LARGE: Status = Status(431);
    /// 500
    pub const INTERNAL_ERROR: Status = Status(500);
    /// 501
    pub const NOT_IMPLEMENTED: Status = Status(501);
    /// 503
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    /// 504
    pub const GATEWAY_TIMEOUT: Status = Status(504);
    /// 505
    pub const VERSION_NOT_SUPPORTED: Status = Status(505);

    /// The numeric code.
    pub const fn code(self) -> u16 {
        self.0
    }

    /// Whether this is a 2xx status.
    pub const fn is_success(self) -> bool {
        self.0 >= 200 && self.0 < 300
    }

    /// The status line, `HTTP/1.1 200 OK\r\n`.
    pub fn status_line(self) -> &'static [u8] {
        match self.0 {
            100 => b"HTTP/1.1 100 Continue\r\n",
            200 => b"HTTP/1.1 200 OK\r\n",
            400 => b"HTTP/1.1 400 Bad Request\r\n",
            401 => b"HTTP/1.1 401 Unauthorized\r\n",
            404 => b"HTTP/1.1 404 Not Found\r\n",
            405 => b"HTTP/1.1 405 Method Not Allowed\r\n",
            408 => b"HTTP/1.1 408 Request Timeout\r\n",
            413 => b"HTTP/1.1 413 Content Too Large\r\n",
            414 => b"HTTP/1.1 414 URI Too Long\r\n",
            417 => b"HTTP/1.1 417 Expectation Failed\r\n",
            429 => b"HTTP/1.1 429 Too Many Requests\r\n",
            431 => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            500 => b"HTTP/1.1 500 Internal Server Error\r\n",
            501 => b"HTTP/1.1 501 Not Implemented\r\n",
            503 => b"HTTP/1.1 503 Service Unavailable\r\n",
            504 => b"HTTP/1.1 504 Gateway Timeout\r\n",
            505 => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
            _ => b"HTTP/1.1 500 Internal Server Error\r\n",
        }
    }
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length`, body included.
    Length,
    /// `Transfer-Encoding: chunked`; chunks follow.
    Chunked,
    /// No length: the body ends when the connection closes (HTTP/1.0 streams).
    UntilClose,
}

/// A response being built by a handler. Reused by its session: `clear` keeps capacity.
#[derive(Debug)]
pub struct Response {
    status: Status,
    headers: Vec<u8>,
    body: Vec<u8>,
    close: bool,
}

impl Default for Response {
    fn default() -> Self {
        Response {
            status: Status::OK,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }
}

impl Response {
    /// Resets to an empty `200` keeping the buffers.
    pub fn clear(&mut self) {
        self.status = Status::OK;
        self.headers.clear();
        self.body.clear();
        self.close = false;
    }

    /// Sets the status.
    pub fn set_status(&mut self, status: Status) {
        self.status = status;
    }

    /// The header lines set so far (`Name: value\r\n` each), for a protocol that writes
    /// them otherwise (HTTP/2).
    pub fn header_bytes(&self) -> &[u8] {
        &self.headers
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Adds a header line. `value` must not contain CR or LF: every caller passes our own
    /// text or a value the head grammar already validated (checked in debug builds and tests).
    #[inline]
    pub fn header(&mut self, name: &str, value: &[u8]) {
        debug_assert!(
            !value.iter().any(|&b| b == b'\r' || b == b'\n'),
            "header value with CR/LF"
        );
        debug_assert!(
            !self.has_header(name),
            "header {name} added twice: every header name appears once in a response"
        );
        self.headers.reserve(name.len() + value.len() + 4);
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
    }

    /// Appends whole header lines (`Name: value\r\n` each) that `build` writes straight into
    /// the header buffer: for hot paths that assemble lines from precomputed blocks and
    /// numbers. The same rules as [`Response::header`] hold and are checked in debug builds.
    #[inline]
    pub fn header_lines(&mut self, build: impl FnOnce(&mut Vec<u8>)) {
        let from = self.headers.len();
        build(&mut self.headers);
        debug_assert!(
            self.headers.ends_with(b"\r\n") || self.headers.len() == from,
            "header lines must end with CRLF"
        );
        #[cfg(debug_assertions)]
        check_header_lines(&self.headers);
    }

    /// Adds a whole header line known at compile time (`b"Name: value\r\n"`): one fixed-size
    /// copy. Checked in debug builds like [`Response::header`].
    #[inline]
    pub fn header_line(&mut self, line: &'static [u8]) {
        self.header_lines(|h| h.extend_from_slice(line));
    }

    /// Whether a header named `name` (ASCII case-insensitive) was added.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.split(|&b| b == b'\n').any(|line| {
            line.len() > name.len()
                && line[name.len()] == b':'
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        })
    }

    /// Adds a header whose value is a number.
    pub fn header_num(&mut self, name: &str, value: u64) {
        let mut b = itoa::Buffer::new();
        self.header(name, b.format(value).as_bytes());
    }

    /// The body being built.
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Asks for the connection to close after this response.
    pub fn set_close(&mut self) {
        self.close = true;
    }

    /// Whether the handler asked to close.
    pub fn wants_close(&self) -> bool {
        self.close
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.headers.capacity() + self.body.capacity()
    }

    /// Frees the buffers.
    pub fn release(&mut self) {
        self.headers = Vec::new();
        self.body = Vec::new();
    }

    /// Encodes the response into `out`: one size check, then the cached [`Preamble`] (the
    /// status line of a `200`, `Server` and `Date` in one fixed-size copy), the framing, the
    /// lines `common` writes (the service's, for every response), the handler's header lines
    /// and the body. `connection` is a whole `Connection` line, if any; `with_body` is false
    /// for `HEAD`; `framing` says how the body is delimited (a streamed body follows later,
    /// chunk by chunk).
    #[inline(always)]
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        preamble: &Preamble,
        connection: Option<&'static [u8]>,
        with_body: bool,
        framing: BodyFraming,
        common: impl FnOnce(&mut Vec<u8>),
    ) {
        let body = if with_body && framing == BodyFraming::Length {
            &self.body[..]
        } else {
            &[]
        };
        #[cfg(debug_assertions)]
        let start = out.len();
        out.reserve(PREAMBLE_LEN + COMMON_ROOM + self.headers.len() + body.len());
        match (self.status == Status::OK, framing) {
            // The common case: the whole preamble, `Content-Length: ` included, in one copy.
            (true, BodyFraming::Length) => out.extend_from_slice(&preamble.bytes),
            (true, _) => out.extend_from_slice(&preamble.bytes[..CONTENT_LENGTH_AT]),
            (false, _) => {
                out.extend_from_slice(self.status.status_line());
                let end = if framing == BodyFraming::Length {
                    PREAMBLE_LEN
                } else {
                    CONTENT_LENGTH_AT
                };
                out.extend_from_slice(&preamble.bytes[OK_LINE.len()..end]);
            }
        }
        match framing {
            BodyFraming::Length => match self.body.len() {
                // The length and its CRLF in one store.
                n @ 0..10 => out.extend_from_slice(&[b'0' + n as u8, b'\r', b'\n']),
                n => {
                    put_decimal(out, n as u64);
                    out.extend_from_slice(b"\r\n");
                }
            },
            BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            BodyFraming::UntilClose => {}
        }
        if let Some(line) = connection {
            out.extend_from_slice(line);
        }
        #[cfg(debug_assertions)]
        let lines = out.len();
        common(out);
        out.extend_from_slice(&self.headers);
        #[cfg(debug_assertions)]
        {
            check_header_lines(&out[lines..]);
            debug_assert!(out[start..].starts_with(b"HTTP/1.1 "));
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }
}

/// Room reserved for a service's common lines (a request ID and two rate-limit lines take
/// about 200 bytes; more only costs a second size check).
const COMMON_ROOM: usize = 256;

/// Debug check of a header block: `Name: value` lines ending with CRLF, no CR or LF inside
/// a line, and every name once (ASCII case-insensitive).
#[cfg(debug_assertions)]
fn check_header_lines(block: &[u8]) {
    let name_of = |line: &[u8]| -> usize {
        line.iter()
            .position(|&b| b == b':')
            .expect("a header line has a colon")
    };
    for (i, line) in block.split_inclusive(|&b| b == b'\n').enumerate() {
        let line = line
            .strip_suffix(b"\r\n")
            .expect("header value with CR/LF: a line must end with CRLF");
        assert!(!line.contains(&b'\r'), "header value with CR/LF");
        let name = &line[..name_of(line)];
        let twice = block
            .split_inclusive(|&b| b == b'\n')
            .take(i)
            .any(|earlier| earlier[..name_of(earlier)].eq_ignore_ascii_case(name));
        assert!(
            !twice,
            "header {} added twice: every header name appears once in a response",
            std::str::from_utf8(name).unwrap_or("?")
        );
    }
}

/// The `200` status line, which the [`Preamble`] starts with.
const OK_LINE: &[u8] = b"HTTP/1.1 200 OK\r\n";
const SERVER_LINE: &[u8] =
    concat!("Server: ", "weir/", env!("CARGO_PKG_VERSION"), "\r\nDate: ").as_bytes();
const DATE_AT: usize = OK_LINE.len() + SERVER_LINE.len();
const CONTENT_LENGTH_AT: usize = DATE_AT + 29 + 2;
const CONTENT_LENGTH: &[u8] = b"Content-Length: ";
/// Length of a [`Preamble`].
pub const PREAMBLE_LEN: usize = CONTENT_LENGTH_AT + CONTENT_LENGTH.len();

/// The first bytes of every response, kept per connection and re-dated once a second:
/// `HTTP/1.1 200 OK`, `Server`, `Date` and the name `Content-Length: `. Responses of other
/// statuses or framings copy the part they share with it.
#[derive(Clone, Debug)]
pub struct Preamble {
    secs: u64,
    bytes: [u8; PREAMBLE_LEN],
}

impl Default for Preamble {
    fn default() -> Self {
        let mut bytes = [0; PREAMBLE_LEN];
        bytes[..OK_LINE.len()].copy_from_slice(OK_LINE);
        bytes[OK_LINE.len()..DATE_AT].copy_from_slice(SERVER_LINE);
        bytes[DATE_AT + 29..CONTENT_LENGTH_AT].copy_from_slice(b"\r\n");
        bytes[CONTENT_LENGTH_AT..].copy_from_slice(CONTENT_LENGTH);
        let mut p = Preamble {
            secs: u64::MAX,
            bytes,
        };
        p.refresh(0);
        p
    }
}

impl Preamble {
    /// Dates the preamble `unix_secs`; formats only when the second changed.
    #[inline]
    pub fn refresh(&mut self, unix_secs: u64) {
        if unix_secs != self.secs {
            self.redate(unix_secs);
        }
    }

    #[cold]
    fn redate(&mut self, unix_secs: u64) {
        self.secs = unix_secs;
        self.bytes[DATE_AT..DATE_AT + 29].copy_from_slice(&http_date(unix_secs));
    }
}

/// Appends the decimal digits of `n` (itoa: two digits per step, no formatting machinery).
#[inline]
pub fn put_u64(out: &mut Vec<u8>, n: u64) {
    if n < 10 {
        out.push(b'0' + n as u8);
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
}

/// The two decimal digits of every number below 100.
static DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// Appends the decimal digits of `n`. Below 10^8 (counts and limits, nearly always) the
/// digits are assembled from two, four or six digits' worth of pairs (by the number's
/// range) in one word, shifted past a leading zero and stored whole, then cut to length: no
/// library call and no copy of variable length (itoa plus that copy cost about twice as
/// much); larger numbers through [`put_u64`].
#[inline(always)]
pub fn put_decimal(out: &mut Vec<u8>, n: u64) {
    let pair = |p: u32| u64::from(u16::from_le_bytes(DIGIT_PAIRS[p as usize]));
    let (word, digits) = match n {
        0..10 => return out.push(b'0' + n as u8),
        10..100 => (pair(n as u32), 2),
        100..10_000 => {
            let n = n as u32;
            let word = pair(n / 100) | pair(n % 100) << 16;
            (word, 4 - usize::from(n < 1_000))
        }
        10_000..1_000_000 => {
            let n = n as u32;
            let (hi, lo) = (n / 10_000, n % 10_000);
            let word = pair(hi) | pair(lo / 100) << 16 | pair(lo % 100) << 32;
            (word, 6 - usize::from(n < 100_000))
        }
        1_000_000..100_000_000 => {
            let n = n as u32;
            let (hi, lo) = (n / 10_000, n % 10_000);
            let word =
                pair(hi / 100) | pair(hi % 100) << 16 | pair(lo / 100) << 32 | pair(lo % 100) << 48;
            (word, 8 - usize::from(n < 10_000_000))
        }
        _ => return put_u64(out, n),
    };
    // An odd count has one leading zero digit in the word: shift it out.
    let word = word >> (8 * (digits & 1));
    let at = out.len();
    out.extend_from_slice(&word.to_le_bytes());
    out.truncate(at + digits);
}

/// Appends `block` (at most `N` bytes, kept in an `N`-byte array) with one fixed-size copy
/// (of its first 64 bytes when it fits in them), then cuts back to its length: a
/// precomputed block costs no library call.
#[inline]
pub fn put_block<const N: usize>(out: &mut Vec<u8>, block: &([u8; N], usize)) {
    let at = out.len();
    if N > 64 && block.1 <= 64 {
        out.extend_from_slice(&block.0[..64]);
    } else {
        out.extend_from_slice(&block.0);
    }
    out.truncate(at + block.1);
}

/// Appends one chunk (`len-hex CRLF data CRLF`); an empty `data` is skipped (it would end
/// the stream).
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    write!(out, "{:x}\r\n", data.len()).expect("invariant: writing to a Vec cannot fail");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk of a chunked body.
pub fn encode_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_date() -> Preamble {
        let mut p = Preamble::default();
        p.refresh(784_111_777);
        p
    }

    #[test]
    fn encodes_content_length_response() {
        let mut r = Response::default();
        r.header("Content-Type", b"text/plain");
        r.body_mut().extend_from_slice(b"pong");
        let mut out = Vec::new();
        r.encode(
            &mut out,
            &rfc_date(),
            None,
            true,
            BodyFraming::Length,
            |o| o.extend_from_slice(b"X-Common: 1\r\n"),
        );
        let want = format!(
            "HTTP/1.1 200 OK\r\nServer: {SERVER}\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 4\r\nX-Common: 1\r\nContent-Type: text/plain\r\n\r\npong"
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn head_keeps_length_but_no_body() {
        let mut r = Response::default();
        r.body_mut().extend_from_slice(b"pong");
        let mut out = Vec::new();
        r.encode(
            &mut out,
            &rfc_date(),
            Some(b"Connection: close\r\n"),
            false,
            BodyFraming::Length,
            |_| {},
        );
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("Content-Length: 4\r\n") && s.contains("Connection: close\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn numbers_and_blocks() {
        for n in [0, 7, 10, 99, 100, 101, 65_535, 99_999, 100_000, u64::MAX] {
            let mut out = b"x".to_vec();
            put_u64(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
        let mut block = ([0u8; 16], 3);
        block.0[..3].copy_from_slice(b"abc");
        let mut out = b"<".to_vec();
        put_block(&mut out, &block);
        assert_eq!(out, b"<abc");
        // Both copies of a larger block: its first 64 bytes, or all of it.
        for len in [0, 1, 63, 64, 65, 127, 128] {
            let mut block = ([0u8; 128], len);
            for (i, b) in block.0.iter_mut().enumerate() {
                *b = b'a' + (i % 26) as u8;
            }
            let mut out = b"<".to_vec();
            put_block(&mut out, &block);
            assert_eq!(&out[1..], &block.0[..len]);
        }
    }

    #[test]
    fn decimals_are_what_display_writes() {
        let mut edges = vec![0, 1, 9, u64::MAX, u64::MAX / 7];
        for p in 1..=19u32 {
            let ten = 10u64.pow(p);
            edges.extend([ten - 1, ten, ten + 1, ten + ten / 2 + 3]);
        }
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            edges.push(rng % 1_000_000_000);
        }
        for n in edges {
            let mut out = b"x".to_vec();
            put_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
    }

    #[test]
    fn chunks() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello world!!!!!!");
        encode_chunk(&mut out, b"");
        encode_last_chunk(&mut out);
        assert_eq!(out, b"11\r\nhello world!!!!!!\r\n0\r\n\r\n");
    }

    #[test]
    #[should_panic(expected = "CR/LF")]
    fn header_injection_is_a_bug() {
        Response::default().header("X", b"a\r\nEvil: 1");
    }
}

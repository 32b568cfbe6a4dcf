//! Request heads: the parsed facts (by `common_head`, else [`super::grammar`]), the framing
//! rules that stop smuggling, and limits.
//!
//! Invariants: a [`ParsedHead`] is reused across requests and holds no bytes of its own, only
//! the facts of the head and index ranges of its parts, relative to the head's first byte; the
//! bytes stay where they were read (the session's receive buffer) and are copied out only if
//! that buffer must move while the request is still being served ([`ParsedHead::detach`]).
//! A [`Head`] is the two together, the view a service reads. Every rejection is a
//! [`HeadError`] carrying the status it implies, and every one of them closes the connection,
//! because framing can no longer be trusted.

use std::ops::Range;

use super::common_head;
use super::grammar::{self, Field};
use super::response::Status;
use super::scan::{eq_ignore_case, token_is};
use super::target::{split_absolute, valid_host};

/// Hard cap on `MAX_HEADERS`.
pub const MAX_HEADERS_CAP: usize = 1024;

/// The limits a head is parsed under (from `Config`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request line plus header fields, in bytes (431 past it).
    pub max_header_bytes: usize,
    /// Number of header fields (431 past it).
    pub max_headers: usize,
    /// Request-target length (414 past it).
    pub max_uri_bytes: usize,
    /// Decoded body length (413 past it).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 1 << 20,
        }
    }
}

/// Request methods weir distinguishes; anything else is `Other` (and gets a 405 or 404).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// Any other token.
    Other,
}

impl Method {
    fn from_bytes(m: &[u8]) -> Method {
        // The two a server mostly sees, as one comparison each.
        match m.len() {
            3 if m == b"GET" => return Method::Get,
            4 if m == b"POST" => return Method::Post,
            _ => {}
        }
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    /// The method's name (`OTHER` for unknown tokens).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }
}

/// The HTTP version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: close by default, `Connection: keep-alive` opts in.
    Http10,
    /// HTTP/1.1: persistent by default.
    Http11,
}

/// How the request body is framed (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Why a head was rejected; each maps to one status and always closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadError {
    /// Syntax error in the request line or a header (400).
    Malformed(&'static str),
    /// Request-target longer than `MAX_URI_BYTES` (414).
    UriTooLong,
    /// Head longer than `MAX_HEADER_BYTES` or more than `MAX_HEADERS` fields (431).
    HeadersTooLarge,
    /// `Content-Length` above `MAX_BODY_BYTES` (413).
    BodyTooLarge,
    /// A version other than 1.0 / 1.1 (505).
    Version,
    /// A transfer coding weir does not implement (501).
    UnsupportedCoding,
    /// An `Expect` other than `100-continue` (417).
    Expectation,
}

impl HeadError {
    /// The status this error is answered with.
    pub fn status(self) -> Status {
        match self {
            HeadError::Malformed(_) => Status::BAD_REQUEST,
            HeadError::UriTooLong => Status::URI_TOO_LONG,
            HeadError::HeadersTooLarge => Status::HEADERS_TOO_LARGE,
            HeadError::BodyTooLarge => Status::PAYLOAD_TOO_LARGE,
            HeadError::Version => Status::VERSION_NOT_SUPPORTED,
            HeadError::UnsupportedCoding => Status::NOT_IMPLEMENTED,
            HeadError::Expectation => Status::EXPECTATION_FAILED,
        }
    }

    /// A human message for the error envelope.
    pub fn message(self) -> &'static str {
        match self {
            HeadError::Malformed(why) => why,
            HeadError::UriTooLong => "request-target too long",
            HeadError::HeadersTooLarge => "request header fields too large",
            HeadError::BodyTooLarge => "request body too large",
            HeadError::Version => "HTTP version not supported",
            HeadError::UnsupportedCoding => "transfer coding not implemented",
            HeadError::Expectation => "only Expect: 100-continue is supported",
        }
    }
}

/// The facts and part positions of one parsed request head (the bytes live elsewhere; see the
/// module docs). Reused: [`ParsedHead::parse`] overwrites it.
#[derive(Debug)]
pub struct ParsedHead {
    /// The head's length in bytes, up to and including its empty line.
    len: u32,
    fields: Vec<Field>,
    /// One bit per field name, from its length and first letter ([`name_bit`]): a lookup
    /// of a name whose bit is clear (most lookups: `X-Request-ID`, `Authorization`, … are
    /// seldom sent) ends without looking at a field.
    name_bits: u64,
    /// The request-target as sent.
    target: (u32, u32),
    /// The path in origin form (for an absolute-form target, the part after the authority).
    path: (u32, u32),
    /// An absolute-form target without a path: the path is `/` (RFC 9112 §3.2.2).
    root_path: bool,
    /// The query, without `?`.
    query: Option<(u32, u32)>,
    /// The authority of an absolute-form target.
    authority: Option<(u32, u32)>,
    /// Where the head's bytes are: at an offset of the receive buffer, or in `copy`.
    home: Home,
    copy: Vec<u8>,
    /// The method.
    pub method: Method,
    /// The version.
    pub version: Version,
    /// How the body is framed.
    pub framing: Framing,
    /// Whether the connection may persist after this request (version + `Connection`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Home {
    /// In the receive buffer, from this offset.
    Buffer(usize),
    /// Copied into `ParsedHead::copy`.
    Copied,
}

impl Default for ParsedHead {
    fn default() -> Self {
        ParsedHead {
            len: 0,
            fields: Vec::new(),
            name_bits: 0,
            target: (0, 0),
            path: (0, 0),
            root_path: false,
            query: None,
            authority: None,
            home: Home::Buffer(0),
            copy: Vec::new(),
            method: Method::Get,
            version: Version::Http11,
            framing: Framing::None,
            keep_alive: true,
            expect_continue: false,
        }
    }
}

/// A field name's bit in [`ParsedHead::name_bits`]: its length and its first letter in
/// either case, mixed (names that differ in either mostly get different bits).
#[inline]
fn name_bit(name: &[u8]) -> u64 {
    let first = name.first().map_or(0, |&b| b | 0x20) as usize;
    1 << ((name.len() * 7 + first) & 63)
}

fn range(r: (u32, u32)) -> Range<usize> {
    r.0 as usize..r.1 as usize
}

/// A parsed head with its bytes: what a service reads. Dereferences to the [`ParsedHead`]'s
/// facts (`method`, `version`, `framing`, …).
#[derive(Clone, Copy, Debug)]
pub struct Head<'a> {
    parsed: &'a ParsedHead,
    bytes: &'a [u8],
}

impl std::ops::Deref for Head<'_> {
    type Target = ParsedHead;

    fn deref(&self) -> &ParsedHead {
        self.parsed
    }
}

impl<'a> Head<'a> {
    /// The request-target as sent (origin, absolute, authority or asterisk form).
    pub fn target(&self) -> &'a [u8] {
        &self.bytes[range(self.parsed.target)]
    }

    /// The path in origin form (also for an absolute-form request; `/` when it has none).
    /// Bytes, as the router matches them: the grammar has checked they are visible ASCII or
    /// UTF-8.
    pub fn path(&self) -> &'a [u8] {
        if self.parsed.root_path {
            b"/"
        } else {
            &self.bytes[range(self.parsed.path)]
        }
    }

    /// The query part of the target, without `?`.
    pub fn query(&self) -> Option<&'a [u8]> {
        self.parsed.query.map(|r| &self.bytes[range(r)])
    }

    /// The host the request is for: the authority of an absolute-form target, else the
    /// `Host` field (RFC 9112 §3.2.2); `None` for an HTTP/1.0 request without either.
    pub fn host(&self) -> Option<&'a [u8]> {
        match self.parsed.authority {
            Some(r) => Some(&self.bytes[range(r)]),
            None => self.header("host"),
        }
    }

    /// The first value of header `name` (ASCII case-insensitive). Inlined, so that the
    /// name's filter bit is computed at compile time and an absent name costs a test.
    #[inline(always)]
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let name = name.as_bytes();
        if self.parsed.name_bits & name_bit(name) == 0 {
            return None;
        }
        self.find_header(name)
    }

    /// The search behind [`Head::header`], once the filter could not rule the name out.
    #[inline(never)]
    fn find_header(&self, name: &[u8]) -> Option<&'a [u8]> {
        let bytes = self.bytes;
        self.parsed.fields.iter().find_map(|f| {
            let n = &bytes[range(f.name)];
            eq_ignore_case(n, name).then(|| &bytes[range(f.value)])
        })
    }

    /// Every value of header `name`, in order.
    pub fn headers(&self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let bytes = self.bytes;
        self.parsed
            .fields
            .iter()
            .filter(move |f| eq_ignore_case(&bytes[range(f.name)], name.as_bytes()))
            .map(move |f| &bytes[range(f.value)])
    }

    /// All header fields as (name, value).
    pub fn fields(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let bytes = self.bytes;
        self.parsed
            .fields
            .iter()
            .map(move |f| (&bytes[range(f.name)], &bytes[range(f.value)]))
    }
}

impl ParsedHead {
    /// The head with its bytes, `input` being what [`ParsedHead::parse`] parsed (or its first
    /// [`ParsedHead::len`] bytes).
    pub fn view<'a>(&'a self, input: &'a [u8]) -> Head<'a> {
        Head {
            parsed: self,
            bytes: &input[..self.len as usize],
        }
    }

    /// The head's length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no head has been parsed (length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records that the head just parsed starts at `at` in the receive buffer.
    pub fn set_home(&mut self, at: usize) {
        self.home = Home::Buffer(at);
    }

    /// The head with its bytes, wherever they are: at its offset in `recv`, or in its copy.
    #[inline]
    pub fn view_in<'a>(&'a self, recv: &'a [u8]) -> Head<'a> {
        let bytes = match self.home {
            Home::Buffer(at) => &recv[at..at + self.len as usize],
            // `detach` copied exactly the head.
            Home::Copied => &self.copy[..],
        };
        Head {
            parsed: self,
            bytes,
        }
    }

    /// Copies the head's bytes out of `recv`, which is about to move or be overwritten;
    /// idempotent.
    pub fn detach(&mut self, recv: &[u8]) {
        if let Home::Buffer(at) = self.home {
            self.copy.clear();
            self.copy
                .extend_from_slice(&recv[at..at + self.len as usize]);
            self.home = Home::Copied;
        }
    }

    /// The body's length under `Content-Length` framing (0 otherwise).
    pub fn body_len(&self) -> usize {
        match self.framing {
            Framing::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Framing::None | Framing::Chunked => 0,
        }
    }

    /// Whether the head's bytes are still in the receive buffer.
    pub fn in_buffer(&self) -> bool {
        matches!(self.home, Home::Buffer(_))
    }

    /// Heap bytes held by this head's buffers.
    pub fn heap_bytes(&self) -> usize {
        self.copy.capacity() + self.fields.capacity() * std::mem::size_of::<Field>()
    }

    /// Frees the buffers (an idle connection keeps no head memory).
    pub fn release(&mut self) {
        self.copy = Vec::new();
        self.fields = Vec::new();
        self.home = Home::Buffer(0);
        self.len = 0;
        self.name_bits = 0;
    }
}

impl ParsedHead {
    /// Parses a head from the start of `input` ([`super::grammar`]). `Ok(None)`: incomplete,
    /// read more (the caller enforces the size limits on incomplete input with
    /// [`ParsedHead::check_partial`]). `Ok(Some(n))`: the head is the first `n` bytes.
    pub fn parse(&mut self, input: &[u8], limits: &Limits) -> Result<Option<usize>, HeadError> {
        self.home = Home::Buffer(0);
        let max_fields = limits.max_headers.clamp(1, MAX_HEADERS_CAP);
        // The common head in one pass; anything else (and every error) from the grammar.
        let found = match common_head::parse(input, &mut self.fields, max_fields) {
            Some(done) => Some(done),
            None => grammar::parse_head(input, &mut self.fields, max_fields)?,
        };
        let Some((line, len)) = found else {
            return Self::check_partial(input, limits).map(|()| None);
        };
        if len > limits.max_header_bytes {
            return Err(HeadError::HeadersTooLarge);
        }
        let head = &input[..len];
        let target = &head[range(line.target)];
        if target.len() > limits.max_uri_bytes {
            return Err(HeadError::UriTooLong);
        }
        self.len = len as u32;
        self.authority = None;
        self.root_path = false;
        self.target = line.target;
        let origin = if target.first() == Some(&b'/') {
            line.target // origin-form, the common case
        } else {
            let text = std::str::from_utf8(target)
                .map_err(|_| HeadError::Malformed("request-target is not UTF-8"))?;
            match split_absolute(text) {
                None => line.target,
                Some(Ok((authority, origin))) => {
                    // Absolute-form (RFC 9112 §3.2.2): the authority stands for the host
                    // and the router sees the origin form.
                    let at = line.target.0 + offset_in(target, authority.as_bytes()) as u32;
                    self.authority = Some((at, at + authority.len() as u32));
                    self.root_path = !origin.starts_with('/');
                    let o = line.target.0 + offset_in(target, origin.as_bytes()) as u32;
                    (o, o + origin.len() as u32)
                }
                Some(Err(_)) => {
                    return Err(HeadError::Malformed("invalid absolute-form request-target"));
                }
            }
        };
        // The request line found the first `?` of an origin-form target.
        let question = if origin == line.target {
            line.question
        } else {
            memchr::memchr(b'?', &head[range(origin)]).map(|q| origin.0 + q as u32)
        };
        match question {
            Some(q) => {
                self.path = (origin.0, q);
                self.query = Some((q + 1, origin.1));
            }
            None => {
                self.path = origin;
                self.query = None;
            }
        }
        self.method = match line.known {
            Some(m) => m,
            None => Method::from_bytes(&head[range(line.method)]),
        };
        self.version = if line.minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        };
        self.check_fields(head, limits)?;
        Ok(Some(len))
    }

    /// The framing rules over the parsed fields (RFC 9112 §6.3 and §3.2). What the fields
    /// said is kept in a few bits, so the common head (one `Host`, perhaps a
    /// `Content-Length`, nothing else that matters) is judged by one test.
    fn check_fields(&mut self, head: &[u8], limits: &Limits) -> Result<(), HeadError> {
        const CHUNKED: u8 = 1;
        const TE: u8 = 2;
        const UNKNOWN_CODING: u8 = 4;
        const CLOSE: u8 = 8;
        const KEEP_ALIVE: u8 = 16;
        const EXPECT: u8 = 32;
        let mut said = 0u8;
        let mut content_length: Option<u64> = None;
        let mut hosts = 0u32;
        let mut name_bits = 0;
        for f in &self.fields {
            let name = &head[range(f.name)];
            name_bits |= name_bit(name);
            // Sliced only for the names below (most fields are none of them).
            let value = || &head[range(f.value)];
            // The grammar rejects CTLs except HTAB; it allows obs-text, fine in values.
            match name.len() {
                4 if token_is(name, b"host") => {
                    if !valid_host(value()) {
                        return Err(HeadError::Malformed(
                            "invalid Host header (expected host[:port])",
                        ));
                    }
                    hosts += 1;
                }
                6 if token_is(name, b"expect") => {
                    if !trim(value()).eq_ignore_ascii_case(b"100-continue") {
                        return Err(HeadError::Expectation);
                    }
                    said |= EXPECT;
                }
                10 if token_is(name, b"connection") => {
                    for token in value().split(|&b| b == b',').map(trim) {
                        if token.eq_ignore_ascii_case(b"close") {
                            said |= CLOSE;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            said |= KEEP_ALIVE;
                        }
                    }
                }
                14 if token_is(name, b"content-length") => {
                    let n = parse_content_length(value())?;
                    if content_length.is_some_and(|prev| prev != n) {
                        return Err(HeadError::Malformed("conflicting Content-Length headers"));
                    }
                    content_length = Some(n);
                }
                17 if token_is(name, b"transfer-encoding") => {
                    said |= TE;
                    for coding in value().split(|&b| b == b',').map(trim) {
                        if coding.is_empty() || !coding.iter().all(|&b| is_token(b)) {
                            return Err(HeadError::Malformed("malformed Transfer-Encoding"));
                        }
                        if said & CHUNKED != 0 {
                            // A coding after `chunked` (even a second `chunked`): the final
                            // coding is not a single chunked (RFC 9112 §6.3).
                            return Err(HeadError::Malformed(
                                "chunked must be the final transfer coding, once",
                            ));
                        }
                        if coding.eq_ignore_ascii_case(b"chunked") {
                            said |= CHUNKED;
                        } else {
                            said |= UNKNOWN_CODING;
                        }
                    }
                }
                _ => {}
            }
        }
        self.name_bits = name_bits;
        if said & TE != 0 {
            if said & CHUNKED == 0 {
                return Err(HeadError::Malformed("final transfer coding is not chunked"));
            }
            if said & UNKNOWN_CODING != 0 {
                return Err(HeadError::UnsupportedCoding);
            }
            if self.version == Version::Http10 {
                return Err(HeadError::Malformed(
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            if content_length.is_some() {
                return Err(HeadError::Malformed(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
        }
        match (self.version, hosts) {
            (_, 1) => {}
            (Version::Http11, 0) => return Err(HeadError::Malformed("missing Host header")),
            (Version::Http10, 0) => {}
            _ => return Err(HeadError::Malformed("more than one Host header")),
        }
        self.framing = match content_length {
            _ if said & CHUNKED != 0 => Framing::Chunked,
            Some(n) if n > limits.max_body_bytes as u64 => return Err(HeadError::BodyTooLarge),
            Some(0) | None => Framing::None,
            Some(n) => Framing::Length(n),
        };
        let http11 = self.version == Version::Http11;
        self.keep_alive = said & CLOSE == 0 && (http11 || said & KEEP_ALIVE != 0);
        // An HTTP/1.0 client cannot know 100 Continue: ignore it there (RFC 9110 §10.1.1),
        // and where no body follows.
        self.expect_continue = said & EXPECT != 0 && http11 && self.framing != Framing::None;
        Ok(())
    }

    /// Limits for a head that is not complete yet: 414 while the request line alone is too
    /// long, 431 once the buffered head passes `MAX_HEADER_BYTES`.
    pub fn check_partial(input: &[u8], limits: &Limits) -> Result<(), HeadError> {
        Self::check_partial_len(input.len(), input.contains(&b'\n'), limits)
    }

    /// [`ParsedHead::check_partial`] from what a [`HeadScanner`] already knows: the buffered length
    /// and whether the request line has ended.
    pub fn check_partial_len(
        len: usize,
        line_done: bool,
        limits: &Limits,
    ) -> Result<(), HeadError> {
        // Allow for the method and version around the target.
        if !line_done && len > limits.max_uri_bytes + 32 {
            return Err(HeadError::UriTooLong);
        }
        if len > limits.max_header_bytes {
            return Err(HeadError::HeadersTooLarge);
        }
        Ok(())
    }
}

/// What [`HeadScanner::scan`] found in the buffered bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// No end of head yet; `line_done` once the request line has ended.
    Partial {
        /// An LF has been seen.
        line_done: bool,
    },
    /// An empty line ends a head: parse it.
    Complete,
    /// An LF without its CR (refused: a smuggling vector behind a lenient proxy).
    BareLf,
}

/// Finds the end of a head arriving in pieces while looking at each byte once, so a head sent
/// one byte per read costs O(n) rather than a re-parse from byte 0 per read (O(n²);
/// hyperium/hyper#3764). Positions are relative to the start of the head; [`HeadScanner::reset`]
/// when a head is consumed.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadScanner {
    scanned: usize,
    line_done: bool,
}

impl HeadScanner {
    /// Scans `head[self.scanned..]` (the bytes new since the last call). `head` starts where
    /// the head starts and only grows between calls.
    pub fn scan(&mut self, head: &[u8]) -> Scan {
        let from = self.scanned;
        self.scanned = head.len();
        for i in memchr::memchr_iter(b'\n', &head[from..]).map(|i| i + from) {
            if i == 0 || head[i - 1] != b'\r' {
                return Scan::BareLf;
            }
            self.line_done = true;
            if i >= 3 && head[i - 3] == b'\r' && head[i - 2] == b'\n' {
                // Only a candidate: leading empty lines also look like this, so a parse that
                // still says partial resumes scanning after this point.
                self.scanned = i + 1;
                return Scan::Complete;
            }
        }
        Scan::Partial {
            line_done: self.line_done,
        }
    }

    /// Whether nothing of the current head has been scanned yet.
    pub fn is_fresh(&self) -> bool {
        self.scanned == 0
    }

    /// Starts over for the next head.
    pub fn reset(&mut self) {
        *self = HeadScanner::default();
    }
}

/// Where `part` (a subslice of `whole`) starts in `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// Whether any LF in `bytes` lacks its CR (SIMD search for LFs: a head has only a few).
pub fn has_bare_lf(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', bytes).any(|i| i == 0 || bytes[i - 1] != b'\r')
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `Content-Length` = 1*DIGIT; a list of identical values is tolerated (RFC 9110 §8.6).
fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    // One plain number (nearly always): digits only, read in one pass.
    if (1..=19).contains(&value.len()) {
        let mut digits = true;
        let n = value.iter().fold(0u64, |n, &d| {
            digits &= d.is_ascii_digit();
            n.wrapping_mul(10)
                .wrapping_add(u64::from(d.wrapping_sub(b'0')))
        });
        if digits {
            return Ok(n);
        }
    }
    let mut found: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = trim(part);
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::Malformed("malformed Content-Length"));
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(HeadError::Malformed("conflicting Content-Length values"));
        }
        found = Some(n);
    }
    found.ok_or(HeadError::Malformed("malformed Content-Length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<usize>, HeadError> {
        ParsedHead::default().parse(raw.as_bytes(), &Limits::default())
    }

    fn status(raw: &str) -> u16 {
        parse(raw).expect_err("must be rejected").status().code()
    }

    #[test]
    fn parses_a_simple_get() {
        let mut h = ParsedHead::default();
        let raw = b"GET /users/7?x=1 HTTP/1.1\r\nHost: a\r\nX-Request-ID: abc\r\n\r\nrest";
        assert_eq!(h.parse(raw, &Limits::default()), Ok(Some(raw.len() - 4)));
        assert_eq!(h.method, Method::Get);
        let v = h.view(raw);
        assert_eq!(v.target(), b"/users/7?x=1");
        assert_eq!(v.path(), b"/users/7");
        assert_eq!(v.query(), Some(&b"x=1"[..]));
        assert_eq!(v.header("x-request-id"), Some(&b"abc"[..]));
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive);
    }

    #[test]
    fn partial_heads_ask_for_more() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(parse("GE"), Ok(None));
    }

    #[test]
    fn keep_alive_rules() {
        let mut h = ParsedHead::default();
        let l = Limits::default();
        h.parse(b"GET / HTTP/1.0\r\n\r\n", &l).unwrap();
        assert!(!h.keep_alive, "1.0 closes by default");
        h.parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &l)
            .unwrap();
        assert!(h.keep_alive, "1.0 opts in");
        h.parse(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            &l,
        )
        .unwrap();
        assert!(!h.keep_alive);
        h.parse(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, Close\r\n\r\n",
            &l,
        )
        .unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn content_length_and_chunked_framing() {
        let mut h = ParsedHead::default();
        let l = Limits::default();
        h.parse(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n",
            &l,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Length(12));
        h.parse(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
            &l,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Length(3));
        h.parse(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
            &l,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
    }

    // One test per framing rule of docs/api.md "HTTP/1.1".
    #[test]
    fn rejects_content_length_with_transfer_encoding() {
        assert_eq!(
            status(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400
        );
    }

    #[test]
    fn rejects_differing_content_lengths() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_malformed_content_length() {
        for v in ["-1", "+3", "3a", "", "0x10", "1 2", "99999999999999999999"] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(status(&raw), 400, "{v:?}");
        }
    }

    #[test]
    fn rejects_transfer_encoding_not_ending_in_chunked() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            400
        );
        assert_eq!(
            status(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
            400
        );
        assert_eq!(
            status(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_obs_fold() {
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_whitespace_before_colon() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n"), 400);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_control_bytes_in_values() {
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_bare_lf() {
        assert_eq!(status("GET / HTTP/1.1\nHost: a\n\n"), 400);
    }

    #[test]
    fn rejects_transfer_encoding_in_http10() {
        assert_eq!(
            status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_missing_or_repeated_host_in_http11() {
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(
            parse("GET / HTTP/1.0\r\n\r\n").map(|o| o.is_some()),
            Ok(true)
        );
    }

    #[test]
    fn host_must_be_uri_host_and_port() {
        for bad in ["a b", "a/b", "u@a", "a:x", "[::1", "a:1:2", "\"a\""] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert_eq!(status(&raw), 400, "Host: {bad}");
        }
        for ok in [
            "a",
            "a:8080",
            "[::1]:80",
            "127.0.0.1",
            "",
            "a \t",
            "\ta:80 ",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {ok}\r\n\r\n");
            assert!(matches!(parse(&raw), Ok(Some(_))), "Host: {ok}");
        }
    }

    #[test]
    fn absolute_form_targets_are_routed_by_their_path() {
        let mut h = ParsedHead::default();
        let l = Limits::default();
        let raw = b"GET http://a:80/users/7?x=1 HTTP/1.1\r\nHost: b\r\n\r\n";
        h.parse(raw, &l).unwrap();
        let v = h.view(raw);
        assert_eq!(
            (v.path(), v.query(), v.target()),
            (
                &b"/users/7"[..],
                Some(&b"x=1"[..]),
                &b"http://a:80/users/7?x=1"[..]
            )
        );
        assert_eq!(
            v.host(),
            Some(&b"a:80"[..]),
            "the authority stands for the host"
        );
        let raw = b"GET http://a?q HTTP/1.1\r\nHost: a\r\n\r\n";
        h.parse(raw, &l).unwrap();
        let v = h.view(raw);
        assert_eq!((v.path(), v.query()), (&b"/"[..], Some(&b"q"[..])));
        let raw = b"GET /p HTTP/1.1\r\nHost: b\r\n\r\n";
        h.parse(raw, &l).unwrap();
        assert_eq!(h.view(raw).host(), Some(&b"b"[..]));
        assert_eq!(status("GET http://u@a/p HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET ftp://a/p HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn expect_continue_is_ignored_in_http10() {
        let mut h = ParsedHead::default();
        let raw = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        h.parse(raw, &Limits::default()).unwrap();
        assert!(!h.expect_continue, "RFC 9110 10.1.1: ignored in HTTP/1.0");
        let raw =
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        h.parse(raw, &Limits::default()).unwrap();
        assert!(h.expect_continue);
    }

    #[test]
    fn versions_other_than_10_11_are_505() {
        assert_eq!(status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTX/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn unknown_expectation_is_417() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\nContent-Length: 1\r\n\r\n"),
            417
        );
    }

    #[test]
    fn limits_431_414_413() {
        let limits = Limits {
            max_header_bytes: 256,
            max_headers: 4,
            max_uri_bytes: 64,
            max_body_bytes: 10,
        };
        let mut h = ParsedHead::default();
        let many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(
            h.parse(many.as_bytes(), &limits),
            Err(HeadError::HeadersTooLarge)
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nA: {}\r\n\r\n",
            "x".repeat(300)
        );
        assert_eq!(
            h.parse(big.as_bytes(), &limits),
            Err(HeadError::HeadersTooLarge)
        );
        let partial_big = format!("GET / HTTP/1.1\r\nHost: a\r\nA: {}", "x".repeat(300));
        assert_eq!(
            h.parse(partial_big.as_bytes(), &limits),
            Err(HeadError::HeadersTooLarge)
        );
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(100));
        assert_eq!(
            h.parse(long_uri.as_bytes(), &limits),
            Err(HeadError::UriTooLong)
        );
        let partial_uri = format!("GET /{}", "u".repeat(100));
        assert_eq!(
            h.parse(partial_uri.as_bytes(), &limits),
            Err(HeadError::UriTooLong)
        );
        let body = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(
            h.parse(body.as_bytes(), &limits),
            Err(HeadError::BodyTooLarge)
        );
        assert_eq!(HeadError::HeadersTooLarge.status().code(), 431);
        assert_eq!(HeadError::UriTooLong.status().code(), 414);
        assert_eq!(HeadError::BodyTooLarge.status().code(), 413);
    }
}

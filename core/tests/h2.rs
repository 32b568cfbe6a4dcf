//! HTTP/2 connections serving weir's application, driven frame by frame with a hand-moved
//! clock: requests and answers as over HTTP/1.1, flow control, and the floods refused.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use weir_core::App;
use weir_core::h2::connection::{Connection, H2Config};
use weir_core::h2::frame::{self, ErrorCode, Header, flag, kind, setting};
use weir_core::h2::hpack::{self, Decoder};
use weir_core::http::Effect;
use weir_core::jobs::{JobWatch, intensive_work};

/// A frame the server sent.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The client side of one connection.
struct Client {
    app: Arc<App>,
    c: Connection<App>,
    now: weir_core::Now,
    out: Vec<u8>,
    decoder: Decoder,
    closed: bool,
    job: Option<JobWatch>,
}

impl Client {
    fn new(env: &[(&str, &str)]) -> Client {
        Self::with(app(env), H2Config::default())
    }

    fn with(app: Arc<App>, config: H2Config) -> Client {
        let now = t0();
        let mut hello = frame::PREFACE.to_vec();
        frame::put_settings(&mut hello, &[]);
        let c = Connection::new(app.clone(), peer(), config, now, &hello);
        let mut client = Client {
            app,
            c,
            now,
            out: Vec::new(),
            decoder: Decoder::new(hpack::DEFAULT_TABLE_SIZE),
            closed: false,
            job: None,
        };
        client.drain();
        client
    }

    fn drain(&mut self) {
        while let Some(bytes) = self.c.poll_transmit() {
            let n = bytes.len();
            self.out.extend_from_slice(bytes);
            self.c.advance_transmit(self.now, n);
        }
        while let Some(e) = self.c.poll_effect() {
            match e {
                Effect::Close(_) => self.closed = true,
                Effect::Wait(w) => self.job = Some(w),
                Effect::HalfClose => {}
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let taken = self.c.feed(self.now, bytes);
        assert_eq!(taken, bytes.len(), "the connection takes what it is sent");
        self.drain();
    }

    /// Every frame sent since the last call.
    fn frames(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut at = 0;
        while self.out.len() - at >= frame::HEADER_LEN {
            let h = Header::parse(&self.out[at..]);
            let end = at + frame::HEADER_LEN + h.len;
            frames.push(Frame {
                kind: h.kind,
                flags: h.flags,
                stream: h.stream,
                payload: self.out[at + frame::HEADER_LEN..end].to_vec(),
            });
            at = end;
        }
        self.out.drain(..at);
        frames
    }

    fn headers_block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for (n, v) in fields {
            hpack::encode_field(&mut block, n.as_bytes(), v.as_bytes());
        }
        block
    }

    fn request(&mut self, stream: u32, method: &str, path: &str, body: Option<&[u8]>) {
        let block = Self::headers_block(&[
            (":method", method),
            (":scheme", "http"),
            (":authority", "t"),
            (":path", path),
        ]);
        let mut bytes = Vec::new();
        let end = if body.is_none() { flag::END_STREAM } else { 0 };
        frame::put_header(
            &mut bytes,
            block.len(),
            kind::HEADERS,
            flag::END_HEADERS | end,
            stream,
        );
        bytes.extend_from_slice(&block);
        if let Some(body) = body {
            frame::put_header(&mut bytes, body.len(), kind::DATA, flag::END_STREAM, stream);
            bytes.extend_from_slice(body);
        }
        self.send(&bytes);
    }

    /// The response on `stream` among `frames`: status, fields, body, and whether it ended.
    fn response(
        &mut self,
        frames: &[Frame],
        stream: u32,
    ) -> (u16, Vec<(String, String)>, Vec<u8>, bool) {
        let (mut status, mut fields, mut body, mut ended) = (0, Vec::new(), Vec::new(), false);
        for f in frames.iter().filter(|f| f.stream == stream) {
            match f.kind {
                kind::HEADERS => {
                    self.decoder
                        .decode::<()>(&f.payload, 1 << 20, |n, v| {
                            let (n, v) = (
                                String::from_utf8_lossy(n).into_owned(),
                                String::from_utf8_lossy(v).into_owned(),
                            );
                            if n == ":status" {
                                status = v.parse().unwrap();
                            } else {
                                fields.push((n, v));
                            }
                            Ok(())
                        })
                        .unwrap();
                }
                kind::DATA => body.extend_from_slice(&f.payload),
                _ => {}
            }
            ended |=
                f.flags & flag::END_STREAM != 0 && matches!(f.kind, kind::HEADERS | kind::DATA);
        }
        (status, fields, body, ended)
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.advanced(d);
        self.c.handle_timeout(self.now);
        self.drain();
    }
}

fn goaway(frames: &[Frame]) -> Option<(u32, u32)> {
    frames.iter().find(|f| f.kind == kind::GOAWAY).map(|f| {
        let p = &f.payload;
        (
            u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        )
    })
}

fn rst(frames: &[Frame], stream: u32) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.kind == kind::RST_STREAM && f.stream == stream)
        .map(|f| {
            let p = &f.payload;
            u32::from_be_bytes([p[0], p[1], p[2], p[3]])
        })
}

#[test]
fn settings_are_exchanged_and_requests_answered_as_over_http1() {
    let mut c = Client::new(&[("ACCESS_LOG", "false")]);
    let frames = c.frames();
    assert_eq!(
        frames[0].kind,
        kind::SETTINGS,
        "the server's settings come first"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.kind == kind::SETTINGS && f.flags == flag::ACK),
        "ours acknowledged"
    );
    c.request(1, "GET", "/ping", None);
    let frames = c.frames();
    let (status, fields, body, ended) = c.response(&frames, 1);
    assert_eq!((status, &body[..], ended), (200, &b"pong"[..], true));
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("content-length").as_deref(), Some("4"));
    assert!(
        field("x-request-id").is_some(),
        "the common lines: {fields:?}"
    );
    assert!(field("date").is_some() && field("server").is_some());
    assert!(
        field("connection").is_none(),
        "no connection-specific fields in HTTP/2"
    );
    // A body in DATA; two streams answered on one connection; a 404.
    c.request(3, "POST", "/api/v1/compute/fast", Some(b"{\"number\": 12}"));
    c.request(5, "GET", "/nowhere", None);
    let frames = c.frames();
    let (status, _, body, _) = c.response(&frames, 3);
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["result"], 144);
    assert_eq!(c.response(&frames, 5).0, 404);
    // HEAD: the GET's fields, no body.
    c.request(7, "HEAD", "/ping", None);
    let frames = c.frames();
    let (status, fields, body, ended) = c.response(&frames, 7);
    assert_eq!((status, body.len(), ended), (200, 0, true));
    assert!(
        fields
            .iter()
            .any(|(n, v)| n == "content-length" && v == "4")
    );
    assert_eq!(c.app.totals().success, 3);
}

#[test]
fn pings_are_answered_and_the_peers_window_is_respected() {
    let mut c = Client::new(&[("ACCESS_LOG", "false")]);
    c.frames();
    let mut ping = Vec::new();
    frame::put_header(&mut ping, 8, kind::PING, 0, 0);
    ping.extend_from_slice(b"12345678");
    c.send(&ping);
    let frames = c.frames();
    assert!(
        frames
            .iter()
            .any(|f| f.kind == kind::PING && f.flags == flag::ACK && f.payload == b"12345678")
    );
    // A window of 5 bytes per stream: the echo of 12 bytes leaves 5, then the rest once the
    // window opens.
    let mut settings = Vec::new();
    frame::put_settings(&mut settings, &[(setting::INITIAL_WINDOW_SIZE, 5)]);
    c.send(&settings);
    c.frames();
    c.request(1, "POST", "/echo", Some(b"hello, world"));
    let frames = c.frames();
    let (status, _, body, ended) = c.response(&frames, 1);
    assert_eq!((status, &body[..], ended), (200, &b"hello"[..], false));
    let mut update = Vec::new();
    frame::put_window_update(&mut update, 1, 100);
    c.send(&update);
    let frames = c.frames();
    let (_, _, rest, ended) = c.response(&frames, 1);
    assert_eq!((&rest[..], ended), (&b", world"[..], true));
}

#[test]
fn a_deferred_answer_and_the_drain() {
    let mut c = Client::new(&[("ACCESS_LOG", "false"), ("WORKER_COUNT", "1")]);
    c.frames();
    c.request(1, "GET", "/api/v1/sleep?ms=200", None);
    c.request(
        3,
        "POST",
        "/api/v1/compute/intensive",
        Some(b"{\"number\": 3}"),
    );
    assert!(c.c.poll_timeout().is_some());
    c.advance(Duration::from_millis(200));
    let frames = c.frames();
    assert_eq!(
        c.response(&frames, 1).0,
        200,
        "the sleep answered at its deadline"
    );
    // The drain: GOAWAY naming stream 3, which is still answered once its job ran.
    c.c.handle_drain(c.now);
    c.drain();
    let frames = c.frames();
    assert_eq!(goaway(&frames), Some((3, ErrorCode::NoError as u32)));
    assert!(!c.closed, "stream 3 is open");
    while let Some(job) = c.app.queue().take() {
        if let Some((n, cost)) = job.start(c.now.mono) {
            job.complete(c.now.mono, Some(intensive_work(n, cost)));
        }
    }
    c.c.handle_wake(c.now);
    c.drain();
    let frames = c.frames();
    let (status, _, body, ended) = c.response(&frames, 3);
    assert_eq!((status, ended), (200, true));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["result"],
        9
    );
    assert!(c.closed, "closed once every stream is answered");
}

#[test]
fn rapid_reset_ends_the_connection_with_enhance_your_calm() {
    let mut c = Client::new(&[("ACCESS_LOG", "false"), ("RATE_LIMIT", "0")]);
    c.frames();
    let mut flood = Vec::new();
    let block = Client::headers_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "t"),
        (":path", "/api/v1/sleep?ms=1000"),
    ]);
    for i in 0..300u32 {
        let id = 2 * i + 1;
        frame::put_header(
            &mut flood,
            block.len(),
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
        );
        flood.extend_from_slice(&block);
        frame::put_rst(&mut flood, id, ErrorCode::Cancel);
    }
    c.c.feed(c.now, &flood);
    c.drain();
    let frames = c.frames();
    assert_eq!(
        goaway(&frames).map(|g| g.1),
        Some(ErrorCode::EnhanceYourCalm as u32)
    );
    assert!(c.closed);
    // The same resets, each after its answer, cost nothing: a client that cancels what it
    // has already received is not flooding.
    let mut c = Client::new(&[("ACCESS_LOG", "false"), ("RATE_LIMIT", "0")]);
    c.frames();
    for i in 0..300u32 {
        c.request(2 * i + 1, "GET", "/ping", None);
        let mut reset = Vec::new();
        frame::put_rst(&mut reset, 2 * i + 1, ErrorCode::Cancel);
        c.send(&reset);
    }
    assert_eq!(goaway(&c.frames()), None);
    assert!(!c.closed);
}

/// A request without `:authority` (it is optional in HTTP/2) is served.
#[test]
fn a_request_without_authority_is_served() {
    let mut c = Client::new(&[("ACCESS_LOG", "false")]);
    c.frames();
    let block =
        Client::headers_block(&[(":method", "GET"), (":scheme", "http"), (":path", "/ping")]);
    let mut bytes = Vec::new();
    frame::put_header(
        &mut bytes,
        block.len(),
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
    );
    bytes.extend_from_slice(&block);
    c.send(&bytes);
    let frames = c.frames();
    assert_eq!(c.response(&frames, 1).0, 200);
}

#[test]
fn a_continuation_flood_is_cut_at_the_header_limit() {
    let mut c = Client::new(&[("ACCESS_LOG", "false"), ("MAX_HEADER_BYTES", "4096")]);
    c.frames();
    let mut flood = Vec::new();
    let block = Client::headers_block(&[(":method", "GET"), (":path", "/ping")]);
    frame::put_header(&mut flood, block.len(), kind::HEADERS, 0, 1);
    flood.extend_from_slice(&block);
    for _ in 0..100 {
        frame::put_header(&mut flood, 100, kind::CONTINUATION, 0, 1);
        flood.extend_from_slice(&[0x40; 100]);
    }
    c.c.feed(c.now, &flood);
    c.drain();
    let frames = c.frames();
    assert_eq!(
        goaway(&frames).map(|g| g.1),
        Some(ErrorCode::EnhanceYourCalm as u32)
    );
    assert!(
        c.c.heap_bytes() < 64 * 1024,
        "the block was not kept past the limit"
    );
}

#[test]
fn streams_past_the_limit_are_refused_and_malformed_ones_reset() {
    let config = H2Config {
        max_streams: 2,
        ..H2Config::default()
    };
    let mut c = Client::with(app(&[("ACCESS_LOG", "false")]), config);
    c.frames();
    for id in [1, 3, 5] {
        c.request(id, "GET", "/api/v1/sleep?ms=500", None);
    }
    let frames = c.frames();
    assert_eq!(rst(&frames, 5), Some(ErrorCode::RefusedStream as u32));
    assert_eq!(rst(&frames, 1), None);
    c.advance(Duration::from_millis(500));
    let frames = c.frames();
    assert_eq!(c.response(&frames, 1).0, 200);
    // Uppercase field names, connection-specific fields and TE other than `trailers` are
    // malformed (§8.2): the stream is reset, the connection goes on.
    for (id, field) in [
        (7u32, ("X-Upper", "1")),
        (9, ("connection", "close")),
        (11, ("te", "gzip")),
    ] {
        let block = Client::headers_block(&[(":method", "GET"), (":path", "/ping"), field]);
        let mut bytes = Vec::new();
        frame::put_header(
            &mut bytes,
            block.len(),
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
        );
        bytes.extend_from_slice(&block);
        c.send(&bytes);
        let frames = c.frames();
        assert_eq!(
            rst(&frames, id),
            Some(ErrorCode::Protocol as u32),
            "{field:?}"
        );
    }
    c.request(13, "GET", "/ping", None);
    let frames = c.frames();
    assert_eq!(c.response(&frames, 13).0, 200);
    assert!(!c.closed);
}

#[test]
fn frames_that_break_the_rules_end_the_connection() {
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "HEADERS on stream 0",
            {
                let mut b = Vec::new();
                frame::put_header(&mut b, 0, kind::HEADERS, flag::END_HEADERS, 0);
                b
            },
            ErrorCode::Protocol,
        ),
        (
            "a frame past 16 KiB",
            {
                let mut b = Vec::new();
                frame::put_header(&mut b, 20_000, kind::DATA, 0, 1);
                b
            },
            ErrorCode::FrameSize,
        ),
        (
            "PUSH_PROMISE from a client",
            {
                let mut b = Vec::new();
                frame::put_header(&mut b, 4, kind::PUSH_PROMISE, 0, 1);
                b.extend_from_slice(&[0, 0, 0, 2]);
                b
            },
            ErrorCode::Protocol,
        ),
        (
            "a zero window update",
            {
                let mut b = Vec::new();
                frame::put_window_update(&mut b, 0, 0);
                b
            },
            ErrorCode::Protocol,
        ),
        (
            "an HPACK error",
            {
                let mut b = Vec::new();
                frame::put_header(&mut b, 1, kind::HEADERS, flag::END_HEADERS, 1);
                b.push(0x80);
                b
            },
            ErrorCode::Compression,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut c = Client::new(&[("ACCESS_LOG", "false")]);
        c.frames();
        c.c.feed(c.now, &bytes);
        c.drain();
        let frames = c.frames();
        assert_eq!(goaway(&frames).map(|g| g.1), Some(code as u32), "{what}");
        assert!(c.closed, "{what}");
    }
}

/// An idle HTTP/2 connection releases its buffers a second after its last stream, as an idle
/// HTTP/1.1 connection does.
#[test]
fn an_idle_connection_releases_its_buffers() {
    let mut c = Client::new(&[("ACCESS_LOG", "false")]);
    c.request(1, "GET", "/ping", None);
    c.frames();
    assert!(c.c.heap_bytes() > 0, "buffers while busy");
    c.advance(Duration::from_secs(1));
    assert_eq!(c.c.heap_bytes(), 0);
    // And it serves the next request as before.
    c.request(3, "GET", "/ping", None);
    let frames = c.frames();
    assert_eq!(c.response(&frames, 3).0, 200);
}

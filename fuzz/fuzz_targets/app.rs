//! Arbitrary requests through routing, admission and the handlers (JSON included): every
//! request gets exactly one well-formed response with a known status, each header once, and
//! a JSON body wherever the content type says JSON.
//!
//! Input: byte 0 picks the method, byte 1 a route prefix, then `path \0 body` (the path is
//! percent-free visible ASCII after filtering; the body is raw bytes).
#![no_main]

#[path = "shared.rs"]
mod shared;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weir_core::jobs::intensive_work;
use weir_core::{App, Instant, Now};

const METHODS: [&str; 8] = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"];
const PREFIXES: [&str; 12] = [
    "/ping", "/api/v1/compute/fast", "/api/v1/compute/intensive", "/echo", "/users/",
    "/health", "/metrics", "/api/v1/stats", "/api/v1/sleep?ms=", "/api/v1/stream?count=",
    "/metrics?format=", "",
];
const STATUSES: [u16; 16] = [200, 400, 401, 404, 405, 408, 413, 414, 417, 429, 431, 500, 501, 503, 504, 505];

fn app() -> Arc<App> {
    static APP: OnceLock<Arc<App>> = OnceLock::new();
    APP.get_or_init(|| shared::build_app(&[("MAX_BODY_BYTES", "4096")])).clone()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let method = METHODS[usize::from(data[0]) % METHODS.len()];
    let prefix = PREFIXES[usize::from(data[1]) % PREFIXES.len()];
    let rest = &data[2..];
    let (path, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let path: String = path
        .iter()
        .filter(|b| b.is_ascii_graphic())
        .map(|&b| b as char)
        .take(200)
        .collect();
    let mut target = format!("{prefix}{path}");
    if !target.starts_with('/') {
        target.insert(0, '/');
    }
    let mut raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);

    let app = app();
    let mut now = Now::new(Instant::from_nanos(1_000_000), 1_700_000_000_000);
    let mut s = app.session("127.0.0.1:1".parse().unwrap(), now);
    s.feed(now, &raw);
    let mut out = Vec::new();
    for _ in 0..64 {
        while let Some(job) = app.queue().take() {
            if let Some((n, cost)) = job.start(now.mono) {
                job.complete(now.mono, Some(intensive_work(n, cost)));
            }
        }
        s.handle_wake(now);
        while let Some(bytes) = s.poll_transmit() {
            out.extend_from_slice(bytes);
            let n = bytes.len();
            s.advance_transmit(now, n);
        }
        while s.poll_effect().is_some() {}
        // A sleep or stream answers later: move time to its deadline (a stream is cut by
        // the peer leaving once its head and some events are out).
        match s.poll_timeout() {
            Some(at) if !out.is_empty() && at.since(now.mono) > Duration::from_secs(5) => break,
            Some(at) => {
                now = now.advanced(at.since(now.mono));
                s.handle_timeout(now);
            }
            None => break,
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(&out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("no well-formed response to {:?}: {other:?}", String::from_utf8_lossy(&raw)),
    };
    let status = res.code.expect("a status");
    assert!(STATUSES.contains(&status), "unexpected status {status}");
    for (i, h) in res.headers.iter().enumerate() {
        assert!(
            !res.headers[i + 1..].iter().any(|o| o.name.eq_ignore_ascii_case(h.name)),
            "header {} repeated",
            h.name
        );
    }
    let header = |name: &str| res.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    // /echo returns the client's body under the client's content type: not ours to check.
    let echoed = target.split('?').next() == Some("/echo") && status == 200;
    if method != "HEAD" && !echoed && header("content-type") == Some(&b"application/json"[..]) {
        let len: usize = std::str::from_utf8(header("content-length").expect("JSON bodies have a length"))
            .unwrap()
            .parse()
            .unwrap();
        let json = &out[head_len..head_len + len];
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(json) {
            panic!("invalid JSON body ({e}): {}", String::from_utf8_lossy(json));
        }
    }
});

//! A test driver: feeds a session, drains it, moves a hand-held clock, runs queued jobs.
#![allow(dead_code)] // each test file uses a different part of the driver

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use weir_core::jobs::{JobWatch, intensive_work};
use weir_core::{App, CloseReason, Config, Connection, Effect, Instant, Now};

/// 2026-11-22 00:00:00 UTC, so `Date` headers are predictable.
pub const WALL0_MS: u64 = 1_795_305_600_000;

pub fn config(env: &[(&str, &str)]) -> Config {
    let mut all: Vec<(&str, &str)> = vec![("ACCESS_LOG", "false"), ("WORKER_COUNT", "1")];
    all.extend_from_slice(env);
    Config::from_sources(all, 1).expect("test config is valid")
}

pub fn app(env: &[(&str, &str)]) -> Arc<App> {
    let app = App::builder(config(env))
        .runtime("test")
        .secret(weir_core::app::Secret::new([1; 32]))
        .build(t0());
    app.lifecycle().worker_started();
    app
}

pub fn t0() -> Now {
    Now::new(Instant::from_nanos(1_000_000_000), WALL0_MS)
}

pub fn peer() -> SocketAddr {
    "192.0.2.7:40000".parse().unwrap()
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses consecutive responses out of `buf`; `head_only` for responses to HEAD.
pub fn parse_responses(mut buf: &[u8], head_only: bool) -> Vec<Resp> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(buf).expect("valid response head") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => {
                panic!("partial response head: {:?}", String::from_utf8_lossy(buf))
            }
        };
        let status = r.code.unwrap();
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        buf = &buf[n..];
        let get = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if status == 100 || head_only {
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().unwrap();
            body = buf[..len].to_vec();
            buf = &buf[len..];
        } else if get("transfer-encoding").is_some() {
            loop {
                let line_end = buf.windows(2).position(|w| w == b"\r\n").unwrap();
                let size =
                    usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16)
                        .unwrap();
                buf = &buf[line_end + 2..];
                if size == 0 {
                    assert_eq!(&buf[..2], b"\r\n");
                    buf = &buf[2..];
                    break;
                }
                body.extend_from_slice(&buf[..size]);
                assert_eq!(&buf[size..size + 2], b"\r\n");
                buf = &buf[size + 2..];
            }
        } else {
            body = buf.to_vec();
            buf = &[];
        }
        out.push(Resp {
            status,
            headers,
            body,
        });
    }
    out
}

pub struct Driver {
    pub app: Arc<App>,
    pub session: Connection,
    pub now: Now,
    pub out: Vec<u8>,
    pub closed: Option<CloseReason>,
    pub job: Option<JobWatch>,
    /// When false, the driver does not write output (a peer that stopped reading).
    pub writing: bool,
    /// The connection shut its write side (an orderly close's linger).
    pub half_closed: bool,
}

impl Driver {
    pub fn new(app: Arc<App>) -> Self {
        Self::at(app, peer())
    }

    /// A connection from `peer`.
    pub fn at(app: Arc<App>, peer: SocketAddr) -> Self {
        let now = t0();
        let session = app.connection(peer, now);
        let mut d = Driver {
            app,
            session,
            now,
            out: Vec::new(),
            closed: None,
            job: None,
            writing: true,
            half_closed: false,
        };
        d.drain();
        d
    }

    pub fn with(env: &[(&str, &str)]) -> Self {
        Self::new(app(env))
    }

    /// Writes all output and collects effects.
    pub fn drain(&mut self) {
        loop {
            let mut progressed = false;
            if self.writing {
                if let Some(bytes) = self.session.poll_transmit() {
                    let n = bytes.len();
                    self.out.extend_from_slice(bytes);
                    self.session.advance_transmit(self.now, n);
                    progressed = true;
                }
            }
            while let Some(e) = self.session.poll_effect() {
                progressed = true;
                match e {
                    Effect::Wait(w) => self.job = Some(w),
                    // The peer of these tests closes as soon as the server shuts its side:
                    // the linger ends with its end of stream.
                    Effect::HalfClose => {
                        self.half_closed = true;
                        self.session.handle_eof(self.now);
                    }
                    Effect::Close(r) => {
                        assert!(self.closed.is_none(), "Close emitted twice");
                        self.closed = Some(r);
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> usize {
        let n = self.session.feed(self.now, bytes);
        self.drain();
        n
    }

    pub fn eof(&mut self) {
        self.session.handle_eof(self.now);
        self.drain();
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now.advanced(d);
        self.session.handle_timeout(self.now);
        self.drain();
    }

    /// Jumps to the next deadline (fails instead of looping forever when there is none).
    pub fn jump_to_next_deadline(&mut self) {
        let at = self.session.poll_timeout().expect("a deadline is pending");
        let d = at.since(self.now.mono);
        self.advance(d);
    }

    /// Runs every queued job as a worker would, then tells the session.
    pub fn run_jobs(&mut self) -> usize {
        let mut ran = 0;
        while let Some(job) = self.app.queue().take() {
            if let Some((n, cost)) = job.start(self.now.mono) {
                job.complete(self.now.mono, Some(intensive_work(n, cost)));
                ran += 1;
            }
        }
        self.session.handle_wake(self.now);
        self.drain();
        ran
    }

    /// Takes the output so far as parsed responses.
    pub fn responses(&mut self) -> Vec<Resp> {
        let out = std::mem::take(&mut self.out);
        parse_responses(&out, false)
    }

    pub fn one(&mut self) -> Resp {
        let mut r = self.responses();
        assert_eq!(r.len(), 1, "expected one response: {r:?}");
        r.pop().unwrap()
    }

    pub fn request(&mut self, raw: &str) -> Resp {
        self.send(raw.as_bytes());
        self.one()
    }
}

pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

pub fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

//! The connection layer: its slot, the drain it hears by itself, and the linger after an
//! orderly close (written once here for every runtime and protocol).

mod common;

use std::time::Duration;

use common::*;
use weir_core::http::Effect;
use weir_core::tls::{LINGER_BYTES, LINGER_TIME};
use weir_core::{CloseReason, Connection};

/// Drains a connection's output and effects; the effects, in order.
fn effects(c: &mut Connection, now: weir_core::Now) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::new();
    while let Some(bytes) = c.poll_transmit() {
        let n = bytes.len();
        out.extend_from_slice(bytes);
        c.advance_transmit(now, n);
    }
    let mut seen = Vec::new();
    while let Some(e) = c.poll_effect() {
        seen.push(match e {
            Effect::Wait(_) => "wait".to_string(),
            Effect::HalfClose => "half-close".to_string(),
            Effect::Close(reason) => format!("close {reason:?}"),
        });
    }
    (out, seen)
}

#[test]
fn an_orderly_close_lingers_until_the_peer_ends_its_stream_its_budget_or_the_time() {
    let app = app(&[("ACCESS_LOG", "false")]);
    let last = b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let start = t0();
    // Until the time: nothing from the peer, `Close` at LINGER_TIME after the answer.
    let mut c = app.connection(peer(), start);
    c.feed(start, last);
    let (out, seen) = effects(&mut c, start);
    assert!(out.starts_with(b"HTTP/1.1 200"));
    assert_eq!(seen, ["half-close"], "the write side is shut first");
    assert!(
        c.wants_read() && !c.is_closed(),
        "reading what the peer still sends"
    );
    assert_eq!(
        c.poll_timeout(),
        Some(start.mono.saturating_add(LINGER_TIME))
    );
    let early = start.advanced(LINGER_TIME / 2);
    c.feed(early, b"late bytes are dropped");
    c.handle_timeout(early);
    assert_eq!(effects(&mut c, early), (vec![], vec![]));
    let due = start.advanced(LINGER_TIME);
    c.handle_timeout(due);
    assert_eq!(effects(&mut c, due).1, ["close Done"]);
    assert!(c.is_closed());
    // Until the peer's end of stream.
    let mut c = app.connection(peer(), start);
    c.feed(start, last);
    effects(&mut c, start);
    c.handle_eof(start);
    assert_eq!(effects(&mut c, start).1, ["close Done"]);
    // Until its byte budget, fed through the read buffer.
    let mut c = app.connection(peer(), start);
    c.feed(start, last);
    effects(&mut c, start);
    let mut read = 0;
    while read < LINGER_BYTES {
        let n = c.recv_buf().len();
        assert!(n > 0, "the linger reads until its budget is spent");
        c.handle_read(start, n);
        read += n;
    }
    assert_eq!(effects(&mut c, start).1, ["close Done"]);
    assert!(c.recv_buf().is_empty(), "nothing more is read");
}

#[test]
fn other_closes_do_not_linger() {
    let app = app(&[("ACCESS_LOG", "false"), ("WRITE_TIMEOUT", "1s")]);
    let start = t0();
    let mut c = app.connection(peer(), start);
    c.feed(start, b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n");
    // The peer never reads: the write timeout aborts without a linger.
    let big = "GET /ping HTTP/1.1\r\nHost: t\r\n\r\n".repeat(4000);
    c.feed(start, big.as_bytes());
    let later = start.advanced(Duration::from_secs(2));
    c.handle_timeout(later);
    let mut seen = Vec::new();
    while let Some(e) = c.poll_effect() {
        seen.push(format!("{e:?}"));
    }
    assert_eq!(
        seen,
        [format!(
            "{:?}",
            Effect::<()>::Close(CloseReason::WriteTimeout)
        )]
    );
}

/// A deferred answer that completes after the drain began, before the runtime's notice
/// reached the connection, still says `Connection: close`: the connection hears the drain at
/// its next input (a wake here), not only from the runtime.
#[test]
fn a_job_answered_after_the_drain_began_closes_the_connection_without_the_runtimes_notice() {
    let mut d = Driver::with(&[("ACCESS_LOG", "false"), ("WORKER_COUNT", "1")]);
    d.send(b"POST /api/v1/compute/intensive HTTP/1.1\r\nHost: t\r\nContent-Length: 13\r\n\r\n{\"number\": 3}");
    assert!(d.job.is_some(), "the job is queued");
    d.app.lifecycle().begin_drain();
    d.run_jobs();
    let r = d.one();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
}

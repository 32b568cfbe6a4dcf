//! Regression tests for holes a hostile client or a careless operator could open: each test
//! fails without its fix (one connection at a time, time moved by hand).

mod common;

use std::time::Duration;

use common::*;
use weir_core::CloseReason;
use weir_core::http::session::{OUT_HIGH_WATER, drain_grace};

fn backlog(d: &Driver) -> usize {
    d.session.poll_transmit().map_or(0, <[u8]>::len)
}

/// A stream request whose every event carries 128 `"` (escaped to 256 bytes).
fn amplifying_stream() -> String {
    format!(
        "GET /api/v1/stream?count=100000&interval_ms=0 HTTP/1.1\r\nHost: t\r\nX-Request-ID: {}\r\n\r\n",
        "\"".repeat(128)
    )
}

#[test]
fn a_stream_to_a_peer_that_never_reads_holds_at_most_the_high_water_mark_plus_one_event() {
    let mut d = Driver::with(&[]);
    d.writing = false;
    d.send(amplifying_stream().as_bytes());
    let mut max_backlog = 0;
    for _ in 0..5_000 {
        d.advance(Duration::from_millis(1));
        max_backlog = max_backlog.max(backlog(&d));
    }
    let event = 400; // one escaped event with its chunk framing is under 400 bytes
    assert!(
        max_backlog <= OUT_HIGH_WATER + event,
        "backlog {max_backlog} > high-water + one event"
    );
    assert!(
        d.session.heap_bytes() < 3 * (OUT_HIGH_WATER + event),
        "heap {}",
        d.session.heap_bytes()
    );
    assert_eq!(
        d.session.poll_timeout().map(|t| t > d.now.mono),
        Some(true),
        "a paused stream arms no busy timer (only the write timeout)"
    );
    // The peer reads again: the stream resumes from advance_transmit, in order.
    d.writing = true;
    d.drain();
    d.advance(Duration::from_millis(1));
    let text = String::from_utf8_lossy(&d.out).into_owned();
    let ids: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: ")?.parse().ok())
        .collect();
    assert!(ids.len() > 100, "events flowed again: {}", ids.len());
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "no event lost");
}

#[test]
fn a_stream_to_a_slow_reader_keeps_its_buffer_bounded() {
    let mut d = Driver::with(&[]);
    d.writing = false;
    d.send(amplifying_stream().as_bytes());
    let mut peak_heap = 0;
    for _ in 0..3_000 {
        d.advance(Duration::from_millis(1));
        // Read 1 KiB now and then: never enough to catch up.
        if let Some(bytes) = d.session.poll_transmit() {
            let n = bytes.len().min(1024);
            d.session.advance_transmit(d.now, n);
        }
        peak_heap = peak_heap.max(d.session.heap_bytes());
    }
    assert!(
        peak_heap < 3 * (OUT_HIGH_WATER + 400),
        "the written prefix is dropped: peak heap {peak_heap}"
    );
}

#[test]
fn a_zero_interval_stream_is_paced_by_a_timer() {
    let mut d = Driver::with(&[]);
    d.send(b"GET /api/v1/stream?count=5&interval_ms=0 HTTP/1.1\r\nHost: t\r\n\r\n");
    let at = d.session.poll_timeout().expect("next event timer");
    assert!(
        at > d.now.mono,
        "interval 0 is served at the minimum interval"
    );
}

#[test]
fn a_head_sent_one_byte_at_a_time_parses_the_same() {
    let raw = format!(
        "GET /ping HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\nGET /ping HTTP/1.1\r\nHost: t\r\n\r\n",
        "p".repeat(15_000)
    );
    let mut d = Driver::with(&[]);
    for b in raw.as_bytes() {
        d.send(std::slice::from_ref(b));
    }
    let r = d.responses();
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|r| r.status == 200 && r.text() == "pong"));
    // Bare LF is still refused when it arrives alone.
    let mut d = Driver::with(&[]);
    for b in b"GET / HTTP/1.1\r\nHost: t\n" {
        d.send(std::slice::from_ref(b));
    }
    assert_eq!(d.one().status, 400);
    // Leading empty lines before a request line are skipped (RFC 9112 2.2).
    let mut d = Driver::with(&[]);
    for b in b"\r\n\r\nGET /ping HTTP/1.1\r\nHost: t\r\n\r\n" {
        d.send(std::slice::from_ref(b));
    }
    assert_eq!(d.one().text(), "pong");
}

/// Each header name appears once in every response weir can send.
#[test]
fn every_status_carries_each_header_once() {
    let env = [
        ("RATE_LIMIT", "1000"),
        ("RATE_BURST", "2"),
        ("API_TOKEN", "s3cret"),
        ("MAX_BODY_BYTES", "64"),
        ("MAX_URI_BYTES", "64"),
        ("MAX_HEADER_BYTES", "512"),
        ("REQUEST_TIMEOUT", "1s"),
        ("QUEUE_SIZE", "1"),
    ];
    let auth = "Authorization: Bearer s3cret\r\n";
    let fast = |body: &str| {
        format!(
            "POST /api/v1/compute/fast HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let cases: Vec<(u16, String)> = vec![
        (200, fast("{\"number\":3}")),
        (400, fast("{}")),
        (400, fast("{\"number\":\"x\"}")),
        (401, post("/api/v1/compute/fast", "{\"number\":3}")),
        (404, get("/nope")),
        (405, "DELETE /ping HTTP/1.1\r\nHost: t\r\n\r\n".into()),
        (413, fast(&"x".repeat(100))),
        (414, get(&format!("/{}", "u".repeat(100)))),
        (
            417,
            "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: x\r\nContent-Length: 1\r\n\r\nx".into(),
        ),
        (
            431,
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
                "h".repeat(600)
            ),
        ),
        (
            501,
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(),
        ),
        (505, "GET / HTTP/2.0\r\nHost: t\r\n\r\n".into()),
        (200, get("/health")),
        (200, get("/metrics")),
        (
            200,
            format!("GET /api/v1/sleep?ms=0 HTTP/1.1\r\nHost: t\r\n{auth}\r\n"),
        ),
    ];
    let check = |status: u16, r: &Resp, what: &str| {
        assert_eq!(r.status, status, "{what}");
        for (i, (name, _)) in r.headers.iter().enumerate() {
            assert!(
                !r.headers[i + 1..]
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(name)),
                "{status}: header {name} repeated in {:?} ({what})",
                r.headers
            );
        }
    };
    for (status, raw) in &cases {
        let mut d = Driver::with(&env);
        d.advance(Duration::from_secs(1)); // a fresh burst for each case
        d.send(raw.as_bytes());
        d.advance(Duration::ZERO);
        let r = d
            .responses()
            .pop()
            .unwrap_or_else(|| panic!("no response: {raw}"));
        check(*status, &r, raw);
    }
    // 408 (slowloris), 429 (limited), 503 (queue full), 504 (job timeout) need a sequence.
    let mut d = Driver::with(&env);
    d.send(b"GET /ping HTTP/1.1\r\n");
    d.advance(Duration::from_secs(10));
    check(408, &d.one(), "408");
    let mut d = Driver::with(&env);
    d.advance(Duration::from_secs(1));
    for _ in 0..2 {
        d.request(&get("/ping"));
    }
    check(429, &d.request(&get("/ping")), "429");
    let app = app(&env);
    let intensive = format!(
        "POST /api/v1/compute/intensive HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 12\r\n\r\n{{\"number\":3}}"
    );
    let mut first = Driver::new(app.clone());
    first.send(intensive.as_bytes());
    let mut second = Driver::new(app.clone());
    check(503, &second.request(&intensive), "503 queue full");
    first.advance(Duration::from_secs(1));
    check(504, &first.one(), "504");
    let limited = weir_core::App::builder(config(&[("MAX_CONNECTIONS", "1")])).build(t0());
    let _one = Driver::new(limited.clone());
    let mut refused = Driver::new(limited);
    check(503, &refused.one(), "503 connection limit");
}

#[test]
fn a_408_after_a_head_request_has_its_body_and_a_fresh_context() {
    let mut d = Driver::with(&[("ACCESS_LOG", "false")]);
    d.send(b"HEAD /ping HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = parse_responses(&std::mem::take(&mut d.out), true);
    assert_eq!(head[0].status, 200);
    d.send(b"GET /sl");
    d.advance(Duration::from_secs(10));
    let r = d.one();
    assert_eq!(r.status, 408);
    let len: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(r.body.len(), len, "the 408 carries the body it announces");
    assert_eq!(r.json()["code"], "REQUEST_TIMEOUT");
}

#[test]
fn expect_100_continue_in_http10_is_ignored() {
    let mut d = Driver::with(&[]);
    d.send(b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert!(d.out.is_empty(), "no 100 Continue to an HTTP/1.0 client");
    d.send(b"ok");
    let r = d.one();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
}

#[test]
fn invalid_utf8_anywhere_in_a_json_body_is_400() {
    let mut d = Driver::with(&[]);
    let body = b"{\"number\":2,\"x\":\"\xff\"}";
    let mut raw = format!(
        "POST /api/v1/compute/fast HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    d.send(&raw);
    let r = d.one();
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
}

#[test]
fn error_messages_do_not_echo_a_large_value() {
    let mut d = Driver::with(&[("MAX_BODY_BYTES", "300000")]);
    let body = format!("{{\"number\":\"{}\"}}", "9".repeat(200_000));
    let r = d.request(&post("/api/v1/compute/fast", &body));
    assert_eq!(r.status, 400);
    let msg = r.json()["error"].as_str().unwrap().to_owned();
    assert!(msg.len() <= 210, "message of {} bytes", msg.len());
    assert!(r.body.len() < 400, "body of {} bytes", r.body.len());
}

#[test]
fn chunk_extensions_over_16_kib_per_body_are_refused() {
    let mut d = Driver::with(&[]);
    d.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = format!("1;{}\r\nA\r\n", "e".repeat(4000));
    for _ in 0..5 {
        d.send(chunk.as_bytes());
    }
    let r = d.one();
    assert_eq!(r.status, 400);
    assert_eq!(d.closed, Some(CloseReason::Done));
}

#[test]
fn host_is_validated_and_absolute_form_is_served() {
    let mut d = Driver::with(&[]);
    assert_eq!(
        d.request("GET /ping HTTP/1.1\r\nHost: a b\r\n\r\n").status,
        400
    );
    assert_eq!(d.closed, Some(CloseReason::Done));
    let mut d = Driver::with(&[]);
    let r = d.request("GET http://a/ping HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "pong"));
    let r = d.request("GET http://a:8080/users/7?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r.json()["id"], "7");
}

#[test]
fn a_drain_gives_idle_connections_a_grace_to_send_a_racing_request() {
    let app = app(&[("SHUTDOWN_TIMEOUT", "30s")]);
    let mut d = Driver::new(app.clone());
    d.request(&get("/ping"));
    let mut quiet = Driver::new(app.clone());
    quiet.request(&get("/ping"));
    app.lifecycle().begin_drain();
    d.session.handle_drain(d.now);
    d.drain();
    assert!(d.closed.is_none(), "not slammed shut at the first instant");
    d.advance(Duration::from_millis(500));
    let r = d.request(&get("/ping"));
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert_eq!(
        d.closed,
        Some(CloseReason::Done),
        "closes (with linger) after"
    );
    // Nobody speaks: closed in order once the grace is over.
    quiet.session.handle_drain(quiet.now);
    quiet.advance(drain_grace(Duration::from_secs(30)) - Duration::from_millis(1));
    assert!(quiet.closed.is_none());
    quiet.advance(Duration::from_millis(1));
    assert_eq!(quiet.closed, Some(CloseReason::Done));
    assert!(quiet.closed.unwrap().wants_linger());
    // A connection the kernel had queued before the drain is served, with close.
    let mut queued = Driver::new(app.clone());
    queued.session.handle_drain(queued.now);
    let r = queued.request(&get("/ping"));
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert_eq!(
        drain_grace(Duration::from_secs(5)),
        Duration::from_millis(500)
    );
}

#[test]
fn a_drain_ends_streams_and_sleeps_properly() {
    let app = app(&[]);
    let mut stream = Driver::new(app.clone());
    stream.send(get("/api/v1/stream?count=100&interval_ms=100").as_bytes());
    stream.jump_to_next_deadline();
    let mut sleep = Driver::new(app.clone());
    sleep.send(get("/api/v1/sleep?ms=5000").as_bytes());
    sleep.advance(Duration::from_millis(1200));
    app.lifecycle().begin_drain();
    stream.session.handle_drain(stream.now);
    stream.drain();
    let r = stream.one();
    assert_eq!(r.text().matches("event: tick").count(), 1);
    assert_eq!(
        stream.closed,
        Some(CloseReason::Done),
        "last chunk, then close"
    );
    sleep.session.handle_drain(sleep.now);
    sleep.drain();
    let r = sleep.one();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert_eq!(r.json()["slept_ms"], 1200);
    assert_eq!(sleep.closed, Some(CloseReason::Done));
}

#[test]
fn the_api_token_never_appears_in_debug_output() {
    let mut d = Driver::with(&[("API_TOKEN", "hunter2-s3cret")]);
    d.request(&get("/ping"));
    for shown in [
        format!("{:?}", d.app),
        format!("{:?}", d.session),
        format!("{:?}", d.app.config()),
    ] {
        assert!(!shown.contains("hunter2"), "secret in {shown}");
    }
}

/// Issue: a client refused by its per-IP limit spent the global tokens, so a second client
/// found the global bucket empty. Now per-IP goes first and spends nothing of the global.
#[test]
fn a_client_refused_by_its_own_limit_spends_nothing_of_the_global_limit() {
    let a = app(&[("RATE_LIMIT", "20"), ("RATE_LIMIT_PER_IP", "5")]);
    let from = |ip: [u8; 4]| std::net::SocketAddr::from((ip, 40000));
    let mut noisy = Driver::at(a.clone(), from([127, 0, 0, 1]));
    let statuses: Vec<u16> = (0..40)
        .map(|_| noisy.request(&get("/ping")).status)
        .collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 5);
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 35);
    assert_eq!(
        a.rate_limited(),
        (0, 35),
        "every refusal was the per-IP limit's"
    );
    let mut quiet = Driver::at(a.clone(), from([127, 0, 0, 2]));
    for i in 0..5 {
        let r = quiet.request(&get("/ping"));
        assert_eq!(r.status, 200, "request {i} of the second client");
    }
    assert_eq!(a.rate_limited(), (0, 35), "no global refusal");
}

/// The other way round: a request the global limit refuses gives its per-IP token back.
#[test]
fn a_request_refused_by_the_global_limit_keeps_its_per_ip_token() {
    let a = app(&[("RATE_LIMIT", "2"), ("RATE_LIMIT_PER_IP", "3")]);
    let mut d = Driver::new(a.clone());
    let statuses: Vec<u16> = (0..6).map(|_| d.request(&get("/ping")).status).collect();
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
    assert_eq!(a.rate_limited(), (4, 0), "the global limit refused");
    // 0.5 s later the global bucket holds one more token; the client's own bucket still
    // holds the one it never spent (3 − 2 admitted), so the request passes both.
    d.advance(Duration::from_millis(500));
    assert_eq!(d.request(&get("/ping")).status, 200);
}

/// A head trickled faster than any read would time out still meets `HEADER_TIMEOUT`: the
/// deadline is checked on every read, not only when the runtime reports a timeout (weir-std
/// answered such a client 431 at 16 KiB instead of 408 at the deadline).
#[test]
fn a_head_trickled_without_pause_gets_408_at_the_header_timeout() {
    let mut d = Driver::with(&[("HEADER_TIMEOUT", "2s")]);
    d.send(b"GET /ping HTTP/1.1\r\nHost: t\r\nX-Slow: ");
    let mut sent_ms = 0;
    while d.closed.is_none() && sent_ms < 10_000 {
        // Time moves only with the bytes: no handle_timeout is ever called.
        d.now = d.now.advanced(Duration::from_millis(1));
        d.send(b"a");
        sent_ms += 1;
    }
    let r = d.one();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(
        (2_000..=2_001).contains(&sent_ms),
        "answered after {sent_ms} ms of trickle"
    );
}

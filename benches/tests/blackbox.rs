//! The same black-box HTTP suite against weir-tokio, weir-smol and weir-std: each test starts
//! the binary on port 0 and talks raw HTTP/1.1 to it over loopback.

mod common;

use common::*;

/// A job cost that keeps one worker busy for a few hundred ms even in a release build
/// (about 2 ns per round there, 6 ns in a debug build).
const SLOW_JOB: &str = "150000000";

fn ping_and_keep_alive(rt: &'static str) {
    let srv = Server::start(rt, &[]);
    let mut s = srv.connect();
    for _ in 0..10 {
        s.write_all(get("/ping").as_bytes()).unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "pong"));
        assert!(
            r.header("date").is_some()
                && r.header("server").is_some_and(|v| v.starts_with("weir/"))
        );
    }
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed_by_server(&mut s));
    let r = srv.request("GET /ping HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
}

fn pipelining_in_order(rt: &'static str) {
    let srv = Server::start(rt, &[]);
    let mut s = srv.connect();
    let mut batch = String::new();
    for i in 0..20 {
        batch.push_str(&get(&format!("/users/{i}")));
    }
    s.write_all(batch.as_bytes()).unwrap();
    for i in 0..20 {
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.json()["id"], i.to_string());
    }
}

fn chunked_and_continue(rt: &'static str) {
    let srv = Server::start(rt, &[]);
    let r = srv.request("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n");
    assert_eq!(
        (r.status, r.text().as_str(), r.header("content-type")),
        (200, "hello world", Some("text/plain"))
    );
    let mut s = srv.connect();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .unwrap();
    assert_eq!(s.read_exact(25), b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"body").unwrap();
    assert_eq!(read_response(&mut s, false).unwrap().text(), "body");
    let mut s = srv.connect();
    s.write_all(b"HEAD /ping HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, true).unwrap();
    assert_eq!(r.header("content-length"), Some("4"));
    s.write_all(get("/ping").as_bytes()).unwrap();
    assert_eq!(
        read_response(&mut s, false).unwrap().text(),
        "pong",
        "HEAD sent no body"
    );
}

fn limits_and_smuggling(rt: &'static str) {
    let srv = Server::start(
        rt,
        &[
            ("MAX_BODY_BYTES", "1000"),
            ("MAX_URI_BYTES", "100"),
            ("MAX_HEADER_BYTES", "2048"),
        ],
    );
    let cases: Vec<(String, u16, &str)> = vec![
        (post("/echo", &"x".repeat(1001)), 413, "PAYLOAD_TOO_LARGE"),
        (get(&format!("/{}", "u".repeat(200))), 414, "URI_TOO_LONG"),
        (format!("GET /ping HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "h".repeat(3000)), 431, "HEADERS_TOO_LARGE"),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400, "INVALID_REQUEST"),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde".into(), 400, "INVALID_REQUEST"),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n".into(), 400, "INVALID_REQUEST"),
        ("GET /ping HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n".into(), 400, "INVALID_REQUEST"),
        ("GET /ping HTTP/1.1\r\nHost : t\r\n\r\n".into(), 400, "INVALID_REQUEST"),
        ("POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400, "INVALID_REQUEST"),
        ("GET /ping HTTP/1.1\r\n\r\n".into(), 400, "INVALID_REQUEST"),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n".into(), 400, "INVALID_REQUEST"),
        ("GET /ping HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505, "VERSION_NOT_SUPPORTED"),
    ];
    for (raw, status, code) in cases {
        let mut s = srv.connect();
        s.write_all(raw.as_bytes()).unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (status, Some(code)),
            "{rt}: {:.60?}",
            raw
        );
        assert_eq!(r.header("connection"), Some("close"));
        assert!(
            closed_by_server(&mut s),
            "{rt}: framing error closes: {:.60?}",
            raw
        );
    }
}

fn endpoints_and_codes(rt: &'static str) {
    let srv = Server::start(rt, &[("API_TOKEN", "tok"), ("JOB_COST", "1000")]);
    let auth = |req: String| req.replacen("\r\n", "\r\nAuthorization: Bearer tok\r\n", 1);
    let r = srv.request(&auth(post("/api/v1/compute/fast", "{\"number\": 12}")));
    assert_eq!(
        (
            r.status,
            r.json()["result"].as_i64(),
            r.json()["job_id"].as_u64()
        ),
        (200, Some(144), Some(0))
    );
    let r = srv.request(&auth(post("/api/v1/compute/intensive", "{\"number\": 7}")));
    let v = r.json();
    assert_eq!((r.status, v["result"].as_i64()), (200, Some(49)));
    assert!(v["job_id"].as_u64().unwrap() > 0);
    assert_eq!(v["request_id"].as_str(), r.header("x-request-id"));
    assert_eq!(
        srv.request(&post("/api/v1/compute/fast", "{\"number\": 1}"))
            .json()["code"],
        "UNAUTHORIZED"
    );
    assert_eq!(
        srv.request(&auth(post("/api/v1/compute/fast", "{\"number\": \"x\"}")))
            .json()["code"],
        "INVALID_REQUEST"
    );
    assert_eq!(
        srv.request(&auth(post(
            "/api/v1/compute/fast",
            "{\"number\": 3037000500}"
        )))
        .status,
        400
    );
    assert_eq!(srv.get("/users/42").json(), serde_json::json!({"id": "42"}));
    let r = srv.get("/nope");
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let r = srv.request(&post("/ping", ""));
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let r = srv.request("GET /ping HTTP/1.1\r\nHost: t\r\nX-Request-ID: my-trace-1\r\n\r\n");
    assert_eq!(r.header("x-request-id"), Some("my-trace-1"));
    let h = srv.get("/health");
    assert_eq!(
        (
            h.status,
            h.json()["runtime"].as_str(),
            h.json()["status"]["worker_pool"].as_str()
        ),
        (200, Some(rt.trim_end_matches("+tls")), Some("healthy"))
    );
    let m = srv.metrics();
    assert!(
        m["total_requests"].as_u64().unwrap() >= 8 && m["memory_rss_bytes"].as_u64().unwrap() > 0,
        "{m}"
    );
    assert_eq!(m["runtime"], rt.trim_end_matches("+tls"));
    let p =
        srv.request("GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: text/plain;version=0.0.4\r\n\r\n");
    assert_eq!(
        p.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(p.text().contains("process_open_fds "));
    let r = srv.request(&auth(get("/api/v1/sleep?ms=50")));
    assert_eq!(r.json(), serde_json::json!({"slept_ms": 50}));
    let r = srv.request(&auth(get("/api/v1/stream?count=3&interval_ms=20")));
    assert_eq!(
        (r.header("content-type"), r.header("transfer-encoding")),
        (Some("text/event-stream"), Some("chunked"))
    );
    assert_eq!(r.text().matches("event: tick").count(), 3);
}

fn slowloris_is_cut(rt: &'static str) {
    let srv = Server::start(rt, &[("HEADER_TIMEOUT", "1s")]);
    let mut s = srv.connect();
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\n").unwrap();
    let r = read_response(&mut s, false).expect("a 408 before the close");
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (408, Some("REQUEST_TIMEOUT"))
    );
    assert!(closed_by_server(&mut s));
}

/// 1,000 connections open at once on every runtime. Beyond that the models part ways: the
/// async runtimes hold 10,000 idle connections at ≈ 3.5 KB each (BENCHMARKS.md,
/// `weir-compare --idle 10000`), while weir-std needs a thread per connection (≈ 48 KB each)
/// and cannot reach the default MAX_CONNECTIONS (100,000); this machine's descriptor limit
/// (20,000) also caps one process at about 19,900 — so no test here asks for 100k.
fn thousand_concurrent_connections(rt: &'static str) {
    raise_fd_limit();
    let srv = Server::start(rt, &[]);
    let mut conns: Vec<_> = (0..1000).map(|_| srv.connect()).collect();
    for c in &mut conns {
        c.write_all(get("/ping").as_bytes()).unwrap();
    }
    for c in &mut conns {
        assert_eq!(read_response(c, false).unwrap().text(), "pong");
    }
    let m = srv.metrics();
    assert!(
        m["active_connections"].as_u64().unwrap() >= 1000,
        "{rt}: {m}"
    );
}

fn client_leaving_cancels_its_job(rt: &'static str) {
    // The first job must outlast weir-std's longest wait (1 s) for noticing a departed client,
    // even on a loaded machine, or the second job starts before it can be cancelled.
    let srv = Server::start(rt, &[("WORKER_COUNT", "1"), ("JOB_COST", "400000000")]);
    let mut busy = srv.connect();
    busy.write_all(post("/api/v1/compute/intensive", "{\"number\": 1}").as_bytes())
        .unwrap();
    srv.wait_metrics("the first job to start", |m| {
        m["queue_depth"] == 0 && m["active_requests"].as_u64() >= Some(1)
    });
    let mut leaver = srv.connect();
    leaver
        .write_all(post("/api/v1/compute/intensive", "{\"number\": 2}").as_bytes())
        .unwrap();
    srv.wait_metrics("the second job to queue", |m| m["queue_depth"] == 1);
    drop(leaver);
    srv.wait_metrics("the job to be cancelled", |m| m["jobs_cancelled"] == 1);
    assert_eq!(read_response(&mut busy, false).unwrap().status, 200);
    let m = srv.wait_metrics("the queue to empty", |m| m["queue_depth"] == 0);
    assert_eq!(
        (m["jobs_completed"].as_u64(), m["jobs_cancelled"].as_u64()),
        (Some(1), Some(1)),
        "{m}"
    );
}

fn rate_limited(rt: &'static str) {
    let srv = Server::start(rt, &[("RATE_LIMIT", "5"), ("RATE_BURST", "5")]);
    let mut s = srv.connect();
    let mut statuses = Vec::new();
    let mut last_429 = None;
    for _ in 0..20 {
        s.write_all(get("/ping").as_bytes()).unwrap();
        let r = read_response(&mut s, false).unwrap();
        statuses.push(r.status);
        if r.status == 429 {
            last_429 = Some(r);
        }
    }
    assert!(statuses[..5].iter().all(|&st| st == 200), "{statuses:?}");
    assert!(
        statuses.iter().filter(|&&st| st == 429).count() >= 10,
        "{statuses:?}"
    );
    let r = last_429.unwrap();
    assert_eq!(r.json()["code"], "RATE_LIMIT_EXCEEDED");
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("ratelimit-policy"), Some("\"global\";q=5;w=1"));
    assert!(
        r.header("ratelimit")
            .is_some_and(|v| v.starts_with("\"global\";r=0;t="))
    );
    assert_eq!(
        srv.get("/health").status,
        200,
        "monitoring is never limited"
    );
    assert!(srv.metrics()["rejected_count"].as_u64().unwrap() >= 10);
}

fn overload_then_recovery(rt: &'static str) {
    let srv = Server::start(
        rt,
        &[
            ("WORKER_COUNT", "1"),
            ("QUEUE_SIZE", "2"),
            ("JOB_COST", SLOW_JOB),
        ],
    );
    let mut conns: Vec<_> = (0..6).map(|_| srv.connect()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(post("/api/v1/compute/intensive", &format!("{{\"number\": {i}}}")).as_bytes())
            .unwrap();
    }
    let statuses: Vec<_> = conns
        .iter_mut()
        .map(|c| read_response(c, false).unwrap())
        .collect();
    let ok = statuses.iter().filter(|r| r.status == 200).count();
    let overloaded: Vec<_> = statuses.iter().filter(|r| r.status == 503).collect();
    assert!(
        ok >= 2 && overloaded.len() >= 3 && ok + overloaded.len() == 6,
        "{rt}: {:?}",
        statuses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(overloaded[0].json()["code"], "SERVICE_OVERLOADED");
    assert!(overloaded[0].header("retry-after").is_some());
    let r = srv.request(&post("/api/v1/compute/intensive", "{\"number\": 9}"));
    assert_eq!(
        (r.status, r.json()["result"].as_i64()),
        (200, Some(81)),
        "recovered"
    );
    assert!(srv.metrics()["jobs_rejected"].as_u64().unwrap() >= 3);
}

fn connection_limit(rt: &'static str) {
    let srv = Server::start(rt, &[("MAX_CONNECTIONS", "2")]);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = srv.connect();
        c.write_all(get("/ping").as_bytes()).unwrap();
        assert_eq!(read_response(&mut c, false).unwrap().status, 200);
        held.push(c);
    }
    let mut c = srv.connect();
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (503, Some("SERVICE_OVERLOADED"))
    );
    assert!(closed_by_server(&mut c));
}

fn graceful_shutdown_answers_in_flight_jobs(rt: &'static str) {
    let mut srv = Server::start(rt, &[("WORKER_COUNT", "1"), ("JOB_COST", SLOW_JOB)]);
    let mut conns: Vec<_> = (0..3).map(|_| srv.connect()).collect();
    for c in &mut conns {
        c.write_all(post("/api/v1/compute/intensive", "{\"number\": 3}").as_bytes())
            .unwrap();
    }
    srv.wait_metrics("three jobs in flight", |m| {
        m["active_requests"].as_u64() >= Some(4)
    });
    let mut idle = srv.connect();
    idle.write_all(get("/ping").as_bytes()).unwrap();
    read_response(&mut idle, false).unwrap();
    sigterm_answers_jobs_and_exits(&mut srv, &mut conns, &mut idle);
    assert!(
        std::net::TcpStream::connect(srv.addr).is_err(),
        "no longer listening"
    );
    drop(conns);
}

fn second_signal_exits_at_once(rt: &'static str) {
    // A job far longer than the test: only the second signal can end the process in time.
    let mut srv = Server::start(rt, &[("WORKER_COUNT", "1"), ("JOB_COST", "100000000000")]);
    let mut c = srv.connect();
    c.write_all(post("/api/v1/compute/intensive", "{\"number\": 3}").as_bytes())
        .unwrap();
    srv.wait_metrics("the job to start", |m| {
        m["queue_depth"] == 0 && m["active_requests"].as_u64() >= Some(2)
    });
    srv.signal("TERM");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "the first signal drains, it does not exit"
    );
    srv.signal("TERM");
    assert_eq!(srv.wait_exit(), Some(1), "the second signal exits at once");
}

fn past_the_open_file_limit_clients_get_503(rt: &'static str) {
    let log = std::env::temp_dir().join(format!("weir-nofile-{rt}-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    // 64 descriptors: MAX_CONNECTIONS (100,000 by default) is clamped to what the runtime
    // leaves, keeping a reserve so that a client past it is accepted and told 503 instead of
    // waiting in the backlog. The effective value is logged before `listening on`.
    let srv = Server::start_with_fd_limit(rt, 64, &[], file.into());
    let effective = |text: &str| -> Option<usize> {
        let line = text
            .lines()
            .rfind(|l| l.contains("MAX_CONNECTIONS clamped"))?;
        let at = line.find("effective=")? + "effective=".len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    // The log is written by a background thread: give the second clamp (from the descriptors
    // the runtime holds) time to reach the file.
    let measured = |text: &str| text.contains("once the runtime started");
    let start = std::time::Instant::now();
    while !measured(&std::fs::read_to_string(&log).unwrap_or_default())
        && start.elapsed() < std::time::Duration::from_secs(3)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let limit = effective(&text).unwrap_or_else(|| panic!("{rt}: the limit is logged: {text}"));
    assert!((8..=32).contains(&limit), "{rt}: {limit} of 64 descriptors");
    let mut conns: Vec<Conn> = (0..48).map(|_| srv.connect()).collect();
    for c in &mut conns {
        c.write_all(get("/ping").as_bytes()).unwrap();
    }
    let mut statuses = std::collections::BTreeMap::new();
    for c in &mut conns {
        let r = read_response(c, false).expect("every client gets an answer, none hangs");
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&200), Some(&limit), "{rt}: {statuses:?}");
    assert_eq!(
        statuses.get(&503),
        Some(&(48 - limit)),
        "{rt}: {statuses:?}"
    );
    drop(conns);
    let r = common::retry(|| srv.get("/ping").status == 200);
    assert!(r, "{rt}: serving again");
    let _ = std::fs::remove_file(log);
}

/// A client that pipelines requests and never reads their answers: once the socket is full
/// the server's writes stop making progress, and after `WRITE_TIMEOUT` the connection is
/// aborted (on weir-uring with its send still in flight, which is cancelled) — the server
/// neither buffers without bound nor keeps the connection.
fn a_client_that_stops_reading_is_cut_at_the_write_timeout(rt: &'static str) {
    let srv = Server::start(rt, &[("WRITE_TIMEOUT", "1s"), ("RATE_LIMIT", "0")]);
    let stalled = srv.connect();
    let mut writer = stalled.s.tcp().try_clone().unwrap();
    writer
        .set_write_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    // ~7 MB of answers: more than the loopback socket buffers hold.
    let batch = get("/ping").repeat(30_000);
    let pushing = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut writer, batch.as_bytes());
    });
    srv.wait_metrics("the stalled connection to open", |m| {
        m["active_connections"].as_u64() >= Some(2)
    });
    srv.wait_metrics("the stalled connection to be cut", |m| {
        m["active_connections"].as_u64() == Some(1)
    });
    assert_eq!(srv.get("/ping").status, 200, "{rt}: still serving");
    pushing.join().unwrap();
    drop(stalled);
}

/// `/livez` and `/readyz` for orchestrators, never rate limited; with `SHUTDOWN_DELAY`, a
/// SIGTERM first turns `/readyz` to 503 while everything (new connections included) is still
/// served, and only then drains and exits 0.
fn probes_and_the_shutdown_delay(rt: &'static str) {
    let mut srv = Server::start(
        rt,
        &[
            ("SHUTDOWN_DELAY", "1500ms"),
            ("RATE_LIMIT", "1"),
            ("RATE_BURST", "1"),
        ],
    );
    for _ in 0..3 {
        let (live, ready) = (srv.get("/livez"), srv.get("/readyz"));
        assert_eq!(
            (live.status, live.json()["status"].as_str()),
            (200, Some("alive"))
        );
        assert_eq!(
            (ready.status, ready.json()["ready"].as_bool()),
            (200, Some(true))
        );
    }
    srv.signal("TERM");
    let started = std::time::Instant::now();
    assert!(
        retry(|| srv.get("/readyz").status == 503),
        "{rt}: not ready once SIGTERM arrived"
    );
    let r = srv.get("/readyz");
    assert_eq!(r.json()["status"].as_str(), Some("shutting down"), "{rt}");
    assert_eq!(srv.get("/livez").status, 200, "{rt}: still alive");
    assert_ne!(
        srv.get("/ping").status,
        503,
        "{rt}: still serving in the delay"
    );
    // Still "shutting down", not "draining": the checks above ran inside the delay.
    let r = srv.get("/readyz");
    assert_eq!(r.json()["status"].as_str(), Some("shutting down"), "{rt}");
    assert_eq!(srv.wait_exit(), Some(0), "{rt}: then drains and exits");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1400),
        "{rt}: not before SHUTDOWN_DELAY"
    );
}

fn config_errors_exit_2(rt: &'static str) {
    let out = std::process::Command::new(binary(rt))
        .env("WORKER_COUNT", "zero")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WORKER_COUNT") && err.contains("zero"),
        "{err}"
    );
    let out = std::process::Command::new(binary(rt))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--port"));
    let out = std::process::Command::new(binary(rt))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("weir-{} {}", rt, env!("CARGO_PKG_VERSION"))
    );
    // An error names what the user wrote: the flag when it came from the command line; an
    // unknown flag is refused; a boolean flag never swallows the next word.
    for (args, named) in [
        (&["--max-headers", "0"][..], "--max-headers=\"0\""),
        (&["--nope"][..], "--nope"),
        (
            &["--trust-proxy", "--port", "127.0.0.1:0"][..],
            "--trust-proxy",
        ),
    ] {
        let out = std::process::Command::new(binary(rt))
            .args(args)
            .env_remove("MAX_HEADERS")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(named) && !err.contains("MAX_HEADERS"),
            "{args:?}: {err}"
        );
    }
    // A bad log filter is refused, whichever variable carried it (RUST_LOG counts when
    // LOG_LEVEL is not given).
    for (var, value) in [("LOG_LEVEL", "weir=loud"), ("RUST_LOG", "=[")] {
        let out = std::process::Command::new(binary(rt))
            .env_remove("LOG_LEVEL")
            .env_remove("RUST_LOG")
            .env(var, value)
            .env("SERVER_PORT", "127.0.0.1:0")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert!(err.contains(var) && err.contains(value), "{err}");
    }
}

fn access_log_lines(rt: &'static str) {
    let log = std::env::temp_dir().join(format!("weir-access-{rt}-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let mut srv = Server::start_with(
        rt,
        &[("ACCESS_LOG", "true"), ("ENVIRONMENT", "production")],
        file.into(),
    );
    let answer = srv.request(
        "GET /ping?from=test HTTP/1.1\r\nHost: t\r\nX-Request-ID: log-me\r\nUser-Agent: weir-test/1\r\n\r\n",
    );
    srv.signal("INT");
    assert_eq!(srv.wait_exit(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("log-me"))
        .unwrap_or_else(|| panic!("no access line: {text}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    for field in [
        "request_id",
        "method",
        "path",
        "query",
        "protocol",
        "status",
        "bytes_sent",
        "latency_ms",
        "client_ip",
        "user_agent",
    ] {
        assert!(!v[field].is_null(), "{field} missing: {line}");
    }
    assert_eq!(
        (&v["query"], &v["protocol"], &v["user_agent"]),
        (
            &"from=test".into(),
            &"HTTP/1.1".into(),
            &"weir-test/1".into()
        ),
        "{line}"
    );
    let head_and_body = answer
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum::<usize>()
        + "HTTP/1.1 200 OK\r\n\r\n".len()
        + answer.body.len();
    assert_eq!(
        v["bytes_sent"].as_u64(),
        Some(head_and_body as u64),
        "{line}"
    );
    // Timed with a fine clock: a request takes more than nothing (it read 0.000 before).
    assert!(v["latency_ms"].as_f64() > Some(0.0), "{line}");
    assert!(
        text.lines().any(|l| l.contains("weir started")),
        "start-up line"
    );
    assert!(
        text.lines().any(|l| l.contains("final statistics")),
        "final statistics line"
    );
    let _ = std::fs::remove_file(log);
}

for_each_runtime! {
    ping_and_keep_alive => super::ping_and_keep_alive;
    pipelining_in_order => super::pipelining_in_order;
    chunked_and_continue => super::chunked_and_continue;
    limits_and_smuggling => super::limits_and_smuggling;
    endpoints_and_codes => super::endpoints_and_codes;
    slowloris_is_cut => super::slowloris_is_cut;
    thousand_concurrent_connections => super::thousand_concurrent_connections;
    client_leaving_cancels_its_job => super::client_leaving_cancels_its_job;
    rate_limited => super::rate_limited;
    overload_then_recovery => super::overload_then_recovery;
    connection_limit => super::connection_limit;
    graceful_shutdown_answers_in_flight_jobs => super::graceful_shutdown_answers_in_flight_jobs;
    config_errors_exit_2 => super::config_errors_exit_2;
    second_signal_exits_at_once => super::second_signal_exits_at_once;
    past_the_open_file_limit_clients_get_503 => super::past_the_open_file_limit_clients_get_503;
    access_log_lines => super::access_log_lines;
    a_client_that_stops_reading_is_cut_at_the_write_timeout => super::a_client_that_stops_reading_is_cut_at_the_write_timeout;
    probes_and_the_shutdown_delay => super::probes_and_the_shutdown_delay;
}

/// weir-tokio's and weir-smol's other layout, `RUNTIME_LAYOUT=shared` (one multi-thread
/// runtime or one shared executor): tasks move between threads, so connection deadlines are
/// the runtime's own timers rather than a thread's timerfd. It serves keep-alive and
/// pipelined requests, cuts a slow head at its deadline, and drains answering a job in flight.
fn the_shared_layout_serves_cuts_slow_heads_and_drains(rt: &'static str) {
    let env = [
        ("RUNTIME_LAYOUT", "shared"),
        ("IO_THREADS", "2"),
        ("HEADER_TIMEOUT", "1s"),
        ("WORKER_COUNT", "1"),
        ("JOB_COST", SLOW_JOB),
    ];
    let mut srv = Server::start(rt, &env);
    let mut s = srv.connect();
    s.write_all(get("/ping").repeat(5).as_bytes()).unwrap();
    for _ in 0..5 {
        assert_eq!(read_response(&mut s, false).unwrap().text(), "pong");
    }
    let mut slow = srv.connect();
    slow.write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let r = read_response(&mut slow, false).expect("a 408 before the close");
    assert_eq!(
        r.status, 408,
        "the runtime's timer fired the header deadline"
    );
    assert!(closed_by_server(&mut slow));
    let mut job = srv.connect();
    job.write_all(post("/api/v1/compute/intensive", "{\"number\": 3}").as_bytes())
        .unwrap();
    srv.wait_metrics("the job in flight", |m| {
        m["active_requests"].as_u64() >= Some(2)
    });
    sigterm_answers_jobs_and_exits(&mut srv, std::slice::from_mut(&mut job), &mut s);
}

/// Sends SIGTERM; then every job in flight on `jobs` (`compute/intensive` of 3) is answered
/// and told the connection closes, the idle keep-alive connection `idle` is closed, and the
/// process exits 0.
fn sigterm_answers_jobs_and_exits(srv: &mut Server, jobs: &mut [Conn], idle: &mut Conn) {
    srv.signal("TERM");
    for c in jobs {
        let r = read_response(c, false).expect("every accepted request is answered");
        let answer = (
            r.status,
            r.json()["result"].as_i64(),
            r.header("connection"),
        );
        assert_eq!(answer, (200, Some(9), Some("close")));
    }
    assert!(
        closed_by_server(idle),
        "idle keep-alive connections are closed"
    );
    assert_eq!(srv.wait_exit(), Some(0));
}

mod shared_layout {
    #[test]
    fn tokio() {
        super::the_shared_layout_serves_cuts_slow_heads_and_drains("tokio")
    }

    #[test]
    fn smol() {
        super::the_shared_layout_serves_cuts_slow_heads_and_drains("smol")
    }
}

// The protocol and API scenarios again, over TLS (a certificate made at test time).
for_each_runtime_over_tls! {
    ping_and_keep_alive => super::ping_and_keep_alive;
    pipelining_in_order => super::pipelining_in_order;
    chunked_and_continue => super::chunked_and_continue;
    limits_and_smuggling => super::limits_and_smuggling;
    endpoints_and_codes => super::endpoints_and_codes;
    slowloris_is_cut => super::slowloris_is_cut;
    client_leaving_cancels_its_job => super::client_leaving_cancels_its_job;
    rate_limited => super::rate_limited;
    graceful_shutdown_answers_in_flight_jobs => super::graceful_shutdown_answers_in_flight_jobs;
}

/// Where the kernel refuses io_uring (simulated with strace's fault injection: `ENOSYS` as
/// on a kernel without it, `EPERM` as under `kernel.io_uring_disabled` or a seccomp filter),
/// weir-uring exits 1 at start with one line saying why and what to run instead, before it
/// binds anything.
#[test]
#[cfg_attr(
    missing_strace,
    ignore = "strace is not installed (bash .ci/run installs it)"
)]
fn uring_unavailable_exits_1_with_a_reason() {
    let strace_works = std::process::Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(strace_works, "strace cannot trace here");
    for (errno, reason) in [("ENOSYS", "not implemented"), ("EPERM", "not permitted")] {
        let out = std::process::Command::new("strace")
            .args(["-f", "-o", "/dev/null", "-e"])
            .arg(format!("inject=io_uring_setup:error={errno}"))
            .arg(binary("uring"))
            .env("SERVER_PORT", "127.0.0.1:0")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{errno}: {err}");
        assert!(out.stdout.is_empty(), "{errno}: nothing was bound");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{errno}: one line: {err}");
        let line = lines[0].to_lowercase();
        assert!(
            line.contains("io_uring is not available")
                && line.contains(reason)
                && line.contains("weir-tokio"),
            "{errno}: {err}"
        );
    }
}

/// weir-uring with a single receive buffer per ring: many clients' bytes arrive at once, so
/// receives find the pool empty (`ENOBUFS`) and must be retried, not treated as errors —
/// every request, pipelined or not, is still answered in order.
#[test]
#[cfg_attr(missing_uring, ignore = "io_uring is not available on this kernel")]
fn uring_receives_that_find_the_pool_empty_are_retried() {
    if let Some(why) = uring_unavailable() {
        eprintln!("SKIPPED on weir-uring: {why}");
        return;
    }
    let srv = Server::start(
        "uring",
        &[
            ("URING_BUFFERS", "1"),
            ("IO_THREADS", "1"),
            ("RATE_LIMIT", "0"),
        ],
    );
    // 8 KiB+ of pipelined requests per client: more than one buffer each.
    let per_client = 300;
    let batch = get("/ping").repeat(per_client);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(32));
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let mut c = srv.connect();
            let (batch, barrier) = (batch.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                c.write_all(batch.as_bytes()).unwrap();
                (0..per_client)
                    .map(|_| read_response(&mut c, false).map(|r| r.text()))
                    .filter(|t| t.as_deref() == Some("pong"))
                    .count()
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), per_client);
    }
}

//! Hostile clients and shutdown races against the three binaries: each scenario is a hole
//! that was found open once (amplified streams, a starved executor, requests lost at the
//! drain, a signal right after start) and must stay closed.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

fn rss_bytes(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).expect("statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn stream_amplification_is_bounded(rt: &'static str) {
    let srv = Server::start(rt, &[]);
    // Warm up the allocator and the threads with ordinary traffic first.
    for _ in 0..20 {
        assert_eq!(srv.get("/ping").status, 200);
    }
    let before = rss_bytes(srv.child.id());
    let request = format!(
        "GET /api/v1/stream?count=100000&interval_ms=0 HTTP/1.1\r\nHost: t\r\nX-Request-ID: {}\r\n\r\n",
        "\"".repeat(128)
    );
    // 50 clients that ask for a fast, fat stream and never read.
    let mut conns: Vec<Conn> = (0..50).map(|_| srv.connect()).collect();
    for c in &mut conns {
        c.write_all(request.as_bytes()).unwrap();
    }
    let mut peak = before;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss_bytes(srv.child.id()));
    }
    let grown = peak.saturating_sub(before);
    eprintln!("{rt}: RSS {before} -> peak {peak} (+{grown} bytes) with 50 unread streams");
    assert!(
        grown <= 10 * 1024 * 1024,
        "{rt}: 50 unread streams grew RSS by {grown} bytes"
    );
    assert_eq!(srv.get("/ping").status, 200, "{rt}: still serving");
}

fn a_pipelining_flood_does_not_starve_its_io_thread(rt: &'static str) {
    let srv = Server::start(rt, &[("IO_THREADS", "1"), ("RATE_LIMIT", "0")]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut flood = std::net::TcpStream::connect(srv.addr).unwrap();
    flood.set_nodelay(true).unwrap();
    let mut reader = flood.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let batch = get("/ping").repeat(4096);
    // The flood runs until the probe is answered or for at most 15 s on its own.
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(15) {
                if flood.write_all(batch.as_bytes()).is_err() {
                    break;
                }
            }
            stop.load(Ordering::Relaxed)
        })
    };
    let drainer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = vec![0u8; 1 << 16];
            let mut total = 0usize;
            while !stop.load(Ordering::Relaxed) {
                match reader.read(&mut sink) {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(_) => {}
                }
            }
            total
        })
    };
    // Let the flood get going, then probe on a new connection (same I/O thread: one thread).
    std::thread::sleep(Duration::from_millis(300));
    let probed = Instant::now();
    let r = srv.get("/ping");
    eprintln!(
        "{rt}: probe answered in {:?} during the flood",
        probed.elapsed()
    );
    let flood_still_running = !stop.swap(true, Ordering::Relaxed);
    assert_eq!(r.status, 200);
    let stopped_by_probe = writer.join().unwrap();
    let flooded = drainer.join().unwrap();
    assert!(flooded > 0, "{rt}: the flood was answered");
    assert!(
        flood_still_running && stopped_by_probe,
        "{rt}: the probe was answered only after the flood ended on its own"
    );
}

fn drain_answers_requests_racing_it(rt: &'static str) {
    raise_fd_limit();
    let mut srv = Server::start(rt, &[("SHUTDOWN_TIMEOUT", "20s")]);
    let mut conns: Vec<Conn> = (0..1000).map(|_| srv.connect()).collect();
    for c in &mut conns {
        c.write_all(get("/ping").as_bytes()).unwrap();
        assert_eq!(read_response(c, false).unwrap().status, 200);
    }
    srv.signal("TERM");
    // Each idle keep-alive connection sends one request just after the signal.
    let sent = Instant::now();
    for c in &mut conns {
        c.write_all(get("/ping").as_bytes()).unwrap();
    }
    let spread = sent.elapsed();
    let mut lost = 0;
    for c in &mut conns {
        match read_response(c, false) {
            Some(r) if r.status == 200 => {}
            _ => lost += 1,
        }
    }
    eprintln!("{rt}: 1,000 requests sent within {spread:?} of SIGTERM, {lost} lost");
    assert_eq!(lost, 0, "{rt}: requests racing the drain were lost");
    assert_eq!(srv.wait_exit(), Some(0));
}

fn steady_load_loses_nothing_at_sigterm(rt: &'static str) {
    let mut srv = Server::start(rt, &[("RATE_LIMIT", "0")]);
    let stop_at = Instant::now() + Duration::from_secs(15);
    // 50 keep-alive clients, each sending its next request once the last is answered, until
    // the server says Connection: close. A request written and never answered is lost.
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let mut c = srv.connect();
            std::thread::spawn(move || {
                let (mut answered, mut lost) = (0u32, 0u32);
                while Instant::now() < stop_at {
                    if c.write_all(get("/ping").as_bytes()).is_err() {
                        break; // the server closed first: nothing was sent
                    }
                    match read_response(&mut c, false) {
                        Some(r) if r.status == 200 => {
                            answered += 1;
                            if r.header("connection") == Some("close") {
                                break;
                            }
                        }
                        _ => {
                            lost += 1;
                            break;
                        }
                    }
                }
                (answered, lost)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    srv.signal("TERM");
    let (mut answered, mut lost) = (0, 0);
    for c in clients {
        let (a, l) = c.join().unwrap();
        answered += a;
        lost += l;
    }
    eprintln!("{rt}: {answered} answered, {lost} lost under load at SIGTERM");
    assert!(answered > 50, "{rt}: the load ran");
    assert_eq!(lost, 0, "{rt}: requests lost at SIGTERM under steady load");
    assert_eq!(srv.wait_exit(), Some(0));
}

fn requests_queued_in_the_backlog_at_the_signal_are_answered(rt: &'static str) {
    let mut srv = Server::start(rt, &[]);
    srv.signal("STOP");
    // The kernel completes these handshakes and queues them while the server is stopped.
    let mut conns: Vec<Conn> = (0..20).map(|_| srv.connect()).collect();
    for c in &mut conns {
        c.write_all(get("/ping").as_bytes()).unwrap();
    }
    srv.signal("TERM");
    srv.signal("CONT");
    let mut answered = 0;
    for c in &mut conns {
        if read_response(c, false).is_some_and(|r| r.status == 200) {
            answered += 1;
        }
    }
    assert_eq!(
        answered, 20,
        "{rt}: queued connections are accepted and answered"
    );
    assert_eq!(srv.wait_exit(), Some(0));
}

fn sigterm_right_after_start_drains(rt: &'static str) {
    for _ in 0..5 {
        let mut srv = Server::start(rt, &[]);
        srv.signal("TERM");
        assert_eq!(
            srv.wait_exit(),
            Some(0),
            "{rt}: a signal sent at the listening line drains and exits 0"
        );
    }
}

fn trust_proxy_without_trusted_proxies_is_refused(rt: &'static str) {
    let mut child = std::process::Command::new(binary(rt))
        .env_clear()
        .env("SERVER_PORT", "127.0.0.1:0")
        .env("TRUST_PROXY", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > IO_TIMEOUT {
            let _ = child.kill();
            panic!("{rt}: started serving with TRUST_PROXY alone");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{rt}: {stderr}");
    assert!(stderr.contains("TRUSTED_PROXIES"), "{rt}: {stderr}");
    assert!(out.stdout.is_empty(), "{rt}: nothing was bound");
}

for_each_runtime! {
    stream_amplification_is_bounded => super::stream_amplification_is_bounded;
    a_pipelining_flood_does_not_starve_its_io_thread => super::a_pipelining_flood_does_not_starve_its_io_thread;
    drain_answers_requests_racing_it => super::drain_answers_requests_racing_it;
    steady_load_loses_nothing_at_sigterm => super::steady_load_loses_nothing_at_sigterm;
    requests_queued_in_the_backlog_at_the_signal_are_answered => super::requests_queued_in_the_backlog_at_the_signal_are_answered;
    sigterm_right_after_start_drains => super::sigterm_right_after_start_drains;
    trust_proxy_without_trusted_proxies_is_refused => super::trust_proxy_without_trusted_proxies_is_refused;
}

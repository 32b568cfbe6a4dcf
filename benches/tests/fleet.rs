//! Several weir processes as one service: one rate limit shared through a real Redis
//! (`redis-server`, started here on a free port; `.ci/run` installs it), and `REUSE_PORT`
//! restarts under load.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, free_port};

/// A `redis-server` of this test alone, killed when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts redis-server on `port` (without persistence) and waits until it answers.
    /// Without redis-server installed, fails under CI and otherwise says it skipped.
    fn start(port: u16) -> Option<Redis> {
        let child = match Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "redis-server is required under CI: {e}"
                );
                eprintln!("SKIPPED: redis-server is not installed ({e})");
                return None;
            }
        };
        let redis = Redis { child, port };
        let start = Instant::now();
        while redis.command("PING") != "+PONG" {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    /// One inline command; its first reply line (empty when Redis does not answer).
    fn command(&self, cmd: &str) -> String {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(format!("{cmd}\r\n").as_bytes());
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An instance of a fleet sharing 1,000 req/s through `url`, renewing every 50 ms.
fn fleet_env(url: &str) -> [(&'static str, &str); 4] {
    [
        ("REDIS_URL", url),
        ("RATE_LIMIT", "1000"),
        ("LEASE_PERIOD", "50ms"),
        ("IO_THREADS", "1"),
    ]
}

/// `/readyz`'s `rate_limit` field.
fn rate_limit_mode(srv: &Server) -> String {
    srv.get("/readyz").json()["rate_limit"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Polls until `/readyz` reports `mode` (a bounded wait).
fn wait_mode(srv: &Server, mode: &str) {
    let start = Instant::now();
    while rate_limit_mode(srv) != mode {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never reached {mode}: {}",
            srv.get("/readyz").text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Requests answered 200 when `conns` closed-loop connections hammer each server at once
/// for `secs`.
fn hammer(servers: &[&Server], conns: usize, secs: u64) -> Vec<u64> {
    let runs: Vec<_> = servers
        .iter()
        .map(|s| {
            let addr = s.addr;
            std::thread::spawn(move || load(addr, conns, secs))
        })
        .collect();
    runs.into_iter()
        .map(|r| {
            let report = r.join().unwrap();
            assert_eq!(report["transport_errors"], 0, "{report}");
            report["status_counts"]["200"].as_u64().unwrap_or(0)
        })
        .collect()
}

#[test]
#[cfg_attr(
    missing_redis,
    ignore = "redis-server is not installed (bash .ci/run installs it)"
)]
fn instances_share_one_limit_through_redis() {
    let Some(redis) = Redis::start(free_port()) else {
        return;
    };
    let url = redis.url();
    let mut env = fleet_env(&url).to_vec();
    env.push(("RATE_BURST", "100"));
    let a = Server::start("tokio", &env);
    let b = Server::start("tokio", &env);
    for s in [&a, &b] {
        wait_mode(s, "shared");
        s.wait_metrics("both instances seen", |m| m["fleet"]["instances"] == 2);
    }
    let admitted = hammer(&[&a, &b], 4, 3);
    let total: u64 = admitted.iter().sum();
    // One budget: 1,000/s for 3 s plus the burst, about 3,100 (each alone would admit that
    // much, 6,200 together). The tolerance is for the load's start and end, not the limiter.
    eprintln!("admitted {admitted:?} = {total} of a fleet budget of about 3100");
    assert!((2600..=3700).contains(&total), "{admitted:?}");
    assert!(
        admitted.iter().all(|&n| n > 600),
        "equal demand, comparable shares: {admitted:?}"
    );
    let m = a.metrics();
    assert!(m["fleet"]["leases"].as_u64().unwrap() > 10, "{m}");
    assert_eq!(m["fleet"]["redis_errors"], 0, "{m}");
    let text = a.get("/metrics?format=prometheus").text();
    for series in [
        "weir_fleet_shared 1",
        "weir_fleet_instances 2",
        "weir_fleet_leases_total ",
        "weir_fleet_redis_rtt_seconds ",
        "weir_fleet_fallback_seconds_total ",
    ] {
        assert!(text.contains(series), "{series} in /metrics");
    }
}

#[test]
#[cfg_attr(
    missing_redis,
    ignore = "redis-server is not installed (bash .ci/run installs it)"
)]
fn redis_down_at_start_then_up_then_killed_then_stalled() {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("weir-fleet-{}.log", std::process::id()));
    let url = format!("redis://127.0.0.1:{port}");
    let env = [
        ("REDIS_URL", url.as_str()),
        ("RATE_LIMIT", "1000"),
        ("CLUSTER_SIZE", "2"),
        ("LEASE_PERIOD", "50ms"),
        ("IO_THREADS", "1"),
    ];
    let srv = Server::start_with("tokio", &env, std::fs::File::create(&log).unwrap().into());
    // Down at start: served on the fallback share, and said so in /readyz, metrics and log.
    let ready = srv.get("/readyz");
    assert_eq!(
        ready.status,
        200,
        "the fallback still serves: {}",
        ready.text()
    );
    assert_eq!(ready.json()["rate_limit"], "local-fallback");
    srv.wait_metrics("a failed round trip", |m| {
        m["fleet"]["redis_errors"].as_u64() > Some(0) && m["fleet"]["shared"] == false
    });
    let admitted = hammer(&[&srv], 4, 2)[0];
    // RATE_LIMIT / CLUSTER_SIZE = 500/s + a burst of 500: about 1,500 in 2 s (3,000 alone).
    eprintln!("admitted on the fallback share: {admitted}");
    assert!((1000..=2200).contains(&admitted), "{admitted}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Redis unreachable"), "logged: {text}");

    // Redis comes up: shared again without a restart.
    let Some(redis) = Redis::start(port) else {
        return;
    };
    wait_mode(&srv, "shared");
    // Killed mid-run: back on the fallback within a period or two.
    redis.signal("KILL");
    wait_mode(&srv, "local-fallback");
    drop(redis);
    // Back, then stalled (a paused process): no request waits for it.
    let Some(redis) = Redis::start(port) else {
        return;
    };
    wait_mode(&srv, "shared");
    redis.signal("STOP");
    let stalled = Instant::now();
    let mut answered = 0;
    while stalled.elapsed() < Duration::from_secs(2) {
        // Each answer within a second, while Redis stays silent for two.
        let mut c = TcpStream::connect(srv.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        c.write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        c.read_to_end(&mut answer)
            .expect("answered within a second while Redis is stalled");
        let line = String::from_utf8_lossy(&answer);
        assert!(
            line.starts_with("HTTP/1.1 200") || line.starts_with("HTTP/1.1 429"),
            "{line}"
        );
        answered += 1;
    }
    assert_eq!(
        rate_limit_mode(&srv),
        "local-fallback",
        "a stalled Redis is a failed one"
    );
    redis.signal("CONT");
    wait_mode(&srv, "shared");
    eprintln!("{answered} requests answered one by one while Redis was stopped");
    let _ = std::fs::remove_file(&log);
}

#[test]
#[cfg_attr(
    missing_redis,
    ignore = "redis-server is not installed (bash .ci/run installs it)"
)]
fn a_dead_instance_leaves_the_fleet_within_its_heartbeat() {
    let Some(redis) = Redis::start(free_port()) else {
        return;
    };
    let url = redis.url();
    let env = fleet_env(&url);
    let mut a = Server::start("tokio", &env);
    let b = Server::start("tokio", &env);
    b.wait_metrics("two instances", |m| m["fleet"]["instances"] == 2);
    a.signal("KILL");
    let _ = a.wait_exit();
    let killed = Instant::now();
    b.wait_metrics("one instance", |m| m["fleet"]["instances"] == 1);
    eprintln!("the dead instance left after {:?}", killed.elapsed());
    // Its share is the survivor's: alone it admits the whole budget.
    let admitted = hammer(&[&b], 4, 2)[0];
    assert!(
        admitted > 2300,
        "the whole 1,000/s (+ burst) for the survivor: {admitted}"
    );
}

/// Runs weir-load against `addr` for `secs` with `conns` keep-alive connections; its JSON.
fn load(addr: std::net::SocketAddr, conns: usize, secs: u64) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_weir-load"))
        .args([
            "-c",
            &conns.to_string(),
            "-t",
            "1",
            "-z",
            &format!("{secs}s"),
        ])
        .args(["--json", "--max-error-rate", "1"])
        .arg(format!("http://{addr}/ping"))
        .output()
        .expect("run weir-load");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "weir-load JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn two_processes_share_a_port_and_one_restarts_without_refusing_a_request() {
    let env = [
        ("REUSE_PORT", "true"),
        ("RATE_LIMIT", "0"),
        ("SHUTDOWN_DELAY", "300ms"),
        ("IO_THREADS", "1"),
    ];
    let mut old = Server::start("tokio", &env);
    let port = old.addr.to_string();
    let mut both = env.to_vec();
    both.push(("SERVER_PORT", &port));
    let new = Server::start("tokio", &both);
    assert_eq!(new.addr, old.addr, "the second process bound the same port");

    // Without REUSE_PORT a third process cannot bind it: the option is what makes this work.
    let out = Command::new(common::binary("tokio"))
        .env("SERVER_PORT", &port)
        .env("ACCESS_LOG", "false")
        .output()
        .expect("run a third server");
    assert_ne!(
        out.status.code(),
        Some(0),
        "a plain bind of a shared port fails"
    );

    let addr = old.addr;
    let run = std::thread::spawn(move || load(addr, 32, 4));
    std::thread::sleep(Duration::from_millis(1500));
    let served_by_old = old.metrics()["total_requests"].as_u64().unwrap();
    let served_by_new_before = new.metrics()["total_requests"].as_u64().unwrap();
    assert!(
        served_by_old > 0 && served_by_new_before > 0,
        "the kernel spread the connections: {served_by_old} / {served_by_new_before}"
    );
    old.signal("TERM");
    assert_eq!(
        old.wait_exit(),
        Some(0),
        "the old process drained and exited"
    );
    let at_exit = new.metrics()["total_requests"].as_u64().unwrap();
    let report = run.join().unwrap();
    let after = new.metrics()["total_requests"].as_u64().unwrap();
    eprintln!(
        "requests {} (old served {served_by_old}+ before SIGTERM), transport errors {}, statuses {}",
        report["requests"], report["transport_errors"], report["status_counts"]
    );
    assert_eq!(
        report["transport_errors"], 0,
        "nothing refused or lost: {report}"
    );
    assert_eq!(
        report["status_counts"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["200".to_owned()]),
        "every answer a 200: {report}"
    );
    assert!(
        after > at_exit,
        "the remaining process kept serving after the other exited ({at_exit} -> {after})"
    );
}

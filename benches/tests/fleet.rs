//! Several weir processes as one service: `REUSE_PORT` restarts under load.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Server;

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

//! The Grafana dashboard (`deploy/grafana/weir.json`) works against a real Prometheus: weir
//! under load (successes, 429s, queued jobs) is scraped every second, then every PromQL
//! expression of the dashboard is evaluated through Prometheus' HTTP API and must return data.
//! Skipped, saying so, where the `prometheus` binary is not installed (CI installs it).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Server, free_port, get, post};

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET path` on Prometheus; the JSON body, or `None` while it is not up.
fn prometheus_get(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

/// Every panel's query, with Grafana's variables as Grafana would fill them in: all jobs and
/// instances, and a rate interval that fits a 1 s scrape.
fn exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let raw: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    for e in &raw {
        // Scoped to the chosen job and instance (so another process's series stay out), with
        // Grafana's rate interval rather than a fixed window.
        assert!(
            e.contains(r#"job=~"$job", instance=~"$instance""#),
            "unscoped: {e}"
        );
        assert!(!e.contains("[1m]"), "a fixed window: {e}");
    }
    let vars = dashboard["templating"]["list"].to_string();
    assert!(
        vars.contains("label_values(weir_build_info, job)") && vars.contains("instance"),
        "job and instance variables: {vars}"
    );
    raw.iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$job", ".+")
                .replace("$instance", ".+")
        })
        .collect()
}

#[test]
#[cfg_attr(
    missing_prometheus,
    ignore = "prometheus is not installed (bash .ci/run installs it)"
)]
fn every_dashboard_expression_returns_data_from_prometheus() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/weir.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("dashboard JSON");
    let exprs = exprs(&dashboard);
    assert!(exprs.len() >= 8, "{exprs:?}");
    let srv = Arc::new(Server::start(
        "tokio",
        &[
            ("RATE_LIMIT", "100"),
            ("RATE_BURST", "20"),
            ("JOB_COST", "2000000"),
        ],
    ));
    let dir = std::env::temp_dir().join(format!("weir-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: weir\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{}']\n",
            srv.addr
        ),
    )
    .unwrap();
    let port = free_port();
    let mut prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    // Load for the whole scrape window: successes, 429s past the limit, jobs in the queue.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (srv, stop) = (srv.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut c = srv.connect();
                for _ in 0..20 {
                    let _ = c.write_all(get("/ping").as_bytes());
                    let _ = common::read_response(&mut c, false);
                }
                let _ =
                    c.write_all(post("/api/v1/compute/intensive", "{\"number\": 7}").as_bytes());
                let _ = common::read_response(&mut c, false);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing = exprs.clone();
    while !missing.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        missing.retain(|e| {
            let r = prometheus_get(port, &format!("/api/v1/query?query={}", encode(e)));
            let data = r.as_ref().is_some_and(|r| {
                r["status"] == "success"
                    && r["data"]["result"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|s| s["value"][1].as_str().is_some_and(|v| v != "NaN"))
                    })
            });
            !data
        });
    }
    stop.store(true, Ordering::Relaxed);
    let _ = load.join();
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        missing.is_empty(),
        "expressions without data after 60 s: {missing:?}"
    );
}

/// `promtool check metrics` accepts the text exposition of a server that has served a few
/// requests (the `prometheus` package has promtool).
#[test]
#[cfg_attr(
    missing_promtool,
    ignore = "promtool is not installed (bash .ci/run installs it)"
)]
fn promtool_accepts_the_exposition() {
    let srv = Server::start("tokio", &[]);
    assert_eq!(srv.get("/ping").status, 200);
    assert_eq!(
        srv.request(&post("/api/v1/compute/fast", "{\"number\":1}"))
            .status,
        200
    );
    let body = srv.get("/metrics?format=prometheus").body;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {msg}");
    assert!(!msg.contains("error"), "promtool: {msg}");
}

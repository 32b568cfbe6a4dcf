//! weir-load against local servers: exact counts, statuses, timeouts, resets, rate, JSON.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use common::Server;

fn load(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir-load"))
        .args(args)
        .output()
        .expect("run weir-load");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, stderr)
}

/// A tiny scripted server: `answer(i, request)` gives the raw bytes for the i-th request on
/// any connection, or `None` to close without answering; `hang` accepts and never answers.
fn scripted(answer: fn(usize) -> Option<&'static [u8]>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut i = 0;
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = Vec::new();
            let mut tmp = [0u8; 4096];
            loop {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut tmp) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    break;
                };
                buf.drain(..end + 4);
                let reply = answer(i);
                i += 1;
                match reply {
                    Some([]) => std::thread::sleep(std::time::Duration::from_secs(30)),
                    Some(bytes) => {
                        if c.write_all(bytes).is_err() {
                            break;
                        }
                    }
                    None => break,
                }
            }
        }
    });
    format!("http://{addr}/x")
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const ERR: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";

#[test]
fn exact_request_count_and_json_report() {
    let srv = Server::start("tokio", &[]);
    let url = format!("http://{}/ping", srv.addr);
    let (code, r, err) = load(&["-n", "1000", "-c", "10", "-t", "2", "--json", &url]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["requests"], 1000);
    assert_eq!(r["successes"], 1000);
    assert_eq!(r["status_counts"]["200"], 1000);
    for k in ["p50", "p90", "p95", "p99", "p999", "min", "max", "avg"] {
        assert!(r["latency_us"][k].is_number(), "{k}");
    }
    // The metrics request is still in progress when it reports, so it is not in the total.
    assert_eq!(
        srv.metrics()["total_requests"],
        1000,
        "the server saw exactly 1000 requests"
    );
}

#[test]
fn per_status_counts_are_exact() {
    let url = scripted(|i| Some(if i % 4 == 3 { ERR } else { OK }));
    let (code, r, _) = load(&[
        "-n",
        "400",
        "-c",
        "1",
        "-t",
        "1",
        "--json",
        "--max-error-rate",
        "0.5",
        &url,
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(
        (
            r["status_counts"]["200"].as_u64(),
            r["status_counts"]["503"].as_u64()
        ),
        (Some(300), Some(100))
    );
    assert_eq!(
        (r["successes"].as_u64(), r["failures"].as_u64()),
        (Some(300), Some(100))
    );
}

#[test]
fn error_rate_above_the_limit_fails_the_run() {
    let url = scripted(|_| Some(ERR));
    let (code, r, err) = load(&["-n", "20", "-c", "2", "--json", &url]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(r["failures"], 20);
}

/// 4xx answers (429 from a rate limit, say) are counted per status but fail the run only with
/// `--fail-on 4xx`; transport errors and 5xx always count.
#[test]
fn client_errors_fail_the_run_only_when_asked() {
    const LIMITED: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n";
    let url = scripted(|i| Some(if i % 2 == 0 { OK } else { LIMITED }));
    let (code, r, err) = load(&["-n", "20", "-c", "1", "--json", &url]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        (
            r["status_counts"]["429"].as_u64(),
            r["client_errors"].as_u64()
        ),
        (Some(10), Some(10))
    );
    assert_eq!(
        (r["server_errors"].as_u64(), r["transport_errors"].as_u64()),
        (Some(0), Some(0))
    );
    let (code, _, _) = load(&["-n", "20", "-c", "1", "--json", "--fail-on", "4xx", &url]);
    assert_eq!(code, Some(1));
}

#[test]
fn timeouts_are_counted() {
    let url = scripted(|_| Some(b""));
    let (code, r, _) = load(&[
        "-n",
        "3",
        "-c",
        "1",
        "--timeout",
        "200ms",
        "--json",
        "--max-error-rate",
        "1",
        &url,
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(r["errors_by_kind"]["timeout"], 3);
}

#[test]
fn resets_are_counted_with_their_reason() {
    let url = scripted(|i| if i % 2 == 0 { Some(OK) } else { None });
    let (_, r, _) = load(&[
        "-n",
        "10",
        "-c",
        "1",
        "--json",
        "--max-error-rate",
        "1",
        &url,
    ]);
    assert_eq!(r["status_counts"]["200"], 5);
    assert_eq!(r["errors_by_kind"]["reset"], 5);
    assert!(
        r["errors"][0]["reason"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
}

#[test]
fn garbage_is_a_bad_response() {
    let url = scripted(|_| Some(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"));
    let (code, r, _) = load(&["-n", "4", "-c", "1", "--json", &url]);
    assert_eq!(code, Some(1));
    assert_eq!(r["errors_by_kind"]["bad_response"], 4);
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, r, err) = load(&["-n", "5", "-c", "1", &format!("http://127.0.0.1:{port}/")]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("failed to connect") && err.contains("refused"),
        "{err}"
    );
    assert!(r.is_null());
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["ftp://x"][..],
        &["-c", "0", "http://127.0.0.1:1/"],
        &["-z", "soon", "http://127.0.0.1:1/"],
        &["-H", "nocolon", "-n", "1", "http://127.0.0.1:1/"],
    ] {
        let (code, _, err) = load(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn constant_rate_holds() {
    let srv = Server::start("tokio", &[]);
    let url = format!("http://{}/ping", srv.addr);
    let (code, r, err) = load(&[
        "-z", "3s", "--rate", "300", "-c", "6", "-t", "1", "--json", &url,
    ]);
    assert_eq!(code, Some(0), "{err}");
    let rate = r["requests_per_sec"].as_f64().unwrap();
    assert!(
        (rate - 300.0).abs() / 300.0 < 0.05,
        "asked 300 req/s, got {rate}"
    );
}

#[test]
fn duration_runs_report_in_flight_requests() {
    let srv = Server::start("tokio", &[]);
    let url = format!("http://{}/api/v1/sleep?ms=2000", srv.addr);
    let (code, r, err) = load(&["-z", "500ms", "-c", "3", "--json", &url]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["in_flight_at_end"], 3, "{r}");
    assert_eq!(r["failures"], 0);
}

/// weir-load speaks HTTPS: verified with `--cacert`, or `--insecure`; handshakes are counted
/// and timed apart from request latency; `--no-keepalive` makes one handshake per request; a
/// certificate it cannot verify is a connect failure that names the reason.
#[test]
fn https_keepalive_handshakes_and_verification() {
    let srv = Server::start("tokio+tls", &[("RATE_LIMIT", "0")]);
    let cert = common::TestCert::shared();
    let url = format!("https://localhost:{}/ping", srv.addr.port());
    let cacert = cert.cert.display().to_string();
    let (code, j, err) = load(&["-c", "4", "-n", "200", "--json", "--cacert", &cacert, &url]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(j["status_counts"]["200"], 200, "{j}");
    assert_eq!(
        j["handshakes"], 4,
        "one handshake per keep-alive connection: {j}"
    );
    assert!(j["handshake_us"]["p50"].as_u64() > Some(0), "{j}");
    let (code, j, err) = load(&[
        "-c",
        "2",
        "-n",
        "40",
        "--json",
        "--insecure",
        "--no-keepalive",
        &url,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(j["status_counts"]["200"], 40, "{j}");
    assert_eq!(j["handshakes"], 40, "a handshake per request: {j}");
    let (code, j, _) = load(&[
        "-c",
        "1",
        "-n",
        "3",
        "--json",
        "--cacert",
        "/dev/null",
        &url,
    ]);
    assert_ne!(code, Some(0));
    assert_eq!(j, serde_json::Value::Null, "refused before running");
    let system = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
    if system.exists() {
        let (code, j, _) = load(&["-c", "1", "-n", "3", "--json", &url]);
        assert_eq!(code, Some(1));
        assert_eq!(j["errors_by_kind"]["connect"], 3, "{j}");
        let reason = j["errors"][0]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("certificate"), "{reason}");
    }
}

#[test]
fn the_latency_histogram_holds_every_answer() {
    let srv = Server::start("tokio", &[("RATE_LIMIT", "0")]);
    let url = format!("http://{}/ping", srv.addr);
    let (code, r, err) = load(&["-n", "2000", "-c", "8", "-t", "2", "--json", &url]);
    assert_eq!(code, Some(0), "{err}");
    let buckets = r["latency_histogram"].as_array().expect("a histogram");
    assert!((2..=11).contains(&buckets.len()), "{buckets:?}");
    let counts: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(counts, 2000, "every answer in one bucket: {buckets:?}");
    let bounds: Vec<u64> = buckets
        .iter()
        .map(|b| b["upto_us"].as_u64().unwrap())
        .collect();
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
    let max = r["latency_us"]["max"].as_u64().unwrap();
    assert!(
        bounds.last().copied().unwrap().abs_diff(max) <= max / 100 + 1,
        "the last bucket ends at the slowest answer: {bounds:?} vs {max}"
    );
}

#[test]
fn the_json_has_one_shape_whatever_the_scenario() {
    let srv = Server::start("tokio", &[("RATE_LIMIT", "0"), ("JOB_COST", "10")]);
    let url = format!("http://{}/", srv.addr);
    let (code, plain, err) = load(&["-n", "30", "-c", "2", "--json", &format!("{url}ping")]);
    assert_eq!(code, Some(0), "{err}");
    let (code, seed, err) = load(&["-n", "30", "-c", "2", "--scenario", "seed", "--json", &url]);
    assert_eq!(code, Some(0), "{err}");
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v.as_object()
            .expect("a JSON object")
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(keys(&plain), keys(&seed), "the same fields");
    assert_eq!(plain["scenario"], serde_json::Value::Null);
    assert_eq!(plain["parts"], serde_json::json!([]));
    assert_eq!(seed["scenario"], "seed");
    assert_eq!(seed["requests"], 60, "the sum of both scenarios: {seed}");
    let parts = seed["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 2);
    assert_eq!(
        (&parts[0]["scenario"], &parts[1]["scenario"]),
        (&"fast".into(), &"intensive".into())
    );
    for p in parts {
        assert_eq!(p["requests"], 30, "{p}");
        assert_eq!(keys(p), keys(&plain), "each part has the same fields");
    }
}

#[test]
#[cfg_attr(missing_script, ignore = "script(1) from util-linux is not installed")]
fn a_terminal_gets_a_progress_bar_with_the_time_left() {
    // `script` (util-linux) gives weir-load a terminal, as a person running it would.
    let srv = Server::start("tokio", &[("RATE_LIMIT", "0")]);
    let command = format!(
        "{} -z 1500ms -c 2 -t 1 http://{}/ping",
        env!("CARGO_BIN_EXE_weir-load"),
        srv.addr
    );
    // The caller's own terminal never matters: the test says which one it plays.
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm-256color")
        .output()
        .expect("script(1) from util-linux runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("req/s") && text.contains("failed"), "{text}");
    assert!(text.contains("(left "), "the time left is shown: {text}");
    assert!(
        text.contains("\u{1b}[2K"),
        "the bar redraws its line: {text}"
    );
    assert!(
        text.contains("Latency histogram"),
        "then the report: {text}"
    );
    // A terminal that cannot draw a bar (TERM unset or dumb): plain progress lines.
    for term in [None, Some("dumb")] {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &command, "/dev/null"]);
        match term {
            Some(t) => cmd.env("TERM", t),
            None => cmd.env_remove("TERM"),
        };
        let out = cmd.output().expect("script(1) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "TERM={term:?}: {text}");
        assert!(
            text.contains("req/s") && !text.contains("\u{1b}[2K"),
            "TERM={term:?}: plain progress lines: {text}"
        );
        assert!(text.contains("Latency histogram"), "TERM={term:?}: {text}");
    }
    // Without a terminal: plain progress lines, no escape sequences.
    let out = Command::new(env!("CARGO_BIN_EXE_weir-load"))
        .args(["-z", "1500ms", "-c", "2", "-t", "1"])
        .arg(format!("http://{}/ping", srv.addr))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("req/s") && !err.contains('\u{1b}'), "{err}");
}

/// A body's Content-Type is `-T` (application/json unless told), and the text report shows
/// the bytes read.
#[test]
fn the_body_type_is_chosen_and_the_bytes_reported() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = Vec::new();
            let mut tmp = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut tmp) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
            let _ = c.write_all(OK);
        }
    });
    let url = format!("http://{addr}/x");
    let (code, _, _) = load(&[
        "-n",
        "1",
        "-c",
        "1",
        "-t",
        "1",
        "-d",
        "hi",
        "-T",
        "text/plain",
        &url,
    ]);
    assert_eq!(code, Some(0));
    let head = rx.recv().unwrap().to_ascii_lowercase();
    assert!(head.contains("content-type: text/plain\r\n"), "{head}");
    let out = Command::new(env!("CARGO_BIN_EXE_weir-load"))
        .args(["-n", "2", "-c", "1", "-t", "1", "-d", "{}", &url])
        .output()
        .unwrap();
    let head = rx.recv().unwrap().to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/json\r\n"),
        "{head}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Bytes read:"), "{text}");
}

/// `--percentiles` chooses the percentiles reported, in the text and the JSON (oha prints up
/// to p99.99); a percentile out of (0, 100] is refused.
#[test]
fn the_percentiles_are_chosen() {
    let url = scripted(|_| Some(OK));
    let (code, json, _) = load(&[
        "-n",
        "50",
        "-c",
        "2",
        "-t",
        "1",
        "--percentiles",
        "50,99.99",
        "--json",
        &url,
    ]);
    assert_eq!(code, Some(0));
    let ps: Vec<f64> = json["percentiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["percentile"].as_f64().unwrap())
        .collect();
    assert_eq!(ps, [50.0, 99.99], "{json}");
    let out = Command::new(env!("CARGO_BIN_EXE_weir-load"))
        .args([
            "-n",
            "20",
            "-c",
            "1",
            "-t",
            "1",
            "--percentiles",
            "90,99.99",
            &url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("p90 ") && text.contains("p99.99 "), "{text}");
    let (code, _, err) = load(&["-n", "1", "--percentiles", "0", &url]);
    assert_eq!(code, Some(2), "{err}");
}

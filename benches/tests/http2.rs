//! HTTP/2 from outside, on every runtime, with real clients: curl (prior knowledge on the
//! plain port, ALPN `h2` over TLS) gets the answers HTTP/1.1 gets, h2load's multiplexed load
//! is answered in full, a drain answers the streams in flight, and `HTTP2=false` serves
//! HTTP/1.1 only. Frame-level cases (floods, flow control, malformed frames) are in
//! `core/tests/h2.rs`.

mod common;

use std::process::Command;

use common::{Server, TestCert};

/// curl's arguments to reach `srv` over HTTP/2 (prior knowledge, or TLS with ALPN).
fn curl(srv: &Server, rt: &str, path: &str) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_version} %{http_code}"]);
    if rt.ends_with("+tls") {
        let port = srv.addr.port();
        cmd.args(["--http2", "--cacert"])
            .arg(&TestCert::shared().cert)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .arg(format!("https://localhost:{port}{path}"));
    } else {
        cmd.arg("--http2-prior-knowledge")
            .arg(format!("http://{}{path}", srv.addr));
    }
    cmd
}

fn output(mut cmd: Command) -> String {
    let out = cmd.output().expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// curl over HTTP/2: the answers of HTTP/1.1, a streamed body in DATA frames, a 404.
fn curl_gets_http1s_answers(rt: &'static str) {
    let srv = Server::start(rt, &[("ACCESS_LOG", "false")]);
    assert_eq!(output(curl(&srv, rt, "/ping")), "pong\n2 200", "{rt}");
    let mut post = curl(&srv, rt, "/api/v1/compute/fast");
    post.args(["-d", "{\"number\": 11}"]);
    let answer = output(post);
    assert!(
        answer.contains("\"result\":121") && answer.ends_with("2 200"),
        "{rt}: {answer}"
    );
    let stream = output(curl(&srv, rt, "/api/v1/stream?count=3&interval_ms=10"));
    assert_eq!(stream.matches("event: tick").count(), 3, "{rt}: {stream}");
    assert!(stream.ends_with("2 200"));
    assert!(output(curl(&srv, rt, "/nowhere")).ends_with("2 404"));
}

/// h2load: 4 connections × 10 streams, 1,000 requests, every one answered 2xx.
fn h2load_is_answered_in_full(rt: &'static str) {
    let srv = Server::start(rt, &[("ACCESS_LOG", "false"), ("RATE_LIMIT", "0")]);
    let scheme = if rt.ends_with("+tls") {
        "https"
    } else {
        "http"
    };
    let out = Command::new("h2load")
        .args(["-n", "1000", "-c", "4", "-m", "10"])
        .arg(format!("{scheme}://{}/ping", srv.addr))
        .output()
        .expect("h2load runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1000 succeeded, 0 failed"), "{rt}: {text}");
    assert!(text.contains("status codes: 1000 2xx"), "{rt}: {text}");
    if scheme == "https" {
        assert!(text.contains("Application protocol: h2"), "{rt}: {text}");
    }
}

/// SIGTERM while a sleep is in flight on an HTTP/2 stream: it is answered, then the
/// process exits 0.
fn a_drain_answers_the_streams_in_flight(rt: &'static str) {
    let mut srv = Server::start(rt, &[("ACCESS_LOG", "false")]);
    let child = curl(&srv, rt, "/api/v1/sleep?ms=3000")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl runs");
    srv.wait_metrics("the sleep in flight", |m| {
        m["active_requests"].as_u64() >= Some(2)
    });
    srv.signal("TERM");
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("slept_ms") && text.ends_with("2 200"),
        "{rt}: {text}"
    );
    assert_eq!(srv.wait_exit(), Some(0));
}

/// `HTTP2=false`: the preface is not HTTP/1.1 (an error answer), and HTTP/1.1 is served.
fn http2_off_serves_http1_only(rt: &'static str) {
    let srv = Server::start(rt, &[("ACCESS_LOG", "false"), ("HTTP2", "false")]);
    let h2 = output(curl(&srv, rt, "/ping"));
    assert!(!h2.ends_with("2 200"), "{rt}: {h2}");
    assert_eq!(srv.get("/ping").text(), "pong");
}

for_each_runtime! {
    #[cfg_attr(missing_curl, ignore = "curl is not installed")]
    curl_gets_http1s_answers => super::curl_gets_http1s_answers;
    #[cfg_attr(missing_h2load, ignore = "h2load is not installed (Debian: nghttp2-client)")]
    h2load_is_answered_in_full => super::h2load_is_answered_in_full;
    #[cfg_attr(missing_curl, ignore = "curl is not installed")]
    a_drain_answers_the_streams_in_flight => super::a_drain_answers_the_streams_in_flight;
    #[cfg_attr(missing_curl, ignore = "curl is not installed")]
    http2_off_serves_http1_only => super::http2_off_serves_http1_only;
}

for_each_runtime_over_tls! {
    #[cfg_attr(missing_curl, ignore = "curl is not installed")]
    curl_gets_http1s_answers => super::curl_gets_http1s_answers;
    #[cfg_attr(missing_h2load, ignore = "h2load is not installed (Debian: nghttp2-client)")]
    h2load_is_answered_in_full => super::h2load_is_answered_in_full;
}

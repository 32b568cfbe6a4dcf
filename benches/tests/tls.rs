//! TLS on every runtime: hostile clients (silence, garbage, plain HTTP on the TLS port, a
//! truncated handshake, a reader that stops), real clients (curl, openssl, when installed),
//! certificate reload on SIGHUP, and configuration errors. The protocol and API scenarios over
//! TLS are in `blackbox.rs` (`*_tls` modules).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Reads until the server closes (EOF or reset) or `within` passes; the bytes read, and
/// whether it closed.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while start.elapsed() < within {
        match s.read(&mut tmp) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => {}
        }
    }
    (got, false)
}

/// A client that opens TCP to the TLS port and sends nothing is closed within
/// `HEADER_TIMEOUT` (the header timeout bounds the handshake); so is one that sends half a
/// ClientHello and stops.
fn silent_and_truncated_handshakes_are_cut(rt: &'static str) {
    let srv = Server::start(rt, &[("HEADER_TIMEOUT", "1s")]);
    let mut silent = TcpStream::connect(srv.addr).unwrap();
    let mut truncated = TcpStream::connect(srv.addr).unwrap();
    // A TLS handshake record header announcing 512 bytes, then only a few of them.
    truncated
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(8));
    assert!(closed, "{rt}: a silent client is closed");
    let (_, closed) = read_until_closed(&mut truncated, Duration::from_secs(8));
    assert!(closed, "{rt}: a truncated handshake is closed");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{rt}: not before HEADER_TIMEOUT"
    );
    assert_eq!(srv.get("/ping").status, 200, "{rt}: still serving");
}

/// Plain HTTP sent to the TLS port gets a TLS alert record (content type 21) or a close —
/// never a hang, never an HTTP answer; so does a garbage record.
fn plain_http_and_garbage_get_an_alert(rt: &'static str) {
    let srv = Server::start(rt, &[]);
    for bytes in [
        get("/ping").into_bytes(),
        vec![0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5],
        (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ] {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.write_all(&bytes).unwrap();
        let (got, closed) = read_until_closed(&mut s, Duration::from_secs(8));
        assert!(closed, "{rt}: closed after {:?}", &bytes[..5]);
        assert!(
            got.is_empty() || got[0] == 0x15,
            "{rt}: an alert or nothing, got {:?}",
            &got[..got.len().min(16)]
        );
        assert!(!String::from_utf8_lossy(&got).contains("HTTP/1.1"));
    }
    assert_eq!(srv.get("/ping").status, 200, "{rt}: still serving");
}

/// A TLS client that pipelines requests and never reads is cut at `WRITE_TIMEOUT`: the
/// records pile up, the layer's write deadline passes, the connection closes.
fn a_tls_client_that_stops_reading_is_cut(rt: &'static str) {
    let srv = Server::start(rt, &[("WRITE_TIMEOUT", "1s"), ("RATE_LIMIT", "0")]);
    let mut stalled = srv.connect();
    stalled
        .s
        .tcp()
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let batch = get("/ping").repeat(2000);
    for _ in 0..20 {
        if stalled.write_all(batch.as_bytes()).is_err() {
            break;
        }
    }
    srv.wait_metrics("the stalled TLS connection to be cut", |m| {
        m["active_connections"].as_u64() == Some(1)
    });
    assert_eq!(srv.get("/ping").status, 200, "{rt}: still serving");
}

/// `SIGHUP` reloads the pair: new handshakes get the new certificate, an open connection
/// keeps working, and a bad new pair is refused (logged) with the old one kept.
fn sighup_reloads_the_certificate(rt: &'static str) {
    let first = TestCert::new(&format!("reload-{rt}"));
    let env = first.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut srv = Server::start(rt.trim_end_matches("+tls"), &env);
    srv.tls = Some(first.client.clone());
    let mut open = srv.connect();
    open.write_all(get("/ping").as_bytes()).unwrap();
    assert_eq!(read_response(&mut open, false).unwrap().status, 200);
    // A new pair in the same files.
    let second = TestCert::new(&format!("reload2-{rt}"));
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    srv.signal("HUP");
    srv.tls = Some(second.client.clone());
    assert!(
        retry(|| {
            let mut c = srv.connect();
            c.write_all(get("/ping").as_bytes()).is_ok()
                && read_response(&mut c, false).is_some_and(|r| r.status == 200)
        }),
        "{rt}: new handshakes use the new certificate"
    );
    open.write_all(get("/ping").as_bytes()).unwrap();
    assert_eq!(
        read_response(&mut open, false).unwrap().status,
        200,
        "{rt}: the open connection keeps its session"
    );
    // A broken pair: the reload fails and the second pair stays in use.
    std::fs::write(&first.key, "not a key").unwrap();
    srv.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(srv.get("/ping").status, 200, "{rt}: still the second pair");
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "{rt}: still running"
    );
}

/// Configuration errors exit 2 before binding, naming the variable or the file.
fn tls_configuration_errors_exit_2(rt: &'static str) {
    let rt = rt.trim_end_matches("+tls");
    let cert = TestCert::new(&format!("config-{rt}"));
    let other = TestCert::new(&format!("config-other-{rt}"));
    let missing = std::env::temp_dir().join("weir-no-such-file.pem");
    let cases: [(Vec<(&str, String)>, &str); 4] = [
        (
            vec![("TLS_CERT", cert.cert.display().to_string())],
            "TLS_KEY",
        ),
        (
            vec![
                ("TLS_CERT", cert.cert.display().to_string()),
                ("TLS_KEY", other.key.display().to_string()),
            ],
            "does not go with",
        ),
        (
            vec![
                ("TLS_CERT", missing.display().to_string()),
                ("TLS_KEY", cert.key.display().to_string()),
            ],
            "weir-no-such-file.pem",
        ),
        (
            vec![
                ("TLS_CERT", cert.key.display().to_string()),
                ("TLS_KEY", cert.key.display().to_string()),
            ],
            "TLS_CERT",
        ),
    ];
    for (env, says) in cases {
        let out = std::process::Command::new(binary(rt))
            .env("SERVER_PORT", "127.0.0.1:0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rt} {env:?}: {err}");
        assert!(out.stdout.is_empty(), "{rt}: nothing bound");
        assert!(err.contains(says), "{rt} {env:?}: {err}");
    }
}

/// curl (`--cacert`) is served.
fn curl_is_served(rt: &'static str) {
    let srv = Server::start(rt, &[]);
    let cert = TestCert::shared();
    let url = format!("https://localhost:{}/ping", srv.addr.port());
    match std::process::Command::new("curl")
        .args(["-s", "--http1.1", "--cacert"])
        .arg(&cert.cert)
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", srv.addr.port()),
        ])
        .arg(&url)
        .output()
    {
        Ok(out) => assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "pong",
            "{rt}: curl: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("curl: {e}"),
    }
}

/// `openssl s_client -alpn http/1.1` is served.
fn openssl_is_served(rt: &'static str) {
    let srv = Server::start(rt, &[]);
    let cert = TestCert::shared();
    let child = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-alpn",
            "http/1.1",
            "-verify_return_error",
        ])
        .args(["-CAfile"])
        .arg(&cert.cert)
        .args(["-servername", "localhost", "-connect"])
        .arg(srv.addr.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    match child {
        Ok(mut child) => {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.starts_with("HTTP/1.1 200") && text.ends_with("pong"),
                "{rt}: openssl: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => panic!("openssl: {e}"),
    }
}

for_each_runtime_over_tls! {
    silent_and_truncated_handshakes_are_cut => super::silent_and_truncated_handshakes_are_cut;
    plain_http_and_garbage_get_an_alert => super::plain_http_and_garbage_get_an_alert;
    a_tls_client_that_stops_reading_is_cut => super::a_tls_client_that_stops_reading_is_cut;
    sighup_reloads_the_certificate => super::sighup_reloads_the_certificate;
    tls_configuration_errors_exit_2 => super::tls_configuration_errors_exit_2;
    #[cfg_attr(missing_curl, ignore = "curl is not installed")]
    curl_is_served => super::curl_is_served;
    #[cfg_attr(missing_openssl, ignore = "openssl is not installed")]
    openssl_is_served => super::openssl_is_served;
}

//! weir-compare's curves report, checked by looking at it: written from known points, opened
//! in headless Chromium (the page must load and show every chart) and rendered to PNG.

use std::path::Path;
use std::process::Command;

use weir_bench::compare::curves::{ConnPoint, Curve, Overload, STEPS, Step, Study};
use weir_bench::compare::{Machine, Measured};

fn measured(p50_us: u64, p99_us: u64, goodput: f64) -> Measured {
    Measured {
        rps: goodput,
        goodput,
        p50_us,
        p99_us,
        p999_us: p99_us * 2,
        ok_p99_us: p99_us,
        requests: 1000,
        late_p50_us: 1,
        late_p99_us: 5,
        errors: 0,
        status_503: 100,
        cpu_us_per_req: 10.0,
    }
}

fn study() -> Study {
    let servers = ["weir-tokio", "weir-smol", "hyper-ref"];
    let mut curves = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        for endpoint in ["ping", "compute-fast"] {
            let max = 50_000.0 + 1000.0 * i as f64;
            curves.push(Curve {
                server: (*server).into(),
                endpoint: endpoint.into(),
                max_rps: max,
                steps: STEPS
                    .iter()
                    .map(|f| Step {
                        offered: max * f,
                        measured: measured(
                            (50.0 / (1.2 - f)) as u64,
                            (400.0 / (1.25 - f)) as u64,
                            max * f,
                        ),
                    })
                    .collect(),
            });
        }
    }
    let sweep = servers
        .iter()
        .flat_map(|s| {
            [10, 100, 1000, 10_000].map(|n| ConnPoint {
                server: (*s).into(),
                connections: n,
                measured: measured(100, 1000 + n as u64, 5000.0),
                rss_per_conn: 4000.0 + 40_000.0 / n as f64,
            })
        })
        .collect();
    let overload = servers
        .iter()
        .map(|s| Overload {
            server: (*s).into(),
            offered: 6000.0,
            measured: measured(500, 9000, 3000.0),
        })
        .collect();
    Study {
        machine: Machine::describe(Path::new(env!("CARGO_MANIFEST_DIR"))),
        seconds: 2,
        connections: 50,
        sweep_rate: 5000.0,
        curves,
        sweep,
        overload,
    }
}

#[test]
fn the_report_writes_every_file_and_chart() {
    let out = std::env::temp_dir().join(format!("weir-report-{}", std::process::id()));
    let charts = study().write(&out).expect("the report is written");
    // Two endpoints × (p50, p99), the sweep's two charts, the overload's goodput.
    assert_eq!(charts.len(), 7, "{charts:?}");
    for file in charts
        .iter()
        .map(String::as_str)
        .chain(["curves.json", "curves.md", "index.html"])
    {
        let text = std::fs::read_to_string(out.join(file)).unwrap_or_default();
        assert!(text.len() > 500, "{file} written");
    }
    let svg = std::fs::read_to_string(out.join("latency-ping-p99.svg")).unwrap();
    for label in [
        "offered load, requests/s",
        "p99 latency, ms",
        "weir-tokio",
        "hyper-ref",
        "commit",
    ] {
        assert!(svg.contains(label), "the chart shows {label:?}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("curves.json")).unwrap()).unwrap();
    assert_eq!(json["curves"].as_array().unwrap().len(), 6, "every curve");
    assert_eq!(
        json["curves"][0]["steps"].as_array().unwrap().len(),
        STEPS.len()
    );
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "self-contained"
    );
    assert_eq!(html.matches("<figure class=\"chart\"").count(), 7);

    let _ = std::fs::remove_dir_all(&out);
}

/// Looked at: headless Chromium loads the page, runs its one script (which counts the charts
/// it sees) and renders it to PNG.
#[test]
#[cfg_attr(
    missing_chromium,
    ignore = "chromium is not installed (bash .ci/run installs it)"
)]
fn the_report_renders_in_chromium() {
    let out = std::env::temp_dir().join(format!("weir-report-render-{}", std::process::id()));
    study().write(&out).expect("the report is written");
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium runs");
    let page = format!("file://{}", out.join("index.html").display());
    let headless = |extra: &[&str]| {
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", out.join("profile").display()))
            .args(extra)
            .arg(&page)
            .output()
            .expect("run chromium")
    };
    let dom = headless(&["--dump-dom"]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(
        dom_text.contains("data-charts=\"7\""),
        "the page loaded and its script saw 7 charts: {}",
        &dom_text[..dom_text.len().min(400)]
    );
    let png = out.join("page.png");
    let shot = headless(&[
        &format!("--screenshot={}", png.display()),
        "--window-size=1700,4000",
    ]);
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        bytes.len() > 50_000,
        "a page with charts, not a blank one: {} bytes",
        bytes.len()
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn weir_compare_has_a_real_command_line_and_refuses_one_core() {
    let bin = env!("CARGO_BIN_EXE_weir-compare");
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--servers",
        "--scenarios",
        "--seconds",
        "--server-cpu",
        "--client-cpu",
        "--out",
        "curves",
        "points",
    ] {
        assert!(text.contains(flag), "--help shows {flag}: {text}");
    }
    let bad = Command::new(bin)
        .args(["--servers", "nginx-9"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values"));
    let same = Command::new(bin)
        .args(["--server-cpu", "1", "--client-cpu", "1"])
        .output()
        .unwrap();
    assert_eq!(same.status.code(), Some(2));
    // One core available (the affinity says so): no numbers that would mean nothing.
    let one = Command::new("taskset")
        .args(["-c", "0", bin])
        .output()
        .unwrap();
    assert_eq!(one.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&one.stderr).contains("refusing"),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
}

/// hyper-ref has a real command line: its own description, a refused address exits 2, and
/// `--port 127.0.0.1:0` serves (it used to bind :8080 whatever it was told and panic).
#[test]
fn hyper_ref_has_a_real_command_line() {
    let bin = env!("CARGO_BIN_EXE_hyper-ref");
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.starts_with("hyper-ref: hyper 1.x") && text.contains("--flavor"),
        "{text}"
    );
    let bad = Command::new(bin)
        .args(["--port", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let mut srv = Command::new(bin)
        .args(["--port", "127.0.0.1:0"])
        .env_remove("SERVER_PORT")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(srv.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut c,
        b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut c, &mut answer).unwrap();
    let _ = srv.kill();
    let _ = srv.wait();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("pong"),
        "{answer}"
    );
}

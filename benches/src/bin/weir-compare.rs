//! The cross-runtime comparison: builds weir-tokio, weir-smol, weir-std, weir-uring and the hyper
//! reference, runs each pinned to core 0 with weir-load pinned to core 1, and records
//! requests/s, p50, p99, server CPU per request and RSS per idle connection. Prints a
//! markdown table and writes it with an SVG chart to `benches/results/`.
//!
//! `cargo run --release -p weir-bench --bin weir-compare -- [--seconds 5] [--idle 5000]`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use plotters::prelude::*;

struct Args {
    seconds: u64,
    idle: usize,
    connections: usize,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        idle: 5000,
        connections: 50,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = || {
            argv.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match argv[i].as_str() {
            "--seconds" => a.seconds = v() as u64,
            "--idle" => a.idle = v(),
            "--connections" | "-c" => a.connections = v(),
            _ => usage(),
        }
        i += 2;
    }
    a
}

fn usage() -> ! {
    eprintln!("usage: weir-compare [--seconds N] [--idle CONNECTIONS] [-c CONNECTIONS]");
    std::process::exit(2);
}

const SERVERS: [&str; 5] = [
    "weir-tokio",
    "weir-smol",
    "weir-std",
    "weir-uring",
    "hyper-ref",
];

struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path) -> Running {
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(bin)
        .env("SERVER_PORT", "127.0.0.1:0")
        .env("ACCESS_LOG", "false")
        // Limiter, metrics and request IDs stay on; the limit sits above any load here.
        .env("RATE_LIMIT", "100000000")
        .env("IO_THREADS", "1")
        .env("WORKER_COUNT", "1")
        .env("HYPER_FLAVOR", "current")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address line");
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("listening on <addr>");
    Running { child, addr }
}

/// (user + system) CPU seconds and RSS bytes of `pid`.
fn proc_stat(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = 100.0; // USER_HZ on Linux
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (num(11) + num(12)) / ticks;
    let rss = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 4096;
    (cpu, rss)
}

#[derive(Default, Clone)]
struct Cell {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_req: f64,
    ok: bool,
}

fn load(
    load_bin: &Path,
    server: &Running,
    path: &str,
    body: Option<&str>,
    c: usize,
    secs: u64,
) -> Cell {
    let (cpu0, _) = proc_stat(server.child.id());
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1"]).arg(load_bin).args([
        "-t",
        "1",
        "-c",
        &c.to_string(),
        "-z",
        &format!("{secs}s"),
        "--warmup",
        "1s",
        "--json",
    ]);
    cmd.args(["--max-error-rate", "1"]);
    if let Some(b) = body {
        cmd.args(["-d", b]);
    }
    let out = cmd
        .arg(format!("http://{}{path}", server.addr))
        .output()
        .expect("run weir-load");
    let (cpu1, _) = proc_stat(server.child.id());
    let r: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let requests = r["requests"].as_f64().unwrap_or(0.0);
    // Requests still in flight when the run ends are not failures.
    let ok = requests > 0.0 && r["failures"].as_u64() == Some(0);
    Cell {
        rps: r["requests_per_sec"].as_f64().unwrap_or(0.0),
        p50_ms: r["latency_us"]["p50"].as_f64().unwrap_or(0.0) / 1e3,
        p99_ms: r["latency_us"]["p99"].as_f64().unwrap_or(0.0) / 1e3,
        // CPU includes the 1 s warm-up; requests/s × (secs + 1) approximates its requests.
        cpu_us_per_req: (cpu1 - cpu0) * 1e6
            / (r["requests_per_sec"].as_f64().unwrap_or(1.0) * (secs as f64 + 1.0)).max(1.0),
        ok,
    }
}

/// Opens `n` keep-alive connections, one `/ping` each, and returns the server's RSS growth
/// per connection while they are all open and idle.
fn idle_rss_per_conn(server: &Running, n: usize) -> Option<f64> {
    let (_, before) = proc_stat(server.child.id());
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(server.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).ok()?;
        conns.push(s);
    }
    // Let idle sessions release their buffers (weir: after SHRINK_AFTER = 1 s).
    std::thread::sleep(Duration::from_millis(1500));
    let (_, after) = proc_stat(server.child.id());
    drop(conns);
    Some((after.saturating_sub(before)) as f64 / n as f64)
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() {
    let a = args();
    raise_fd_limit();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    eprintln!("building the release binaries…");
    let ok = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "weir-tokio",
            "-p",
            "weir-smol",
            "-p",
            "weir-std",
            "-p",
            "weir-uring",
            "-p",
            "weir-bench",
        ])
        .status()
        .expect("cargo build");
    assert!(ok.success(), "build failed");
    let bin = |name: &str| root.join("target/release").join(name);
    let scenarios: [(&str, &str, Option<&str>, usize); 4] = [
        ("ping", "/ping", None, a.connections),
        (
            "compute/fast",
            "/api/v1/compute/fast",
            Some("{\"number\": 42}"),
            a.connections,
        ),
        (
            "compute/intensive",
            "/api/v1/compute/intensive",
            Some("{\"number\": 42}"),
            a.connections,
        ),
        ("sleep 1000 conns", "/api/v1/sleep?ms=100", None, 1000),
    ];
    let mut table: Vec<(String, Vec<Option<Cell>>, Option<f64>)> = Vec::new();
    for server in SERVERS {
        eprintln!("measuring {server}…");
        let mut cells = Vec::new();
        for (name, path, body, c) in scenarios {
            let running = start(&bin(server));
            let supported = server != "hyper-ref" || matches!(name, "ping" | "compute/fast");
            cells.push(
                supported.then(|| load(&bin("weir-load"), &running, path, body, c, a.seconds)),
            );
        }
        let running = start(&bin(server));
        let rss = idle_rss_per_conn(&running, a.idle);
        table.push((server.to_string(), cells, rss));
    }
    let mut md = String::new();
    md.push_str(&format!(
        "Server pinned to core 0 (1 I/O thread, 1 worker), weir-load pinned to core 1 (1 thread, {} connections unless noted), {} s per run after 1 s warm-up; weir with its rate limiter, metrics and request IDs on, access log off.\n\n",
        a.connections, a.seconds
    ));
    md.push_str("| server | scenario | requests/s | p50 ms | p99 ms | server CPU µs/req |\n|---|---|---:|---:|---:|---:|\n");
    for (server, cells, _) in &table {
        for ((name, ..), cell) in scenarios.iter().zip(cells) {
            match cell {
                Some(c) => md.push_str(&format!(
                    "| {server} | {name} | {:.0}{} | {:.3} | {:.3} | {:.2} |\n",
                    c.rps,
                    if c.ok { "" } else { " (errors)" },
                    c.p50_ms,
                    c.p99_ms,
                    c.cpu_us_per_req
                )),
                None => md.push_str(&format!("| {server} | {name} | n/a | | | |\n")),
            }
        }
    }
    md.push_str(&format!(
        "\n| server | RSS per idle keep-alive connection ({} connections) |\n|---|---:|\n",
        a.idle
    ));
    for (server, _, rss) in &table {
        md.push_str(&format!(
            "| {server} | {} |\n",
            rss.map_or("n/a".into(), |b| format!("{:.0} bytes", b))
        ));
    }
    println!("{md}");
    let out_dir = root.join("benches/results");
    std::fs::create_dir_all(&out_dir).expect("results dir");
    std::fs::write(out_dir.join("compare.md"), &md).expect("write table");
    chart(
        &out_dir.join("compare.svg"),
        &table,
        &scenarios.iter().map(|s| s.0).collect::<Vec<_>>(),
    )
    .expect("draw chart");
    eprintln!("wrote benches/results/compare.md and compare.svg");
}

type Row = (String, Vec<Option<Cell>>, Option<f64>);

fn chart(path: &Path, table: &[Row], scenarios: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1500, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, rest) = root.split_horizontally(550);
    let (right, mem) = rest.split_horizontally(550);
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
    ];
    for (area, title, pick) in [
        (&left, "requests/s (log scale; higher is better)", 0usize),
        (
            &right,
            "p99 latency, ms (log scale; lower is better)",
            1usize,
        ),
    ] {
        let value = |c: &Cell| if pick == 0 { c.rps } else { c.p99_ms };
        let values = || {
            table
                .iter()
                .flat_map(|r| r.1.iter().flatten().map(value))
                .filter(|v| *v > 0.0)
        };
        let max = values().fold(0.0f64, f64::max).max(1e-3) * 3.0;
        let floor = values().fold(f64::MAX, f64::min).min(max / 4.0) / 2.0;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..scenarios.len() as f64, (floor..max).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(scenarios.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = (*x - 0.5).round();
                if (*x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                    scenarios
                        .get(i as usize)
                        .map_or(String::new(), |s| s.to_string())
                } else {
                    String::new()
                }
            })
            .draw()?;
        let width = 0.8 / table.len() as f64;
        for (si, (server, cells, _)) in table.iter().enumerate() {
            let color = colors[si % colors.len()];
            let bars = cells
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|c| (i, value(c))))
                .map(|(i, v)| {
                    let x0 = i as f64 + 0.1 + si as f64 * width;
                    Rectangle::new(
                        [(x0, floor), (x0 + width * 0.9, v.max(floor))],
                        color.filled(),
                    )
                });
            chart
                .draw_series(bars)?
                .label(server.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(if pick == 0 {
                SeriesLabelPosition::UpperRight
            } else {
                SeriesLabelPosition::UpperLeft
            })
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()?;
    }
    // Third panel: RSS per idle keep-alive connection, one bar per server.
    let rss: Vec<(usize, f64)> = table
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.2.map(|b| (i, b / 1024.0)))
        .collect();
    let max = rss.iter().map(|r| r.1).fold(1.0f64, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&mem)
        .caption(
            "RSS per idle connection, KiB (lower is better)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..table.len() as f64, 0f64..max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(table.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = (*x - 0.5).round();
            if (*x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                table.get(i as usize).map_or(String::new(), |r| r.0.clone())
            } else {
                String::new()
            }
        })
        .draw()?;
    chart.draw_series(rss.iter().map(|&(i, kib)| {
        Rectangle::new(
            [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, kib)],
            colors[i % colors.len()].filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}

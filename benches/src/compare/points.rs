//! The point comparison: each server at one load per scenario (closed loop), with requests/s,
//! p50, p99 and CPU per request, and its RSS per idle keep-alive connection; a Markdown table
//! and a three-panel SVG chart.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use super::{Bench, LoadSpec, Machine, Running};

/// The scenarios of the point comparison: (name, path, body, connections; `None`: `-c`).
pub const SCENARIOS: [(&str, &str, Option<&str>, Option<usize>); 4] = [
    ("ping", "/ping", None, None),
    (
        "compute/fast",
        "/api/v1/compute/fast",
        Some("{\"number\": 42}"),
        None,
    ),
    (
        "compute/intensive",
        "/api/v1/compute/intensive",
        Some("{\"number\": 42}"),
        None,
    ),
    ("sleep 1000 conns", "/api/v1/sleep?ms=100", None, Some(1000)),
];

/// One measured cell.
#[derive(Default, Clone, Debug)]
pub struct Cell {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_req: f64,
    ok: bool,
}

/// Runs the point comparison of `servers` × `scenarios` (indices into [`SCENARIOS`]) and
/// writes `compare.md` and `compare.svg` into `out`; returns the Markdown.
pub fn run(
    bench: &Bench,
    servers: &[&str],
    scenarios: &[usize],
    connections: usize,
    seconds: u64,
    idle: usize,
    out: &Path,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut table: Vec<Row> = Vec::new();
    for &server in servers {
        eprintln!("measuring {server}…");
        let mut cells = Vec::new();
        for &i in scenarios {
            let (_, path, body, conns) = SCENARIOS[i];
            let supported = super::serves(server, path);
            let cell = supported
                .then(|| bench.start(server))
                .flatten()
                .map(|running| {
                    let m = bench.load(
                        &running,
                        &LoadSpec {
                            path,
                            body,
                            connections: conns.unwrap_or(connections),
                            seconds,
                            rate: None,
                        },
                    );
                    Cell {
                        rps: m.rps,
                        p50_ms: m.p50_us as f64 / 1e3,
                        p99_ms: m.p99_us as f64 / 1e3,
                        cpu_us_per_req: m.cpu_us_per_req,
                        ok: m.requests > 0 && m.errors == 0,
                    }
                });
            cells.push(cell);
        }
        let rss = (idle > 0)
            .then(|| bench.start(server))
            .flatten()
            .and_then(|running| idle_rss_per_conn(&running, idle));
        table.push((server.to_string(), cells, rss));
    }
    let names: Vec<&str> = scenarios.iter().map(|&i| SCENARIOS[i].0).collect();
    let mut md = String::new();
    md.push_str(&format!(
        "Server pinned to core {} (1 I/O thread, 1 worker), weir-load pinned to core {} (1 thread, {} connections unless noted), {} s per run after 1 s warm-up; weir with its rate limiter, metrics and request IDs on, access log off. {}\n\n",
        bench.server_cpu,
        bench.client_cpu,
        connections,
        seconds,
        Machine::describe(&bench.root).line()
    ));
    md.push_str("| server | scenario | requests/s | p50 ms | p99 ms | server CPU µs/req |\n|---|---|---:|---:|---:|---:|\n");
    for (server, cells, _) in &table {
        for (name, cell) in names.iter().zip(cells) {
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
    if idle > 0 {
        md.push_str(&format!(
            "\n| server | RSS per idle keep-alive connection ({idle} connections) |\n|---|---:|\n"
        ));
        for (server, _, rss) in &table {
            md.push_str(&format!(
                "| {server} | {} |\n",
                rss.map_or("n/a".into(), |b| format!("{:.0} bytes", b))
            ));
        }
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("compare.md"), &md)?;
    chart(&out.join("compare.svg"), &table, &names)?;
    Ok(md)
}

/// Opens `n` keep-alive connections, one `/ping` each, and returns the server's RSS growth
/// per connection while they are all open and idle.
fn idle_rss_per_conn(server: &Running, n: usize) -> Option<f64> {
    let (_, before) = server.cpu_and_rss();
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
    let (_, after) = server.cpu_and_rss();
    drop(conns);
    Some((after.saturating_sub(before)) as f64 / n as f64)
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
            .x_label_formatter(&|x| super::svg::category(*x, scenarios))
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
    let names: Vec<&str> = table.iter().map(|r| r.0.as_str()).collect();
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
        .x_label_formatter(&|x| super::svg::category(*x, &names))
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

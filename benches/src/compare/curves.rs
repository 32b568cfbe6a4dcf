//! The curves: how each server behaves as load rises, not one point.
//!
//! 1. Latency against offered load: each server's closed-loop maximum on an endpoint, then
//!    weir-load at constant rates from 10 % to 120 % of it (latency from the intended send
//!    time: coordinated omission corrected), p50, p99, p99.9 and errors per step.
//! 2. Connections: 10, 100, 1,000, 10,000 keep-alive connections at one fixed rate on `/ping`:
//!    p99 and the server's resident memory per connection.
//! 3. Overload: `compute/intensive` offered twice the maximum: goodput, the share refused with
//!    503, and the p99 of the requests that succeeded.
//!
//! [`Study::run`] measures; [`Study::write`] writes `curves.json` (every point), `curves.md`,
//! one SVG per chart and `index.html`, a self-contained page showing them — separate so the
//! report can be checked on known data.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::svg::{self, Labels, Series};
use super::{Bench, LoadSpec, Machine, Measured};

/// The endpoints of the latency curves: (name, path, body).
pub const ENDPOINTS: [(&str, &str, Option<&str>); 3] = [
    ("ping", "/ping", None),
    (
        "compute-fast",
        "/api/v1/compute/fast",
        Some("{\"number\": 42}"),
    ),
    (
        "compute-intensive",
        "/api/v1/compute/intensive",
        Some("{\"number\": 42}"),
    ),
];

/// Offered load as fractions of the measured maximum.
pub const STEPS: [f64; 8] = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.2];

/// The job queue's places in the overload runs (`QUEUE_SIZE`): about 16 ms of work for the
/// one worker, so what cannot be served soon is refused at once with a 503.
pub const OVERLOAD_QUEUE: usize = 64;

/// Connections offering the overload: enough that a slow answer never holds back the
/// offered rate.
pub const OVERLOAD_CONNECTIONS: usize = 500;

/// Keep-alive connections of the connection sweep.
pub const CONNECTIONS: [usize; 4] = [10, 100, 1_000, 10_000];

/// One step of a latency curve.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Offered requests/s.
    pub offered: f64,
    /// What was measured.
    pub measured: Measured,
}

/// One server's latency curve on one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    /// The server.
    pub server: String,
    /// The endpoint's name.
    pub endpoint: String,
    /// Its closed-loop maximum, requests/s.
    pub max_rps: f64,
    /// The steps, in order of offered load.
    pub steps: Vec<Step>,
}

/// One point of the connection sweep.
#[derive(Debug, Clone, Serialize)]
pub struct ConnPoint {
    /// The server.
    pub server: String,
    /// Keep-alive connections.
    pub connections: usize,
    /// What was measured.
    pub measured: Measured,
    /// Resident memory growth per connection while they were open, bytes.
    pub rss_per_conn: f64,
}

/// One server under overload.
#[derive(Debug, Clone, Serialize)]
pub struct Overload {
    /// The server.
    pub server: String,
    /// Offered requests/s (twice the maximum).
    pub offered: f64,
    /// What was measured.
    pub measured: Measured,
}

/// Every point of one run, with where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Study {
    /// The machine, commit and date.
    pub machine: Machine,
    /// Settings: seconds per step, connections of the latency curves, the sweep's rate.
    pub seconds: u64,
    /// Connections of the latency curves.
    pub connections: usize,
    /// The connection sweep's fixed rate, requests/s.
    pub sweep_rate: f64,
    /// Latency against offered load.
    pub curves: Vec<Curve>,
    /// The connection sweep.
    pub sweep: Vec<ConnPoint>,
    /// The overload runs.
    pub overload: Vec<Overload>,
}

impl Study {
    /// Measures `servers` (those that start; weir-uring may not) on this machine.
    pub fn run(
        bench: &Bench,
        servers: &[&str],
        endpoints: &[usize],
        seconds: u64,
        connections: usize,
        sweep_rate: f64,
    ) -> Study {
        let machine = Machine::describe(&bench.root);
        let mut curves = Vec::new();
        let mut overload = Vec::new();
        for &e in endpoints {
            let (name, path, body) = ENDPOINTS[e];
            for &server in servers {
                if !super::serves(server, path) {
                    continue;
                }
                let Some(running) = bench.start(server) else {
                    continue;
                };
                eprintln!("{server} {name}: maximum…");
                let spec = LoadSpec {
                    path,
                    body,
                    connections,
                    seconds,
                    rate: None,
                };
                let max_rps = bench.load(&running, &spec).rps;
                if max_rps <= 0.0 {
                    eprintln!("{server} {name}: no answers; skipped");
                    continue;
                }
                let steps = STEPS
                    .iter()
                    .map(|f| {
                        let offered = (max_rps * f).max(1.0);
                        eprintln!("{server} {name}: {offered:.0} req/s…");
                        let measured = bench.load(
                            &running,
                            &LoadSpec {
                                rate: Some(offered),
                                ..spec.clone()
                            },
                        );
                        Step { offered, measured }
                    })
                    .collect();
                curves.push(Curve {
                    server: server.to_owned(),
                    endpoint: name.to_owned(),
                    max_rps,
                    steps,
                });
                if name == "compute-intensive" {
                    drop(running);
                    let offered = 2.0 * max_rps;
                    eprintln!("{server} overload: {offered:.0} req/s for 10 s…");
                    // A queue of OVERLOAD_QUEUE places and enough connections to offer twice
                    // the maximum whatever the latency: what the queue's refusals buy.
                    let measured = bench
                        .start_with(server, &[("QUEUE_SIZE", &OVERLOAD_QUEUE.to_string())])
                        .map(|running| {
                            bench.load(
                                &running,
                                &LoadSpec {
                                    rate: Some(offered),
                                    seconds: 10,
                                    connections: OVERLOAD_CONNECTIONS,
                                    ..spec.clone()
                                },
                            )
                        });
                    if let Some(measured) = measured {
                        overload.push(Overload {
                            server: server.to_owned(),
                            offered,
                            measured,
                        });
                    }
                }
            }
        }
        let mut sweep = Vec::new();
        for &server in servers {
            for &n in &CONNECTIONS {
                let Some(running) = bench.start(server) else {
                    continue;
                };
                eprintln!("{server}: {n} connections at {sweep_rate:.0} req/s…");
                let (_, before) = running.cpu_and_rss();
                let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
                let sampler = {
                    let (peak, pid) = (peak.clone(), running.pid());
                    std::thread::spawn(move || {
                        for _ in 0..(seconds + 1) * 10 {
                            std::thread::sleep(std::time::Duration::from_millis(100));
                            let (_, rss, _) = weir_kit::process::cpu_rss_start(Some(pid));
                            peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                        }
                    })
                };
                let measured = bench.load(
                    &running,
                    &LoadSpec {
                        path: "/ping",
                        body: None,
                        connections: n,
                        seconds,
                        rate: Some(sweep_rate),
                    },
                );
                let _ = sampler.join();
                let grown = peak
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .saturating_sub(before);
                sweep.push(ConnPoint {
                    server: server.to_owned(),
                    connections: n,
                    measured,
                    rss_per_conn: grown as f64 / n as f64,
                });
            }
        }
        Study {
            machine,
            seconds,
            connections,
            sweep_rate,
            curves,
            sweep,
            overload,
        }
    }

    /// Writes the report into `out` (created): `curves.json`, `curves.md`, the SVG charts and
    /// `index.html`. Returns the charts' file names.
    pub fn write(&self, out: &Path) -> std::io::Result<Vec<String>> {
        std::fs::create_dir_all(out)?;
        std::fs::write(
            out.join("curves.json"),
            serde_json::to_string_pretty(self).expect("a study serializes"),
        )?;
        let servers = self.servers();
        let color = |s: &str| servers.iter().position(|x| x == s).unwrap_or(0);
        let footer = self.machine.line();
        let mut charts: Vec<(String, String, String)> = Vec::new();
        for (endpoint, ..) in ENDPOINTS {
            let curves: Vec<&Curve> = self
                .curves
                .iter()
                .filter(|c| c.endpoint == endpoint)
                .collect();
            if curves.is_empty() {
                continue;
            }
            for (pct, pick) in [("p99", 99u8), ("p50", 50)] {
                let series: Vec<Series> = curves
                    .iter()
                    .map(|c| Series {
                        name: c.server.clone(),
                        color: color(&c.server),
                        points: c
                            .steps
                            .iter()
                            .map(|s| {
                                let us = if pick == 99 {
                                    s.measured.p99_us
                                } else {
                                    s.measured.p50_us
                                };
                                (s.offered, us as f64 / 1000.0)
                            })
                            .collect(),
                    })
                    .collect();
                let title = format!("{endpoint}: {pct} latency against offered load");
                let file = format!("latency-{endpoint}-{pct}.svg");
                let text = svg::lines(
                    &Labels {
                        title: &title,
                        x: "offered load, requests/s",
                        y: &format!("{pct} latency, ms (log)"),
                        footer: &footer,
                    },
                    &series,
                    false,
                    true,
                );
                charts.push((file, title, text));
            }
        }
        if !self.sweep.is_empty() {
            for (what, file, y, log_y) in [
                (
                    "p99 latency",
                    "connections-p99.svg",
                    "p99 latency, ms (log)",
                    true,
                ),
                (
                    "RSS per connection",
                    "connections-rss.svg",
                    "resident memory per connection, KiB",
                    false,
                ),
            ] {
                let series: Vec<Series> = servers
                    .iter()
                    .filter_map(|s| {
                        let points: Vec<(f64, f64)> = self
                            .sweep
                            .iter()
                            .filter(|p| &p.server == s)
                            .map(|p| {
                                let y = if log_y {
                                    p.measured.p99_us as f64 / 1000.0
                                } else {
                                    p.rss_per_conn / 1024.0
                                };
                                (p.connections as f64, y)
                            })
                            .collect();
                        (!points.is_empty()).then(|| Series {
                            name: s.clone(),
                            color: color(s),
                            points,
                        })
                    })
                    .collect();
                let title = format!(
                    "/ping at {:.0} req/s: {what} against keep-alive connections",
                    self.sweep_rate
                );
                let text = svg::lines(
                    &Labels {
                        title: &title,
                        x: "keep-alive connections (log)",
                        y,
                        footer: &footer,
                    },
                    &series,
                    true,
                    log_y,
                );
                charts.push((file.to_owned(), title, text));
            }
        }
        if !self.overload.is_empty() {
            let bars: Vec<(String, usize, f64)> = self
                .overload
                .iter()
                .map(|o| (o.server.clone(), color(&o.server), o.measured.goodput))
                .collect();
            let title = "compute/intensive offered 2x its maximum: goodput".to_owned();
            let text = svg::bars(
                &Labels {
                    title: &title,
                    x: "server",
                    y: "goodput, successful requests/s",
                    footer: &footer,
                },
                &bars,
            );
            charts.push(("overload-goodput.svg".into(), title, text));
        }
        for (file, _, text) in &charts {
            std::fs::write(out.join(file), text)?;
        }
        std::fs::write(out.join("curves.md"), self.markdown(&charts))?;
        std::fs::write(out.join("index.html"), self.html(&charts))?;
        Ok(charts.into_iter().map(|c| c.0).collect())
    }

    fn servers(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        let all = self
            .curves
            .iter()
            .map(|c| &c.server)
            .chain(self.sweep.iter().map(|p| &p.server))
            .chain(self.overload.iter().map(|o| &o.server));
        for s in all {
            if !v.contains(s) {
                v.push(s.clone());
            }
        }
        v
    }

    /// The summary: one table per study and the charts by file name.
    pub fn markdown(&self, charts: &[(String, String, String)]) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# weir: curves\n\n{}\n", self.machine.line());
        let _ = writeln!(
            s,
            "Each server pinned to one core (1 I/O thread, 1 worker; weir with its rate limiter, metrics and request IDs on, access log off), weir-load pinned to another; {} s per step after 1 s of warm-up, {} connections for the latency curves.\n",
            self.seconds, self.connections
        );
        let _ = writeln!(s, "## Latency against offered load\n");
        let _ = writeln!(
            s,
            "| server | endpoint | max req/s | offered | p50 ms | p99 ms | p99.9 ms | errors | sent late p50/p99 µs |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for c in &self.curves {
            for st in &c.steps {
                let m = &st.measured;
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {} / {} |",
                    c.server,
                    c.endpoint,
                    c.max_rps,
                    st.offered,
                    m.p50_us as f64 / 1e3,
                    m.p99_us as f64 / 1e3,
                    m.p999_us as f64 / 1e3,
                    m.errors,
                    m.late_p50_us,
                    m.late_p99_us
                );
            }
        }
        let _ = writeln!(
            s,
            "\n## Keep-alive connections at {:.0} req/s on /ping\n",
            self.sweep_rate
        );
        let _ = writeln!(
            s,
            "| server | connections | p99 ms | RSS per connection | errors |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for p in &self.sweep {
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} | {:.0} B | {} |",
                p.server,
                p.connections,
                p.measured.p99_us as f64 / 1e3,
                p.rss_per_conn,
                p.measured.errors
            );
        }
        let _ = writeln!(
            s,
            "\n## Overload: compute/intensive at twice the maximum for 10 s ({OVERLOAD_CONNECTIONS} connections, QUEUE_SIZE={OVERLOAD_QUEUE})\n"
        );
        let _ = writeln!(
            s,
            "| server | offered req/s | goodput req/s | 503 share | p99 of successes ms |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for o in &self.overload {
            let m = &o.measured;
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {:.1} % | {:.3} |",
                o.server,
                o.offered,
                m.goodput,
                m.status_503 as f64 * 100.0 / m.requests.max(1) as f64,
                m.ok_p99_us as f64 / 1e3
            );
        }
        let _ = writeln!(s, "\n## Charts\n");
        for (file, title, _) in charts {
            let _ = writeln!(s, "![{title}]({file})");
        }
        s
    }

    /// One page, no outside resource: the charts inline, the tables, the machine.
    pub fn html(&self, charts: &[(String, String, String)]) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>weir: curves</title>\
             <style>body{{font-family:sans-serif;margin:2em;max-width:1700px}}figure{{display:inline-block;margin:0.5em}}\
             figcaption{{font-size:0.9em;color:#444}}</style></head><body>\n<h1>weir: curves</h1>\n<p id=\"machine\">{}</p>\n",
            escape(&self.machine.line())
        );
        for (file, title, text) in charts {
            let body = text.find("<svg").map_or(text.as_str(), |at| &text[at..]);
            let _ = writeln!(
                h,
                "<figure class=\"chart\" data-file=\"{}\">{body}<figcaption>{}</figcaption></figure>",
                escape(file),
                escape(title)
            );
        }
        let _ = write!(
            h,
            "<h2>Every point</h2>\n<pre id=\"summary\">{}</pre>\n",
            escape(&self.markdown(charts))
        );
        let _ = write!(
            h,
            "<script>document.body.dataset.charts = document.querySelectorAll('figure.chart svg').length;</script>\n</body></html>\n"
        );
        h
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

//! `weir-load [OPTIONS] URL`: see `weir-load --help` and `weir_bench::load`.

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use weir_bench::load::args::{Args, FailOn, Scenario, Target};
use weir_bench::load::client::{self, Outcome, Plan};
use weir_bench::load::report::Report;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("weir-load: {msg}");
    std::process::exit(2);
}

fn main() {
    let args = Args::parse();
    let scenarios: Vec<Option<Scenario>> = match args.scenario {
        Some(Scenario::Seed) => vec![Some(Scenario::Fast), Some(Scenario::Intensive)],
        other => vec![other],
    };
    let mut worst = 0.0f64;
    let mut reports = Vec::new();
    let mut all: Option<Outcome> = None;
    for scenario in scenarios {
        let plan = plan(&args, scenario);
        if !args.json {
            eprintln!(
                "weir-load: {} connections, {} threads, {} against {}{}",
                plan.connections,
                plan.threads,
                match (plan.total, plan.duration) {
                    (Some(n), _) => format!("{n} requests"),
                    (_, Some(d)) => format!("{d:?}"),
                    _ => unreachable!("plan sets one"),
                },
                plan.addr,
                plan.rate
                    .map_or(String::new(), |r| format!(" at {r} req/s")),
            );
        }
        let show = (!args.report_interval.is_zero() && !args.json).then_some(args.report_interval);
        let mut progress = Progress::new(show, &plan);
        let outcome = client::run(plan, progress.interval(), |done, failed, elapsed| {
            progress.update(done, failed, elapsed)
        });
        progress.finish();
        let mut report = Report::new(&outcome);
        report.set_percentiles(&outcome, &args.percentiles);
        report.scenario = scenario.map(|s| format!("{s:?}").to_lowercase());
        worst = worst.max(report.error_rate(args.fail_on == FailOn::ClientErrors));
        if !args.json {
            print!("{}", report.text());
            if report.requests > 0 && report.errors_by_kind.get("connect") == Some(&report.requests)
            {
                let reason = report.errors.first().map_or("", |e| e.reason.as_str());
                eprintln!(
                    "weir-load: every request failed to connect ({reason}): is the server running at {}?",
                    args.url
                );
            }
        }
        match &mut all {
            None => all = Some(outcome),
            Some(sum) => {
                sum.tally.merge(&outcome.tally);
                sum.elapsed += outcome.elapsed;
            }
        }
        reports.push(report);
    }
    if args.json {
        // One shape whatever the scenario: a single report; for `seed` it sums the two
        // scenarios and carries each in `parts`.
        let report = if reports.len() == 1 {
            reports.pop().expect("one report")
        } else {
            let all = all.expect("at least one scenario ran");
            let mut sum = Report::new(&all);
            sum.set_percentiles(&all, &args.percentiles);
            sum.scenario = Some("seed".into());
            sum.parts = reports;
            sum
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialize")
        );
    }
    let _ = std::io::stdout().flush();
    if worst > args.max_error_rate {
        eprintln!(
            "weir-load: error rate {:.2}% is above --max-error-rate {:.2}%",
            worst * 100.0,
            args.max_error_rate * 100.0
        );
        std::process::exit(1);
    }
}

/// Whether stderr is a terminal that can draw a bar: a terminal with a `TERM` other than
/// `dumb` (where indicatif draws nothing at all), so everything else gets plain lines.
fn can_draw_a_bar() -> bool {
    let term = std::env::var("TERM").unwrap_or_default();
    std::io::stderr().is_terminal()
        && !term.is_empty()
        && term != "dumb"
        && !indicatif::ProgressDrawTarget::stderr().is_hidden()
}

/// What the user sees while a run goes on: on a terminal that can draw it a progress bar
/// (requests, rate, failures, time left), elsewhere — a pipe, a log, `TERM=dumb` or unset —
/// one line per `--report-interval`.
struct Progress {
    every: Option<Duration>,
    bar: Option<ProgressBar>,
    /// The bar counts requests (`-n`); otherwise milliseconds of a `-z` run.
    by_requests: bool,
    last: (u64, Duration),
}

impl Progress {
    fn new(every: Option<Duration>, plan: &Plan) -> Progress {
        let tty = can_draw_a_bar();
        let by_requests = plan.total.is_some();
        let bar = (tty && every.is_some()).then(|| {
            let len = match (plan.total, plan.duration) {
                (Some(n), _) => n,
                (_, Some(d)) => d.as_millis() as u64,
                _ => 0,
            };
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template(
                    "[{elapsed_precise}] {wide_bar} {percent:>3}%  {msg}  (left {eta})",
                )
                .expect("a valid progress template"),
            );
            bar
        });
        Progress {
            // A bar is redrawn five times a second; the rate shown covers the last second.
            every: if bar.is_some() {
                Some(Duration::from_millis(200))
            } else {
                every
            },
            bar,
            by_requests,
            last: (0, Duration::ZERO),
        }
    }

    fn interval(&self) -> Option<Duration> {
        self.every
    }

    fn update(&mut self, done: u64, failed: u64, elapsed: Duration) {
        let dt = (elapsed - self.last.1).as_secs_f64().max(1e-9);
        let rate = (done - self.last.0) as f64 / dt;
        match &self.bar {
            Some(bar) => {
                bar.set_position(if self.by_requests {
                    done
                } else {
                    elapsed.as_millis() as u64
                });
                bar.set_message(format!("{done} requests  {rate:.0} req/s  {failed} failed"));
                // The rate shown is over the last second or so, not since the start.
                if elapsed - self.last.1 >= Duration::from_secs(1) {
                    self.last = (done, elapsed);
                }
            }
            None => {
                self.last = (done, elapsed);
                eprintln!(
                    "[{:>6.1}s] {done:>10} requests  {rate:>10.0} req/s  {failed} failed",
                    elapsed.as_secs_f64()
                );
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn plan(args: &Args, scenario: Option<Scenario>) -> Plan {
    let mut target = Target::parse(&args.url).unwrap_or_else(|e| fail(e));
    let mut method = args.method.clone();
    let mut body: Option<Vec<u8>> = match (&args.body, &args.body_file) {
        (Some(b), _) => Some(b.clone().into_bytes()),
        (_, Some(f)) => Some(
            std::fs::read(f).unwrap_or_else(|e| fail(format!("cannot read {}: {e}", f.display()))),
        ),
        _ => None,
    };
    let (mut connections, mut total) = (args.connections, args.requests);
    let explicit_c = std::env::args().any(|a| a == "-c" || a.starts_with("--connections"));
    if let Some(s) = scenario {
        let (path, n) = match s {
            Scenario::Fast => ("/api/v1/compute/fast", 1_000_000),
            _ => ("/api/v1/compute/intensive", 100_000),
        };
        target.path = path.into();
        method = Some("POST".into());
        body = Some(b"{\"number\": 42}".to_vec());
        if !explicit_c {
            connections = 500;
        }
        if total.is_none() && args.duration.is_none() {
            total = Some(n);
        }
    }
    if connections == 0 {
        fail("-c must be at least 1");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        fail("--rate must be a positive number");
    }
    if args.threads == Some(0) {
        fail("-t must be at least 1");
    }
    let method = method.unwrap_or_else(|| {
        if body.is_some() {
            "POST".into()
        } else {
            "GET".into()
        }
    });
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        fail(format!("invalid method {method:?}"));
    }
    let mut req = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: weir-load/{}\r\n",
        target.path,
        target.host,
        env!("CARGO_PKG_VERSION")
    );
    let mut has_ct = false;
    let has_auth = args.headers.iter().any(|h| {
        h.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("authorization"))
    });
    if let (Some(auth), false) = (&target.authorization, has_auth) {
        req.push_str(&format!("Authorization: {auth}\r\n"));
    }
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            fail(format!("invalid header {h:?}: expected 'Name: value'"))
        };
        if name.trim().is_empty() || h.contains('\r') || h.contains('\n') {
            fail(format!("invalid header {h:?}"));
        }
        has_ct |= name.trim().eq_ignore_ascii_case("content-type");
        let _ = std::fmt::Write::write_fmt(
            &mut req,
            format_args!("{}: {}\r\n", name.trim(), value.trim()),
        );
    }
    if args.no_keepalive {
        req.push_str("Connection: close\r\n");
    }
    if let Some(b) = &body {
        if !has_ct {
            req.push_str(&format!("Content-Type: {}\r\n", args.content_type.trim()));
        }
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    let mut request = req.into_bytes();
    if let Some(b) = &body {
        request.extend_from_slice(b);
    }
    let addr = target
        .authority
        .to_socket_addrs()
        .unwrap_or_else(|e| fail(format!("cannot resolve {}: {e}", target.authority)))
        .next()
        .unwrap_or_else(|| fail(format!("{} resolves to no address", target.authority)));
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(connections);
    let duration = if total.is_none() {
        Some(args.duration.unwrap_or(Duration::from_secs(10)))
    } else {
        None
    };
    Plan {
        addr,
        request,
        head_only: method.eq_ignore_ascii_case("HEAD"),
        connections,
        threads,
        total,
        duration,
        rate: args.rate,
        warmup: args.warmup,
        timeout: args.timeout,
        tls: target.tls.then(|| {
            weir_bench::load::tls::Tls::new(&target.host, args.cacert.as_deref(), args.insecure)
                .unwrap_or_else(|e| fail(e))
        }),
        keepalive: !args.no_keepalive,
    }
}

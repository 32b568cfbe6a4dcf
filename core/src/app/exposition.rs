//! `/metrics` and `/api/v1/stats`: every figure is listed once ([`App::figures`]), with the
//! name JSON gives it and the Prometheus family (and labels) it is a sample of; the JSON
//! object and the Prometheus/OpenMetrics text are two renderings of that one list, plus the
//! histograms only the text formats carry.
//!
//! Invariants: a figure with both names has one value in both renderings; every Prometheus
//! family's `# HELP`/`# TYPE` is written once, before its samples (the list keeps a family's
//! figures together); OpenMetrics names a counter family without `_total` and ends with
//! `# EOF`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{App, METHOD_NAMES, ProcessStats};
use crate::metrics::{DURATION_BOUNDS, DURATION_BOUNDS_US};
use crate::time::Now;

/// A Prometheus metric family.
struct Family {
    name: &'static str,
    counter: bool,
    help: &'static str,
}

macro_rules! family {
    ($id:ident, $name:literal, counter, $help:literal) => {
        const $id: &Family = &Family {
            name: $name,
            counter: true,
            help: $help,
        };
    };
    ($id:ident, $name:literal, gauge, $help:literal) => {
        const $id: &Family = &Family {
            name: $name,
            counter: false,
            help: $help,
        };
    };
}

family!(
    REQUESTS,
    "weir_requests_total",
    counter,
    "HTTP requests answered, by outcome."
);
family!(
    REJECTED,
    "weir_requests_rejected_total",
    counter,
    "Requests refused by a rate limit (429)."
);
family!(
    RATE_LIMITED,
    "weir_rate_limited_total",
    counter,
    "Requests refused with 429, by the limit that refused them."
);
family!(
    ACTIVE_REQUESTS,
    "weir_active_requests",
    gauge,
    "Requests in progress."
);
family!(
    ACTIVE_CONNECTIONS,
    "weir_active_connections",
    gauge,
    "Open client connections."
);
family!(
    CONNECTIONS,
    "weir_connections_total",
    counter,
    "Client connections, by outcome."
);
family!(
    JOBS,
    "weir_jobs_total",
    counter,
    "Intensive jobs, by how they ended."
);
family!(
    QUEUE_DEPTH,
    "weir_job_queue_depth",
    gauge,
    "Jobs waiting in the queue."
);
family!(
    QUEUE_CAPACITY,
    "weir_job_queue_capacity",
    gauge,
    "Places in the job queue."
);
family!(WORKERS, "weir_workers", gauge, "Configured worker threads.");
family!(
    LOG_DROPPED,
    "weir_log_lines_dropped_total",
    counter,
    "Log lines dropped by a full log buffer."
);
family!(
    DRAINING,
    "weir_draining",
    gauge,
    "1 while a graceful shutdown is under way."
);
family!(
    FLEET_SHARED,
    "weir_fleet_shared",
    gauge,
    "1 while the limit is shared through Redis, 0 on the local fallback share."
);
family!(
    FLEET_INSTANCES,
    "weir_fleet_instances",
    gauge,
    "Live instances of the cluster last seen in Redis."
);
family!(
    FLEET_LEASES,
    "weir_fleet_leases_total",
    counter,
    "Leases of the shared limit granted by Redis."
);
family!(
    FLEET_TOKENS,
    "weir_fleet_tokens_granted_total",
    counter,
    "Requests' worth of the shared limit granted in leases."
);
family!(
    FLEET_ERRORS,
    "weir_fleet_redis_errors_total",
    counter,
    "Failed Redis round trips."
);
family!(
    FLEET_RTT,
    "weir_fleet_redis_rtt_seconds",
    gauge,
    "The last Redis round trip."
);
family!(
    FLEET_FALLBACK,
    "weir_fleet_fallback_seconds_total",
    counter,
    "Time spent on the local fallback share."
);
family!(BUILD_INFO, "weir_build_info", gauge, "Build information.");
family!(UPTIME, "weir_uptime_seconds", gauge, "Seconds since start.");
family!(
    CPU,
    "process_cpu_seconds_total",
    counter,
    "Total user and system CPU time spent in seconds."
);
family!(
    RSS,
    "process_resident_memory_bytes",
    gauge,
    "Resident memory size in bytes."
);
family!(
    OPEN_FDS,
    "process_open_fds",
    gauge,
    "Number of open file descriptors."
);
family!(
    MAX_FDS,
    "process_max_fds",
    gauge,
    "Maximum number of open file descriptors."
);
family!(
    START_TIME,
    "process_start_time_seconds",
    gauge,
    "Start time of the process since unix epoch in seconds."
);

/// A figure's value.
#[derive(Clone, Copy, Debug)]
enum Value {
    Count(u64),
    Level(i64),
    Real(f64),
    /// `true`/`false` in JSON, 1/0 as a sample.
    Flag(bool),
    /// Microseconds in JSON, seconds as a sample.
    Micros(u64),
    Text(&'static str),
}

/// One figure of the list: its JSON key (`fleet.x` nests under `fleet`), and the family and
/// labels it is a sample of.
struct Figure {
    json: Option<&'static str>,
    sample: Option<(&'static Family, String)>,
    value: Value,
}

/// A figure in both renderings.
fn both(json: &'static str, family: &'static Family, labels: &str, value: Value) -> Figure {
    Figure {
        json: Some(json),
        sample: Some((family, labels.to_owned())),
        value,
    }
}

/// A figure only JSON reports (a derived one: a rate, a quantile).
fn json_only(json: &'static str, value: Value) -> Figure {
    Figure {
        json: Some(json),
        sample: None,
        value,
    }
}

/// A figure only the text formats report.
fn sample_only(family: &'static Family, labels: &str, value: Value) -> Figure {
    Figure {
        json: None,
        sample: Some((family, labels.to_owned())),
        value,
    }
}

impl App {
    /// Every figure `/metrics` reports, once (see the module docs).
    fn figures(&self, now: Now, p: &ProcessStats) -> Vec<Figure> {
        use Value::*;
        let t = self.totals();
        let lat = self.metrics.latency().snapshot();
        let q = self.queue.stats();
        let load = |a: &AtomicU64| Count(a.load(Ordering::Relaxed));
        let wait = self.queue.queue_wait.snapshot();
        let success_rate = if t.total == 0 {
            100.0
        } else {
            t.success as f64 * 100.0 / t.total as f64
        };
        let (global, per_ip) = self.rate_limited();
        let uptime = now.mono.since(self.started.mono).as_secs_f64();
        let mut f = vec![
            json_only("total_requests", Count(t.total)),
            both(
                "success_count",
                REQUESTS,
                "outcome=\"success\"",
                Count(t.success),
            ),
            both(
                "error_count",
                REQUESTS,
                "outcome=\"error\"",
                Count(t.errors),
            ),
            both("rejected_count", REJECTED, "", Count(t.rejected)),
            sample_only(RATE_LIMITED, "policy=\"global\"", Count(global)),
            sample_only(RATE_LIMITED, "policy=\"per_ip\"", Count(per_ip)),
            json_only("success_rate", Real((success_rate * 100.0).round() / 100.0)),
            json_only("avg_latency_us", Count(lat.mean().round() as u64)),
            json_only("p50_latency_us", Count(lat.quantile(0.50))),
            json_only("p95_latency_us", Count(lat.quantile(0.95))),
            json_only("p99_latency_us", Count(lat.quantile(0.99))),
            json_only(
                "requests_per_sec",
                Real((self.requests_per_sec(now, t.total) * 10.0).round() / 10.0),
            ),
            both(
                "active_requests",
                ACTIVE_REQUESTS,
                "",
                Level(t.active_requests),
            ),
            both(
                "active_connections",
                ACTIVE_CONNECTIONS,
                "",
                Level(t.active_connections),
            ),
            json_only("connections_total", Count(t.connections_total)),
            sample_only(
                CONNECTIONS,
                "outcome=\"accepted\"",
                Count(t.connections_accepted()),
            ),
            both(
                "connections_refused",
                CONNECTIONS,
                "outcome=\"refused\"",
                Count(t.connections_refused),
            ),
            both(
                "jobs_completed",
                JOBS,
                "outcome=\"completed\"",
                load(&q.completed),
            ),
            both(
                "jobs_rejected",
                JOBS,
                "outcome=\"rejected\"",
                load(&q.rejected),
            ),
            both(
                "jobs_cancelled",
                JOBS,
                "outcome=\"cancelled\"",
                load(&q.cancelled),
            ),
            both(
                "jobs_timed_out",
                JOBS,
                "outcome=\"timed_out\"",
                load(&q.timed_out),
            ),
            both("jobs_failed", JOBS, "outcome=\"failed\"", load(&q.failed)),
            both(
                "queue_depth",
                QUEUE_DEPTH,
                "",
                Count(self.queue.depth() as u64),
            ),
            both(
                "queue_capacity",
                QUEUE_CAPACITY,
                "",
                Count(self.queue.capacity() as u64),
            ),
            json_only("queue_wait_avg_us", Count(wait.mean().round() as u64)),
            json_only("queue_wait_p99_us", Count(wait.quantile(0.99))),
            both(
                "worker_count",
                WORKERS,
                "",
                Count(self.config.worker_count as u64),
            ),
            both(
                "log_lines_dropped",
                LOG_DROPPED,
                "",
                Count(p.log_lines_dropped),
            ),
            sample_only(DRAINING, "", Count(u64::from(self.is_draining()))),
            both(
                "uptime_seconds",
                UPTIME,
                "",
                Real((uptime * 1000.0).round() / 1000.0),
            ),
            both("memory_rss_bytes", RSS, "", Count(p.rss_bytes)),
            sample_only(CPU, "", Real(p.cpu_seconds)),
            sample_only(OPEN_FDS, "", Count(p.open_fds)),
            sample_only(MAX_FDS, "", Count(p.max_fds)),
            sample_only(START_TIME, "", Real(p.start_time_seconds)),
            json_only("runtime", Text(self.runtime)),
            json_only("timestamp", Count(now.unix_secs())),
        ];
        let build = format!(
            "version=\"{}\",runtime=\"{}\"",
            env!("CARGO_PKG_VERSION"),
            self.runtime
        );
        f.push(sample_only(BUILD_INFO, &build, Count(1)));
        if let Some(fleet) = &self.fleet {
            let g = fleet.figures(now.mono);
            f.extend([
                both("fleet.shared", FLEET_SHARED, "", Flag(g.shared)),
                both("fleet.instances", FLEET_INSTANCES, "", Count(g.instances)),
                both("fleet.leases", FLEET_LEASES, "", Count(g.leases)),
                both(
                    "fleet.tokens_granted",
                    FLEET_TOKENS,
                    "",
                    Count(g.tokens_granted),
                ),
                both(
                    "fleet.redis_errors",
                    FLEET_ERRORS,
                    "",
                    Count(g.redis_errors),
                ),
                both("fleet.redis_rtt_us", FLEET_RTT, "", Micros(g.rtt_us)),
                both(
                    "fleet.fallback_seconds",
                    FLEET_FALLBACK,
                    "",
                    Real(g.fallback_ns as f64 / 1e9),
                ),
            ]);
        }
        f
    }

    /// The JSON rendering (`fleet` is `null` without `REDIS_URL`).
    pub(super) fn metrics_json(&self, now: Now, p: &ProcessStats) -> String {
        use serde_json::{Map, Value as Json};
        let mut top = Map::new();
        let mut fleet = Map::new();
        for figure in self.figures(now, p) {
            let Some(key) = figure.json else { continue };
            let value = match figure.value {
                Value::Count(v) | Value::Micros(v) => Json::from(v),
                Value::Level(v) => Json::from(v),
                Value::Real(v) => Json::from(v),
                Value::Flag(v) => Json::from(v),
                Value::Text(v) => Json::from(v),
            };
            match key.strip_prefix("fleet.") {
                Some(key) => fleet.insert(key.to_owned(), value),
                None => top.insert(key.to_owned(), value),
            };
        }
        let fleet = (!fleet.is_empty()).then_some(Json::Object(fleet));
        top.insert("fleet".to_owned(), fleet.unwrap_or(Json::Null));
        Json::Object(top).to_string()
    }

    /// The Prometheus text (0.0.4) or OpenMetrics rendering.
    pub(super) fn metrics_text(&self, now: Now, p: &ProcessStats, om: bool) -> String {
        let mut s = String::with_capacity(8192);
        let mut last: Option<&'static str> = None;
        for figure in self.figures(now, p) {
            let Some((family, labels)) = &figure.sample else {
                continue;
            };
            if last != Some(family.name) {
                last = Some(family.name);
                // OpenMetrics names a counter family without `_total`; its samples keep it.
                let name = match (om, family.counter) {
                    (true, true) => family.name.trim_end_matches("_total"),
                    _ => family.name,
                };
                let kind = if family.counter { "counter" } else { "gauge" };
                let _ = writeln!(s, "# HELP {name} {}", family.help);
                let _ = writeln!(s, "# TYPE {name} {kind}");
            }
            let value = match figure.value {
                Value::Count(v) => v.to_string(),
                Value::Level(v) => v.to_string(),
                Value::Real(v) => v.to_string(),
                Value::Flag(v) => u8::from(v).to_string(),
                Value::Micros(v) => (v as f64 / 1e6).to_string(),
                Value::Text(v) => v.to_owned(),
            };
            if labels.is_empty() {
                let _ = writeln!(s, "{} {value}", family.name);
            } else {
                let _ = writeln!(s, "{}{{{labels}}} {value}", family.name);
            }
        }
        self.write_job_histograms(&mut s, om);
        if om {
            self.metrics.write_duration_histogram(&mut s, &METHOD_NAMES);
            s.push_str("# EOF\n");
        } else {
            let mut h = String::new();
            self.metrics.write_duration_histogram(&mut h, &METHOD_NAMES);
            // `# UNIT` is OpenMetrics-only; the 0.0.4 text format has no such line.
            for line in h.lines().filter(|l| !l.starts_with("# UNIT")) {
                s.push_str(line);
                s.push('\n');
            }
        }
        s
    }

    /// Requests per second over the last second or so (a window slid once it is a second
    /// old).
    fn requests_per_sec(&self, now: Now, total: u64) -> f64 {
        let mut w = self.rate_window.lock().unwrap_or_else(|p| p.into_inner());
        let (t0, n0) = *w;
        let dt = now.mono.since(t0).as_secs_f64();
        let rate = if dt > 0.0 {
            total.saturating_sub(n0) as f64 / dt
        } else {
            0.0
        };
        // Slide the window once it is at least a second old, so the figure is recent.
        if dt >= 1.0 {
            *w = (now.mono, total);
        }
        rate
    }

    /// The job queue's wait and run times, as histograms in seconds.
    fn write_job_histograms(&self, s: &mut String, om: bool) {
        for (name, help, h) in [
            (
                "weir_job_queue_wait_seconds",
                "Time jobs spent queued.",
                &self.queue.queue_wait,
            ),
            (
                "weir_job_run_seconds",
                "Time jobs spent running.",
                &self.queue.run_time,
            ),
        ] {
            let snap = h.snapshot();
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} histogram");
            if om {
                let _ = writeln!(s, "# UNIT {name} seconds");
            }
            for (bound, us) in DURATION_BOUNDS.iter().zip(DURATION_BOUNDS_US) {
                let _ = writeln!(
                    s,
                    "{name}_bucket{{le=\"{bound}\"}} {}",
                    snap.count_at_most(us)
                );
            }
            let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {}", snap.count);
            let _ = writeln!(s, "{name}_sum {}", snap.sum as f64 / 1e6);
            let _ = writeln!(s, "{name}_count {}", snap.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn app(env: &[(&str, &str)]) -> std::sync::Arc<App> {
        let config = Config::from_sources(env.iter().copied(), 2).expect("a valid config");
        App::builder(config).build(Now::default())
    }

    #[test]
    fn each_family_is_described_once_and_every_sample_follows_its_description() {
        let a = app(&[]);
        for om in [false, true] {
            let text = a.metrics_text(Now::default(), &ProcessStats::default(), om);
            let mut described = std::collections::HashSet::new();
            let mut current = String::new();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("# TYPE ") {
                    let name = rest.split(' ').next().unwrap().to_owned();
                    assert!(described.insert(name.clone()), "{name} described twice");
                    current = name;
                } else if !line.starts_with('#') {
                    assert!(line.starts_with(&current), "{line:?} is not of {current}");
                }
            }
            assert_eq!(text.ends_with("# EOF\n"), om);
        }
    }

    #[test]
    fn a_figure_with_both_names_has_one_value() {
        let a = app(&[("WORKER_COUNT", "3"), ("QUEUE_SIZE", "7")]);
        let p = ProcessStats::default();
        let json: serde_json::Value =
            serde_json::from_str(&a.metrics_json(Now::default(), &p)).unwrap();
        let text = a.metrics_text(Now::default(), &p, false);
        assert_eq!(
            (
                json["worker_count"].as_u64(),
                json["queue_capacity"].as_u64()
            ),
            (Some(3), Some(7))
        );
        assert!(
            text.contains("\nweir_workers 3\n") && text.contains("\nweir_job_queue_capacity 7\n")
        );
        assert!(json["fleet"].is_null(), "no fleet without REDIS_URL");
    }
}

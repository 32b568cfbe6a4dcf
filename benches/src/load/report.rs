//! The final report: text like the Go client's, plus percentiles, statuses and errors; JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::client::Outcome;

/// The report of one run (also the `--json` output).
#[derive(Debug, Serialize)]
pub struct Report {
    /// Requests measured (answered, failed, or in flight at the end).
    pub requests: u64,
    /// Responses with status below 400.
    pub successes: u64,
    /// Percent of requests that succeeded.
    pub success_percent: f64,
    /// Responses with status 400 and above, plus requests that got no response.
    pub failures: u64,
    /// Requests that got no response (connect, timeout, reset, bad response).
    pub transport_errors: u64,
    /// Responses 400–499 (429 included).
    pub client_errors: u64,
    /// Responses 500 and above.
    pub server_errors: u64,
    /// Measured duration, seconds.
    pub duration_s: f64,
    /// Completed requests per second.
    pub requests_per_sec: f64,
    /// Latency of answered requests, microseconds.
    pub latency_us: Latency,
    /// Latency of the answers below 400 only (what a client that succeeded waited).
    pub success_latency_us: Latency,
    /// Responses per status code.
    pub status_counts: std::collections::BTreeMap<String, u64>,
    /// 429 responses.
    pub rate_limited: u64,
    /// Failures without a response, by kind.
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
    /// Each distinct error with its OS reason.
    pub errors: Vec<ErrorLine>,
    /// Requests still waiting when a `-z` run ended (counted as requests, not failures).
    pub in_flight_at_end: u64,
    /// Response bytes read.
    pub bytes_read: u64,
    /// TLS handshakes measured (`https://`), and their time (connect to the end of the
    /// handshake), microseconds; not part of the request latency above.
    pub handshakes: u64,
    /// Handshake time; all zero without TLS.
    pub handshake_us: Latency,
    /// With `--rate`: how late requests left against their intended send time — the pacing's
    /// own error, or a connection still waiting for a slow answer — included in the latency
    /// above; all zero in a closed loop.
    pub pacing_late_us: Latency,
    /// The latency distribution of answered requests as at most 12 buckets (as hey and oha
    /// print it): ten equal steps from the fastest to the 99.9th percentile, then the rest up
    /// to the slowest; empty when nothing was answered.
    pub latency_histogram: Vec<Bucket>,
    /// The latency at each percentile asked for with `--percentiles` (the text report's
    /// `Percentiles` line), µs.
    pub percentiles: Vec<Percentile>,
    /// The scenario this report measures (`fast`, `intensive`), or `null` for a URL.
    pub scenario: Option<String>,
    /// For `--scenario seed`: one report per scenario, while the fields above sum them; empty
    /// otherwise. The JSON has this one shape whatever the scenario.
    pub parts: Vec<Report>,
}

/// The latency at one percentile.
#[derive(Debug, Serialize, PartialEq)]
pub struct Percentile {
    /// The percentile (50, 99.99, …).
    pub percentile: f64,
    /// The latency there, µs.
    pub us: u64,
}

/// One bar of the latency histogram.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket holds latencies above the previous bucket's bound up to this one, µs.
    pub upto_us: u64,
    /// Answered requests in it.
    pub count: u64,
}

/// A histogram row's bar, 40 squares for the fullest row and the rest in proportion
/// (rounded): a row of a few requests beside one of thousands gets a dot, not a square that
/// reads as the same order.
fn bar(count: u64, most: u64) -> String {
    let width = ((count * 40 + most / 2) / most.max(1)) as usize;
    match (width, count) {
        (0, 0) => String::new(),
        (0, _) => "·".to_owned(),
        (w, _) => "■".repeat(w),
    }
}

/// The latency histogram of `h`: see [`Report::latency_histogram`].
pub fn buckets(h: &hdrhistogram::Histogram<u64>) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let (min, top, max) = (h.min(), h.value_at_quantile(0.999), h.max());
    let mut bounds: Vec<u64> = (1..=10).map(|i| min + (top - min) * i / 10).collect();
    bounds.dedup();
    if max > *bounds.last().expect("at least one bound") {
        bounds.push(max);
    }
    let mut out: Vec<Bucket> = bounds
        .iter()
        .map(|&upto_us| Bucket { upto_us, count: 0 })
        .collect();
    for v in h.iter_recorded() {
        let value = h.highest_equivalent(v.value_iterated_to()).min(max);
        let i = bounds.partition_point(|&b| b < value).min(bounds.len() - 1);
        out[i].count += v.count_at_value();
    }
    out
}

/// Latency figures.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Minimum.
    pub min: u64,
    /// Mean.
    pub avg: f64,
    /// Maximum.
    pub max: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
}

impl Latency {
    /// The figures of histogram `h` (all zero when it is empty).
    fn of(h: &hdrhistogram::Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency {
                min: 0,
                avg: 0.0,
                max: 0,
                p50: 0,
                p90: 0,
                p95: 0,
                p99: 0,
                p999: 0,
            };
        }
        Latency {
            min: h.min(),
            avg: h.mean(),
            max: h.max(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
        }
    }
}

/// One distinct error.
#[derive(Debug, Serialize)]
pub struct ErrorLine {
    /// connect, timeout, reset, bad_response, other.
    pub kind: String,
    /// The reason, in the OS's words where there is one.
    pub reason: String,
    /// How many times.
    pub count: u64,
}

impl Report {
    /// Builds the report from a run's outcome.
    pub fn new(o: &Outcome) -> Report {
        let t = &o.tally;
        let answered: u64 = t.statuses.values().sum();
        let successes: u64 = t
            .statuses
            .iter()
            .filter(|(s, _)| **s < 400)
            .map(|(_, n)| n)
            .sum();
        let no_response: u64 = t.errors.values().sum();
        let failures = answered - successes + no_response;
        let requests = answered + no_response + t.in_flight_at_end;
        let secs = o.elapsed.as_secs_f64().max(1e-9);
        let h = &t.latency;
        let mut errors_by_kind = std::collections::BTreeMap::new();
        for ((kind, _), n) in &t.errors {
            *errors_by_kind.entry(kind.as_str().to_string()).or_default() += n;
        }
        Report {
            requests,
            successes,
            success_percent: if requests == 0 {
                0.0
            } else {
                successes as f64 * 100.0 / requests as f64
            },
            failures,
            transport_errors: no_response,
            client_errors: t
                .statuses
                .iter()
                .filter(|(s, _)| (400..500).contains(*s))
                .map(|(_, n)| n)
                .sum(),
            server_errors: t
                .statuses
                .iter()
                .filter(|(s, _)| **s >= 500)
                .map(|(_, n)| n)
                .sum(),
            duration_s: secs,
            requests_per_sec: (answered + no_response) as f64 / secs,
            latency_us: Latency::of(h),
            success_latency_us: Latency::of(&t.latency_ok),
            handshakes: t.handshakes.len(),
            handshake_us: Latency::of(&t.handshakes),
            pacing_late_us: Latency::of(&t.pacing_late),
            status_counts: t
                .statuses
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            rate_limited: t.statuses.get(&429).copied().unwrap_or(0),
            errors_by_kind,
            errors: t
                .errors
                .iter()
                .map(|((kind, reason), n)| ErrorLine {
                    kind: kind.as_str().into(),
                    reason: reason.clone(),
                    count: *n,
                })
                .collect(),
            in_flight_at_end: t.in_flight_at_end,
            bytes_read: t.bytes,
            latency_histogram: buckets(h),
            percentiles: [50.0, 90.0, 95.0, 99.0, 99.9]
                .map(|p| Percentile {
                    percentile: p,
                    us: if h.is_empty() {
                        0
                    } else {
                        h.value_at_quantile(p / 100.0)
                    },
                })
                .into(),
            scenario: None,
            parts: Vec::new(),
        }
    }

    /// Reports the latency at `percentiles` (of `--percentiles`) instead of the default five.
    pub fn set_percentiles(&mut self, outcome: &Outcome, percentiles: &[f64]) {
        let h = &outcome.tally.latency;
        self.percentiles = percentiles
            .iter()
            .map(|&p| Percentile {
                percentile: p,
                us: if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(p / 100.0)
                },
            })
            .collect();
    }

    /// The failing rate for `--max-error-rate`: transport errors and 5xx, plus 4xx when
    /// `client_errors_fail`, over requests; 0 when nothing ran.
    pub fn error_rate(&self, client_errors_fail: bool) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        let failing = self.transport_errors
            + self.server_errors
            + if client_errors_fail {
                self.client_errors
            } else {
                0
            };
        failing as f64 / self.requests as f64
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let ms = |us: u64| us as f64 / 1000.0;
        let l = &self.latency_us;
        match &self.scenario {
            Some(name) => {
                let _ = writeln!(s, "\n=== weir-load report: {name} ===");
            }
            None => {
                let _ = writeln!(s, "\n=== weir-load report ===");
            }
        }
        let _ = writeln!(s, "Requests:        {}", self.requests);
        let _ = writeln!(
            s,
            "Successes:       {} ({:.2}%)",
            self.successes, self.success_percent
        );
        let _ = writeln!(
            s,
            "Failures:        {} (no response {}, 4xx {}, 5xx {})",
            self.failures, self.transport_errors, self.client_errors, self.server_errors
        );
        let _ = writeln!(s, "Rate limited:    {} (429)", self.rate_limited);
        let _ = writeln!(s, "Duration:        {:.3} s", self.duration_s);
        let _ = writeln!(s, "Requests/s:      {:.1}", self.requests_per_sec);
        let _ = writeln!(
            s,
            "Bytes read:      {} ({:.2} MB/s)",
            self.bytes_read,
            self.bytes_read as f64 / 1e6 / self.duration_s.max(1e-9)
        );
        let _ = writeln!(
            s,
            "Latency (ms):    min {:.3}  avg {:.3}  max {:.3}",
            ms(l.min),
            l.avg / 1000.0,
            ms(l.max)
        );
        let shown: Vec<String> = self
            .percentiles
            .iter()
            .map(|p| format!("p{} {:.3}", p.percentile, ms(p.us)))
            .collect();
        let _ = writeln!(s, "Percentiles (ms): {}", shown.join("  "));
        if self.pacing_late_us.max > 0 {
            let p = &self.pacing_late_us;
            let _ = writeln!(
                s,
                "Pacing (µs late): p50 {}  p99 {}  max {}  (the load generator's own error, in the latency above)",
                p.p50, p.p99, p.max
            );
        }
        if self.handshakes > 0 {
            let hs = &self.handshake_us;
            let _ = writeln!(
                s,
                "TLS handshakes:  {} ({:.1}/s)  p50 {:.3} ms  p99 {:.3} ms  (not in the latency above)",
                self.handshakes,
                self.handshakes as f64 / self.duration_s,
                ms(hs.p50),
                ms(hs.p99)
            );
        }
        if !self.latency_histogram.is_empty() {
            let _ = writeln!(s, "Latency histogram (ms, upper bounds):");
            let most = self
                .latency_histogram
                .iter()
                .map(|b| b.count)
                .max()
                .unwrap_or(1)
                .max(1);
            for b in &self.latency_histogram {
                let bar = bar(b.count, most);
                let _ = writeln!(s, "  {:>10.3} [{:>9}] |{bar}", ms(b.upto_us), b.count);
            }
        }
        let _ = writeln!(s, "Status codes:");
        for (code, n) in &self.status_counts {
            let _ = writeln!(s, "  {code}: {n}");
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "Errors (no response):");
            for e in &self.errors {
                let _ = writeln!(s, "  {} ({}): {}", e.kind, e.reason, e.count);
            }
        }
        if self.in_flight_at_end > 0 {
            let _ = writeln!(
                s,
                "In flight at end: {} (sent, no response before the run ended)",
                self.in_flight_at_end
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_in_proportion() {
        assert_eq!(bar(1539, 1539).chars().count(), 40);
        assert_eq!(bar(10, 1539), "·", "10 of 1,539 is under half a square");
        assert_eq!(bar(30, 1539), "■", "30 of 1,539 rounds to one");
        assert_eq!(bar(770, 1539).chars().count(), 20);
        assert_eq!(bar(0, 1539), "");
    }

    #[test]
    fn buckets_split_the_range_in_ten_and_keep_the_tail_apart() {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in 1..=1000 {
            h.record(100 + v).unwrap();
        }
        h.record(50_000).unwrap();
        let b = buckets(&h);
        assert_eq!(b.len(), 11, "{b:?}");
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 1001);
        assert_eq!(b.last().unwrap().count, 1, "the outlier alone: {b:?}");
        assert!(
            b[..10].iter().all(|b| (99..=101).contains(&b.count)),
            "{b:?}"
        );
        assert!(buckets(&hdrhistogram::Histogram::<u64>::new(3).unwrap()).is_empty());
        let mut one = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        one.record(42).unwrap();
        assert_eq!(
            buckets(&one),
            vec![Bucket {
                upto_us: 42,
                count: 1
            }]
        );
    }
}

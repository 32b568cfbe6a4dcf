//! Metrics: sharded counters, a log-linear latency histogram and per-series request
//! durations, recorded without locks and rendered as JSON or Prometheus/OpenMetrics text.
//!
//! Invariants: recording never allocates or locks; each thread records into its own shard
//! (chosen once per thread), so there is no single atomic that every request contends on;
//! readers sum the shards, which is exact for counters and gauges (an increment in one shard
//! and the decrement in another still sum to the true value); histogram percentiles have at
//! most 1/256 relative error (128 sub-buckets per power of two, reported at the bucket middle).

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Shards per metric family: more than the cores of the machines weir is measured on; a
/// thread beyond that shares a shard (still correct, only contended).
pub const SHARDS: usize = 8;

const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
/// Values are clamped to 2^40 µs (12 days); groups of 128 buckets per power of two above 128.
const MAX_MSB: u32 = 40;
const BUCKETS: usize = SUB + (MAX_MSB - SUB_BITS + 1) as usize * SUB;

/// Upper bounds, in seconds, of the duration histograms (requests, queue wait, job run time):
/// 50 µs to 10 s in 1–2.5–5 steps, so `histogram_quantile` sees weir's sub-millisecond
/// requests (OpenTelemetry's advisory buckets start at 5 ms, above weir's median).
pub const DURATION_BOUNDS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// [`DURATION_BOUNDS`] in microseconds.
pub const DURATION_BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Series slots per shard for (method, route, status), a power of two (a probe wraps with a
/// mask); a further series lands in one more slot, the overflow series labelled
/// `status="other"`, so the table never grows.
const SERIES_CAP: usize = 256;
const _: () = assert!(SERIES_CAP.is_power_of_two());

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard index.
fn shard_index() -> usize {
    SHARD.with(|s| {
        let i = s.get();
        if i != usize::MAX {
            return i;
        }
        let i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
        s.set(i);
        i
    })
}

fn bucket_of(v: u64) -> usize {
    let v = v.min((1u64 << (MAX_MSB + 1)) - 1);
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = ((v >> shift) as usize) & (SUB - 1);
    SUB + shift as usize * SUB + sub
}

/// The middle of bucket `i` (the value reported for it).
fn bucket_value(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = ((i - SUB) / SUB) as u32;
    let sub = ((i - SUB) % SUB) as u64;
    let low = (SUB as u64 + sub) << shift;
    low + ((1u64 << shift) >> 1)
}

/// A sharded log-linear histogram of microsecond values.
#[derive(Debug)]
pub struct Histogram {
    shards: Box<[HistShard]>,
}

#[derive(Debug)]
struct HistShard {
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        let shards = (0..SHARDS)
            .map(|_| HistShard {
                counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0),
                max: AtomicU64::new(0),
            })
            .collect();
        Histogram { shards }
    }

    /// Records `v` microseconds.
    pub fn record(&self, v: u64) {
        self.record_in(shard_index(), v);
    }

    /// [`Histogram::record`] into shard `shard` (a caller that already knows its thread's).
    fn record_in(&self, shard: usize, v: u64) {
        let s = &self.shards[shard];
        s.counts[bucket_of(v)].fetch_add(1, Ordering::Relaxed);
        s.sum.fetch_add(v, Ordering::Relaxed);
        if v > s.max.load(Ordering::Relaxed) {
            s.max.fetch_max(v, Ordering::Relaxed);
        }
    }

    /// Records a duration in microseconds.
    pub fn record_us(&self, d: Duration) {
        self.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.snapshot().count
    }

    /// A consistent-enough copy for reporting (allocates; not for the hot path).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut counts = vec![0u64; BUCKETS];
        let mut sum = 0;
        let mut max = 0;
        for s in self.shards.iter() {
            for (c, a) in counts.iter_mut().zip(s.counts.iter()) {
                *c += a.load(Ordering::Relaxed);
            }
            sum += s.sum.load(Ordering::Relaxed);
            max = max.max(s.max.load(Ordering::Relaxed));
        }
        let count = counts.iter().sum();
        HistogramSnapshot {
            counts,
            count,
            sum,
            max,
        }
    }
}

/// A histogram read out once.
#[derive(Debug, Clone)]
pub struct HistogramSnapshot {
    counts: Vec<u64>,
    /// Values recorded.
    pub count: u64,
    /// Sum of values.
    pub sum: u64,
    /// Largest value.
    pub max: u64,
}

impl HistogramSnapshot {
    /// Values at most `us` (within the histogram's resolution: a value in the same bucket as
    /// `us` counts as at most `us`), for cumulative Prometheus buckets.
    pub fn count_at_most(&self, us: u64) -> u64 {
        self.counts[..=bucket_of(us)].iter().sum()
    }

    /// The value at quantile `q` in [0, 1]; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_value(i).min(self.max);
            }
        }
        self.max
    }

    /// The mean; 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// Counters of one shard.
#[derive(Debug, Default)]
struct CounterShard {
    /// Heads completed; requests in progress are these less the answered and abandoned, so
    /// an answer costs no decrement.
    started: AtomicU64,
    abandoned: AtomicU64,
    success: AtomicU64,
    errors: AtomicU64,
    rejected: AtomicU64,
    _pad: [u64; 0],
}

/// One (method, route, status) series of the request-duration histogram.
#[derive(Debug)]
struct Series {
    key: AtomicU32,
    /// One per bound, then `+Inf`: the count is their sum.
    buckets: [AtomicU64; DURATION_BOUNDS.len() + 1],
    sum_us: AtomicU64,
}

#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    counters: CounterShard,
    series: Box<[Series]>,
}

/// A route's label for the duration histogram (the router's pattern, or `unmatched`).
pub type RouteLabel = &'static str;

/// All request metrics of one server.
#[derive(Debug)]
pub struct Metrics {
    shards: Box<[Shard]>,
    latency: Histogram,
    routes: Vec<RouteLabel>,
}

/// What one finished request contributes.
#[derive(Clone, Copy, Debug)]
pub struct RequestRecord {
    /// Method index (see [`crate::http::Method`] order).
    pub method: u8,
    /// Route index into the label table given to [`Metrics::new`].
    pub route: u8,
    /// Response status.
    pub status: u16,
    /// Time from head complete to response queued, in microseconds.
    pub latency_us: u64,
}

const OVERFLOW_KEY: u32 = u32::MAX;

fn series_key(method: u8, route: u8, status: u16) -> u32 {
    // Never 0 (empty slot): the status is at least 100.
    (u32::from(method) << 24) | (u32::from(route) << 16) | u32::from(status)
}

impl Metrics {
    /// Metrics for a router whose route labels are `routes` (index = route id).
    pub fn new(routes: Vec<RouteLabel>) -> Self {
        let shards = (0..SHARDS)
            .map(|_| Shard {
                counters: CounterShard::default(),
                series: (0..=SERIES_CAP)
                    .map(|_| Series {
                        key: AtomicU32::new(0),
                        buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                        sum_us: AtomicU64::new(0),
                    })
                    .collect(),
            })
            .collect();
        Metrics {
            shards,
            latency: Histogram::new(),
            routes,
        }
    }

    fn shard(&self) -> &Shard {
        &self.shards[shard_index()]
    }

    /// A request began (its head is complete).
    pub fn request_started(&self) {
        self.shard()
            .counters
            .started
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended without a response (its client left).
    pub fn request_abandoned(&self) {
        self.shard()
            .counters
            .abandoned
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended with a response: one shard lookup, and six relaxed additions for a
    /// success (the answered count, the latency histogram's bucket and sum, the series'
    /// bucket and sum).
    pub fn request_finished(&self, r: RequestRecord) {
        let shard = shard_index();
        let s = &self.shards[shard];
        let c = &s.counters;
        if r.status < 400 {
            c.success.fetch_add(1, Ordering::Relaxed);
        } else {
            c.errors.fetch_add(1, Ordering::Relaxed);
            if r.status == 429 {
                c.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        let us = r.latency_us;
        self.latency.record_in(shard, us);
        let series = Self::series(&s.series, series_key(r.method, r.route, r.status));
        let b = DURATION_BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(DURATION_BOUNDS_US.len());
        series.buckets[b].fetch_add(1, Ordering::Relaxed);
        series.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Finds or claims the slot of `key` (open addressing; lock-free claim by CAS).
    fn series(table: &[Series], key: u32) -> &Series {
        let start = (key.wrapping_mul(0x9E37_79B1) >> 24) as usize;
        for i in 0..SERIES_CAP {
            let slot = &table[(start + i) & (SERIES_CAP - 1)];
            let k = slot.key.load(Ordering::Acquire);
            if k == key {
                return slot;
            }
            if k == 0 {
                match slot
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return slot,
                    Err(actual) if actual == key => return slot,
                    Err(_) => continue,
                }
            }
        }
        let overflow = &table[SERIES_CAP];
        overflow.key.store(OVERFLOW_KEY, Ordering::Relaxed);
        overflow
    }

    /// Sums the counters.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.shards.iter() {
            let c = &s.counters;
            // The answered before the started: a request is counted started before it is
            // answered, so this order never reads more answered than started.
            let success = c.success.load(Ordering::Relaxed);
            let errors = c.errors.load(Ordering::Relaxed);
            let abandoned = c.abandoned.load(Ordering::Relaxed);
            let started = c.started.load(Ordering::Relaxed);
            t.active_requests += started as i64 - (success + errors + abandoned) as i64;
            t.success += success;
            t.errors += errors;
            t.rejected += c.rejected.load(Ordering::Relaxed);
        }
        t.total = t.success + t.errors;
        t.consistent()
    }

    /// The request-latency histogram (µs).
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }

    /// Writes the `http_server_request_duration_seconds` histogram family (Prometheus text or
    /// OpenMetrics: the same sample lines; only the comment block differs in neither here).
    pub fn write_duration_histogram(&self, out: &mut String, method_names: &[&str]) {
        use std::collections::BTreeMap;
        let mut merged: BTreeMap<u32, ([u64; DURATION_BOUNDS.len() + 1], u64, u64)> =
            BTreeMap::new();
        for s in self.shards.iter() {
            for series in s.series.iter() {
                let key = series.key.load(Ordering::Acquire);
                if key == 0 {
                    continue;
                }
                let e = merged
                    .entry(key)
                    .or_insert(([0; DURATION_BOUNDS.len() + 1], 0, 0));
                for (m, b) in e.0.iter_mut().zip(series.buckets.iter()) {
                    let n = b.load(Ordering::Relaxed);
                    *m += n;
                    e.1 += n;
                }
                e.2 += series.sum_us.load(Ordering::Relaxed);
            }
        }
        out.push_str(
            "# HELP http_server_request_duration_seconds Duration of HTTP server requests.\n",
        );
        out.push_str("# TYPE http_server_request_duration_seconds histogram\n");
        out.push_str("# UNIT http_server_request_duration_seconds seconds\n");
        for (key, (buckets, count, sum_us)) in merged {
            let labels = if key == OVERFLOW_KEY {
                "http_request_method=\"_OTHER\",http_route=\"other\",http_response_status_code=\"other\"".to_owned()
            } else {
                let method = method_names
                    .get((key >> 24) as usize)
                    .copied()
                    .unwrap_or("_OTHER");
                let route = self
                    .routes
                    .get(((key >> 16) & 0xff) as usize)
                    .copied()
                    .unwrap_or("unmatched");
                format!(
                    "http_request_method=\"{method}\",http_route=\"{route}\",http_response_status_code=\"{}\"",
                    key & 0xffff
                )
            };
            let mut cumulative = 0;
            for (bound, c) in DURATION_BOUNDS.iter().zip(buckets) {
                cumulative += c;
                let _ = writeln!(
                    out,
                    "http_server_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "http_server_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "http_server_request_duration_seconds_count{{{labels}}} {count}"
            );
            let _ = writeln!(
                out,
                "http_server_request_duration_seconds_sum{{{labels}}} {}",
                sum_us as f64 / 1e6
            );
        }
    }
}

/// Counter sums.
#[derive(Debug, Default, Clone, Copy)]
#[non_exhaustive]
pub struct Totals {
    /// Requests answered.
    pub total: u64,
    /// Answered below 400.
    pub success: u64,
    /// Answered 400 or above.
    pub errors: u64,
    /// Answered 429.
    pub rejected: u64,
    /// Requests in progress.
    pub active_requests: i64,
    /// Connections open.
    pub active_connections: i64,
    /// Connections ever opened.
    pub connections_total: u64,
    /// Connections refused at `MAX_CONNECTIONS` or while draining.
    pub connections_refused: u64,
}

impl Totals {
    /// Connections accepted (never negative, whatever moment each counter was read at).
    pub fn connections_accepted(&self) -> u64 {
        self.connections_total
            .saturating_sub(self.connections_refused)
    }

    /// Counters are read one after another while other threads count, so a part can be read
    /// after its whole (a refusal counted after the total was read): clamp every part to its
    /// whole and every gauge to zero, so no rendering can underflow or pass 100 %.
    fn consistent(mut self) -> Totals {
        self.success = self.success.min(self.total);
        self.errors = self.errors.min(self.total - self.success);
        self.rejected = self.rejected.min(self.errors);
        self.connections_refused = self.connections_refused.min(self.connections_total);
        self.active_requests = self.active_requests.max(0);
        self.active_connections = self.active_connections.max(0);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_read_mid_update_stay_consistent() {
        let torn = Totals {
            total: 10,
            success: 11,
            errors: 3,
            rejected: 5,
            active_requests: -1,
            active_connections: -2,
            connections_total: 4,
            connections_refused: 5,
        }
        .consistent();
        assert_eq!(
            (torn.total, torn.success, torn.errors, torn.rejected),
            (10, 10, 0, 0)
        );
        assert_eq!((torn.active_requests, torn.active_connections), (0, 0));
        assert_eq!(torn.connections_accepted(), 0);
    }

    #[test]
    fn bucket_values_stay_within_one_percent() {
        for v in (0..2_000_000u64)
            .step_by(7)
            .chain([1u64 << 39, 123_456_789_012])
        {
            let got = bucket_value(bucket_of(v));
            let err = (got as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(
                err <= 1.0 / 256.0 + 1e-12 || v < SUB as u64 && got == v,
                "v={v} got={got}"
            );
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_of_a_uniform_distribution() {
        let h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 10_000);
        for (q, want) in [(0.5, 5_000.0), (0.95, 9_500.0), (0.99, 9_900.0)] {
            let got = s.quantile(q) as f64;
            assert!((got - want).abs() / want <= 0.01, "q={q} got={got}");
        }
        assert_eq!(s.max, 10_000);
        assert!((s.mean() - 5_000.5).abs() < 1e-9);
    }

    #[test]
    fn series_table_overflows_into_one_series() {
        let m = Metrics::new(vec!["/a"]);
        for status in 100..(100 + SERIES_CAP as u16 * 2) {
            m.request_started();
            m.request_finished(RequestRecord {
                method: 0,
                route: 0,
                status,
                latency_us: 0,
            });
        }
        let mut out = String::new();
        m.write_duration_histogram(&mut out, &["GET"]);
        assert!(out.contains("http_response_status_code=\"other\""));
    }
}

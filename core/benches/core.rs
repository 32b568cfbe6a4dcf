//! criterion benches of the core: parser, router, limiter, job queue, metrics, and whole
//! request-bytes → response-bytes paths through a session.
#![allow(clippy::disallowed_methods)] // the contended benches start threads on purpose

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use weir_core::app::router::RouterBuilder;
use weir_core::http::{Limits, Method, ParsedHead};
use weir_core::jobs::JobQueue;
use weir_core::limit::{Gcra, KeyedGcra, Quota};
use weir_core::metrics::{Metrics, RequestRecord};
use weir_core::{App, Config, Instant, Now, Session};

include!("data/heads.rs");

const PING: &[u8] = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";

fn t0() -> Now {
    Now::new(Instant::from_nanos(1_000_000_000), 1_795_305_600_000)
}

fn app(env: &[(&str, &str)]) -> Arc<App> {
    let mut all = vec![("ACCESS_LOG", "false")];
    all.extend_from_slice(env);
    let config = Config::from_sources(all, 2).unwrap();
    App::builder(config).runtime("bench").build(t0())
}

/// weir's whole head parse (httparse, the CRLF check, the framing rules, the field index)
/// beside httparse alone on the same bytes, called the same way (uninitialised header slots),
/// in one run: the ratio is what weir adds to the parser it builds on.
fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("parse");
    let mut head = ParsedHead::default();
    g.throughput(Throughput::Elements(1));
    g.bench_function("browser_get_9_headers", |b| {
        b.iter(|| head.parse(black_box(BROWSER_GET), &limits).unwrap())
    });
    g.bench_function("httparse_only_browser_get_9_headers", |b| {
        b.iter(|| {
            let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 64];
            let mut req = httparse::Request::new(&mut []);
            let status = httparse::ParserConfig::default()
                .parse_request_with_uninit_headers(&mut req, black_box(BROWSER_GET), &mut slots)
                .unwrap();
            (status.is_complete(), req.headers.len())
        })
    });
    g.bench_function("post_small_json", |b| {
        b.iter(|| head.parse(black_box(POST_JSON), &limits).unwrap())
    });
    g.bench_function("httparse_only_post_small_json", |b| {
        b.iter(|| {
            let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 64];
            let mut req = httparse::Request::new(&mut []);
            let status = httparse::ParserConfig::default()
                .parse_request_with_uninit_headers(&mut req, black_box(POST_JSON), &mut slots)
                .unwrap();
            (status.is_complete(), req.headers.len())
        })
    });
    g.finish();
}

/// A head of `size` bytes fed one byte per read, as a slow or hostile client sends it: the
/// session scans only the new byte each time, so 16 KiB costs about 4x 4 KiB (linear), not
/// 16x (a re-parse from byte 0 per read, as before).
fn head_in_one_byte_reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("head_in_1_byte_reads");
    let shared = app(&[("RATE_LIMIT", "0")]);
    for size in [4 * 1024, 16 * 1024 - 64] {
        let raw = format!(
            "GET /ping HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(size - 40)
        );
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_function(format!("{}_bytes", raw.len()), |b| {
            b.iter_batched(
                || shared.session("127.0.0.1:1".parse().unwrap(), t0()),
                |mut s| {
                    for byte in raw.as_bytes() {
                        s.feed(t0(), std::slice::from_ref(byte));
                    }
                    assert!(s.poll_transmit().is_some(), "answered");
                    s
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// A hand-moved clock: 20 µs per request, so the default 100,000 req/s limiter stays on the
/// path and keeps admitting (at a frozen time it would refuse everything after the burst).
struct Clock(std::cell::Cell<Now>);

impl Clock {
    fn tick(&self) -> Now {
        self.tick_n(1)
    }

    fn tick_n(&self, requests: u32) -> Now {
        let now = self.0.get().advanced(Duration::from_micros(20) * requests);
        self.0.set(now);
        now
    }
}

/// Feeds `raw` and writes out everything, as a runtime would.
fn roundtrip(s: &mut Session, now: Now, raw: &[u8]) -> usize {
    let mut written = 0;
    let mut off = 0;
    while off < raw.len() {
        off += s.feed(now, &raw[off..]);
        while let Some(out) = s.poll_transmit() {
            let n = out.len();
            written += n;
            s.advance_transmit(now, n);
        }
    }
    written
}

fn session(c: &mut Criterion) {
    let mut g = c.benchmark_group("session");
    let shared = app(&[]);
    let now = t0();
    let clock = Clock(std::cell::Cell::new(now));
    let mut s = shared.session("127.0.0.1:9".parse().unwrap(), now);
    g.throughput(Throughput::Elements(1));
    g.bench_function("ping", |b| {
        b.iter(|| roundtrip(&mut s, clock.tick(), black_box(PING)))
    });
    g.bench_function("compute_fast", |b| {
        b.iter(|| roundtrip(&mut s, clock.tick(), black_box(POST_JSON)))
    });
    let users = b"GET /users/42 HTTP/1.1\r\nHost: x\r\n\r\n";
    g.bench_function("users_param", |b| {
        b.iter(|| roundtrip(&mut s, clock.tick(), black_box(users)))
    });
    let echo = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    g.bench_function("echo_chunked", |b| {
        b.iter(|| roundtrip(&mut s, clock.tick(), black_box(echo)))
    });
    let not_found = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
    g.bench_function("not_found_404", |b| {
        b.iter(|| roundtrip(&mut s, clock.tick(), black_box(not_found)))
    });
    // The timer- and queue-driven endpoints: feed, run what the runtime would (a worker's job,
    // the timer firing), drain.
    let intensive = b"POST /api/v1/compute/intensive HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n{\"number\": 42}";
    let slow_app = app(&[("JOB_COST", "100")]);
    let mut js = slow_app.session("127.0.0.1:9".parse().unwrap(), now);
    g.bench_function("compute_intensive_job_cost_100", |b| {
        b.iter(|| {
            let now = clock.tick();
            js.feed(now, black_box(intensive));
            let job = slow_app.queue().take().expect("queued");
            let (n, cost) = job.start(now.mono).expect("not cancelled");
            job.complete(now.mono, Some(weir_core::jobs::intensive_work(n, cost)));
            js.handle_wake(now);
            let n = js.poll_transmit().map_or(0, <[u8]>::len);
            js.advance_transmit(now, n);
            while js.poll_effect().is_some() {}
            n
        })
    });
    let sleep = b"GET /api/v1/sleep?ms=0 HTTP/1.1\r\nHost: x\r\n\r\n";
    g.bench_function("sleep_0ms", |b| {
        b.iter(|| {
            let now = clock.tick();
            s.feed(now, black_box(sleep));
            s.handle_timeout(now);
            let n = s.poll_transmit().map_or(0, <[u8]>::len);
            s.advance_transmit(now, n);
            n
        })
    });
    let stream = b"GET /api/v1/stream?count=1&interval_ms=0 HTTP/1.1\r\nHost: x\r\n\r\n";
    g.bench_function("stream_1_event", |b| {
        b.iter(|| {
            let now = clock.tick();
            s.feed(now, black_box(stream));
            s.handle_timeout(now);
            let n = s.poll_transmit().map_or(0, <[u8]>::len);
            s.advance_transmit(now, n);
            n
        })
    });
    let pipelined = PING.repeat(16);
    g.throughput(Throughput::Elements(16));
    g.bench_function("ping_pipelined_x16", |b| {
        b.iter(|| roundtrip(&mut s, clock.tick_n(16), black_box(&pipelined)))
    });
    g.finish();
    let mut g = c.benchmark_group("session_metrics_endpoints");
    let metrics = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    g.bench_function("metrics_json", |b| {
        b.iter(|| roundtrip(&mut s, clock.tick(), black_box(metrics)))
    });
    let stats = b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n\r\n";
    g.bench_function("stats_json", |b| {
        b.iter(|| roundtrip(&mut s, clock.tick(), black_box(stats)))
    });
    let prom = b"GET /metrics?format=prometheus HTTP/1.1\r\nHost: x\r\n\r\n";
    g.bench_function("metrics_prometheus", |b| {
        b.iter(|| roundtrip(&mut s, clock.tick(), black_box(prom)))
    });
    let health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    g.bench_function("health", |b| {
        b.iter(|| roundtrip(&mut s, clock.tick(), black_box(health)))
    });
    g.finish();
}

fn router(c: &mut Criterion) {
    let r = RouterBuilder::default()
        .route(Method::Get, "/ping", 0)
        .route(Method::Post, "/api/v1/compute/fast", 1)
        .route(Method::Post, "/api/v1/compute/intensive", 2)
        .route(Method::Get, "/health", 3)
        .route(Method::Get, "/metrics", 4)
        .route(Method::Get, "/api/v1/stats", 5)
        .route(Method::Post, "/echo", 6)
        .route(Method::Get, "/users/:id", 7)
        .route(Method::Get, "/api/v1/sleep", 8)
        .route(Method::Get, "/api/v1/stream", 9)
        .build();
    let mut g = c.benchmark_group("router");
    g.bench_function("first_static", |b| {
        b.iter(|| r.lookup(Method::Get, black_box(&b"/ping"[..])))
    });
    g.bench_function("param", |b| {
        b.iter(|| r.lookup(Method::Get, black_box(&b"/users/12345"[..])))
    });
    g.bench_function("last_static", |b| {
        b.iter(|| r.lookup(Method::Get, black_box(&b"/api/v1/stream"[..])))
    });
    g.bench_function("not_found", |b| {
        b.iter(|| r.lookup(Method::Get, black_box(&b"/nowhere/at/all"[..])))
    });
    g.finish();
}

fn limiter(c: &mut Criterion) {
    let mut g = c.benchmark_group("limiter");
    let gcra = Arc::new(Gcra::new(Quota::new(1_000_000_000, 1_000_000).unwrap()));
    let mut t = 0u64;
    g.bench_function("gcra_uncontended", |b| {
        b.iter(|| {
            t += 1;
            gcra.check(Instant::from_nanos(t))
        })
    });
    // Two threads: this one measured, another hammering the same bucket.
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (g2, stop) = (gcra.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut t = 0u64;
            while !stop.load(Ordering::Relaxed) {
                t += 1;
                black_box(g2.check(Instant::from_nanos(t)));
            }
        })
    };
    g.bench_function("gcra_contended_2_threads", |b| {
        b.iter(|| {
            t += 1;
            gcra.check(Instant::from_nanos(t))
        })
    });
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
    let keyed = KeyedGcra::new(Quota::new(1_000_000, 1_000).unwrap(), 100_000, (1, 2));
    let mut k = 0u128;
    g.bench_function("per_ip_10k_keys", |b| {
        b.iter(|| {
            k = (k + 7919) % 10_000;
            t += 1;
            keyed.check(k, Instant::from_nanos(t))
        })
    });
    g.finish();
}

fn queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("job_queue");
    let q = JobQueue::new(1024, 1);
    g.bench_function("submit_take_complete", |b| {
        b.iter(|| {
            let wait = q
                .submit(Instant::from_nanos(1), 3, Instant::from_nanos(u64::MAX))
                .unwrap();
            let job = q.take().unwrap();
            let (n, _) = job.start(Instant::from_nanos(2)).unwrap();
            job.complete(Instant::from_nanos(3), Some(n * n));
            wait.try_done()
        })
    });
    g.bench_function("submit_then_cancel", |b| {
        b.iter_batched(
            || (),
            |()| {
                drop(
                    q.submit(Instant::from_nanos(1), 3, Instant::from_nanos(u64::MAX))
                        .unwrap(),
                );
                q.take().map(|j| j.start(Instant::from_nanos(2)))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn metrics(c: &mut Criterion) {
    let m = Metrics::new(vec!["/ping", "unmatched"]);
    let mut g = c.benchmark_group("metrics");
    g.bench_function("record_request", |b| {
        b.iter(|| {
            m.request_started();
            m.request_finished(RequestRecord {
                method: 0,
                route: 0,
                status: 200,
                latency_us: 37,
            })
        })
    });
    g.bench_function("snapshot_totals", |b| b.iter(|| m.totals()));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = parse, head_in_one_byte_reads, session, router, limiter, queue, metrics
}
criterion_main!(benches);

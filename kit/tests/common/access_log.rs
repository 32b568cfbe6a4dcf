//! The access log costs no heap allocation per request: keep-alive `/ping`s through a core
//! session with `ACCESS_LOG=true` and the kit's logging installed, counted by a global
//! allocator over every thread (the I/O thread and the log writer alike). Each format runs in
//! its own test binary (one global subscriber per process): `access_log_alloc_json.rs` and
//! `access_log_alloc_text.rs` include this file.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weir_core::{App, Config, Instant, Now};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Serves 1,000 logged requests after a warm-up and asserts no allocation, no drop, and a
/// line logged for each.
pub fn assert_no_allocation_per_logged_request(environment: &str) {
    let config = Config::from_sources(
        [
            ("ACCESS_LOG", "true"),
            ("ENVIRONMENT", environment),
            ("WORKER_COUNT", "1"),
        ],
        1,
    )
    .expect("valid config");
    let guard = weir_kit::logging::init(&config);
    let mut now = Now::new(Instant::from_nanos(1_000_000_000), 1_795_305_600_000);
    let app = App::builder(config).runtime("test").build(now);
    let mut s = app.session("192.0.2.7:40000".parse().unwrap(), now);
    let req = b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut served = 0;
    let mut round = |s: &mut weir_core::Session, now: Now, n: usize| {
        for _ in 0..n {
            assert_eq!(s.feed(now, req), req.len());
            while let Some(out) = s.poll_transmit() {
                served += out.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
                let n = out.len();
                s.advance_transmit(now, n);
            }
        }
    };
    round(&mut s, now, 200); // warm: buffers grown, the log writer's buffers too
    std::thread::sleep(Duration::from_millis(200));
    let before = ALLOCS.load(Ordering::Relaxed);
    let logged = weir_kit::logging::logged();
    for _ in 0..10 {
        now = now.advanced(Duration::from_millis(30));
        round(&mut s, now, 100);
        std::thread::sleep(Duration::from_millis(30)); // the writer thread runs too
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(served, 1200);
    assert_eq!(weir_kit::logging::dropped(), 0, "no line was dropped");
    assert!(
        weir_kit::logging::logged() - logged >= 1000,
        "an access line per request"
    );
    assert_eq!(allocs, 0, "allocations over 1,000 logged requests");
    drop(guard);
}

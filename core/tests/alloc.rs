//! Zero heap allocations per request in steady state on a keep-alive connection, for `/ping`
//! and `/api/v1/compute/fast`, with the default rate limiter, metrics and request IDs on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

mod common;
use common::*;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls on this thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_per_request(raw: &[u8], pipeline: usize) -> (u64, usize) {
    let app = weir_core::App::builder(config(&[]))
        .runtime("test")
        .build(t0());
    let mut now = t0();
    let mut s = app.session(peer(), now);
    let batch: Vec<u8> = raw.repeat(pipeline);
    let mut responses = 0;
    let mut run = |s: &mut weir_core::Session, now: weir_core::Now| {
        let mut off = 0;
        while off < batch.len() {
            off += s.feed(now, &batch[off..]);
            while let Some(out) = s.poll_transmit() {
                responses += out.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
                let n = out.len();
                s.advance_transmit(now, n);
            }
        }
    };
    for _ in 0..100 {
        run(&mut s, now);
    }
    let before = ALLOCS.with(|c| c.get());
    for i in 0..1000 / pipeline {
        // Time moves (Date is re-formatted each second) but stays under SHRINK_AFTER steps.
        now = now.advanced(std::time::Duration::from_millis(if i % 10 == 0 {
            700
        } else {
            1
        }));
        s.handle_timeout(now);
        run(&mut s, now);
    }
    let after = ALLOCS.with(|c| c.get());
    (after - before, responses)
}

#[test]
fn ping_allocates_nothing_per_request() {
    let (allocs, ok) = allocations_per_request(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n", 1);
    assert_eq!(ok, 1100);
    assert_eq!(
        allocs, 0,
        "allocations over 1,000 keep-alive /ping requests"
    );
}

#[test]
fn ping_pipelined_allocates_nothing_per_request() {
    let (allocs, _) = allocations_per_request(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n", 16);
    assert_eq!(allocs, 0);
}

#[test]
fn compute_fast_allocates_nothing_per_request() {
    let body = b"{\"number\": 42}";
    let raw = format!(
        "POST /api/v1/compute/fast HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        std::str::from_utf8(body).unwrap()
    );
    let (allocs, ok) = allocations_per_request(raw.as_bytes(), 1);
    assert_eq!(ok, 1100);
    assert_eq!(
        allocs, 0,
        "allocations over 1,000 keep-alive compute/fast requests"
    );
}

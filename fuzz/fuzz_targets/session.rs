//! A whole session fed arbitrary bytes in arbitrary chunks, with time moving and the peer
//! sometimes not reading: no panic, no hang (every call returns), bounded buffering.
//!
//! Input format: a sequence of steps; each step is one control byte then data. The control
//! byte's low 2 bits pick the action (feed / advance time / toggle reading / EOF), the rest
//! the amount.
#![no_main]

#[path = "shared.rs"]
mod shared;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weir_core::jobs::intensive_work;
use weir_core::{App, Effect, Instant, Now};

fn app() -> Arc<App> {
    static APP: OnceLock<Arc<App>> = OnceLock::new();
    APP.get_or_init(|| shared::build_app(&[("MAX_HEADER_BYTES", "2048"), ("MAX_BODY_BYTES", "8192")])).clone()
}

fuzz_target!(|data: &[u8]| {
    let app = app();
    let mut now = Now::new(Instant::from_nanos(1_000_000), 1_700_000_000_000);
    let mut s = app.session("127.0.0.1:1".parse().unwrap(), now);
    let mut reading = true;
    let mut i = 0;
    let mut steps = 0;
    while i < data.len() && steps < 10_000 {
        steps += 1;
        let ctl = data[i];
        i += 1;
        let amount = usize::from(ctl >> 2);
        match ctl & 3 {
            0 | 1 => {
                let end = (i + amount + 1).min(data.len());
                let _ = s.feed(now, &data[i..end]);
                i = end;
            }
            2 => {
                now = now.advanced(Duration::from_millis((amount as u64 + 1) * 137));
                s.handle_timeout(now);
            }
            _ => {
                if amount % 8 == 0 {
                    s.handle_eof(now);
                } else if amount % 8 == 1 {
                    s.handle_drain(now);
                } else {
                    reading = !reading;
                }
            }
        }
        // Workers: run whatever was queued.
        while let Some(job) = app.queue().take() {
            if let Some((n, cost)) = job.start(now.mono) {
                job.complete(now.mono, Some(intensive_work(n, cost)));
            }
        }
        s.handle_wake(now);
        if reading {
            while let Some(out) = s.poll_transmit() {
                let n = out.len();
                s.advance_transmit(now, n);
            }
        }
        while let Some(e) = s.poll_effect() {
            if let Effect::Close(_) = e {
                return;
            }
        }
        // Bounded memory: buffers never exceed their limits by more than a response.
        assert!(s.heap_bytes() < 1 << 20, "session holds {} bytes", s.heap_bytes());
    }
});

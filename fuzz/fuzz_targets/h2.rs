//! A whole HTTP/2 connection serving weir's application, fed frames in arbitrary splits after
//! the client preface, with time moving, the peer sometimes not reading, a drain and an end of
//! stream: no panic, no hang, bounded buffering.
//!
//! Input format: as the `session` target's (a control byte per step: feed / advance time /
//! toggle reading / EOF or drain), the bytes fed after the preface.
#![no_main]

#[path = "shared.rs"]
mod shared;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weir_core::h2::connection::{Connection, H2Config};
use weir_core::h2::frame::PREFACE;
use weir_core::jobs::intensive_work;
use weir_core::{App, Effect, Instant, Now};

fn app() -> Arc<App> {
    static APP: OnceLock<Arc<App>> = OnceLock::new();
    APP.get_or_init(|| shared::build_app(&[("MAX_HEADER_BYTES", "2048"), ("MAX_BODY_BYTES", "8192")])).clone()
}

fuzz_target!(|data: &[u8]| {
    let app = app();
    let mut now = Now::new(Instant::from_nanos(1_000_000), 1_700_000_000_000);
    let config = H2Config { max_streams: 8, ..H2Config::default() };
    let mut c = Connection::new(app.clone(), "127.0.0.1:1".parse().unwrap(), config, now, PREFACE);
    let mut reading = true;
    let (mut i, mut steps) = (0, 0);
    while i < data.len() && steps < 10_000 {
        steps += 1;
        let ctl = data[i];
        i += 1;
        let amount = usize::from(ctl >> 2);
        match ctl & 3 {
            0 | 1 => {
                let end = (i + amount + 1).min(data.len());
                let _ = c.feed(now, &data[i..end]);
                i = end;
            }
            2 => {
                now = now.advanced(Duration::from_millis((amount as u64 + 1) * 137));
                c.handle_timeout(now);
            }
            _ => match amount % 8 {
                0 => c.handle_eof(now),
                1 => c.handle_drain(now),
                _ => reading = !reading,
            },
        }
        while let Some(job) = app.queue().take() {
            if let Some((n, cost)) = job.start(now.mono) {
                job.complete(now.mono, Some(intensive_work(n, cost)));
            }
        }
        c.handle_wake(now);
        if reading {
            while let Some(out) = c.poll_transmit() {
                let n = out.len();
                c.advance_transmit(now, n);
            }
        }
        while let Some(e) = c.poll_effect() {
            if let Effect::Close(_) = e {
                return;
            }
        }
        assert!(c.heap_bytes() < 1 << 20, "the connection holds {} bytes", c.heap_bytes());
    }
});

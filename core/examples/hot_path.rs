//! The core's share of a keep-alive request, for callgrind: `N` requests pipelined 16 per
//! read through one `Session` (as a runtime feeds them), with the default limiter, metrics
//! and request IDs on and the access log off. Only `serve` is counted, so start-up and the
//! runtime are left out; `benches/scripts/core-instr-per-request.sh` divides by `N`.
//!
//! usage: hot_path ping|fast|users N
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Duration;

use weir_core::{App, Config, Instant, Now, Session};

#[inline(never)]
fn serve(s: &mut Session, now: &mut Now, batch: &[u8], rounds: usize) -> usize {
    let mut written = 0;
    for _ in 0..rounds {
        *now = now.advanced(Duration::from_micros(320));
        let mut off = 0;
        while off < batch.len() {
            off += s.feed(*now, &batch[off..]);
            while let Some(out) = s.poll_transmit() {
                let n = out.len();
                written += n;
                s.advance_transmit(*now, n);
            }
        }
    }
    written
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "ping".into());
    let n: usize = args
        .next()
        .map_or(20_000, |a| a.parse().expect("N is a number"));
    let raw: &[u8] = match kind.as_str() {
        "ping" => b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
        "fast" => b"POST /api/v1/compute/fast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"number\": 42}",
        "users" => b"GET /users/42 HTTP/1.1\r\nHost: x\r\n\r\n",
        other => panic!("unknown kind {other}: ping, fast or users"),
    };
    let config = Config::from_sources([("ACCESS_LOG", "false"), ("WORKER_COUNT", "1")], 1)
        .expect("valid config");
    let mut now = Now::new(Instant::from_nanos(1_000_000_000), 1_795_305_600_000);
    let app = App::builder(config).runtime("bench").build(now);
    let mut s = app.session("127.0.0.1:9".parse().expect("address"), now);
    let batch = raw.repeat(16);
    serve(&mut s, &mut now, &batch, 10); // warm: buffers grown, Date formatted
    let written = serve(&mut s, &mut now, black_box(&batch), n / 16);
    println!("{kind}: {} requests, {written} bytes out", n / 16 * 16);
}

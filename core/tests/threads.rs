//! The parts of weir-core that many threads share, tested from many threads (threads are
//! started here, in a test, never in `core/src`).
#![allow(clippy::disallowed_methods)] // these tests contend from several threads on purpose

use std::collections::HashSet;
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use weir_core::app::{RequestId, Secret};
use weir_core::limit::{Gcra, Quota};
use weir_core::metrics::{Metrics, RequestRecord};
use weir_core::time::Instant;

#[test]
fn request_ids_are_a_chacha8_keystream_under_the_secret() {
    // Generated on a fresh thread: its keystream is ChaCha8(secret, stream n) for the stream
    // number it drew; the ID is that keystream's first 16 bytes with the version and variant
    // bits set. A CSPRNG: IDs seen reveal neither the key nor later IDs.
    let id = std::thread::spawn(|| {
        RequestId::generate(&Secret::new([0xA5; 32]))
            .as_str()
            .to_owned()
    })
    .join()
    .unwrap();
    let found = (0..10_000u64).any(|stream| {
        let mut r = ChaCha8Rng::from_seed([0xA5; 32]);
        r.set_stream(stream);
        let mut raw = [0u8; 16];
        r.fill_bytes(&mut raw);
        raw[6] = raw[6] & 0x0f | 0x40;
        raw[8] = raw[8] & 0x3f | 0x80;
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        id.replace('-', "") == hex
    });
    assert!(found, "{id} is not from the keyed ChaCha8 stream");
}

#[test]
fn request_ids_are_unique_across_threads() {
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                (0..50_000)
                    .map(|_| {
                        RequestId::generate(&Secret::new([7; 32]))
                            .as_str()
                            .to_owned()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = HashSet::new();
    for h in handles {
        for id in h.join().unwrap() {
            assert!(all.insert(id), "duplicate id");
        }
    }
    assert_eq!(all.len(), 200_000);
}

#[test]
fn a_contended_bucket_admits_exactly_the_burst() {
    let g = Arc::new(Gcra::new(Quota::new(1, 1000).unwrap()));
    let at = Instant::from_nanos(5_000_000);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let g = g.clone();
            std::thread::spawn(move || (0..1000).filter(|_| g.check(at).allowed).count())
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 1000);
}

#[test]
fn metric_counters_sum_across_threads() {
    let m = Arc::new(Metrics::new(vec!["/ping"]));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    m.request_started();
                    let status = if i % 10 == 0 { 429 } else { 200 };
                    m.request_finished(RequestRecord {
                        method: 0,
                        route: 0,
                        status,
                        latency_us: 50,
                    });
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let t = m.totals();
    assert_eq!(
        (t.total, t.success, t.errors, t.rejected, t.active_requests),
        (4000, 3600, 400, 400, 0)
    );
    let mut out = String::new();
    m.write_duration_histogram(&mut out, &["GET"]);
    assert!(out.contains("http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/ping\",http_response_status_code=\"200\"} 3600"), "{out}");
    assert!(out.contains("le=\"0.005\"} 3600"));
}

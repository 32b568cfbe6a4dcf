//! The body decoders (`Content-Length` and chunked) on arbitrary bytes in arbitrary splits:
//! no panic, the same outcome whatever the split, and never more body than the limit.
//!
//! Input: byte 0 picks the decoder (even: chunked, odd: Content-Length of byte 1 × 37),
//! byte 2 seeds the split sizes; the rest is the wire bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_core::http::body::{BodyDecoder, BodyError};

const MAX_BODY: usize = 4096;
const MAX_TRAILER: usize = 512;

fn decoder(kind: u8, len: u8) -> BodyDecoder {
    if kind % 2 == 0 {
        BodyDecoder::chunked(MAX_BODY, MAX_TRAILER)
    } else {
        BodyDecoder::length(u64::from(len) * 37)
    }
}

/// Feeds `wire` in pieces whose sizes come from `splits`; returns the outcome, the body and
/// the bytes consumed.
fn run(mut d: BodyDecoder, wire: &[u8], splits: &mut impl Iterator<Item = usize>) -> (Result<bool, BodyError>, Vec<u8>, usize) {
    let mut body = Vec::new();
    let mut at = 0;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let step = splits.next().unwrap_or(wire.len()).max(1);
        let end = (at + step).min(wire.len());
        pending.extend_from_slice(&wire[at..end]);
        at = end;
        match d.decode(&pending, Some(&mut body)) {
            Err(e) => return (Err(e), body, at),
            Ok(p) => {
                assert!(p.consumed <= pending.len());
                pending.drain(..p.consumed);
                assert!(body.len() <= MAX_BODY.max(255 * 37), "body over the limit");
                if p.done {
                    return (Ok(true), body, at - pending.len());
                }
            }
        }
        if at == wire.len() {
            return (Ok(false), body, at - pending.len());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (kind, len, seed, wire) = (data[0], data[1], data[2], &data[3..]);
    let whole = run(decoder(kind, len), wire, &mut std::iter::empty());
    let mut x = u32::from(seed) | 1;
    let mut splits = std::iter::from_fn(|| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        Some((x % 17) as usize)
    });
    let split = run(decoder(kind, len), wire, &mut splits);
    match (&whole.0, &split.0) {
        (Ok(true), Ok(true)) => assert_eq!((&whole.1, whole.2), (&split.1, split.2), "same body, same end"),
        (Err(a), Err(b)) => assert_eq!(a.status(), b.status(), "same error whatever the split"),
        (Ok(false), Ok(false)) => assert_eq!(whole.1, split.1),
        (a, b) => panic!("split changed the outcome: {a:?} vs {b:?}"),
    }
});

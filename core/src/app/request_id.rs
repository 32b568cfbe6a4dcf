//! Request IDs: keep a valid incoming `X-Request-ID`, else make a UUID v4.
//!
//! Invariants: an ID is 1–128 visible ASCII bytes (so it is safe in a header, a JSON string
//! after escaping, and a log line); generation makes no syscall and takes no lock: each thread
//! owns a Weyl-sequence state started at `seed + thread_index × 2^48 × γ`, so two threads
//! produce disjoint state sequences for 2^48 IDs each, and the 128 output bits are two
//! different bijective mixes of that unique state.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest ID kept from a client.
pub const MAX_REQUEST_ID: usize = 128;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static STATE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// A request ID stored inline (no allocation).
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; MAX_REQUEST_ID],
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId {
            len: 0,
            bytes: [0; MAX_REQUEST_ID],
        }
    }
}

impl RequestId {
    /// The ID bytes (visible ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Appends the ID as a JSON string. Generated IDs (hex and dashes) need no escaping, so
    /// only a client's ID with `"` or `\\` goes through the escaper.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let bytes = self.as_bytes();
        if self.len == 36 && bytes[14] == b'4' && !bytes.iter().any(|&b| b == b'"' || b == b'\\') {
            out.push(b'"');
            out.extend_from_slice(bytes);
            out.push(b'"');
        } else {
            super::json::write_utf8(out, bytes);
        }
    }

    /// The ID text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("invariant: IDs are ASCII")
    }

    /// The incoming value if it is 1–128 visible ASCII bytes (0x21–0x7E).
    pub fn from_client(value: &[u8]) -> Option<RequestId> {
        if value.is_empty()
            || value.len() > MAX_REQUEST_ID
            || !value.iter().all(|b| (0x21..=0x7e).contains(b))
        {
            return None;
        }
        let mut id = RequestId {
            len: value.len() as u8,
            bytes: [0; MAX_REQUEST_ID],
        };
        id.bytes[..value.len()].copy_from_slice(value);
        Some(id)
    }

    /// A fresh UUID v4 from this thread's generator, seeded by `seed` on first use.
    pub fn generate(seed: u64) -> RequestId {
        let state = STATE.with(|s| {
            let v = match s.get() {
                Some(v) => v,
                None => {
                    let t = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
                    seed.wrapping_add(t.wrapping_mul(GAMMA) << 48)
                }
            }
            .wrapping_add(GAMMA);
            s.set(Some(v));
            v
        });
        let hi = mix(state);
        let lo = mix(state ^ 0x5851_F42D_4C95_7F2D).rotate_left(17) ^ state;
        let mut raw = (u128::from(hi) << 64 | u128::from(lo)).to_be_bytes();
        raw[6] = raw[6] & 0x0f | 0x40; // version 4
        raw[8] = raw[8] & 0x3f | 0x80; // RFC 9562 variant
        let mut id = RequestId {
            len: 36,
            bytes: [0; MAX_REQUEST_ID],
        };
        // Byte i of the UUID goes to text position POS[i] (dashes at 8, 13, 18, 23).
        const POS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (b, &p) in raw.iter().zip(POS.iter()) {
            id.bytes[p] = HEX[(b >> 4) as usize];
            id.bytes[p + 1] = HEX[(b & 15) as usize];
        }
        id.bytes[8] = b'-';
        id.bytes[13] = b'-';
        id.bytes[18] = b'-';
        id.bytes[23] = b'-';
        id
    }
}

/// splitmix64's finalizer: a bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests contend from several threads on purpose
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_uuid_v4() {
        let id = RequestId::generate(42);
        let s = id.as_str();
        assert_eq!(s.len(), 36);
        let b = s.as_bytes();
        assert_eq!((b[8], b[13], b[18], b[23]), (b'-', b'-', b'-', b'-'));
        assert_eq!(b[14], b'4');
        assert!(matches!(b[19], b'8' | b'9' | b'a' | b'b'));
        assert!(
            s.chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..50_000)
                        .map(|_| RequestId::generate(7).as_str().to_owned())
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
    fn json_form_is_escaped_when_needed() {
        let mut out = Vec::new();
        RequestId::from_client(b"a\"b\\c")
            .unwrap()
            .write_json(&mut out);
        assert_eq!(out, br#""a\"b\\c""#);
        out.clear();
        let id = RequestId::generate(3);
        id.write_json(&mut out);
        assert_eq!(out, format!("\"{}\"", id.as_str()).as_bytes());
    }

    #[test]
    fn client_ids_are_validated() {
        assert_eq!(
            RequestId::from_client(b"abc-123").unwrap().as_str(),
            "abc-123"
        );
        assert!(RequestId::from_client(b"").is_none());
        assert!(RequestId::from_client(b"has space").is_none());
        assert!(
            RequestId::from_client(b"quote\"").is_some(),
            "visible ASCII is allowed; JSON escapes it"
        );
        assert!(RequestId::from_client(&[b'a'; 129]).is_none());
        assert!(RequestId::from_client(&[b'a'; 128]).is_some());
        assert!(RequestId::from_client("é".as_bytes()).is_none());
    }
}

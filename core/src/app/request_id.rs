//! Request IDs: keep a valid incoming `X-Request-ID`, else make a UUID v4.
//!
//! Invariants: an ID is 1–128 visible ASCII bytes (so it is safe in a header, a JSON string
//! after escaping, and a log line). Generated IDs come from a cryptographically secure
//! generator: each thread owns a ChaCha8 stream keyed by the process secret (256 bits from
//! the OS, passed in by the runtime) with its own stream number, so seeing any number of IDs
//! tells nothing about the next ones, two threads never share a keystream, and generation
//! makes no syscall, takes no lock and allocates nothing. Eight rounds, as Go's runtime uses
//! for its own secure randomness (the best published attacks reach seven, far from
//! practical); twelve cost ten more instructions per ID.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::Secret;
use crate::http::scan::hex16;

/// Longest ID kept from a client.
pub const MAX_REQUEST_ID: usize = 128;

/// Stream numbers handed to threads (one keystream per thread).
static NEXT_STREAM: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static RNG: RefCell<Option<ChaCha8Rng>> = const { RefCell::new(None) };
}

/// A request ID stored inline (no allocation).
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    /// Made here (a UUID: hex and dashes, nothing to escape in JSON).
    generated: bool,
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
            generated: false,
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
    /// only a client's ID goes through the escaper.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        if self.generated {
            let mut quoted = [b'"'; 38];
            quoted[1..37].copy_from_slice(&self.bytes[..36]);
            out.extend_from_slice(&quoted);
        } else {
            super::json::write_utf8(out, self.as_bytes());
        }
    }

    /// Appends the ID bytes (a generated one as a fixed-size copy).
    #[inline]
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if self.generated {
            out.extend_from_slice(&self.bytes[..36]);
        } else {
            out.extend_from_slice(self.as_bytes());
        }
    }

    /// The ID text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("invariant: IDs are ASCII")
    }

    /// The incoming value if it is 1–128 visible ASCII bytes (0x21–0x7E).
    pub fn from_client(value: &[u8]) -> Option<RequestId> {
        let mut id = RequestId::default();
        id.set_from_client(value).then_some(id)
    }

    /// Takes the client's value in place when it is 1–128 visible ASCII bytes (0x21–0x7E);
    /// false (and unchanged) otherwise.
    pub fn set_from_client(&mut self, value: &[u8]) -> bool {
        if value.is_empty()
            || value.len() > MAX_REQUEST_ID
            || !value.iter().all(|b| (0x21..=0x7e).contains(b))
        {
            return false;
        }
        self.len = value.len() as u8;
        self.generated = false;
        self.bytes[..value.len()].copy_from_slice(value);
        true
    }

    /// A fresh UUID v4 from this thread's generator, keyed by `secret` on first use.
    pub fn generate(secret: &Secret) -> RequestId {
        let mut id = RequestId::default();
        id.set_generated(secret);
        id
    }

    /// Overwrites this ID with a fresh UUID v4 (see [`RequestId::generate`]), rendered in
    /// place (SSE2 hex, [`hex16`]): no zeroing, no copy of the whole ID.
    pub fn set_generated(&mut self, secret: &Secret) {
        let (hi, lo) = RNG.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                seed(&mut slot, secret);
            }
            let rng = slot.as_mut().expect("invariant: seeded just above");
            (rng.next_u64(), rng.next_u64())
        });
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&hi.to_le_bytes());
        raw[8..].copy_from_slice(&lo.to_le_bytes());
        raw[6] = raw[6] & 0x0f | 0x40; // version 4
        raw[8] = raw[8] & 0x3f | 0x80; // RFC 9562 variant
        // 32 hex digits in one step, then placed around the dashes (8-4-4-4-12).
        let hex = hex16(&raw);
        let text = &mut self.bytes[..36];
        text[..8].copy_from_slice(&hex[..8]);
        text[8] = b'-';
        text[9..13].copy_from_slice(&hex[8..12]);
        text[13] = b'-';
        text[14..18].copy_from_slice(&hex[12..16]);
        text[18] = b'-';
        text[19..23].copy_from_slice(&hex[16..20]);
        text[23] = b'-';
        text[24..36].copy_from_slice(&hex[20..32]);
        self.len = 36;
        self.generated = true;
    }
}

/// This thread's generator, made on its first ID (out of line: the hot path keeps a small
/// stack frame).
#[cold]
#[inline(never)]
fn seed(slot: &mut Option<ChaCha8Rng>, secret: &Secret) {
    let rng = slot.insert(ChaCha8Rng::from_seed(secret.0));
    rng.set_stream(NEXT_STREAM.fetch_add(1, Ordering::Relaxed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_uuid_v4() {
        let id = RequestId::generate(&Secret([42; 32]));
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
    fn json_form_is_escaped_when_needed() {
        let mut out = Vec::new();
        RequestId::from_client(b"a\"b\\c")
            .unwrap()
            .write_json(&mut out);
        assert_eq!(out, br#""a\"b\\c""#);
        out.clear();
        let id = RequestId::generate(&Secret([3; 32]));
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

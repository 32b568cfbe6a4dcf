//! Request IDs: keep a valid incoming `X-Request-ID`, else make a UUID v4.
//!
//! Invariants: an ID is 1–128 visible ASCII bytes (so it is safe in a header, a JSON string
//! after escaping, and a log line). Generated IDs come from a cryptographically secure
//! generator: each thread owns a ChaCha12 stream keyed by the process secret (256 bits from
//! the OS, passed in by the runtime) with its own stream number, so seeing any number of IDs
//! tells nothing about the next ones, two threads never share a keystream, and generation
//! makes no syscall, takes no lock and allocates nothing.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use rand_chacha::ChaCha12Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::Secret;

/// Longest ID kept from a client.
pub const MAX_REQUEST_ID: usize = 128;

/// Stream numbers handed to threads (one keystream per thread).
static NEXT_STREAM: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static RNG: RefCell<Option<ChaCha12Rng>> = const { RefCell::new(None) };
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

    /// A fresh UUID v4 from this thread's generator, keyed by `secret` on first use.
    pub fn generate(secret: &Secret) -> RequestId {
        let mut raw = [0u8; 16];
        RNG.with(|cell| {
            let mut rng = cell.borrow_mut();
            let rng = rng.get_or_insert_with(|| {
                let mut r = ChaCha12Rng::from_seed(secret.0);
                r.set_stream(NEXT_STREAM.fetch_add(1, Ordering::Relaxed));
                r
            });
            rng.fill_bytes(&mut raw);
        });
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

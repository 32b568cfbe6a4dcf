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

/// The header line an ID is kept in.
const PREFIX: &[u8; 14] = b"X-Request-ID: ";
const AT: usize = PREFIX.len();
/// A generated ID's whole header line.
const GENERATED_LINE: usize = AT + 36 + 2;

/// A request ID stored inline (no allocation), inside its own header line
/// (`X-Request-ID: <id>\r\n`), so a response gets it in one copy.
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    /// Made here (a UUID: hex and dashes, nothing to escape in JSON).
    generated: bool,
    /// The prefix, the ID at `AT..AT + len`, then CRLF.
    line: [u8; AT + MAX_REQUEST_ID + 2],
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for RequestId {
    fn default() -> Self {
        let mut line = [0; AT + MAX_REQUEST_ID + 2];
        line[..AT].copy_from_slice(PREFIX);
        RequestId {
            len: 0,
            generated: false,
            line,
        }
    }
}

impl RequestId {
    /// The ID bytes (visible ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.line[AT..AT + self.len as usize]
    }

    /// Appends the ID as a JSON string. Generated IDs (hex and dashes) need no escaping, so
    /// only a client's ID goes through the escaper.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        if self.generated {
            let mut quoted = [b'"'; 38];
            quoted[1..37].copy_from_slice(&self.line[AT..AT + 36]);
            out.extend_from_slice(&quoted);
        } else {
            super::json::write_utf8(out, self.as_bytes());
        }
    }

    /// Appends the `X-Request-ID` header line (a generated one as one fixed-size copy).
    #[inline]
    pub fn write_header_line(&self, out: &mut Vec<u8>) {
        if self.generated {
            out.extend_from_slice(&self.line[..GENERATED_LINE]);
        } else {
            out.extend_from_slice(&self.line[..AT + self.len as usize + 2]);
        }
    }

    /// The ID text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("invariant: IDs are ASCII")
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
        let n = value.len();
        self.len = n as u8;
        self.generated = false;
        self.line[AT..AT + n].copy_from_slice(value);
        self.line[AT + n..AT + n + 2].copy_from_slice(b"\r\n");
        true
    }

    /// A fresh UUID v4 from this thread's generator, keyed by `secret` on first use.
    pub fn generate(secret: &Secret) -> RequestId {
        let mut id = RequestId::default();
        id.set_generated(secret);
        id
    }

    /// Overwrites this ID with a fresh UUID v4 (see [`RequestId::generate`]), rendered in
    /// place (SSE2 hex, `hex16`): no zeroing, no copy of the whole ID.
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
        let text = &mut self.line[AT..AT + 36];
        text[..8].copy_from_slice(&hex[..8]);
        text[8] = b'-';
        text[9..13].copy_from_slice(&hex[8..12]);
        text[13] = b'-';
        text[14..18].copy_from_slice(&hex[12..16]);
        text[18] = b'-';
        text[19..23].copy_from_slice(&hex[16..20]);
        text[23] = b'-';
        text[24..36].copy_from_slice(&hex[20..32]);
        self.line[AT + 36..GENERATED_LINE].copy_from_slice(b"\r\n");
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
    fn the_header_line_holds_the_id() {
        let id = RequestId::generate(&Secret([7; 32]));
        let mut out = Vec::new();
        id.write_header_line(&mut out);
        assert_eq!(out, format!("X-Request-ID: {}\r\n", id.as_str()).as_bytes());
        for client in [&b"a"[..], b"trace-77", &[b'z'; 128]] {
            let mut id = RequestId::generate(&Secret([7; 32]));
            assert!(id.set_from_client(client));
            out.clear();
            id.write_header_line(&mut out);
            let want = [&b"X-Request-ID: "[..], client, b"\r\n"].concat();
            assert_eq!(out, want);
            assert_eq!(id.as_bytes(), client);
        }
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

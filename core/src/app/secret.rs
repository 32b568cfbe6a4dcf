//! The per-process secret that keys the request-ID generator and the per-IP table's hash.
//!
//! Invariant: its `Debug` never shows it.

/// The per-process secret: keys the request-ID generator and the per-IP table's hash. Its
/// `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(pub(crate) [u8; 32]);

impl Secret {
    /// A secret from 32 random bytes (the runtime reads them from the OS).
    pub fn new(bytes: [u8; 32]) -> Self {
        Secret(bytes)
    }

    /// A secret for embedders that pass none: the standard library's randomly keyed hasher
    /// (128 bits of OS randomness). Runtimes pass 256 bits of their own.
    pub(super) fn fallback() -> Self {
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        let mut bytes = [0u8; 32];
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&state.hash_one(i).to_le_bytes());
        }
        Secret(bytes)
    }

    /// Two 64-bit keys derived from the secret for a keyed hash (a keystream apart from the
    /// request IDs', so neither use reveals the other).
    pub(crate) fn hash_keys(&self) -> (u64, u64) {
        use rand_chacha::rand_core::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha12Rng::from_seed(self.0);
        rng.set_stream(u64::MAX);
        (rng.next_u64(), rng.next_u64())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

//! The system clock as [`Now`]: nanoseconds since process start (monotonic) and Unix millis.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use weir_core::time::{Instant, Now};

static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();

fn origin() -> std::time::Instant {
    *ORIGIN.get_or_init(std::time::Instant::now)
}

/// The current time.
pub fn now() -> Now {
    let mono = std::time::Instant::now().saturating_duration_since(origin());
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Now::new(Instant::from_nanos(mono.as_nanos() as u64), wall)
}

/// The std instant of a core instant (for runtime timers).
pub fn to_std(i: Instant) -> std::time::Instant {
    origin() + std::time::Duration::from_nanos(i.as_nanos())
}

/// 32 bytes from the OS's random source (the per-process secret). Falls back to the
/// standard library's randomly keyed hasher if `getrandom` fails (it does not on Linux ≥ 3.17).
pub fn random_secret() -> weir_core::app::Secret {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => {
                use std::hash::{BuildHasher, RandomState};
                let s = RandomState::new();
                for (i, chunk) in bytes.chunks_mut(8).enumerate() {
                    chunk.copy_from_slice(&s.hash_one((i, now().wall_ms)).to_le_bytes());
                }
                break;
            }
        }
    }
    weir_core::app::Secret::new(bytes)
}

//! The system clock as [`Now`]: nanoseconds since process start (monotonic) and Unix millis.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::time::{Instant, Now};

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

/// A random 64-bit seed from the OS-seeded hasher keys (no extra dependency).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(now().wall_ms ^ u64::from(std::process::id()))
}

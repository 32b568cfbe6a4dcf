//! The system clock as [`Now`]: nanoseconds since process start (monotonic) and Unix millis.
//!
//! A runtime reads the time after every wake, so this is on the hot path: one monotonic read,
//! and the wall clock derived from it with an offset that each thread takes afresh from the
//! system clock once per monotonic second, so a step of the wall clock (NTP, an operator)
//! shows within a second. Reading both clocks each time cost about forty instructions more
//! per read (measured).

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_core::time::{Instant, Now};

static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();

thread_local! {
    /// (the monotonic second the offset was taken in, wall millis minus monotonic millis).
    static WALL_OFFSET: Cell<(u64, i64)> = const { Cell::new((u64::MAX, 0)) };
}

fn origin() -> std::time::Instant {
    *ORIGIN.get_or_init(std::time::Instant::now)
}

fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The current time.
pub fn now() -> Now {
    let mono = std::time::Instant::now().saturating_duration_since(origin());
    let mono = mono.as_secs() * 1_000_000_000 + u64::from(mono.subsec_nanos());
    let mono_ms = (mono / 1_000_000) as i64;
    let offset = WALL_OFFSET.with(|cell| {
        let (second, offset) = cell.get();
        let this_second = mono / 1_000_000_000;
        if second == this_second {
            return offset;
        }
        let offset = system_ms() - mono_ms;
        cell.set((this_second, offset));
        offset
    });
    Now::new(Instant::from_nanos(mono), (mono_ms + offset).max(0) as u64)
}

/// The monotonic clock alone (a vDSO read: no system call), for the access log's latency.
pub fn mono() -> Instant {
    let mono = std::time::Instant::now().saturating_duration_since(origin());
    Instant::from_nanos(mono.as_secs() * 1_000_000_000 + u64::from(mono.subsec_nanos()))
}

/// The std instant of a core instant (for runtime timers).
pub fn to_std(i: Instant) -> std::time::Instant {
    origin() + Duration::from_nanos(i.as_nanos())
}

/// 32 bytes from the OS's random source (the per-process secret). Falls back to the
/// standard library's randomly keyed hasher if `getrandom` fails (it does not on Linux ≥ 3.17).
pub fn random_bytes() -> [u8; 32] {
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
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_follows_the_system_and_the_monotonic_one_never_goes_back() {
        let mut last = now();
        for _ in 0..10_000 {
            let n = now();
            assert!(n.mono >= last.mono);
            let system = system_ms() as u64;
            // Derived from the monotonic clock and an offset at most a second old: within a
            // few milliseconds of the system clock unless it was stepped in that second.
            assert!(
                n.wall_ms.abs_diff(system) < 1_000,
                "{} vs {system}",
                n.wall_ms
            );
            last = n;
        }
    }

    #[test]
    fn a_deadline_maps_to_a_std_instant_no_earlier_than_it_is_reached() {
        for _ in 0..1_000 {
            let deadline = now().mono;
            // The std instant of a time already reached is not in the future.
            assert!(to_std(deadline) <= std::time::Instant::now());
            let later = deadline.saturating_add(Duration::from_millis(1));
            let at = to_std(later);
            std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
            // Once std says the deadline came, so does this clock.
            assert!(now().mono >= later);
        }
    }
}

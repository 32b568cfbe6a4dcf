//! The CPU profiler behind `GET /debug/pprof/profile` (`PROFILING=true`, the `profiling`
//! cargo feature): pprof-rs samples every thread's stack 99 times a second (`SIGPROF`) for
//! the profile's length on a thread of its own, then renders a pprof protobuf or a flame
//! graph into the request's slot.
//!
//! Invariants: nothing is sampled, and no signal handler is installed, until a profile is
//! asked for, and the handler is removed when it ends; one profile at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir_core::app::profile::{ProfileFormat, ProfileSlot, Profiler};

/// Samples per second: not a multiple of common timer rates, so samples do not line up
/// with periodic work (Go's pprof uses 100).
const FREQUENCY: i32 = 99;

/// The process's CPU profiler.
#[derive(Debug, Default)]
pub struct Pprof {
    busy: Arc<AtomicBool>,
}

impl Profiler for Pprof {
    fn start(&self, duration: Duration, format: ProfileFormat) -> Option<Arc<ProfileSlot>> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return None;
        }
        let slot = Arc::new(ProfileSlot::default());
        let (busy, out) = (self.busy.clone(), slot.clone());
        let spawned = std::thread::Builder::new()
            .name("weir-profile".into())
            .spawn(move || {
                out.complete(profile(duration, format));
                busy.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.busy.store(false, Ordering::Release);
            slot.complete(Err(format!("cannot start the profiling thread: {e}")));
        }
        Some(slot)
    }
}

/// Profiles the whole process for `duration` and renders the result.
fn profile(duration: Duration, format: ProfileFormat) -> Result<Vec<u8>, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| format!("the profiler did not start: {e}"))?;
    tracing::info!(seconds = duration.as_secs(), ?format, "CPU profile started");
    std::thread::sleep(duration);
    let report = guard
        .report()
        .build()
        .map_err(|e| format!("the profile could not be read: {e}"))?;
    drop(guard);
    let mut out = Vec::new();
    match format {
        ProfileFormat::Pprof => {
            use pprof::protos::Message;
            let profile = report
                .pprof()
                .map_err(|e| format!("the profile could not be encoded: {e}"))?;
            profile
                .encode(&mut out)
                .map_err(|e| format!("the profile could not be encoded: {e}"))?;
        }
        ProfileFormat::Svg => report
            .flamegraph(&mut out)
            .map_err(|e| format!("the flame graph could not be drawn: {e}"))?,
    }
    tracing::info!(bytes = out.len(), "CPU profile taken");
    Ok(out)
}

//! CPU profiles on demand (`PROFILING=true`): `GET /debug/pprof/profile?seconds=N`, as the Go
//! servers weir replaces expose pprof. Sampling a process's stacks takes signals and threads,
//! so the profiler is the runtime kit's ([`Profiler`], handed in with
//! [`AppBuilder::profiler`](super::AppBuilder::profiler)); the app validates the request,
//! starts a profile, and answers when its [`ProfileSlot`] is filled.
//!
//! Invariants: at most one profile runs at a time (a second request is answered 503 with
//! `Retry-After`); nothing runs, and no request pays anything, until one is asked for; a
//! profile is answered at most a few seconds after its end, whatever the profiler does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a profile is rendered as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileFormat {
    /// A pprof protobuf (`go tool pprof`, `pprof`), the default.
    Pprof,
    /// A flame graph, SVG.
    Svg,
}

impl ProfileFormat {
    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static [u8] {
        match self {
            ProfileFormat::Pprof => b"application/octet-stream",
            ProfileFormat::Svg => b"image/svg+xml",
        }
    }
}

/// Takes CPU profiles of the whole process (the runtime kit's, with a sampling profiler).
pub trait Profiler: Send + Sync {
    /// Starts a profile of `duration`, rendered as `format` into the returned slot when it
    /// ends; `None` while another profile runs.
    fn start(&self, duration: Duration, format: ProfileFormat) -> Option<Arc<ProfileSlot>>;
}

/// Where a profile's result lands: the rendered bytes, or why there are none.
#[derive(Debug, Default)]
pub struct ProfileSlot(Mutex<Option<Result<Vec<u8>, String>>>);

impl ProfileSlot {
    /// The profiler's result.
    pub fn complete(&self, result: Result<Vec<u8>, String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    }

    /// The result, once there is one (taken: the slot is then empty).
    pub fn take(&self) -> Option<Result<Vec<u8>, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Profile lengths a request may ask for, in seconds, and the default.
pub const PROFILE_SECONDS: (u64, u64, u64) = (1, 60, 10);

/// How long after a profile's end its answer is waited for before a 500.
pub const PROFILE_GRACE: Duration = Duration::from_secs(10);

/// How often a pending profile is looked at once its time is up.
pub const PROFILE_POLL: Duration = Duration::from_millis(50);

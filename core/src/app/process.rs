//! The process's own figures for `/metrics` (memory, CPU, descriptors): the core reads no
//! `/proc`, so the runtime kit samples them off the I/O threads into [`ProcessFigures`],
//! and a scrape reads a [`ProcessStats`] copy.
//!
//! Invariant: a scrape costs a few atomic loads whatever the number of connections.

use std::sync::atomic::{AtomicU64, Ordering};

/// Process figures the runtime supplies for `/metrics` (the core reads no `/proc`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ProcessStats {
    /// Resident set size.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The descriptor limit.
    pub max_fds: u64,
    /// User + system CPU time.
    pub cpu_seconds: f64,
    /// Process start, Unix seconds.
    pub start_time_seconds: f64,
    /// Log lines dropped because the log buffer was full.
    pub log_lines_dropped: u64,
}

impl ProcessStats {
    /// Builds the figures (the struct is `non_exhaustive` for future fields).
    pub fn new(
        rss_bytes: u64,
        open_fds: u64,
        max_fds: u64,
        cpu_seconds: f64,
        start_time_seconds: f64,
        log_lines_dropped: u64,
    ) -> Self {
        ProcessStats {
            rss_bytes,
            open_fds,
            max_fds,
            cpu_seconds,
            start_time_seconds,
            log_lines_dropped,
        }
    }
}

/// The latest process figures, written by the runtime's sampler (once a second, off the I/O
/// threads) and only read by `/metrics`: a scrape costs a few atomic loads whatever the number
/// of connections, and never touches `/proc` on an I/O thread.
#[derive(Debug, Default)]
pub struct ProcessFigures {
    rss_bytes: AtomicU64,
    open_fds: AtomicU64,
    max_fds: AtomicU64,
    cpu_micros: AtomicU64,
    start_time_millis: AtomicU64,
    log_lines_dropped: AtomicU64,
}

impl ProcessFigures {
    /// Publishes a new sample.
    pub fn store(&self, s: &ProcessStats) {
        let put = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        put(&self.rss_bytes, s.rss_bytes);
        put(&self.open_fds, s.open_fds);
        put(&self.max_fds, s.max_fds);
        put(&self.cpu_micros, (s.cpu_seconds * 1e6) as u64);
        put(&self.start_time_millis, (s.start_time_seconds * 1e3) as u64);
        put(&self.log_lines_dropped, s.log_lines_dropped);
    }

    /// The latest sample (zeros before the first).
    pub fn load(&self) -> ProcessStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProcessStats::new(
            get(&self.rss_bytes),
            get(&self.open_fds),
            get(&self.max_fds),
            get(&self.cpu_micros) as f64 / 1e6,
            get(&self.start_time_millis) as f64 / 1e3,
            get(&self.log_lines_dropped),
        )
    }
}

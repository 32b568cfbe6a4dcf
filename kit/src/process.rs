//! Process figures for `/metrics` from `/proc` (Linux; zeros elsewhere) and the fd limit.
//!
//! Invariant: `/proc` is read only by the sampler thread, once a second; I/O threads read the
//! published [`ProcessFigures`] (atomics), so a scrape costs the same with 10 or 10,000
//! connections open (listing `/proc/self/fd` grows with them).

use std::sync::Arc;
use std::time::Duration;

use weir_core::app::{ProcessFigures, ProcessStats};

/// How often the sampler reads `/proc`.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Starts the thread that samples the process figures into `figures` every
/// [`SAMPLE_EVERY`] (the first sample is taken before this returns).
pub fn spawn_sampler(figures: Arc<ProcessFigures>) {
    figures.store(&stats());
    std::thread::Builder::new()
        .name("weir-sampler".into())
        .spawn(move || {
            loop {
                std::thread::sleep(SAMPLE_EVERY);
                figures.store(&stats());
            }
        })
        .expect("invariant: the OS can start the sampler thread");
}

/// Raises `RLIMIT_NOFILE`'s soft limit to its hard limit; returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        if lim.current.is_some_and(|c| c < max) {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(max),
                    maximum: Some(max),
                },
            );
        }
    }
    fd_limit()
}

/// Descriptors open in this process now.
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The soft `RLIMIT_NOFILE` in force.
pub fn fd_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// (user + system CPU seconds, resident bytes, start time in seconds since the epoch) of
/// process `pid` (`None`: this process), from `/proc` with the system's own clock tick and
/// page size; zeros where `/proc` cannot be read. Shared with the benchmark tools, so a
/// server's figures and a comparison's are computed alike.
pub fn cpu_rss_start(pid: Option<u32>) -> (f64, u64, f64) {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let page = rustix::param::page_size() as u64;
    let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
    let rss = std::fs::read_to_string(format!("{dir}/statm"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page);
    let (mut cpu, mut start) = (0.0, 0.0);
    if let Ok(stat) = std::fs::read_to_string(format!("{dir}/stat")) {
        // Fields after the parenthesised command name; utime is field 14, starttime 22.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            cpu = (num(11) + num(12)) / ticks;
            let boot = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        l.strip_prefix("btime ")
                            .and_then(|v| v.trim().parse::<f64>().ok())
                    })
                })
                .unwrap_or(0.0);
            start = boot + num(19) / ticks;
        }
    }
    (cpu, rss, start)
}

/// Reads the current process figures.
pub fn stats() -> ProcessStats {
    let (cpu, rss, start) = cpu_rss_start(None);
    let fds = open_fds();
    ProcessStats::new(rss, fds, fd_limit(), cpu, start, super::logging::dropped())
}

/// Whether the kernel hands the connections queued on a closing `SO_REUSEPORT` listener to
/// another listener of its group (`net.ipv4.tcp_migrate_req`, Linux 5.14+) instead of
/// resetting them.
pub fn migrates_queued_connections() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "1")
}

//! `tracing` set-up: JSON lines in production, human-readable in development, written by a
//! background thread through a bounded buffer that drops (and counts) lines when full, so
//! logging never blocks an I/O thread.

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use weir_core::config::{Config, Environment};

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the log writer alive; dropping it flushes what is buffered.
#[derive(Debug)]
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>); // held for its Drop only

/// Installs the global subscriber (logs go to stderr; stdout carries only the address line).
pub fn init(config: &Config) -> LogGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(config.log_buffer_lines)
        .thread_name("weir-log")
        .finish(std::io::stderr());
    let _ = DROPPED.set(writer.error_counter());
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true)
        .with_ansi(ansi);
    let installed = match config.environment {
        Environment::Production => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        _ => builder.compact().try_init(),
    };
    if installed.is_err() {
        // A subscriber already exists (tests); keep it.
        return LogGuard(None);
    }
    LogGuard(Some(guard))
}

/// Lines dropped because the buffer was full.
pub fn dropped() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Best effort: give the writer thread a moment before an abrupt exit.
pub fn flush() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}

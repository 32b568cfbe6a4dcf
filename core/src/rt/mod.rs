//! Runtime glue shared by the three binaries (feature `rt`): the only code in weir-core that
//! reads clocks, starts threads, reads the process environment or touches `/proc`.
//!
//! A runtime's `main` is: [`Server::start`] (config from env + flags, logging, fd limit,
//! app, worker threads, bound listener, the address on stdout's first line), its own accept
//! loop and connection loops, then on a signal [`Server::begin_drain`], waiting until
//! [`Server::drained`] or the deadline, and [`Server::finish`] (final statistics, exit 0).
#![allow(clippy::disallowed_methods)] // this module is where clocks, threads and env are allowed

pub mod clock;
pub mod logging;
pub mod net;
pub mod process;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::app::App;
use crate::config::{Config, ConfigError, help_text};
use crate::jobs::intensive_work;

/// One server process: its app, workers, listener and log writer.
#[derive(Debug)]
pub struct Server {
    /// The shared application.
    pub app: Arc<App>,
    /// The bound listening socket (blocking; a runtime may make it non-blocking).
    pub listener: TcpListener,
    workers: Vec<JoinHandle<()>>,
    stop_workers: Option<crossbeam_channel::Sender<()>>,
    _log: logging::LogGuard,
    drain_deadline: Option<std::time::Instant>,
}

/// Reads the configuration from the process environment and arguments; prints `--help` and
/// exits 0, or prints the error naming the variable and exits 2 — before any socket is bound.
pub fn load_config(bin: &str) -> Config {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match Config::from_sources(std::env::vars(), std::env::args().skip(1), cores) {
        Ok(c) => c,
        Err(ConfigError::HelpRequested) => {
            print!("{}", help_text(bin));
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("{bin}: {e}");
            std::process::exit(2);
        }
    }
}

impl Server {
    /// Starts everything but the accept loop. `runtime` names the binary's model.
    pub fn start(bin: &str, runtime: &'static str) -> std::io::Result<Server> {
        let config = load_config(bin);
        let log = logging::init(&config);
        let fd_limit = process::raise_fd_limit();
        let listener = net::bind(config.listen, config.backlog).inspect_err(|e| {
            tracing::error!(address = %config.listen, error = %e, "cannot bind");
        })?;
        let local = listener.local_addr()?;
        let app = App::builder(config.clone())
            .runtime(runtime)
            .secret(clock::random_secret())
            .process_stats(process::stats)
            .build(clock::now());
        tracing::info!(
            runtime,
            version = env!("CARGO_PKG_VERSION"),
            address = %local,
            fd_limit,
            config = %config.summary(),
            "weir started"
        );
        let (stop_workers, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let workers = (0..config.worker_count)
            .map(|i| {
                let app = app.clone();
                let stop = stop_rx.clone();
                std::thread::Builder::new()
                    .name(format!("weir-worker-{i}"))
                    .spawn(move || run_worker(&app, &stop))
                    .expect("invariant: the OS can start the configured worker threads")
            })
            .collect();
        // Serve only once the worker pool is up, so /health is truthful from the first request.
        while app.workers_alive() < config.worker_count {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The first line of stdout: scripts and tests read the bound address (port 0 works).
        println!("listening on {local}");
        Ok(Server {
            app,
            listener,
            workers,
            stop_workers: Some(stop_workers),
            _log: log,
            drain_deadline: None,
        })
    }

    /// Begins a graceful drain: the app refuses new work and the runtime should stop
    /// accepting and call `Session::handle_drain` on every connection.
    pub fn begin_drain(&mut self) {
        let timeout = self.app.config().shutdown_timeout;
        self.drain_deadline = Some(std::time::Instant::now() + timeout);
        tracing::info!(connections = self.app.connections(), timeout = ?timeout, "draining");
        self.app.begin_drain(clock::now());
        // Stop listening: connections not yet accepted are refused by the kernel, and every
        // accept loop blocked on a copy of this socket wakes up with an error.
        let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Both);
    }

    /// The blocking shutdown sequence for runtimes without an async signal API: waits for
    /// SIGINT or SIGTERM, drains (`notify` wakes the runtime's connections), waits until
    /// drained or the deadline, exits at once on a second signal; returns the exit status.
    pub fn run_until_signalled(mut self, notify: impl FnOnce()) -> i32 {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .expect("invariant: SIGINT and SIGTERM can be handled");
        let _ = signals.forever().next();
        self.begin_drain();
        notify();
        while !self.drained() {
            if signals.pending().next().is_some() {
                exit_now();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.finish()
    }

    /// True once every connection has closed, or the drain deadline has passed.
    pub fn drained(&self) -> bool {
        self.app.connections() == 0
            || self
                .drain_deadline
                .is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// Stops the workers (after the queued jobs ran, within the drain deadline), logs the
    /// final statistics and returns the process exit status (0).
    pub fn finish(mut self) -> i32 {
        self.app.queue().close();
        // Dropping the sender wakes every worker; each leaves once the queue is empty.
        drop(self.stop_workers.take());
        let deadline = self.drain_deadline.unwrap_or_else(std::time::Instant::now);
        for w in self.workers {
            while !w.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if w.is_finished() {
                let _ = w.join();
            }
        }
        let t = self.app.metrics().totals();
        let q = self.app.queue().stats();
        let lat = self.app.metrics().latency().snapshot();
        tracing::info!(
            total_requests = t.total,
            success_count = t.success,
            error_count = t.errors,
            rejected_count = t.rejected,
            connections_total = t.connections_total,
            open_connections = self.app.connections(),
            jobs_completed = q.completed.load(Ordering::Relaxed),
            jobs_rejected = q.rejected.load(Ordering::Relaxed),
            jobs_cancelled = q.cancelled.load(Ordering::Relaxed),
            jobs_timed_out = q.timed_out.load(Ordering::Relaxed),
            p50_latency_us = lat.quantile(0.5),
            p99_latency_us = lat.quantile(0.99),
            log_lines_dropped = logging::dropped(),
            "final statistics; shutdown complete"
        );
        0
    }
}

/// The worker loop: take a job, skip it if cancelled or expired, run it, deliver the result.
/// A panic in the work is caught and answered as `PROCESSING_ERROR`. Blocks while idle (no
/// polling); returns once `stop` fires and the queue is empty.
pub fn run_worker(app: &App, stop: &crossbeam_channel::Receiver<()>) {
    app.worker_started();
    while let Some(job) = app.queue().take_until(stop) {
        if let Some((n, cost)) = job.start(clock::now().mono) {
            let result = std::panic::catch_unwind(|| intensive_work(n, cost)).ok();
            job.complete(clock::now().mono, result);
        }
    }
    app.worker_stopped();
}

/// Writes what `s` has queued through `write` until the socket would block (or times out);
/// true if it did. A socket error is handed to the session. Shared by the three runtimes.
pub fn flush(
    s: &mut crate::Session,
    mut write: impl FnMut(&[u8]) -> std::io::Result<usize>,
) -> bool {
    use std::io::ErrorKind;
    while let Some(bytes) = s.poll_transmit() {
        match write(bytes) {
            Ok(n) => s.advance_transmit(clock::now(), n),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                return true;
            }
            Err(e) => {
                s.handle_io_error(clock::now(), e.kind().into());
                return false;
            }
        }
    }
    false
}

/// Handles the second SIGINT/SIGTERM: exit at once.
pub fn exit_now() -> ! {
    tracing::warn!("second signal: exiting at once");
    logging::flush();
    std::process::exit(1)
}

//! weir-kit, the runtime kit: everything a runtime needs besides its own I/O model, written
//! once for all of them. This is where clocks are read, threads started, the process
//! environment and `/proc` read, signals handled and the process exited — never in
//! `weir-core`, which stays sans-IO.
//!
//! The kit hosts any [`Hosted`] service (weir's application, or one of your own): a runtime's
//! `run` is [`serve::run`] over a [`Server`] from [`Server::start`] (config from env + flags,
//! logging, fd limit, the service built from a [`Setup`], worker threads, the bound
//! listener), its own accept loop and connection loops on the I/O threads, and the shutdown
//! sequence on the calling thread: on a signal the shutdown delay, [`Server::begin_drain`],
//! waiting until [`Server::drained`] or the deadline, and [`Server::finish`] (final
//! statistics, exit status 0).

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]
#![allow(clippy::disallowed_methods)] // this module is where clocks, threads and env are allowed

pub mod cli;
pub mod clock;
pub mod deadlines;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod logging;
pub mod net;
pub mod process;
#[cfg(feature = "profiling")]
pub mod profile;
pub mod serve;
pub mod tls;
pub mod waits;

use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use weir_core::app::ProcessFigures;
use weir_core::config::Config;
use weir_core::jobs::{JobQueue, intensive_work};
use weir_core::server::{Hosted, Lifecycle, Setup};
use weir_core::time::format_duration;

/// One server process: its service, lifecycle, workers, listener, signal handlers and log
/// writer.
#[derive(Debug)]
pub struct Server<S> {
    /// The service every connection serves.
    pub service: Arc<S>,
    /// The connections' slots, readiness, the drain and the TLS configuration.
    pub lifecycle: Arc<Lifecycle>,
    /// The settings.
    pub config: Config,
    listener: Option<TcpListener>,
    signals: signal_hook::iterator::Signals,
    workers: Vec<JoinHandle<()>>,
    stop_workers: Option<crossbeam_channel::Sender<()>>,
    _log: logging::LogGuard,
    drain_deadline: Option<std::time::Instant>,
}

/// Descriptors kept free below `RLIMIT_NOFILE` for everything but connections (listener
/// copies, pollers, wakers, the log, one to accept and refuse with a 503): past
/// `MAX_CONNECTIONS` a refused client still gets its answer instead of hanging in the backlog.
pub fn fd_reserve(fd_limit: u64, io_threads: usize) -> u64 {
    (32 + 4 * io_threads as u64).min(fd_limit / 2)
}

impl<S: Hosted> Server<S> {
    /// Starts everything but the accept loop: configuration, logging, the descriptor limit
    /// (and `MAX_CONNECTIONS` clamped below it), the process-figures sampler, the service
    /// (`build` from a [`Setup`]), the workers (when the service has jobs), the signal
    /// handlers, then the listener. Stdout's `listening on` line comes
    /// from [`serve::run`] once the I/O threads run and `MAX_CONNECTIONS`
    /// is clamped to the descriptors they left — so a signal sent as soon as that line
    /// appears starts a drain, never a default death, and a client that waited for it meets
    /// the final limit.
    pub fn start(
        bin: &'static str,
        runtime: &'static str,
        mut config: Config,
        build: impl FnOnce(Setup) -> Arc<S>,
    ) -> std::io::Result<Server<S>> {
        // Checked before anything is bound: a wrong file is a configuration error (exit 2).
        let tls = config.tls.as_ref().map(|files| {
            tls::load(files, config.http2).unwrap_or_else(|e| {
                eprintln!("{bin}: {e}");
                std::process::exit(2);
            })
        });
        #[cfg(feature = "fleet")]
        let redis = config.fleet.as_ref().map(|f| {
            fleet::check(f).unwrap_or_else(|e| {
                eprintln!("{bin}: {e}");
                std::process::exit(2);
            })
        });
        #[cfg(not(feature = "profiling"))]
        if config.profiling {
            eprintln!(
                "{bin}: PROFILING is set, but this binary was built without its `profiling` feature: rebuild with `--features profiling`, or unset PROFILING"
            );
            std::process::exit(2);
        }
        #[cfg(not(feature = "fleet"))]
        if config.fleet.is_some() {
            eprintln!(
                "{bin}: REDIS_URL is set, but this binary was built without its `fleet` feature (on by default): rebuild with it, or unset REDIS_URL"
            );
            std::process::exit(2);
        }
        let log = logging::init(&config);
        let fd_limit = process::raise_fd_limit();
        let usable = fd_limit
            .saturating_sub(fd_reserve(fd_limit, config.io_threads))
            .max(1);
        if (config.max_connections as u64) > usable {
            tracing::warn!(
                configured = config.max_connections,
                effective = usable,
                fd_limit,
                "MAX_CONNECTIONS clamped below the open-file limit (with a reserve) so refusals can always be answered"
            );
            config.max_connections = usable as usize;
        }
        if let Some(everything) = config
            .trusted_proxies
            .iter()
            .find(|net| config.trust_proxy && net.is_everything())
        {
            tracing::warn!(
                trusted_proxies = ?everything,
                "TRUSTED_PROXIES covers every address: any client that reaches weir directly can \
                 choose its own X-Forwarded-For address and so its RATE_LIMIT_PER_IP key and its \
                 logged address; trust only your proxies' network"
            );
        }
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        if config.reuse_port && !process::migrates_queued_connections() {
            tracing::warn!(
                "REUSE_PORT: net.ipv4.tcp_migrate_req is not 1, so a connection that reaches \
                 this process in the instant between its drain's last accept and the close of \
                 its listener is reset by the kernel instead of handed to another process; set \
                 the sysctl to 1 for restarts that lose nothing"
            );
        }
        let listener =
            net::bind(config.listen, config.backlog, config.reuse_port).inspect_err(|e| {
                tracing::error!(address = %config.listen, error = %e, "cannot bind");
            })?;
        let local = listener.local_addr()?;
        let figures = Arc::new(ProcessFigures::default());
        process::spawn_sampler(figures.clone());
        let lifecycle = Lifecycle::for_config(&config);
        lifecycle.set_tls(tls);
        let service = build(Setup {
            config: config.clone(),
            lifecycle: lifecycle.clone(),
            runtime,
            now: clock::now(),
            secret: clock::random_bytes(),
            process: figures,
            clock: clock::mono,
            profiler: profiler(&config),
        });
        #[cfg(feature = "fleet")]
        if let (Some(f), Some(client)) = (&config.fleet, redis) {
            fleet::spawn(service.clone(), f.clone(), client);
        }
        tracing::info!(
            runtime,
            version = env!("CARGO_PKG_VERSION"),
            address = %local,
            fd_limit,
            max_connections = config.max_connections,
            config = %config.summary(),
            "weir started"
        );
        let (stop_workers, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let workers = if service.jobs().is_some() {
            config.worker_count
        } else {
            0
        };
        lifecycle.expect_workers(workers);
        let workers: Vec<_> = (0..workers)
            .map(|i| {
                let (service, lifecycle) = (service.clone(), lifecycle.clone());
                let stop = stop_rx.clone();
                std::thread::Builder::new()
                    .name(format!("weir-worker-{i}"))
                    .spawn(move || {
                        if let Some(queue) = service.jobs() {
                            run_worker(queue, &lifecycle, &stop)
                        }
                    })
                    .expect("invariant: the OS can start the configured worker threads")
            })
            .collect();
        // Serve only once the worker pool is up, so /readyz is truthful from the first
        // request; a service without jobs has no pool to wait for.
        while lifecycle.workers().0 < workers.len() {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Server {
            service,
            lifecycle,
            config,
            listener: Some(listener),
            signals,
            workers,
            stop_workers: Some(stop_workers),
            _log: log,
            drain_deadline: None,
        })
    }

    /// The bound listening socket (blocking; a runtime may make it non-blocking and copy it
    /// per I/O thread). The server keeps no copy: once every accept loop has dropped its copy
    /// the socket closes.
    pub fn take_listener(&mut self) -> TcpListener {
        self.listener
            .take()
            .expect("invariant: the listener is taken once")
    }

    /// Begins a graceful drain: the app refuses new work; the runtime's `notify` then tells
    /// its accept loops to accept what the kernel has queued and stop, and its connections to
    /// call `Session::handle_drain`.
    pub fn begin_drain(&mut self) {
        let timeout = self.config.shutdown_timeout;
        // Checked: a configured span can never overflow a clock (the spans are bounded too).
        let now = std::time::Instant::now();
        self.drain_deadline = Some(now.checked_add(timeout).unwrap_or(now));
        tracing::info!(connections = self.lifecycle.connections(), timeout = %format_duration(timeout), "draining");
        self.lifecycle.begin_drain();
        drop(self.listener.take());
    }

    /// The shutdown sequence, the same for every runtime: waits for SIGINT or SIGTERM (the
    /// handlers were installed before the listening line), drains (`notify` tells the
    /// runtime), waits until drained or the deadline, exits at once on a second signal;
    /// returns the exit status.
    pub fn run_until_signalled(mut self, notify: impl FnOnce()) -> i32 {
        use signal_hook::consts::SIGHUP;
        while let Some(signal) = self.signals.forever().next() {
            if signal != SIGHUP {
                break;
            }
            self.reload_tls();
        }
        self.shutdown_delay();
        self.begin_drain();
        notify();
        while !self.drained() {
            self.tick();
        }
        self.finish()
    }

    /// One 10 ms step of a wait that signals may interrupt: SIGHUP reloads, a further
    /// SIGINT/SIGTERM exits at once.
    fn tick(&mut self) {
        use signal_hook::consts::SIGHUP;
        for signal in self.signals.pending() {
            if signal == SIGHUP {
                self.reload_tls();
            } else {
                exit_now();
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    /// `SHUTDOWN_DELAY`: `/readyz` answers 503 while everything is still served, so a load
    /// balancer stops sending before the listener closes. A second SIGINT/SIGTERM ends the
    /// delay and exits at once; SIGHUP still reloads.
    fn shutdown_delay(&mut self) {
        let delay = self.config.shutdown_delay;
        if delay.is_zero() {
            return;
        }
        self.lifecycle.begin_unready();
        tracing::info!(delay = %format_duration(delay), "shutting down: not ready, still serving until the drain");
        let now = std::time::Instant::now();
        let until = now.checked_add(delay).unwrap_or(now);
        while std::time::Instant::now() < until {
            self.tick();
        }
    }

    /// `SIGHUP`: reads the TLS files again; new handshakes use the new pair, open connections
    /// keep theirs, and a bad new pair is logged and the old one kept.
    fn reload_tls(&self) {
        let Some(files) = self.config.tls.as_ref() else {
            tracing::info!("SIGHUP: TLS is not configured; nothing to reload");
            return;
        };
        match tls::load(files, self.config.http2) {
            Ok(config) => {
                self.lifecycle.set_tls(Some(config));
                tracing::info!(cert = %files.cert, key = %files.key, "SIGHUP: TLS certificate and key reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the certificate and key in use")
            }
        }
    }

    /// True once every accept loop has finished (having accepted what the kernel queued) and
    /// every connection has closed, or the drain deadline has passed.
    pub fn drained(&self) -> bool {
        self.lifecycle.acceptors() == 0 && self.lifecycle.connections() == 0
            || self
                .drain_deadline
                .is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// Stops the workers (after the queued jobs ran, within the drain deadline), logs the
    /// final statistics and returns the process exit status (0).
    pub fn finish(mut self) -> i32 {
        if let Some(queue) = self.service.jobs() {
            queue.close();
        }
        // Dropping the sender wakes every worker; each leaves once the queue is empty.
        drop(self.stop_workers.take());
        let deadline = self.drain_deadline.unwrap_or_else(std::time::Instant::now);
        for w in std::mem::take(&mut self.workers) {
            while !w.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if w.is_finished() {
                let _ = w.join();
            }
        }
        self.service.final_statistics();
        tracing::info!(
            open_connections = self.lifecycle.connections(),
            log_lines_dropped = logging::dropped(),
            "shutdown complete"
        );
        0
    }

    /// The address the listener is bound to (a service of your own starts its clients here).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }
}

/// The CPU profiler, with `PROFILING=true` in a build with the `profiling` feature.
fn profiler(config: &Config) -> Option<Arc<dyn weir_core::app::profile::Profiler>> {
    #[cfg(feature = "profiling")]
    if config.profiling {
        return Some(Arc::new(profile::Pprof::default()));
    }
    let _ = config;
    None
}

/// The worker loop: take a job, skip it if cancelled or expired, run it, deliver the result.
/// A panic in the work is caught and answered as `PROCESSING_ERROR`. Blocks while idle (no
/// polling); returns once `stop` fires and the queue is empty.
pub fn run_worker(queue: &JobQueue, lifecycle: &Lifecycle, stop: &crossbeam_channel::Receiver<()>) {
    lifecycle.worker_started();
    while let Some(job) = take_until(queue, stop) {
        if let Some((n, cost)) = job.start(clock::now().mono) {
            let result = std::panic::catch_unwind(|| intensive_work(n, cost)).ok();
            job.complete(clock::now().mono, result);
        }
    }
    lifecycle.worker_stopped();
}

/// Waits for a job until `stop` fires (its sender dropped or sent to); queued jobs are
/// still handed out first. `None`: stop, and the queue is empty.
fn take_until<'q>(
    queue: &'q JobQueue,
    stop: &crossbeam_channel::Receiver<()>,
) -> Option<weir_core::jobs::Job<'q>> {
    if let Some(job) = queue.take() {
        return Some(job);
    }
    crossbeam_channel::select! {
        recv(queue.incoming()) -> queued => queued.ok().map(|q| queue.job(q)),
        recv(stop) -> _ => queue.take(),
    }
}

/// Writes what `s` has queued through `write` until the socket would block (or times out);
/// true if it did. A socket error is handed to the session. Shared by the three runtimes.
pub fn flush<S: weir_core::Service>(
    s: &mut weir_core::tls::Connection<S>,
    write: impl FnMut(&[u8]) -> std::io::Result<usize>,
) -> bool {
    flush_at(s, None, write)
}

/// [`flush`] with the time the caller read last (its loop's), saving a clock read per
/// write: it only dates the write timeout of a partial write.
pub fn flush_at<S: weir_core::Service>(
    s: &mut weir_core::tls::Connection<S>,
    now: Option<weir_core::Now>,
    mut write: impl FnMut(&[u8]) -> std::io::Result<usize>,
) -> bool {
    use std::io::ErrorKind;
    while let Some(bytes) = s.poll_transmit() {
        match write(bytes) {
            Ok(n) => s.advance_transmit(now.unwrap_or_else(clock::now), n),
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

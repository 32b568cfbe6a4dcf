//! The server around a service: its [`Lifecycle`] (connection slots and the `MAX_CONNECTIONS`
//! refusal, accept loops, worker threads, readiness, the drain, the TLS configuration), what a
//! runtime kit needs from a service to host it ([`Hosted`]), what it hands a service when it
//! builds one ([`Setup`]), and the probes it serves for any service ([`WithProbes`]).
//!
//! The lifecycle belongs to the connection layer ([`crate::tls::Connection`] claims a
//! [`Slot`] per connection and delivers the drain to its session), not to the application: a
//! service answers requests, and may read the lifecycle to report it (weir's `/health` and
//! `/metrics` do), never change it.
//!
//! Invariants:
//! - at most `max_connections` slots are held at once; a slot is released exactly once (when
//!   its [`Slot`] drops), and a refused claim changes no count but the refusals';
//! - the drain, readiness and the accept-loop count only move one way during a shutdown
//!   (draining is never unset; acceptors only fall after [`Lifecycle::acceptors_started`]);
//! - `max_connections` is only ever lowered ([`Lifecycle::clamp_max_connections`]), never
//!   below 1 nor above the configured value.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use crate::app::ProcessFigures;
use crate::app::profile::Profiler;
use crate::config::Config;
use crate::fleet::FleetShare;
use crate::http::{Chunk, Head, HttpConfig, Method, Reply, ReplyPoll, Response, Service, Status};
use crate::jobs::JobQueue;
use crate::time::{Instant, Now};

/// The server's state around its connections (see the module docs). One per process, shared
/// by the accept loops, the connections and the kit's shutdown sequence.
#[derive(Debug)]
pub struct Lifecycle {
    configured_max: usize,
    max_connections: AtomicUsize,
    connections: AtomicUsize,
    /// Connections ever claimed a slot for (accepted) and refused at the limit.
    accepted: AtomicU64,
    refused: AtomicU64,
    acceptors: AtomicUsize,
    workers_wanted: AtomicUsize,
    workers: AtomicUsize,
    unready: AtomicBool,
    draining: AtomicBool,
    /// The monotonic second (+1) of the last logged refusal before a TLS handshake.
    refusal_logged: AtomicU64,
    /// The TLS configuration new connections are served with (replaced on a reload).
    tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
}

impl Lifecycle {
    /// A lifecycle admitting `max_connections` at once, ready once `workers` worker threads
    /// run (0: at once).
    pub fn new(max_connections: usize, workers: usize) -> Arc<Lifecycle> {
        let max = max_connections.max(1);
        Arc::new(Lifecycle {
            configured_max: max,
            max_connections: AtomicUsize::new(max),
            connections: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            acceptors: AtomicUsize::new(0),
            workers_wanted: AtomicUsize::new(workers),
            workers: AtomicUsize::new(0),
            unready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            refusal_logged: AtomicU64::new(0),
            tls: RwLock::new(None),
        })
    }

    /// The lifecycle `config` asks for (`MAX_CONNECTIONS`, `WORKER_COUNT`).
    pub fn for_config(config: &Config) -> Arc<Lifecycle> {
        Lifecycle::new(config.max_connections, config.worker_count)
    }

    // ---- connections -----------------------------------------------------------------

    /// Claims a connection slot; `None` past `MAX_CONNECTIONS` (counted as a refusal). During
    /// a drain the runtimes accept only what the kernel had queued, and those are served.
    pub fn claim(self: &Arc<Self>) -> Option<Slot> {
        let prev = self.connections.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_connections.load(Ordering::Relaxed) {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Slot(self.clone()))
    }

    /// Open connections (slots held).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Connections accepted and refused at the limit so far.
    pub fn connections_total(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// `MAX_CONNECTIONS` in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// Lowers `MAX_CONNECTIONS` to `n` (at least 1): the kit's clamp below the descriptors
    /// left once the runtime has started. Never raises it above the configured value.
    pub fn clamp_max_connections(&self, n: usize) {
        self.max_connections
            .fetch_min(n.clamp(1, self.configured_max), Ordering::Relaxed);
    }

    /// Whether a refusal before a TLS handshake at `now` should be logged: the first of
    /// each second is (the refusals themselves are all counted).
    pub fn log_refusal(&self, now: Now) -> bool {
        let second = now.mono.as_nanos() / 1_000_000_000 + 1;
        self.refusal_logged.swap(second, Ordering::Relaxed) != second
    }

    // ---- accept loops and workers ---------------------------------------------------

    /// The runtime runs `n` accept loops; each calls [`Lifecycle::acceptor_stopped`] once it
    /// has accepted what the kernel queued before a drain. Set before serving, so a drain
    /// never looks finished while queued connections still wait to be accepted.
    pub fn acceptors_started(&self, n: usize) {
        self.acceptors.fetch_add(n, Ordering::AcqRel);
    }

    /// An accept loop finished (see [`Lifecycle::acceptors_started`]).
    pub fn acceptor_stopped(&self) {
        self.acceptors.fetch_sub(1, Ordering::AcqRel);
    }

    /// Accept loops still running.
    pub fn acceptors(&self) -> usize {
        self.acceptors.load(Ordering::Acquire)
    }

    /// A worker thread started.
    pub fn worker_started(&self) {
        self.workers.fetch_add(1, Ordering::AcqRel);
    }

    /// A worker thread stopped.
    pub fn worker_stopped(&self) {
        self.workers.fetch_sub(1, Ordering::AcqRel);
    }

    /// Worker threads running now, and how many the server is meant to run.
    pub fn workers(&self) -> (usize, usize) {
        (
            self.workers.load(Ordering::Acquire),
            self.workers_wanted.load(Ordering::Acquire),
        )
    }

    /// The server runs `n` worker threads (the kit starts none for a service without jobs).
    pub fn expect_workers(&self, n: usize) {
        self.workers_wanted.store(n, Ordering::Release);
    }

    // ---- readiness and the drain -----------------------------------------------------

    /// The shutdown delay began: not ready from now on, everything else served as before
    /// (the drain follows `SHUTDOWN_DELAY` later).
    pub fn begin_unready(&self) {
        self.unready.store(true, Ordering::Release);
    }

    /// Starts the drain, the one source of it: every connection hears it through
    /// `handle_drain` (the runtime's notice, or the connection's own check at its next
    /// input, whichever comes first); the accept loops take what the kernel queued and stop.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Whether new traffic should come here, and in a word why not: starting (not every
    /// worker up), in the shutdown delay, or draining.
    pub fn readiness(&self) -> (bool, &'static str) {
        let (workers, wanted) = self.workers();
        if workers < wanted {
            (false, "starting")
        } else if self.is_draining() {
            (false, "draining")
        } else if self.unready.load(Ordering::Acquire) {
            (false, "shutting down")
        } else {
            (true, "ready")
        }
    }

    // ---- TLS -------------------------------------------------------------------------

    /// Serves new connections with `config` (TLS), or plain TCP with `None`; connections
    /// already open keep what they started with.
    pub fn set_tls(&self, config: Option<Arc<rustls::ServerConfig>>) {
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// The TLS configuration for a new connection (`None`: plain TCP).
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A claimed connection slot; dropping it releases the slot.
#[derive(Debug)]
pub struct Slot(Arc<Lifecycle>);

impl Slot {
    /// The lifecycle the slot belongs to.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The wait of a service that never answers later ([`Service::Wait`] for a service whose
/// replies are all [`Reply::Now`] or timed with a deadline only). It has no value, so no
/// runtime ever waits on one.
#[derive(Debug)]
pub enum NoWait {}

impl Future for NoWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        match *self.get_mut() {}
    }
}

/// A service a runtime kit can host: shared by every I/O thread, with waits that are
/// futures (every runtime waits on them: an executor, a ring's waker, a parked thread).
/// The defaults suit a service without jobs or a fleet: `impl Hosted for MyService {}`.
pub trait Hosted:
    Service<Exchange: Send, Wait: Future<Output = ()> + Unpin + Send> + Send + Sync + 'static
{
    /// The queue the kit's worker threads (`WORKER_COUNT`) take jobs from, if it has one.
    fn jobs(&self) -> Option<&JobQueue> {
        None
    }

    /// The share of a fleet-wide rate limit the kit renews against `REDIS_URL`, if any.
    fn fleet(&self) -> Option<&FleetShare> {
        None
    }

    /// The drain is over: log the figures an operator reads last (default: nothing more
    /// than the kit's own line).
    fn final_statistics(&self) {}
}

/// What the runtime kit hands the function that builds the service it hosts: the settings,
/// the lifecycle (to report, never to change), and what only the kit can provide since the
/// core reads no clock and no entropy.
#[derive(Clone)]
pub struct Setup {
    /// The settings (environment and flags).
    pub config: Config,
    /// The server's lifecycle.
    pub lifecycle: Arc<Lifecycle>,
    /// The runtime's name (`tokio`, `smol`, `std`, `uring`).
    pub runtime: &'static str,
    /// The time the service is built at.
    pub now: Now,
    /// 32 random bytes (a key for request IDs and the like).
    pub secret: [u8; 32],
    /// The process's figures, sampled by the kit (`/proc`).
    pub process: Arc<ProcessFigures>,
    /// A monotonic clock fine enough to time a request (no system call on Linux).
    pub clock: fn() -> Instant,
    /// The CPU profiler, with `PROFILING=true` in a build that has one.
    pub profiler: Option<Arc<dyn Profiler>>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("runtime", &self.runtime)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Serves `GET`/`HEAD` `/livez` and `/readyz` from the [`Lifecycle`] in front of any
/// service (the kit puts them in front of a service of your own; weir's application answers
/// its own, with its health checks). `/livez`: 200 `alive` while the process answers at
/// all; `/readyz`: 200 `ready`, or 503 with the reason (starting, shutting down, draining).
#[derive(Debug)]
pub struct WithProbes<S> {
    inner: S,
    lifecycle: Arc<Lifecycle>,
}

impl<S> WithProbes<S> {
    /// `inner` behind the probes of `lifecycle`.
    pub fn new(inner: S, lifecycle: Arc<Lifecycle>) -> Self {
        WithProbes { inner, lifecycle }
    }

    /// The service behind the probes.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn probe(&self, path: &[u8], res: &mut Response) -> bool {
        let (ok, why) = match path {
            b"/livez" => (true, "alive"),
            b"/readyz" => self.lifecycle.readiness(),
            _ => return false,
        };
        res.set_status(if ok {
            Status::OK
        } else {
            Status::SERVICE_UNAVAILABLE
        });
        res.header("Content-Type", b"text/plain; charset=utf-8");
        res.header("Cache-Control", b"no-store");
        let body = res.body_mut();
        body.extend_from_slice(why.as_bytes());
        body.push(b'\n');
        true
    }
}

/// The exchange of a [`WithProbes`]: a probe's, or the inner service's.
#[derive(Debug, Default)]
pub struct Probed<E> {
    probe: bool,
    inner: E,
}

impl<S: Service> Service for WithProbes<S> {
    type Exchange = Probed<S::Exchange>;
    type Wait = S::Wait;

    fn http_config(&self) -> &HttpConfig {
        self.inner.http_config()
    }

    fn admit_handshake(&self, now: Now, peer: std::net::SocketAddr) -> bool {
        self.inner.admit_handshake(now, peer)
    }

    fn admit(
        &self,
        now: Now,
        head: &Head<'_>,
        peer: std::net::SocketAddr,
        ex: &mut Self::Exchange,
        res: &mut Response,
    ) -> bool {
        ex.probe =
            matches!(head.method, Method::Get | Method::Head) && self.probe(head.path(), res);
        !ex.probe && self.inner.admit(now, head, peer, &mut ex.inner, res)
    }

    fn write_common_lines(&self, ex: &Self::Exchange, out: &mut Vec<u8>) {
        if !ex.probe {
            self.inner.write_common_lines(&ex.inner, out)
        }
    }

    fn call(
        &self,
        now: Now,
        head: &Head<'_>,
        body: &[u8],
        ex: &mut Self::Exchange,
        res: &mut Response,
    ) -> Reply<S::Wait> {
        self.inner.call(now, head, body, &mut ex.inner, res)
    }

    fn poll_reply(
        &self,
        now: Now,
        ex: &mut Self::Exchange,
        res: &mut Response,
        draining: bool,
    ) -> ReplyPoll {
        self.inner.poll_reply(now, &mut ex.inner, res, draining)
    }

    fn poll_chunk(
        &self,
        now: Now,
        ex: &mut Self::Exchange,
        out: &mut Vec<u8>,
        draining: bool,
    ) -> Chunk {
        self.inner.poll_chunk(now, &mut ex.inner, out, draining)
    }

    fn error(
        &self,
        now: Now,
        peer: std::net::SocketAddr,
        ex: &mut Self::Exchange,
        res: &mut Response,
        status: Status,
        message: &str,
    ) {
        ex.probe = false;
        self.inner
            .error(now, peer, &mut ex.inner, res, status, message)
    }

    fn finish(
        &self,
        now: Now,
        ex: &mut Self::Exchange,
        head: Option<&Head<'_>>,
        status: Status,
        bytes_sent: u64,
    ) {
        if std::mem::take(&mut ex.probe) {
            return;
        }
        self.inner
            .finish(now, &mut ex.inner, head, status, bytes_sent)
    }

    fn abandon(&self, ex: &mut Self::Exchange) {
        ex.probe = false;
        self.inner.abandon(&mut ex.inner)
    }
}

impl<S: Hosted> Hosted for WithProbes<S> {
    fn jobs(&self) -> Option<&JobQueue> {
        self.inner.jobs()
    }

    fn fleet(&self) -> Option<&FleetShare> {
        self.inner.fleet()
    }

    fn final_statistics(&self) {
        self.inner.final_statistics()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_released_once_and_the_limit_only_falls() {
        let l = Lifecycle::new(2, 0);
        let (a, b) = (l.claim(), l.claim());
        assert!(a.is_some() && b.is_some());
        assert!(l.claim().is_none(), "a third is refused");
        assert_eq!((l.connections(), l.connections_total()), (2, (2, 1)));
        drop(a);
        assert_eq!(l.connections(), 1);
        l.clamp_max_connections(1);
        assert!(l.claim().is_none(), "clamped to 1, one held");
        l.clamp_max_connections(10);
        assert_eq!(l.max_connections(), 1, "never raised again");
        l.clamp_max_connections(0);
        assert_eq!(l.max_connections(), 1, "never below 1");
        drop(b);
        assert_eq!(l.connections(), 0);
    }

    #[test]
    fn readiness_says_why_not() {
        let l = Lifecycle::new(1, 1);
        assert_eq!(l.readiness(), (false, "starting"));
        l.worker_started();
        assert_eq!(l.readiness(), (true, "ready"));
        l.begin_unready();
        assert_eq!(l.readiness(), (false, "shutting down"));
        l.begin_drain();
        assert!(l.is_draining());
        assert_eq!(l.readiness(), (false, "draining"));
    }

    #[test]
    fn a_refusal_is_logged_once_a_second() {
        let l = Lifecycle::new(1, 0);
        let at = |ms: u64| Now {
            mono: Instant::from_nanos(ms * 1_000_000),
            ..Now::default()
        };
        assert!(l.log_refusal(at(10)));
        assert!(!l.log_refusal(at(900)));
        assert!(l.log_refusal(at(1_000)));
    }
}

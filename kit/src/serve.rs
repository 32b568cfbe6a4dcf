//! What every runtime does besides its I/O: start or exit, run its I/O threads, one drain
//! signal, the accept-queue sweep at the drain, the effects loop and the timer re-arm rule.
//! Written once here; a runtime only supplies how it reads, writes and waits.
//!
//! Invariants: the drain is signalled once and never unset; an [`Acceptor`] token exists per
//! accept loop from before the first accept until that loop has swept the kernel's queue, and
//! the shutdown sequence waits for all of them (so queued clients are answered, not reset).

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use event_listener::{Event, EventListener};
use weir_core::http::Effect;
use weir_core::server::{Hosted, Lifecycle, Setup, WithProbes};
use weir_core::tls::Connection;
use weir_core::{CloseReason, Instant, Service};

use crate::{Server, clock};

/// The notice of the lifecycle's drain ([`Lifecycle::begin_drain`], the one source of it),
/// waitable from any executor (a future), or by `poll` on a descriptor (a blocking thread).
#[derive(Debug)]
pub struct Drain {
    lifecycle: Arc<Lifecycle>,
    event: Event,
    /// Readable (at end of stream) once the drain began: the other end is shut down.
    pollable: (UnixStream, UnixStream),
}

impl Default for Drain {
    /// The notice of a lifecycle of its own (tests).
    fn default() -> Self {
        Drain::new(Lifecycle::new(usize::MAX, 0))
    }
}

impl Drain {
    /// The notice of `lifecycle`'s drain.
    pub fn new(lifecycle: Arc<Lifecycle>) -> Self {
        Drain {
            lifecycle,
            event: Event::new(),
            pollable: UnixStream::pair().expect("invariant: a socket pair can be made"),
        }
    }

    /// The lifecycle whose drain this is (connections claim their slots in it).
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// Begins the lifecycle's drain and tells every listener, once.
    pub fn begin(&self) {
        self.lifecycle.begin_drain();
        self.event.notify(usize::MAX);
        let _ = self.pollable.1.shutdown(std::net::Shutdown::Both);
    }

    /// A descriptor that polls readable once the drain began.
    pub fn pollable(&self) -> &UnixStream {
        &self.pollable.0
    }

    /// Whether the drain has begun.
    pub fn is_set(&self) -> bool {
        self.lifecycle.is_draining()
    }

    /// A future that completes at the drain, or `None` when it has already begun (listening
    /// before looking at the flag, so a drain between the two is never missed).
    pub fn listen(&self) -> Option<EventListener> {
        let listener = self.event.listen();
        (!self.is_set()).then_some(listener)
    }

    /// [`Drain::listen`] for a connection's wait, polled after every request: once its
    /// listener holds the task's waker, a poll only reads the flag (the drain sets it before
    /// it notifies, so the wake-up finds it set).
    pub fn watch(&self) -> Option<DrainWatch<'_>> {
        self.listen().map(|listener| DrainWatch {
            drain: self,
            listener,
            registered: None,
        })
    }
}

/// Held by an accept loop until it has accepted what the kernel queued before the drain;
/// dropping it tells the shutdown sequence so.
#[derive(Debug)]
pub struct Acceptor(Arc<Lifecycle>);

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.0.acceptor_stopped();
    }
}

/// [`Server::start`] with the settings of the command line and the environment
/// ([`cli::load`](crate::cli::load)), or exit 1 with the error on stderr: weir's own
/// application (its `from_setup`) or any other [`Hosted`] service ([`with_probes`]).
pub fn start<S: Hosted>(
    bin: &'static str,
    runtime: &'static str,
    build: impl FnOnce(Setup) -> Arc<S>,
) -> Server<S> {
    start_with(bin, runtime, crate::cli::load(bin), build)
}

/// [`start`] with settings of the caller's making (e.g. [`cli::load_with`](crate::cli::load_with)).
pub fn start_with<S: Hosted>(
    bin: &'static str,
    runtime: &'static str,
    config: weir_core::Config,
    build: impl FnOnce(Setup) -> Arc<S>,
) -> Server<S> {
    Server::start(bin, runtime, config, build).unwrap_or_else(|e| {
        eprintln!("{bin}: {e}");
        std::process::exit(1)
    })
}

/// The builder of a service of your own for [`start`]: `build` makes it from the [`Setup`]
/// and the kit puts `/livez` and `/readyz` in front of it ([`WithProbes`]).
pub fn with_probes<S: Hosted>(
    build: impl FnOnce(&Setup) -> S,
) -> impl FnOnce(Setup) -> Arc<WithProbes<S>> {
    |setup| Arc::new(WithProbes::new(build(&setup), setup.lifecycle.clone()))
}

/// Runs `serve` on `threads` I/O threads, each with its own copy of the (non-blocking)
/// listener, the drain and an [`Acceptor`]; runs the shutdown sequence on this thread and
/// returns the process's exit status once the drain is over (the I/O threads still run:
/// exit with it).
pub fn run<S, F>(mut server: Server<S>, threads: usize, serve: F) -> i32
where
    S: Hosted,
    F: Fn(Arc<S>, TcpListener, Arc<Drain>, Acceptor) + Send + Clone + 'static,
{
    let listener = server.take_listener();
    let local = listener
        .local_addr()
        .expect("invariant: a bound listener has an address");
    listener
        .set_nonblocking(true)
        .expect("invariant: a bound listener can be non-blocking");
    let lifecycle = server.lifecycle.clone();
    let drain = Arc::new(Drain::new(lifecycle.clone()));
    lifecycle.acceptors_started(threads);
    for i in 0..threads {
        let (service, drain, serve) = (server.service.clone(), drain.clone(), serve.clone());
        let listener = listener
            .try_clone()
            .expect("invariant: a listener fd can be duplicated");
        let acceptor = Acceptor(lifecycle.clone());
        std::thread::Builder::new()
            .name(format!("weir-io-{i}"))
            .spawn(move || serve(service, listener, drain, acceptor))
            .expect("invariant: the OS can start the I/O threads");
    }
    drop(listener);
    clamp_to_descriptors(&lifecycle, threads);
    // The first line of stdout: scripts and tests read the bound address (port 0 works).
    println!("listening on {local}");
    server.run_until_signalled(|| drain.begin())
}

/// Descriptors kept free, beyond those the runtime holds once started, for what comes and
/// goes: a refusal being answered on each I/O thread, the fleet's Redis connection, a TLS
/// reload's two files, the process-figures sampler's reads of `/proc`.
const FD_SPARE: u64 = 8;

/// Clamps `MAX_CONNECTIONS` from what the runtime actually uses: waits until the I/O threads
/// have opened their descriptors (the count stays put for 50 ms, or 2 s pass), counts them
/// and keeps `FD_SPARE` plus one per I/O thread free — so past the limit a client is answered
/// 503 instead of waiting behind `EMFILE` (the start's estimate assumed 4 descriptors per
/// thread; weir-tokio uses about 7).
fn clamp_to_descriptors(lifecycle: &Lifecycle, threads: usize) {
    let start = std::time::Instant::now();
    let (mut last, mut stable_since) = (crate::process::open_fds(), start);
    while start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
        let now = crate::process::open_fds();
        if now != last {
            (last, stable_since) = (now, std::time::Instant::now());
        } else if stable_since.elapsed() >= Duration::from_millis(50) {
            break;
        }
    }
    // Connections accepted meanwhile are not the runtime's own.
    let in_use = last.saturating_sub(lifecycle.connections() as u64);
    let limit = crate::process::fd_limit();
    let left = limit.saturating_sub(in_use + FD_SPARE + threads as u64);
    let before = lifecycle.max_connections();
    lifecycle.clamp_max_connections(usize::try_from(left).unwrap_or(usize::MAX));
    let after = lifecycle.max_connections();
    if after < before {
        tracing::warn!(
            fd_limit = limit,
            runtime_fds = in_use,
            was = before,
            effective = after,
            "MAX_CONNECTIONS clamped to the descriptors left once the runtime started, so refusals can always be answered"
        );
    }
}

/// An async runtime's accept loop: accepts through `accept` (the runtime's readiness) and
/// hands each connection to `start` until the drain begins; after running out of descriptors
/// or memory it waits `pause(d)` (the runtime's timer) and goes on. Returns at the drain; the
/// caller then sweeps what the kernel queued ([`accept_queued`]) and drops its [`Acceptor`].
pub async fn accept_until_drained<T, A, P>(
    drain: &Drain,
    mut accept: impl FnMut() -> A,
    mut pause: impl FnMut(std::time::Duration) -> P,
    mut start: impl FnMut(T, SocketAddr),
) where
    A: Future<Output = std::io::Result<(T, SocketAddr)>>,
    P: Future<Output = ()>,
{
    let Some(drained) = drain.listen() else {
        return;
    };
    let mut drained = std::pin::pin!(drained);
    loop {
        let mut accepting = std::pin::pin!(accept());
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(accepted) = accepting.as_mut().poll(cx) {
                return Poll::Ready(Some(accepted));
            }
            drained.as_mut().poll(cx).map(|()| None)
        })
        .await;
        match next {
            Some(Ok((stream, peer))) => start(stream, peer),
            Some(Err(e)) => {
                if let Some(d) = crate::net::accept_error(&e) {
                    pause(d).await;
                }
            }
            None => return,
        }
    }
}

/// Accepts, without waiting, everything the kernel has queued on `listener`, handing each
/// connection, non-blocking, to `each` (the drain's last sweep; the runtime's readiness may
/// lag, so this asks the socket itself). Returns the pause to take when it stopped because
/// descriptors or memory ran out.
pub fn accept_queued(
    listener: &TcpListener,
    mut each: impl FnMut(TcpStream, SocketAddr),
) -> Option<std::time::Duration> {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                if stream.set_nonblocking(true).is_ok() {
                    each(stream, peer);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) => {
                if let Some(pause) = crate::net::accept_error(&e) {
                    return Some(pause);
                }
            }
        }
    }
}

/// Takes the connection's effects: keeps a wait handle in `wait`, shuts `sock`'s write side
/// for a linger; returns the reason to close (the socket is then dropped).
pub fn take_effects<S: Service>(
    s: &mut Connection<S>,
    wait: &mut Option<S::Wait>,
    sock: impl std::os::fd::AsFd,
) -> Option<CloseReason> {
    while let Some(effect) = s.poll_effect() {
        match effect {
            Effect::Wait(w) => *wait = Some(w),
            Effect::HalfClose => crate::net::shut_write(sock.as_fd()),
            Effect::Close(reason) => return Some(reason),
        }
    }
    None
}

/// The timer re-arm rule: re-arm only for an earlier deadline. A later one (the idle timer
/// moving on with every request) waits for the armed alarm, which is harmless early because
/// `handle_timeout` is idempotent; this keeps timer-wheel work off the request path.
#[derive(Debug, Default)]
pub struct Alarm(Option<Instant>);

impl Alarm {
    /// The time to set the runtime's timer to, when `deadline` is earlier than the armed one.
    pub fn rearm(&mut self, deadline: Option<Instant>) -> Option<std::time::Instant> {
        let d = deadline.filter(|d| self.0.is_none_or(|a| *d < a))?;
        self.0 = Some(d);
        Some(clock::to_std(d))
    }

    /// Whether the armed time has come.
    pub fn is_due(&self, now: weir_core::Now) -> bool {
        self.0.is_some_and(|at| at <= now.mono)
    }

    /// The timer fired.
    pub fn fired(&mut self) {
        self.0 = None;
    }

    /// Whether a timer is set.
    pub fn is_armed(&self) -> bool {
        self.0.is_some()
    }
}

/// See [`Drain::watch`].
#[derive(Debug)]
pub struct DrainWatch<'a> {
    drain: &'a Drain,
    listener: EventListener,
    /// The waker the listener holds.
    registered: Option<Waker>,
}

impl Future for DrainWatch<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.is_set() {
            return Poll::Ready(());
        }
        if self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let this = &mut *self;
        match Pin::new(&mut this.listener).poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                this.registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Completes when the first of `a` and `b` does (a two-way select for any executor).
pub async fn first(a: impl Future<Output = ()>, b: impl Future<Output = ()>) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    std::future::poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() || b.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// A future of the value in `slot`, pending forever while it is empty (a wait handle or a
/// drain listener that a connection may or may not hold).
pub fn when_some<F: Future + Unpin>(slot: &mut Option<F>) -> impl Future<Output = F::Output> + '_ {
    std::future::poll_fn(move |cx| match slot.as_mut() {
        Some(f) => Pin::new(f).poll(cx),
        None => Poll::Pending,
    })
}

/// What [`read`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The buffer filled: the socket may hold more.
    Full,
    /// Fewer bytes than the room: the socket is drained for now.
    Short,
    /// Nothing to read now (or a blocking read timed out).
    WouldBlock,
    /// End of stream or a socket error, handed to the session.
    Ended,
}

/// Reads once into the session's receive buffer through `read` and tells the session what
/// happened.
pub fn read<S: Service>(
    s: &mut Connection<S>,
    read: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
) -> ReadOutcome {
    let buf = s.recv_buf();
    let room = buf.len();
    let result = read(buf);
    deliver_read(s, clock::now(), room, result)
}

/// [`read`] dated with the time the caller read last (its loop's), saving a clock read.
#[inline]
pub fn read_at<S: Service>(
    s: &mut Connection<S>,
    now: weir_core::Now,
    read: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
) -> ReadOutcome {
    let buf = s.recv_buf();
    let room = buf.len();
    let result = read(buf);
    deliver_read(s, now, room, result)
}

/// Tells the session what a read into its buffer (`room` bytes) returned.
#[inline]
fn deliver_read<S: Service>(
    s: &mut Connection<S>,
    now: weir_core::Now,
    room: usize,
    result: std::io::Result<usize>,
) -> ReadOutcome {
    use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    match result {
        Ok(0) => {
            s.handle_eof(now);
            ReadOutcome::Ended
        }
        Ok(n) => {
            s.handle_read(now, n);
            if n == room {
                ReadOutcome::Full
            } else {
                ReadOutcome::Short
            }
        }
        Err(e) if matches!(e.kind(), WouldBlock | TimedOut | Interrupted) => {
            ReadOutcome::WouldBlock
        }
        Err(e) => {
            s.handle_io_error(now, e.kind().into());
            ReadOutcome::Ended
        }
    }
}

/// Awaits `f`, and says whether it had to wait (was pending at least once) or was ready at
/// once (a connection loop that never waits must yield now and then).
pub async fn awaited<F: Future>(f: F) -> (F::Output, bool) {
    let mut f = std::pin::pin!(f);
    let mut waited = false;
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready((v, waited)),
        Poll::Pending => {
            waited = true;
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_accept_loop_starts_each_connection_pauses_when_out_of_descriptors_and_ends_at_the_drain()
    {
        let drain = Drain::default();
        let peer: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let (calls, paused, started) = (Cell::new(0), Cell::new(None), RefCell::new(vec![]));
        let accept = || {
            calls.set(calls.get() + 1);
            let mut result = match calls.get() {
                n @ (1 | 3) => Some(Ok((n, peer))),
                2 => Some(Err(std::io::Error::from_raw_os_error(24))), // EMFILE
                4 => Some(Err(std::io::Error::from_raw_os_error(103))), // ECONNABORTED
                _ => {
                    drain.begin();
                    None
                }
            };
            std::future::poll_fn(move |_| result.take().map_or(Poll::Pending, Poll::Ready))
        };
        let pause = |d| {
            paused.set(Some(d));
            std::future::ready(())
        };
        let start = |n, _| started.borrow_mut().push(n);
        let mut accepting = std::pin::pin!(accept_until_drained(&drain, accept, pause, start));
        let ended = accepting
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        assert!(ended.is_ready(), "the drain ends the loop");
        assert_eq!(*started.borrow(), [1, 3]);
        assert_eq!(
            paused.get(),
            Some(crate::net::ACCEPT_BACKOFF),
            "one pause, for EMFILE"
        );
        assert_eq!(calls.get(), 5);
        // After the drain, no accept at all.
        let mut after = std::pin::pin!(accept_until_drained(
            &drain,
            || std::future::ready(Ok((0, peer))),
            |_| std::future::ready(()),
            |_, _| panic!("accepted after the drain"),
        ));
        assert!(
            after
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_ready()
        );
    }

    #[test]
    fn a_drain_watch_wakes_its_task_and_completes_once_the_drain_begins() {
        let drain = Drain::default();
        let mut watch = drain.watch().expect("not drained yet");
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut watch).poll(&mut cx).is_pending());
        // Polled again with the same waker: still pending, nothing re-registered.
        assert!(Pin::new(&mut watch).poll(&mut cx).is_pending());
        drain.begin();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the drain woke the task");
        assert!(Pin::new(&mut watch).poll(&mut cx).is_ready());
        assert!(
            drain.watch().is_none(),
            "a drain that began has nothing to watch"
        );
        // A watch polled by another task's waker registers that one.
        let drain = Drain::default();
        let mut watch = drain.watch().expect("not drained yet");
        assert!(Pin::new(&mut watch).poll(&mut cx).is_pending());
        let other = Arc::new(Count(AtomicUsize::new(0)));
        let other_waker = Waker::from(other.clone());
        assert!(
            Pin::new(&mut watch)
                .poll(&mut Context::from_waker(&other_waker))
                .is_pending()
        );
        drain.begin();
        assert_eq!(
            other.0.load(Ordering::SeqCst),
            1,
            "the newer waker was woken"
        );
    }
}

//! weir on smol's parts: `async-io` for sockets and timers, `async-executor` to run
//! connections — one executor per I/O thread (default, `RUNTIME_LAYOUT=per-core`) or one
//! shared by all (`RUNTIME_LAYOUT=shared`). Only moves bytes and waits; decisions are in
//! the core, everything else in the runtime kit. On a per-core executor, connection deadlines
//! live on the thread's timerfd (`weir_kit::deadlines`) rather than in async-io's timer map,
//! which allocates at every reactor turn while any timer is set.

use std::future::{Future, poll_fn};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_executor::{Executor, LocalExecutor};
use async_io::{Async, Timer};
use futures_lite::FutureExt;
use weir_core::App;
use weir_core::config::Layout;
use weir_kit::deadlines::{self, ConnTimer, RuntimeTimer};
use weir_kit::serve::{self as kit, Acceptor, Alarm, Drain, ReadOutcome, when_some};
use weir_kit::{self as rt, clock, net};

/// Rounds of the connection loop in a row that found work without waiting (each a read, a
/// timer, a job or a write) before the loop yields to the executor.
const WAKE_BUDGET: u32 = 32;

type Spawn = Box<dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>)>;

fn main() {
    let server = kit::start("weir-smol", "smol");
    let (layout, threads) = (server.app.config().layout, server.app.config().io_threads);
    let shared = Arc::new(Executor::new());
    kit::run(
        server,
        threads,
        move |app, listener, drain, acceptor| match layout {
            Layout::Shared => {
                let ex = shared.clone();
                let spawn: Spawn = Box::new(move |f| ex.spawn(f).detach());
                let serving = serve(app, listener, drain, acceptor, spawn, false);
                async_io::block_on(shared.run(serving))
            }
            Layout::PerCore => {
                let ex = std::rc::Rc::new(LocalExecutor::new());
                ex.spawn(drive_deadlines()).detach();
                let spawner = ex.clone();
                let spawn: Spawn = Box::new(move |f| spawner.spawn(f).detach());
                let serving = serve(app, listener, drain, acceptor, spawn, true);
                async_io::block_on(ex.run(serving))
            }
        },
    )
}

/// Accepts until the drain, then what the kernel queued, then keeps this executor running
/// for its connections (the process exits from `main`). `local`: the executor is this
/// thread's alone, so connections keep their deadlines on its timerfd.
async fn serve(
    app: Arc<App>,
    l: TcpListener,
    drain: Arc<Drain>,
    a: Acceptor,
    spawn: Spawn,
    local: bool,
) {
    let listener = Async::new(l).expect("invariant: the listener registers with async-io");
    let start = |stream, peer| {
        spawn(Box::pin(connection(
            app.clone(),
            stream,
            peer,
            drain.clone(),
            local,
        )))
    };
    while let Some(drained) = drain.listen() {
        let accepted = async { Some(listener.accept().await) };
        let drain_began = async {
            drained.await;
            None
        };
        match accepted.or(drain_began).await {
            Some(Ok((stream, peer))) => start(stream, peer),
            Some(Err(e)) => {
                if let Some(pause) = net::accept_error(&e) {
                    Timer::after(pause).await;
                }
            }
            None => break,
        }
    }
    let _ = kit::accept_queued(listener.get_ref(), |stream, peer| {
        if let Ok(stream) = Async::new(stream) {
            start(stream, peer);
        }
    });
    drop(a);
    std::future::pending().await
}

async fn connection(
    app: Arc<App>,
    stream: Async<TcpStream>,
    peer: SocketAddr,
    drain: Arc<Drain>,
    local: bool,
) {
    let _ = stream.get_ref().set_nodelay(true);
    let mut s = app.connection(peer, clock::now());
    let mut job = None;
    let mut drained = drain.watch();
    if drained.is_none() {
        s.handle_drain(clock::now());
    }
    let (mut timer, mut alarm) = (ConnTimer::<SmolTimer>::new(local), Alarm::default());
    let (mut maybe_readable, mut rounds_without_waiting) = (true, 0);
    loop {
        // A fast pipelining peer keeps its socket readable, so this loop could go on without
        // ever returning to the executor: after WAKE_BUDGET rounds that did not wait, yield
        // (tokio's cooperative budget does this for weir-tokio), so accepts, timers and the
        // other connections of this thread keep their turn. Ordinary traffic waits for the
        // peer long before, and pays nothing.
        rounds_without_waiting += 1;
        if rounds_without_waiting > WAKE_BUDGET {
            rounds_without_waiting = 0;
            futures_lite::future::yield_now().await;
        }
        rt::flush(&mut s, |bytes| stream.get_ref().write(bytes));
        if let Some(reason) = kit::take_effects(&mut s, &mut job) {
            return close(stream, reason.wants_linger()).await;
        }
        // Read while the socket may hold data; a short read means it is drained, so the next
        // step is to wait (saving the read that would only say EAGAIN).
        if s.wants_read() && maybe_readable {
            let outcome = kit::read(&mut s, |buf| {
                std::io::Read::read(&mut stream.get_ref(), buf)
            });
            maybe_readable = outcome == ReadOutcome::Full;
            if outcome != ReadOutcome::WouldBlock {
                continue;
            }
        }
        if let Some(at) = alarm.rearm(s.poll_timeout()) {
            timer.set_at(at);
        }
        let (wants_read, wants_write) = (s.wants_read(), s.poll_transmit().is_some());
        let readable = poll_fn(|cx| stream.poll_readable(cx));
        let writable = poll_fn(|cx| stream.poll_writable(cx));
        let io = async {
            match (wants_read, wants_write) {
                // `poll_*` keep one waker per direction in the source: cheaper than the
                // `readable()` future, which takes a waker slot from a list per wait.
                (true, true) => drop(readable.or(writable).await),
                (true, false) => drop(readable.await),
                (false, true) => drop(writable.await),
                (false, false) => std::future::pending().await,
            }
        };
        let fired = timer.wait();
        let woken = when_some(&mut job).or(async { when_some(&mut drained).await });
        let ((), waited) = kit::awaited(io.or(fired).or(woken)).await;
        if waited {
            rounds_without_waiting = 0;
        }
        // Whatever woke us, look at everything: each handler is safe to call early.
        let now = clock::now();
        maybe_readable = true;
        if alarm.is_due(now) {
            alarm.fired();
            s.handle_timeout(now);
        }
        if job.as_ref().is_some_and(|j| j.is_done()) {
            job = None;
            s.handle_wake(now);
        }
        if drained.is_some() && drain.is_set() {
            drained = None;
            s.handle_drain(now);
        }
    }
}

/// Runs this thread's connection deadlines: waits for the timerfd, then lets them expire.
async fn drive_deadlines() {
    let fd = deadlines::timer_fd().expect("invariant: a timerfd can be duplicated");
    let fd = Async::new(fd).expect("invariant: a timerfd registers with async-io");
    loop {
        // Reading resets the timerfd; a spurious wake waits again.
        let mut expirations = [0u8; 8];
        let _ = fd.read_with(|f| (&*f).read(&mut expirations)).await;
        deadlines::expire();
    }
}

/// async-io's timer, for the shared executor (the kit's `ConnTimer` uses the thread's
/// timerfd on a per-core one, since async-io's timer map allocates at every reactor turn).
struct SmolTimer(Timer);

impl RuntimeTimer for SmolTimer {
    fn never() -> Self {
        SmolTimer(Timer::never())
    }

    fn set_at(&mut self, at: std::time::Instant) {
        self.0.set_at(at);
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(drop)
    }
}

/// Closes the socket; after an orderly end, lingers so the peer reads the last response.
async fn close(stream: Async<TcpStream>, linger: bool) {
    if linger {
        let timeout = async {
            Timer::after(net::LINGER_TIME).await;
        };
        net::linger(stream.get_ref(), || stream.readable(), timeout).await;
    }
}

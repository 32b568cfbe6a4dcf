//! weir-smol's I/O model as a library: [`run`] serves any [`Hosted`] service on smol's parts,
//! `async-io` for sockets and timers, `async-executor` to run connections — one executor per
//! I/O thread (default, `RUNTIME_LAYOUT=per-core`) or one shared by all
//! (`RUNTIME_LAYOUT=shared`). The `weir-smol` binary serves weir's own application with it. Only moves bytes and waits; decisions are in
//! the core, everything else in the runtime kit. On a per-core executor, connection deadlines
//! live on the thread's timerfd (`weir_kit::deadlines`) rather than in async-io's timer map,
//! which allocates at every reactor turn while any timer is set.

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

use std::future::{Future, poll_fn};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_executor::{Executor, LocalExecutor};
use async_io::{Async, Timer};
use weir_core::config::Layout;
use weir_core::server::Hosted;
use weir_kit::deadlines::{self, RuntimeTimer};
use weir_kit::serve::{Acceptor, ReadOutcome, accept_queued, accept_until_drained, read_at};
use weir_kit::waits::{Connections, Wake};
use weir_kit::{Server, clock, flush_at, net};

/// Rounds of the connection loop in a row that found work without waiting (each a read, a
/// timer, a job or a write) before the loop yields to the executor.
const WAKE_BUDGET: u32 = 32;

type Spawn = Box<dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>)>;

/// Serves `server`'s service on its I/O threads until a signal drains it; returns the exit
/// status (`std::process::exit` with it: the I/O threads still run).
pub fn run<S: Hosted>(server: Server<S>) -> i32 {
    let (layout, threads) = (server.config.layout, server.config.io_threads);
    let shared = Arc::new(Executor::new());
    weir_kit::serve::run(
        server,
        threads,
        move |service, listener, drain, acceptor| {
            let local = layout == Layout::PerCore;
            let conns = Connections {
                service,
                drain,
                local,
            };
            if !local {
                let ex = shared.clone();
                let spawn: Spawn = Box::new(move |f| ex.spawn(f).detach());
                return async_io::block_on(
                    shared.run(accept_loop(conns, listener, acceptor, spawn)),
                );
            }
            let ex = std::rc::Rc::new(LocalExecutor::new());
            ex.spawn(drive_deadlines()).detach();
            let spawner = ex.clone();
            let spawn: Spawn = Box::new(move |f| spawner.spawn(f).detach());
            ex.spawn(accept_loop(conns, listener, acceptor, spawn))
                .detach();
            async_io::block_on(run_tasks(&ex))
        },
    )
}

/// Accepts until the drain, then what the kernel queued, then keeps this executor running
/// for its connections (the process exits from `main`); `spawn` puts each on the executor.
async fn accept_loop<S: Hosted>(conns: Connections<S>, l: TcpListener, a: Acceptor, spawn: Spawn) {
    let listener = Async::new(l).expect("invariant: the listener registers with async-io");
    let start = |stream, peer| spawn(Box::pin(connection(conns.clone(), stream, peer)));
    let pause = |d| async move {
        Timer::after(d).await;
    };
    accept_until_drained(&conns.drain, || listener.accept(), pause, &start).await;
    let _ = accept_queued(listener.get_ref(), |stream, peer| {
        if let Ok(stream) = Async::new(stream) {
            start(stream, peer);
        }
    });
    drop(a);
    std::future::pending().await
}

async fn connection<S: Hosted>(conns: Connections<S>, stream: Async<TcpStream>, peer: SocketAddr) {
    let _ = stream.get_ref().set_nodelay(true);
    // `now`: the time of the last wake (or of the last read that filled the buffer), what
    // the loop's reads and writes are dated with.
    let (mut s, mut waits, mut now) = conns.open::<SmolTimer>(peer);
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
        flush_at(&mut s, Some(now), |bytes| {
            net::send(stream.get_ref(), bytes)
        });
        if waits.take_effects(&mut s, stream.get_ref()).is_some() {
            return;
        }
        // Read while the socket may hold data; a short read means it is drained, so the next
        // step is to wait (saving the read that would only say EAGAIN). async-io reports
        // readiness only for events after a wait began, so the read comes first.
        if s.wants_read() && maybe_readable {
            let outcome = read_at(&mut s, now, |buf| net::recv(stream.get_ref(), buf));
            maybe_readable = outcome == ReadOutcome::Full;
            if maybe_readable {
                // More is waiting and the loop goes on without a wake: time has moved.
                now = clock::now();
            }
            if outcome != ReadOutcome::WouldBlock {
                continue;
            }
        }
        waits.arm(s.poll_timeout());
        let (wants_read, wants_write) = (s.wants_read(), s.poll_transmit().is_some());
        // `poll_*` keep one waker per direction in the source: cheaper than the `readable()`
        // future, which takes a waker slot from a list per wait.
        let (stream, mut waited) = (&stream, false);
        let wake = poll_fn(|cx| {
            let readable = wants_read.then_some(|cx: &mut Context<'_>| stream.poll_readable(cx));
            let writable = wants_write.then_some(|cx: &mut Context<'_>| stream.poll_writable(cx));
            let wake = waits.poll(cx, readable, writable);
            waited |= wake.is_pending();
            wake
        })
        .await;
        if waited {
            rounds_without_waiting = 0;
        }
        now = clock::now();
        match wake {
            Wake::Readable(Ok(())) => maybe_readable = true,
            // The flush at the top retries.
            Wake::Writable(Ok(())) => {}
            Wake::Readable(Err(e)) | Wake::Writable(Err(e)) => {
                s.handle_io_error(now, e.kind().into())
            }
            Wake::Waited(waited) => waits.deliver(waited, &mut s, now),
        }
    }
}

/// Runs a per-core executor's tasks for ever: `LocalExecutor::run` without what only a
/// shared executor needs (a runner's local queue and stealing between runners) and without a
/// main future polled at every wake-up (the accept loop is a task like the connections, so
/// it runs when its listener is ready, not once per batch of another connection's requests).
/// Every `TASKS_BEFORE_IO` tasks it yields, so `block_on` polls the reactor and a busy
/// thread still sees new readiness.
async fn run_tasks(ex: &LocalExecutor<'_>) {
    const TASKS_BEFORE_IO: u32 = 200;
    loop {
        for _ in 0..TASKS_BEFORE_IO {
            ex.tick().await;
        }
        futures_lite::future::yield_now().await;
    }
}

/// Runs this thread's connection deadlines on its timerfd, registered with async-io.
async fn drive_deadlines() {
    let fd = deadlines::timer_fd().expect("invariant: a timerfd can be duplicated");
    let fd = Async::new(fd).expect("invariant: a timerfd registers with async-io");
    deadlines::drive(fd.get_ref(), || fd.readable()).await
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

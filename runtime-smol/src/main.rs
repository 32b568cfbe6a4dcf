//! weir on smol's parts: `async-io` for sockets and timers, `async-executor` to run
//! connections — one executor per I/O thread (default, `RUNTIME_LAYOUT=per-core`) or one
//! shared by all (`RUNTIME_LAYOUT=shared`). Only moves bytes and waits; decisions are in
//! the core.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use async_executor::{Executor, LocalExecutor};
use async_io::{Async, Timer};
use event_listener::Event;
use futures_lite::FutureExt;
use weir_core::config::Layout;
use weir_core::jobs::JobWatch;
use weir_core::{App, CloseReason, Effect};
use weir_kit::{self as rt, Server, clock, net};

fn main() {
    let mut server = match Server::start("weir-smol", "smol") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weir-smol: {e}");
            std::process::exit(1);
        }
    };
    let drain = Arc::new(Event::new());
    let config = server.app.config().clone();
    let shared = Arc::new(Executor::new());
    let listener = server.take_listener();
    server.app.acceptors_started(config.io_threads);
    for i in 0..config.io_threads {
        let (app, drain, shared) = (server.app.clone(), drain.clone(), shared.clone());
        let listener = listener
            .try_clone()
            .expect("invariant: a listener fd can be duplicated");
        let layout = config.layout;
        std::thread::Builder::new()
            .name(format!("weir-io-{i}"))
            .spawn(move || match layout {
                Layout::Shared => {
                    let ex = shared.clone();
                    async_io::block_on(
                        shared.run(serve(app, listener, drain, move |f| ex.spawn(f).detach())),
                    )
                }
                Layout::PerCore => {
                    let ex = std::rc::Rc::new(LocalExecutor::new());
                    let spawner = ex.clone();
                    let ex_ref: &LocalExecutor<'_> = &ex;
                    async_io::block_on(ex_ref.run(serve(app, listener, drain, move |f| {
                        spawner.spawn(f).detach()
                    })))
                }
            })
            .expect("invariant: the OS can start the I/O threads");
    }
    drop(listener);
    let code = server.run_until_signalled(|| {
        drain.notify(usize::MAX);
    });
    std::process::exit(code);
}

/// Accepts until the drain, then keeps this executor running for its connections (the
/// process exits from `main` once they are done or the deadline passes).
async fn serve<F>(app: Arc<App>, listener: TcpListener, drain: Arc<Event>, spawn: F)
where
    F: Fn(Pin<Box<dyn Future<Output = ()> + Send>>),
{
    accept_loop(app.clone(), listener, drain, spawn).await;
    app.acceptor_stopped();
    std::future::pending::<()>().await
}

async fn accept_loop<F>(app: Arc<App>, listener: TcpListener, drain: Arc<Event>, spawn: F)
where
    F: Fn(Pin<Box<dyn Future<Output = ()> + Send>>),
{
    let listener = Async::new(listener).expect("invariant: the listener registers with async-io");
    let start = |stream, peer| Box::pin(connection(app.clone(), stream, peer, drain.clone()));
    loop {
        // Listen before looking at the flag, so a drain between the two is not missed.
        let drained = drain.listen();
        if app.is_draining() {
            break;
        }
        let accepted = async { Some(listener.accept().await) }
            .or(async {
                drained.await;
                None
            })
            .await;
        match accepted {
            Some(Ok((stream, peer))) => spawn(start(stream, peer)),
            Some(Err(e)) => {
                if let Some(pause) = net::accept_error(&e) {
                    Timer::after(pause).await;
                }
            }
            None => break,
        }
    }
    // Draining: answer what the kernel already queued (those clients sent their requests
    // before the signal), then drop this copy of the listener.
    loop {
        match listener.get_ref().accept() {
            Ok((stream, peer)) => match Async::new(stream) {
                Ok(stream) => spawn(start(stream, peer)),
                Err(_) => continue,
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if net::accept_error(&e).is_some() => return,
            Err(_) => {}
        }
    }
}

/// Rounds of the connection loop in a row that found work without waiting (each a read, a
/// timer, a job or a write) before the loop yields to the executor.
const WAKE_BUDGET: u32 = 32;

/// Awaits `f`, and says whether it had to wait (was pending at least once) or was ready at
/// once.
async fn awaited<F: Future>(f: F) -> (F::Output, bool) {
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

/// What woke a connection: the session is touched only after the wait returns one of these.
enum Wake {
    Readable,
    Writable,
    Timer,
    Job,
    Drain,
}

async fn connection(app: Arc<App>, stream: Async<TcpStream>, peer: SocketAddr, drain: Arc<Event>) {
    let _ = stream.get_ref().set_nodelay(true);
    let mut s = app.session(peer, clock::now());
    let mut job: Option<JobWatch> = None;
    let mut drain_listener = Some(drain.listen());
    if app.is_draining() {
        drain_listener = None;
        s.handle_drain(clock::now());
    }
    let mut timer = Timer::never();
    let mut armed: Option<weir_core::Instant> = None;
    let mut maybe_readable = true;
    let mut rounds_without_waiting = 0;
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
        while let Some(effect) = s.poll_effect() {
            match effect {
                Effect::Wait(w) => job = Some(w),
                Effect::Close(reason) => return close(stream, reason).await,
            }
        }
        // Read while the socket may hold data; a short read means it is drained, so the next
        // step is to wait (saving the read that would only say EAGAIN).
        if s.wants_read() && maybe_readable {
            let buf = s.recv_buf();
            let room = buf.len();
            match stream.get_ref().read(buf) {
                Ok(0) => {
                    s.handle_eof(clock::now());
                    continue;
                }
                Ok(n) => {
                    maybe_readable = n == room;
                    s.handle_read(clock::now(), n);
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => maybe_readable = false,
                Err(e) => {
                    s.handle_io_error(clock::now(), e.kind().into());
                    continue;
                }
            }
        }
        let deadline = s.poll_timeout();
        // Re-arm only for an earlier deadline (see weir-tokio: an early alarm is harmless).
        if let Some(d) = deadline.filter(|d| armed.is_none_or(|a| *d < a)) {
            timer.set_at(clock::to_std(d));
            armed = Some(d);
        }
        let wants_read = s.wants_read();
        let wants_write = s.poll_transmit().is_some();
        let readable = async {
            if wants_read {
                let _ = stream.readable().await;
            } else {
                std::future::pending::<()>().await
            }
            Wake::Readable
        };
        let writable = async {
            if wants_write {
                let _ = stream.writable().await;
            } else {
                std::future::pending::<()>().await
            }
            Wake::Writable
        };
        let timer_fired = async {
            (&mut timer).await;
            Wake::Timer
        };
        let job_ready = std::future::poll_fn(|cx| match job.as_mut() {
            Some(j) => Pin::new(j).poll(cx).map(|()| Wake::Job),
            None => Poll::Pending,
        });
        let drained = std::future::poll_fn(|cx| match drain_listener.as_mut() {
            Some(l) => Pin::new(l).poll(cx).map(|()| Wake::Drain),
            None => Poll::Pending,
        });
        let (wake, waited) = awaited(
            readable
                .or(writable)
                .or(timer_fired)
                .or(job_ready)
                .or(drained),
        )
        .await;
        if waited {
            rounds_without_waiting = 0;
        }
        let now = clock::now();
        match wake {
            Wake::Readable => maybe_readable = true,
            Wake::Writable => {}
            Wake::Timer => {
                armed = None;
                s.handle_timeout(now);
            }
            Wake::Job => {
                job = None;
                s.handle_wake(now);
            }
            Wake::Drain => {
                drain_listener = None;
                s.handle_drain(now);
            }
        }
    }
}

/// Closes the socket; after an orderly end, half-closes and drains briefly so the peer reads
/// the last response rather than a reset.
async fn close(stream: Async<TcpStream>, reason: CloseReason) {
    if !reason.wants_linger() {
        return;
    }
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    // On the heap: an array here would sit in every connection's future for its whole life.
    let mut sink = vec![0u8; 4096];
    let mut left = net::LINGER_BYTES;
    let drain = async {
        while left > 0 {
            match stream.read_with(|mut s| s.read(&mut sink)).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    drain
        .or(async {
            Timer::after(net::LINGER_TIME).await;
        })
        .await;
}

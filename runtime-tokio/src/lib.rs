//! weir-tokio's I/O model as a library: [`run`] serves any [`Hosted`] service over tokio,
//! one task per connection — one current-thread runtime per I/O thread sharing the listener
//! (default, `RUNTIME_LAYOUT=per-core`), or one multi-thread runtime
//! (`RUNTIME_LAYOUT=shared`). The `weir-tokio` binary serves weir's own application with it;
//! `examples/own_service.rs` serves another. This file only moves bytes between sockets and
//! sessions and waits; every decision is in the core, everything else in the runtime kit.

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

use std::future::Future;
use std::future::poll_fn;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::Ready;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Handle, Runtime, RuntimeFlavor};
use weir_core::config::Layout;
use weir_core::server::Hosted;
use weir_kit::deadlines::{self, ConnTimer, RuntimeTimer};
use weir_kit::serve::{Drain, accept_queued, accept_until_drained};
use weir_kit::waits::{Connections, Wake};
use weir_kit::{self as rt, Server, clock, net};

/// Serves `server`'s service on its I/O threads until a signal drains it; returns the exit
/// status (`std::process::exit` with it: the I/O threads still run).
pub fn run<S: Hosted>(server: Server<S>) -> i32 {
    let config = &server.config;
    let (accept_loops, shared) = match config.layout {
        Layout::PerCore => (config.io_threads, None),
        Layout::Shared => {
            let mut builder = Builder::new_multi_thread();
            let builder = builder.worker_threads(config.io_threads).enable_all();
            (1, Some(runtime(builder)))
        }
    };
    weir_kit::serve::run(server, accept_loops, move |s, l, d, a| match &shared {
        Some(shared) => shared.block_on(accept_loop(s, l, d, a)),
        // I/O only: `serve` keeps a current-thread runtime's deadlines on the thread's
        // timerfd, so tokio's time driver would only cost a walk of its wheel per park.
        None => {
            runtime(Builder::new_current_thread().enable_io()).block_on(accept_loop(s, l, d, a))
        }
    })
}

fn runtime(builder: &mut Builder) -> Arc<Runtime> {
    Arc::new(
        builder
            .build()
            .expect("invariant: the tokio runtime starts"),
    )
}

/// Accepts on `l` (non-blocking) until the drain, then what the kernel queued, then drops
/// `done` (an accept-loop token) and keeps this runtime alive for its connections (the process exits from
/// its own shutdown sequence).
async fn accept_loop<S: Hosted>(
    service: Arc<S>,
    l: StdListener,
    drain: Arc<Drain>,
    done: impl Send,
) {
    let listener = TcpListener::from_std(l).expect("invariant: the listener registers");
    // On a current-thread runtime tasks stay on this thread: connection deadlines go on its
    // timerfd (`weir_kit::deadlines`), and tokio's time driver has no timer to walk per park.
    let local = Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread;
    if local {
        tokio::spawn(drive_deadlines());
    }
    let conns = Connections {
        service,
        drain,
        local,
    };
    let spawn = |tcp, peer| drop(tokio::spawn(connection(conns.clone(), tcp, peer)));
    let pause = |d| Timer::sleep(local, d);
    accept_until_drained(&conns.drain, || listener.accept(), pause, spawn).await;
    if let Ok(listener) = listener.into_std() {
        let _ = accept_queued(&listener, |stream, peer| {
            if let Ok(stream) = TcpStream::from_std(stream) {
                spawn(stream, peer);
            }
        });
    }
    drop(done);
    std::future::pending::<()>().await
}

/// Runs this thread's connection deadlines on its timerfd, registered with tokio's reactor.
#[allow(unsafe_code)] // `AsyncFd::register`: one of the two places of this crate (see SAFETY)
async fn drive_deadlines() {
    let file = deadlines::timer_fd().expect("invariant: a timerfd can be duplicated");
    // SAFETY: the File owns its descriptor, and it does not change or close while the
    // AsyncFd owns the file (the contract of `register`).
    let fd = unsafe { AsyncFd::register(file) }.expect("invariant: a timerfd registers");
    // Readiness is cleared before each read: a wake with nothing to read then waits.
    let readable = || async { fd.readable().await.map(|mut g| g.clear_ready()) };
    deadlines::drive(fd.get_ref(), readable).await
}

/// tokio's timer, for a multi-thread runtime (the kit's `ConnTimer` uses the thread's
/// timerfd on a current-thread one, whose driver may run without tokio's timers).
struct TokioTimer(Pin<Box<tokio::time::Sleep>>);

impl RuntimeTimer for TokioTimer {
    fn never() -> Self {
        TokioTimer(Box::pin(tokio::time::sleep(Duration::from_secs(3600))))
    }

    fn set_at(&mut self, at: std::time::Instant) {
        self.0.as_mut().reset(tokio::time::Instant::from_std(at));
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

type Timer = ConnTimer<TokioTimer>;

#[allow(unsafe_code)] // `AsyncFd::register`: the other place of this crate (see SAFETY)
async fn connection<S: Hosted>(conns: Connections<S>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    // AsyncFd rather than TcpStream: a short read clears the readiness at once, which saves
    // the read that would only return EAGAIN — one syscall per request.
    let Ok(std_stream) = tcp.into_std() else {
        return;
    };
    // SAFETY: the TcpStream owns its descriptor, and it does not change or close while the
    // AsyncFd owns the stream (the contract of `register`).
    let Ok(sock) = (unsafe { AsyncFd::register(std_stream) }) else {
        return;
    };
    // `now`: the time of the last wake, what the loop's writes date their timeout with.
    let (mut s, mut waits, mut now) = conns.open::<TokioTimer>(peer);
    loop {
        let blocked = rt::flush_at(&mut s, Some(now), |bytes| net::send(sock.get_ref(), bytes));
        if waits.take_effects(&mut s, sock.get_ref()).is_some() {
            return;
        }
        let (wants_read, wants_write) = (s.wants_read(), blocked && s.poll_transmit().is_some());
        waits.arm(s.poll_timeout());
        // The socket through `poll_*_ready`, which keep one waker per direction in the
        // descriptor's slot: cheaper than the `readable()` future, which links a waiter into
        // a list under a lock.
        let sock = &sock;
        let wake = poll_fn(|cx| {
            let readable = wants_read.then_some(|cx: &mut Context<'_>| sock.poll_read_ready(cx));
            let writable = wants_write.then_some(|cx: &mut Context<'_>| sock.poll_write_ready(cx));
            waits.poll(cx, readable, writable)
        })
        .await;
        now = clock::now();
        match wake {
            Wake::Readable(Ok(mut guard)) => {
                let buf = s.recv_buf();
                let room = buf.len();
                match guard.try_io(|sock| net::recv(sock.get_ref(), buf)) {
                    Ok(Ok(0)) => s.handle_eof(now),
                    Ok(Ok(n)) => {
                        if n < room {
                            // Drained; an event newer than this guard keeps its readiness.
                            guard.clear_ready_matching(Ready::READABLE);
                        }
                        s.handle_read(now, n);
                    }
                    Ok(Err(e)) => s.handle_io_error(now, e.kind().into()),
                    Err(_would_block) => {}
                }
            }
            // The flush at the top retries; a stale readiness costs one more round at most.
            Wake::Writable(Ok(mut guard)) => guard.clear_ready_matching(Ready::WRITABLE),
            Wake::Readable(Err(e)) | Wake::Writable(Err(e)) => {
                s.handle_io_error(now, e.kind().into())
            }
            Wake::Waited(waited) => waits.deliver(waited, &mut s, now),
        }
    }
}

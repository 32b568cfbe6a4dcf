//! weir on tokio: one current-thread runtime per I/O thread sharing the listener (default,
//! `RUNTIME_LAYOUT=per-core`), or one multi-thread runtime (`RUNTIME_LAYOUT=shared`).
//! This file only moves bytes between sockets and `weir_core::Session`, waits, and handles
//! signals; every decision is in the core.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use std::io::{Read, Write};

use tokio::io::Ready;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weir_core::config::Layout;
use weir_core::jobs::JobWatch;
use weir_core::{App, CloseReason, Effect};
use weir_kit::{self as rt, Server, clock, net};

fn main() {
    let mut server = match Server::start("weir-tokio", "tokio") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weir-tokio: {e}");
            std::process::exit(1);
        }
    };
    let listener = server.take_listener();
    listener
        .set_nonblocking(true)
        .expect("invariant: a bound listener can be non-blocking");
    let (drain_tx, drain_rx) = watch::channel(false);
    let config = server.app.config().clone();
    // The runtime(s) serve on their own threads; this thread runs the shutdown sequence.
    let _shared = match config.layout {
        Layout::Shared => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.io_threads)
                .enable_all()
                .build()
                .expect("invariant: the tokio runtime starts");
            server.app.acceptors_started(1);
            rt.spawn(serve(server.app.clone(), listener, drain_rx));
            Some(rt)
        }
        Layout::PerCore => {
            server.app.acceptors_started(config.io_threads);
            for i in 0..config.io_threads {
                let (app, rx) = (server.app.clone(), drain_rx.clone());
                let listener = listener
                    .try_clone()
                    .expect("invariant: a listener fd can be duplicated");
                std::thread::Builder::new()
                    .name(format!("weir-io-{i}"))
                    .spawn(move || current_thread().block_on(serve(app, listener, rx)))
                    .expect("invariant: the OS can start the I/O threads");
            }
            drop(listener);
            None
        }
    };
    let code = server.run_until_signalled(|| {
        let _ = drain_tx.send(true);
    });
    std::process::exit(code);
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("invariant: the tokio runtime starts")
}

/// Accepts until the drain, then keeps this runtime alive for the connections it serves
/// (the process exits from `main` once they are done or the deadline passes).
async fn serve(app: Arc<App>, listener: std::net::TcpListener, drain: watch::Receiver<bool>) {
    accept_loop(app.clone(), listener, drain).await;
    app.acceptor_stopped();
    std::future::pending::<()>().await
}

async fn accept_loop(
    app: Arc<App>,
    listener: std::net::TcpListener,
    mut drain: watch::Receiver<bool>,
) {
    let listener =
        TcpListener::from_std(listener).expect("invariant: the listener registers with tokio");
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(app.clone(), stream, peer, drain.clone()));
                }
                Err(e) => {
                    if let Some(pause) = net::accept_error(&e) {
                        tokio::time::sleep(pause).await;
                    }
                }
            },
            _ = drain.changed() => break,
        }
    }
    // Draining: answer what the kernel already queued (those clients sent their requests
    // before the signal), then drop this copy of the listener. Accept on the socket itself:
    // tokio's readiness may not have seen the queue yet.
    let Ok(listener) = listener.into_std() else {
        return;
    };
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let stream = stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream));
                if let Ok(stream) = stream {
                    tokio::spawn(connection(app.clone(), stream, peer, drain.clone()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if net::accept_error(&e).is_some() => return,
            Err(_) => {}
        }
    }
}

/// What woke a connection: the session is touched only after the wait returns one of these.
enum Wake<'a> {
    Readable(std::io::Result<AsyncFdReadyGuard<'a, std::net::TcpStream>>),
    Writable(std::io::Result<AsyncFdReadyGuard<'a, std::net::TcpStream>>),
    Timer,
    Job,
    Drain,
}

async fn connection(
    app: Arc<App>,
    stream: TcpStream,
    peer: SocketAddr,
    mut drain: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // AsyncFd rather than TcpStream: a short read clears the readiness at once, which saves
    // the read that would only return EAGAIN — one syscall per request.
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    // SAFETY: the TcpStream owns its descriptor, and it does not change or close while the
    // AsyncFd owns the stream (the contract of `register`).
    let Ok(sock) = (unsafe { AsyncFd::register(std_stream) }) else {
        return;
    };
    let mut s = app.session(peer, clock::now());
    let mut job: Option<JobWatch> = None;
    let mut drain_seen = *drain.borrow();
    if drain_seen {
        s.handle_drain(clock::now());
    }
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut armed: Option<weir_core::Instant> = None;
    loop {
        let blocked = rt::flush(&mut s, |bytes| sock.get_ref().write(bytes));
        while let Some(effect) = s.poll_effect() {
            match effect {
                Effect::Wait(w) => job = Some(w),
                Effect::Close(reason) => return close(sock, reason).await,
            }
        }
        let (wants_read, wants_write) = (s.wants_read(), blocked && s.poll_transmit().is_some());
        let deadline = s.poll_timeout();
        // Re-arm only for an earlier deadline: a later one (the idle timer moving on with
        // every request) waits for the armed alarm, which is harmless early because
        // `handle_timeout` is idempotent. This keeps timer-wheel work off the request path.
        if let Some(d) = deadline.filter(|d| armed.is_none_or(|a| *d < a)) {
            sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(clock::to_std(d)));
            armed = Some(d);
        }
        let waiting_job = job.is_some();
        let job_ready = std::future::poll_fn(|cx| match job.as_mut() {
            Some(j) => Pin::new(j).poll(cx),
            None => Poll::Pending,
        });
        let wake = tokio::select! {
            biased;
            g = sock.readable(), if wants_read => Wake::Readable(g),
            g = sock.writable(), if wants_write => Wake::Writable(g),
            _ = job_ready, if waiting_job => Wake::Job,
            _ = &mut sleep, if armed.is_some() => Wake::Timer,
            _ = drain.changed(), if !drain_seen => Wake::Drain,
        };
        let now = clock::now();
        match wake {
            Wake::Readable(Ok(mut guard)) => {
                let buf = s.recv_buf();
                let room = buf.len();
                match guard.try_io(|sock| sock.get_ref().read(buf)) {
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
            Wake::Writable(Ok(mut guard)) => {
                while let Some(bytes) = s.poll_transmit() {
                    match guard.try_io(|sock| sock.get_ref().write(bytes)) {
                        Ok(Ok(n)) => s.advance_transmit(clock::now(), n),
                        Ok(Err(e)) => {
                            s.handle_io_error(clock::now(), e.kind().into());
                            break;
                        }
                        Err(_would_block) => break,
                    }
                }
            }
            Wake::Readable(Err(e)) | Wake::Writable(Err(e)) => {
                s.handle_io_error(now, e.kind().into())
            }
            Wake::Timer => {
                armed = None;
                s.handle_timeout(now);
            }
            Wake::Job => {
                job = None;
                s.handle_wake(now);
            }
            Wake::Drain => {
                drain_seen = true;
                s.handle_drain(now);
            }
        }
    }
}

/// Closes the socket; after an orderly end, half-closes and drains briefly so the peer reads
/// the last response rather than a reset.
async fn close(sock: AsyncFd<std::net::TcpStream>, reason: CloseReason) {
    if !reason.wants_linger() {
        return;
    }
    let _ = sock.get_ref().shutdown(std::net::Shutdown::Write);
    // On the heap: an array here would sit in every connection's future for its whole life.
    let mut sink = vec![0u8; 4096];
    let mut left = net::LINGER_BYTES;
    let _ = tokio::time::timeout(net::LINGER_TIME, async {
        while left > 0 {
            let Ok(mut guard) = sock.readable().await else {
                return;
            };
            match guard.try_io(|s| s.get_ref().read(&mut sink)) {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => left = left.saturating_sub(n),
                Err(_would_block) => {}
            }
        }
    })
    .await;
}

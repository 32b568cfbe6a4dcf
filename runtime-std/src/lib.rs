//! weir-std's I/O model as a library: [`run`] serves any [`Hosted`] service on blocking
//! `std::net`, one OS thread per connection, blocking reads with timeouts taken from the
//! session's deadlines. The `weir-std` binary serves weir's own application with it. Only moves bytes and waits; decisions are in the core,
//! everything else in the runtime kit.

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use weir_core::server::Hosted;
use weir_core::tls::Connection;
use weir_kit::serve::{Acceptor, Drain, ReadOutcome, accept_queued, read, take_effects};
use weir_kit::waits::block_on_timeout;
use weir_kit::{Server, clock, net};

/// Stack of a connection thread: the head parser keeps its header array (32 KiB at the
/// `MAX_HEADERS` cap) on the stack; 256 KiB leaves ample room.
const CONN_STACK: usize = 256 * 1024;

/// Longest single blocking wait, so a connection notices a drain or a departed client in
/// time (a blocked thread cannot be woken otherwise). One second keeps 10,000 idle
/// connections at 10,000 wake-ups a second while a drain is still noticed well within
/// `SHUTDOWN_TIMEOUT`.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Serves `server`'s service until a signal drains it; returns the exit status
/// (`std::process::exit` with it: connection threads may still run).
pub fn run<S: Hosted>(server: Server<S>) -> i32 {
    weir_kit::serve::run(server, 1, accept_loop)
}

/// Waits on the listener and the drain's descriptor; at the drain, accepts what the kernel
/// queued and returns (closing this copy of the listener).
fn accept_loop<S: Hosted>(
    service: Arc<S>,
    listener: TcpListener,
    drain: Arc<Drain>,
    _acceptor: Acceptor,
) {
    use rustix::event::{PollFd, PollFlags, poll};
    loop {
        let mut fds = [
            PollFd::new(&listener, PollFlags::IN),
            PollFd::new(drain.pollable(), PollFlags::IN),
        ];
        if let Err(e) = poll(&mut fds, None) {
            if e == rustix::io::Errno::INTR {
                continue;
            }
            tracing::error!(error = %e, "poll on the listener failed; accepting stops");
            return;
        }
        let draining = !fds[1].revents().is_empty();
        let pause = accept_queued(&listener, |stream, peer| {
            spawn_connection(&service, &drain, stream, peer)
        });
        if draining {
            return;
        }
        if let Some(pause) = pause {
            std::thread::sleep(pause);
        }
    }
}

fn spawn_connection<S: Hosted>(
    service: &Arc<S>,
    drain: &Arc<Drain>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let _ = stream.set_nonblocking(false);
    let (service, drain) = (service.clone(), drain.clone());
    let spawned = std::thread::Builder::new()
        .name("weir-conn".into())
        .stack_size(CONN_STACK)
        .spawn(move || connection(service, &drain, stream, peer));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a connection thread; connection dropped");
        std::thread::sleep(net::ACCEPT_BACKOFF);
    }
}

fn connection<S: Hosted>(service: Arc<S>, drain: &Drain, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(service.http_config().write_timeout));
    let mut s = Connection::new(service, drain.lifecycle(), peer, clock::now());
    let (mut job, mut drain_seen) = (None, false);
    loop {
        flush(&mut s, &mut stream);
        if take_effects(&mut s, &mut job, &stream).is_some() {
            return;
        }
        if !drain_seen && drain.is_set() {
            drain_seen = true;
            s.handle_drain(clock::now());
            continue;
        }
        let now = clock::now();
        let wait = s
            .poll_timeout()
            .map_or(MAX_WAIT, |d| d.since(now.mono))
            .clamp(Duration::from_millis(1), MAX_WAIT);
        if let Some(watch) = &mut job {
            if block_on_timeout(watch, wait).is_some() {
                job = None;
                s.handle_wake(clock::now());
            } else {
                peek_for_departure(&mut s, &stream);
                s.handle_timeout(clock::now());
            }
        } else if s.wants_read() {
            let _ = stream.set_read_timeout(Some(wait));
            let receive = |buf: &mut [u8]| net::recv(&stream, buf);
            if read(&mut s, receive) == ReadOutcome::WouldBlock {
                s.handle_timeout(clock::now());
            }
        } else {
            std::thread::sleep(wait);
            s.handle_timeout(clock::now());
        }
    }
}

/// While a job runs the thread is not reading; a non-blocking peek notices a client that
/// has gone, so its queued job is cancelled.
fn peek_for_departure<S: Hosted>(s: &mut Connection<S>, stream: &TcpStream) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    match stream.peek(&mut [0u8; 1]) {
        Ok(0) => s.handle_eof(clock::now()),
        Err(e) if e.kind() != ErrorKind::WouldBlock => {
            s.handle_io_error(clock::now(), e.kind().into())
        }
        _ => {}
    }
    let _ = stream.set_nonblocking(false);
}

/// Writes what the session has queued; a write blocked past `WRITE_TIMEOUT` returns, and the
/// session's write deadline then closes the connection.
fn flush<S: Hosted>(s: &mut Connection<S>, stream: &mut TcpStream) {
    while weir_kit::flush(s, |bytes| net::send(stream, bytes)) {
        s.handle_timeout(clock::now());
        if s.is_closed() {
            return;
        }
    }
}

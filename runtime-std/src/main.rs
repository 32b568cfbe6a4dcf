//! weir on blocking `std::net`: one OS thread per connection, blocking reads with timeouts
//! taken from the session's deadlines. Only moves bytes and waits; decisions are in the core,
//! everything else in the runtime kit.

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use weir_core::{App, Connection};
use weir_kit::serve::{self as kit, Acceptor, Drain, ReadOutcome};
use weir_kit::{self as rt, clock, net};

/// Stack of a connection thread: the head parser keeps its header array (32 KiB at the
/// `MAX_HEADERS` cap) on the stack; 256 KiB leaves ample room.
const CONN_STACK: usize = 256 * 1024;

/// Longest single blocking wait, so a connection notices a drain or a departed client in
/// time (a blocked thread cannot be woken otherwise). One second keeps 10,000 idle
/// connections at 10,000 wake-ups a second while a drain is still noticed well within
/// `SHUTDOWN_TIMEOUT`.
const MAX_WAIT: Duration = Duration::from_secs(1);

fn main() {
    kit::run(kit::start("weir-std", "std"), 1, accept_loop)
}

/// Waits on the listener and the drain's descriptor; at the drain, accepts what the kernel
/// queued and returns (closing this copy of the listener).
fn accept_loop(app: Arc<App>, listener: TcpListener, drain: Arc<Drain>, _acceptor: Acceptor) {
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
        let pause = kit::accept_queued(&listener, |stream, peer| {
            spawn_connection(&app, stream, peer)
        });
        if draining {
            return;
        }
        if let Some(pause) = pause {
            std::thread::sleep(pause);
        }
    }
}

fn spawn_connection(app: &Arc<App>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nonblocking(false);
    let app = app.clone();
    let spawned = std::thread::Builder::new()
        .name("weir-conn".into())
        .stack_size(CONN_STACK)
        .spawn(move || connection(&app, stream, peer));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a connection thread; connection dropped");
        std::thread::sleep(net::ACCEPT_BACKOFF);
    }
}

fn connection(app: &Arc<App>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(app.config().write_timeout));
    let mut s = app.connection(peer, clock::now());
    let (mut job, mut drain_seen) = (None, false);
    loop {
        flush(&mut s, &mut stream);
        if let Some(reason) = kit::take_effects(&mut s, &mut job) {
            if reason.wants_linger() {
                net::linger_blocking(&stream);
            }
            return;
        }
        if !drain_seen && app.is_draining() {
            drain_seen = true;
            s.handle_drain(clock::now());
            continue;
        }
        let now = clock::now();
        let wait = s
            .poll_timeout()
            .map_or(MAX_WAIT, |d| d.since(now.mono))
            .clamp(Duration::from_millis(1), MAX_WAIT);
        if let Some(watch) = &job {
            if watch.wait_timeout(wait) {
                job = None;
                s.handle_wake(clock::now());
            } else {
                peek_for_departure(&mut s, &stream);
                s.handle_timeout(clock::now());
            }
        } else if s.wants_read() {
            let _ = stream.set_read_timeout(Some(wait));
            let read = |buf: &mut [u8]| net::recv(&stream, buf);
            if kit::read(&mut s, read) == ReadOutcome::WouldBlock {
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
fn peek_for_departure(s: &mut Connection, stream: &TcpStream) {
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
fn flush(s: &mut Connection, stream: &mut TcpStream) {
    while rt::flush(s, |bytes| net::send(stream, bytes)) {
        s.handle_timeout(clock::now());
        if s.is_closed() {
            return;
        }
    }
}

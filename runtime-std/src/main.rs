//! weir on blocking `std::net`: one OS thread per connection, blocking reads with timeouts
//! taken from the session's deadlines. Only moves bytes and waits; decisions are in the core.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use weir_core::jobs::JobWatch;
use weir_core::{App, CloseReason, Effect, Session};
use weir_kit::{self as rt, Server, clock, net};

/// Stack of a connection thread: the head parser keeps its header array (32 KiB at the
/// `MAX_HEADERS` cap) on the stack; 256 KiB leaves ample room.
const CONN_STACK: usize = 256 * 1024;

/// Longest single blocking wait, so a connection notices a drain or a departed client in
/// time (a blocked thread cannot be woken otherwise). One second keeps 10,000 idle
/// connections at 10,000 wake-ups a second while a drain is still noticed well within
/// `SHUTDOWN_TIMEOUT`.
const MAX_WAIT: Duration = Duration::from_secs(1);

fn main() {
    let mut server = match Server::start("weir-std", "std") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weir-std: {e}");
            std::process::exit(1);
        }
    };
    let listener = server.take_listener();
    // The accept thread waits on the listener and on this pair: closing the sending end at
    // the drain wakes it (a blocked accept() could not be woken otherwise).
    let (wake_rx, wake_tx) = UnixStream::pair().expect("invariant: a socket pair can be made");
    let app = server.app.clone();
    app.acceptors_started(1);
    std::thread::Builder::new()
        .name("weir-accept".into())
        .spawn(move || {
            accept_loop(&app, listener, wake_rx);
            app.acceptor_stopped();
        })
        .expect("invariant: the OS can start the accept thread");
    std::process::exit(server.run_until_signalled(move || drop(wake_tx)));
}

fn accept_loop(app: &Arc<App>, listener: TcpListener, drain: UnixStream) {
    use rustix::event::{PollFd, PollFlags, poll};
    listener
        .set_nonblocking(true)
        .expect("invariant: a bound listener can be non-blocking");
    loop {
        let mut fds = [
            PollFd::new(&listener, PollFlags::IN),
            PollFd::new(&drain, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::error!(error = %e, "poll on the listener failed; accepting stops");
                return;
            }
        }
        let draining = !fds[1].revents().is_empty();
        // Accept everything queued; at the drain this answers what the kernel already held
        // (those clients sent their requests before the signal), then the listener closes.
        loop {
            match listener.accept() {
                Ok((stream, peer)) => spawn_connection(app, stream, peer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    if let Some(pause) = net::accept_error(&e) {
                        if draining {
                            return;
                        }
                        std::thread::sleep(pause);
                        break;
                    }
                }
            }
        }
        if draining {
            return;
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
    let mut s = app.session(peer, clock::now());
    let mut job: Option<JobWatch> = None;
    let mut drain_seen = false;
    loop {
        flush(&mut s, &mut stream);
        while let Some(effect) = s.poll_effect() {
            match effect {
                Effect::Wait(w) => job = Some(w),
                Effect::Close(reason) => return close(stream, reason),
            }
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
            match stream.read(s.recv_buf()) {
                Ok(0) => s.handle_eof(clock::now()),
                Ok(n) => s.handle_read(clock::now(), n),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    s.handle_timeout(clock::now())
                }
                Err(e) => s.handle_io_error(clock::now(), e.kind().into()),
            }
        } else {
            std::thread::sleep(wait);
            s.handle_timeout(clock::now());
        }
    }
}

/// While a job runs the thread is not reading; a non-blocking peek notices a client that
/// has gone, so its queued job is cancelled.
fn peek_for_departure(s: &mut Session, stream: &TcpStream) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut probe = [0u8; 1];
    match stream.peek(&mut probe) {
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
fn flush(s: &mut Session, stream: &mut TcpStream) {
    while rt::flush(s, |bytes| stream.write(bytes)) {
        s.handle_timeout(clock::now());
        if s.is_closed() {
            return;
        }
    }
}

/// Closes the socket; after an orderly end, half-closes and drains briefly so the peer reads
/// the last response rather than a reset.
fn close(mut stream: TcpStream, reason: CloseReason) {
    if !reason.wants_linger() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(net::LINGER_TIME));
    let mut sink = [0u8; 4096];
    let mut left = net::LINGER_BYTES;
    while left > 0 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

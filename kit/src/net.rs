//! Listening sockets, accept-error policy, and a connection's reads and writes.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// How long the accept loop pauses when the process or system is out of descriptors
/// (Go's net/http backs off from 5 ms to 1 s; a fixed pause keeps this simple and idle).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Reads what a connection's socket holds into `buf`: `recv(2)` made straight (rustix),
/// the same call as `Read for &TcpStream` without libc's cancellation-point wrapper around
/// it (about 45 instructions a call, measured under callgrind).
#[inline]
pub fn recv(sock: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(sock, buf, rustix::net::RecvFlags::empty())?.0)
}

/// Writes `bytes` to a connection's socket: `send(2)` with `MSG_NOSIGNAL`, as `Write for
/// &TcpStream` does, made straight (see [`recv`]).
#[inline]
pub fn send(sock: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(
        sock,
        bytes,
        rustix::net::SendFlags::NOSIGNAL,
    )?)
}

/// Binds `addr` with `SO_REUSEADDR` (and `SO_REUSEPORT` when `reuse_port`) and the given
/// backlog; blocking mode.
pub fn bind(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);

/// What to do after a failed `accept`: `Some(pause)` when out of descriptors or memory (log
/// once per burst, keep serving), `None` to retry at once (the peer reset before accept).
pub fn accept_error(e: &io::Error) -> Option<Duration> {
    use rustix::io::Errno;
    let resource = [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()));
    if !resource {
        return None;
    }
    let now = super::clock::now().wall_ms / 1000;
    if LAST_LOGGED.swap(now, Ordering::Relaxed) != now {
        tracing::warn!(error = %e, pause = ?ACCEPT_BACKOFF, "accept failed: out of file descriptors or memory; pausing accepts");
    }
    Some(ACCEPT_BACKOFF)
}

/// Shuts a socket's write side (the connection's [`HalfClose`](weir_core::http::Effect)
/// before its linger); a socket already gone needs nothing.
pub fn shut_write(sock: std::os::fd::BorrowedFd<'_>) {
    let _ = rustix::net::shutdown(sock, rustix::net::Shutdown::Write);
}

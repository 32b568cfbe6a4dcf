//! Listening sockets and accept-error policy.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// How long the accept loop pauses when the process or system is out of descriptors
/// (Go's net/http backs off from 5 ms to 1 s; a fixed pause keeps this simple and idle).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Most bytes read and discarded while lingering before a close.
pub const LINGER_BYTES: usize = 64 * 1024;

/// Longest linger before a close (the peer reads our last response instead of a reset).
pub const LINGER_TIME: Duration = Duration::from_millis(500);

/// Binds `addr` with `SO_REUSEADDR` and the given backlog; blocking mode.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
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

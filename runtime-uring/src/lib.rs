//! weir-uring's I/O model as a library: [`run`] serves any [`Hosted`] service on io_uring,
//! one ring per I/O thread (`IO_THREADS`), sessions driven straight from completions — no
//! async executor. The `weir-uring` binary serves weir's own application with it. Each ring accepts with one multishot accept, receives
//! into a provided-buffer pool, sends batched with everything else in one `io_uring_enter`
//! per turn, and learns of finished jobs and of the drain through completions too (an
//! eventfd read, a poll on the drain's descriptor). Only moves bytes and waits; decisions
//! are in the core, everything else in the runtime kit.
//!
//! Where io_uring cannot be used (an old kernel, `kernel.io_uring_disabled`, a seccomp
//! filter), [`unavailable`] says why; the binary then exits 1 at start with that line and
//! what to run instead.

// `unsafe` only in `ring` (allowed there by name; docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

mod event_loop;
mod ring;
mod wake;

use weir_core::server::Hosted;
use weir_kit::Server;

/// Why io_uring cannot be used here, if it cannot.
pub fn unavailable() -> Option<String> {
    ring::unavailable()
}

/// Serves `server`'s service on its I/O threads until a signal drains it; returns the exit
/// status (`std::process::exit` with it: the I/O threads still run). A ring the kernel
/// refuses at start exits the process with status 1 and the reason.
pub fn run<S: Hosted>(server: Server<S>) -> i32 {
    let (threads, buffers) = (server.config.io_threads, server.config.uring_buffers);
    weir_kit::serve::run(
        server,
        threads,
        move |service, listener, drain, acceptor| match event_loop::EventLoop::new(
            service, buffers, listener, drain, acceptor,
        ) {
            Ok(event_loop) => event_loop.run(),
            Err(e) => {
                eprintln!(
                    "weir-uring: cannot set up an io_uring ring: {e}; run weir-tokio instead"
                );
                std::process::exit(1);
            }
        },
    )
}

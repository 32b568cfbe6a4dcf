//! weir on io_uring: one ring per I/O thread (`IO_THREADS`), sessions driven straight from
//! completions — no async executor. Each ring accepts with one multishot accept, receives
//! into a provided-buffer pool, sends batched with everything else in one `io_uring_enter`
//! per turn, and learns of finished jobs and of the drain through completions too (an
//! eventfd read, a poll on the drain's descriptor). Only moves bytes and waits; decisions
//! are in the core, everything else in the runtime kit.
//!
//! Where io_uring cannot be used (an old kernel, `kernel.io_uring_disabled`, a seccomp
//! filter), the binary exits 1 at start with one line saying why and what to run instead.

// `unsafe` only in `ring` (allowed there by name; docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

mod event_loop;
mod ring;
mod wake;

use weir_kit::serve as kit;

fn main() {
    let asks_help = std::env::args()
        .skip(1)
        .any(|a| matches!(a.as_str(), "--help" | "-h" | "--version" | "-V"));
    if !asks_help {
        if let Some(why) = ring::unavailable() {
            eprintln!("weir-uring: io_uring is not available: {why}; run weir-tokio instead");
            std::process::exit(1);
        }
    }
    let server = kit::start("weir-uring", "uring");
    let threads = server.app.config().io_threads;
    kit::run(
        server,
        threads,
        |app, listener, drain, acceptor| match event_loop::EventLoop::new(
            app, listener, drain, acceptor,
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

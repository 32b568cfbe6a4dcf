//! weir on tokio: one current-thread runtime per I/O thread sharing the listener (default,
//! `RUNTIME_LAYOUT=per-core`), or one multi-thread runtime (`RUNTIME_LAYOUT=shared`), each
//! serving weir's application with the library's `serve`.

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

use std::sync::Arc;

use tokio::runtime::{Builder, Runtime};
use weir_core::config::Layout;
use weir_tokio::serve;

fn main() {
    let server = weir_kit::serve::start("weir-tokio", "tokio");
    let config = server.app.config().clone();
    let (accept_loops, shared) = match config.layout {
        Layout::PerCore => (config.io_threads, None),
        Layout::Shared => {
            let mut builder = Builder::new_multi_thread();
            let builder = builder.worker_threads(config.io_threads).enable_all();
            (1, Some(runtime(builder)))
        }
    };
    weir_kit::serve::run(server, accept_loops, move |app, l, d, a| match &shared {
        Some(shared) => shared.block_on(serve(app, l, d, a)),
        // I/O only: `serve` keeps a current-thread runtime's deadlines on the thread's
        // timerfd, so tokio's time driver would only cost a walk of its wheel per park.
        None => runtime(Builder::new_current_thread().enable_io()).block_on(serve(app, l, d, a)),
    })
}

fn runtime(builder: &mut Builder) -> Arc<Runtime> {
    Arc::new(
        builder
            .build()
            .expect("invariant: the tokio runtime starts"),
    )
}

//! # weir-core: the sans-IO engine of weir
//!
//! Everything weir decides — HTTP/1.1 and HTTP/2 parsing and framing, routing, rate limits, the job
//! queue, metrics, health — lives here, and none of it touches a socket, a clock, a thread or
//! a file. Bytes go in, bytes and effects come out, and time is an argument ([`Now`]).
//! The runtimes (and the runtime kit, `weir-kit`, that they share) read the clocks, own the
//! sockets and start the threads; this crate never does, and a test (`tests/purity.rs`) fails if
//! an API for it appears in `src/`.
//!
//! ## Run loop
//!
//! One service per process (weir's [`App`], [`App::builder`], or any [`Service`]) and one
//! [`server::Lifecycle`]; one [`tls::Connection`] per connection ([`App::connection`], or
//! `tls::Connection::new(service, &lifecycle, peer, now)`), which claims the connection's slot
//! and drives its [`http::Session`] (behind TLS when configured) with the same calls. After
//! **every** input, drain the outputs in this order:
//!
//! 1. write what [`Session::poll_transmit`] yields, then [`Session::advance_transmit`] with the
//!    number of bytes written (partial writes are fine);
//! 2. take every [`Effect`] from [`Session::poll_effect`]: keep an `Effect::Wait` handle,
//!    on `Effect::HalfClose` shut the socket's write side and go on (the connection lingers,
//!    reading what the peer still sends, until its own deadline), and on [`Effect::Close`]
//!    close the socket and drop the connection;
//! 3. wait for the first of: the socket readable (if [`Session::wants_read`]) or writable (if
//!    output is pending), the deadline [`Session::poll_timeout`], the wait handle, a drain signal;
//! 4. feed what happened: [`Session::recv_buf`] + [`Session::handle_read`] (or
//!    [`Session::handle_eof`] on a zero-byte read), [`Session::handle_timeout`],
//!    [`Session::handle_wake`], [`Session::handle_drain`], [`Session::handle_io_error`].
//!
//! Blocking (one thread per connection), in outline:
//!
//! ```no_run
//! # use std::{io::{Read, Write}, net::TcpStream, sync::Arc};
//! # use weir_core::{App, Effect, Now};
//! # fn now() -> Now { Now::default() }
//! # fn serve(app: Arc<App>, mut sock: TcpStream) -> std::io::Result<()> {
//! let mut session = app.session(sock.peer_addr()?, now());
//! loop {
//!     while let Some(bytes) = session.poll_transmit() {
//!         let n = sock.write(bytes)?;
//!         session.advance_transmit(now(), n);
//!     }
//!     while let Some(effect) = session.poll_effect() {
//!         if let Effect::Close(_) = effect { return Ok(()); }
//!     }
//!     // (set a read timeout from session.poll_timeout(); wait on a job watch if any)
//!     let n = sock.read(session.recv_buf())?;
//!     if n == 0 { session.handle_eof(now()) } else { session.handle_read(now(), n) }
//!     session.handle_timeout(now());
//! }
//! # }
//! ```
//!
//! Async (tokio), in outline:
//!
//! ```ignore
//! loop {
//!     flush(&mut session, &stream)?;                       // poll_transmit / advance_transmit
//!     for effect in effects(&mut session) { ... }          // Wait(handle) / Close
//!     let event = select! {                                // the session is not borrowed here
//!         r = stream.ready(interest) => Event::Io(r),
//!         _ = sleep_until(session.poll_timeout()) => Event::Timer,
//!         _ = &mut handle => Event::Wake,
//!         _ = &mut drain => Event::Drain,
//!     };
//!     match event { ... }                                  // handle_read / handle_timeout / ...
//! }
//! ```
//!
//! ## Your own service
//!
//! [`Session`] is weir's application on [`http::Session`], which serves any
//! [`http::Service`]: implement `http_config` and `call` (the other methods have defaults),
//! [`server::Hosted`] (its defaults suit a service without jobs), and serve it with the
//! runtime kit and a runtime — the `own_service` example of each runtime package does
//! (docs/library.md; CI runs all four).
//!
//! The queued jobs of `/api/v1/compute/intensive` are run by worker threads the kit starts
//! for a service with a job queue ([`server::Hosted::jobs`]); the core only holds the queue.
//!
//! ## Invariants
//! - `now` passed to a session never goes backwards (it is clamped if it does);
//! - peer bytes never panic; an `expect` or `assert!` here names the invariant it guards;
//! - nothing on the steady-state request path allocates (see `tests/alloc.rs`).

// `unsafe` is refused everywhere but in `http::scan`'s SSE2 module (each block argued there).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod config;
pub mod fleet;
pub mod h2;
pub mod http;
pub mod jobs;
pub mod limit;
pub mod metrics;
pub mod server;
pub mod time;
pub mod tls;

pub use app::{App, AppBuilder, ProcessFigures, ProcessStats};
pub use config::{Config, ConfigError};
pub use http::{CloseReason, IoFailure, Service};

/// A connection serving weir's own application.
pub type Session = http::Session<App>;
/// A connection serving weir's own application, over TLS when configured (what runtimes drive).
pub type Connection = tls::Connection<App>;
/// An effect of a [`Session`] serving weir's application.
pub type Effect = http::Effect<jobs::JobWatch>;
pub use time::{Instant, Now};

//! The seam between a connection and what it serves: a [`Service`] answers parsed requests;
//! the [`Session`](super::Session) owns everything HTTP (framing, keep-alive, pipelining,
//! `100-continue`, timeouts, backpressure) and knows nothing else.
//!
//! Invariants: the session calls the service in this order per request — `admit` once the head
//! is complete (before any body is read), `call` once the body is complete, then, for a reply
//! that is not ready at once, `poll_reply` / `poll_chunk` until it is done, and `finish` exactly
//! once when the response (or the stream's last chunk) is queued. `abandon` replaces `finish`
//! when the peer leaves first. Per-request state lives in the service's `Exchange`, which the
//! session stores and hands back on every call; the session never looks inside it.

use std::net::SocketAddr;
use std::time::Duration;

use super::request::{Head, Limits};
use super::response::{Response, Status};
use crate::time::{Instant, Now};

/// The limits and timeouts a session enforces for its service (defaults: weir's).
#[derive(Clone, Copy, Debug)]
pub struct HttpConfig {
    /// Head and body limits (431, 414, 413).
    pub limits: Limits,
    /// A head (or a stalled body) must arrive within this (408 and close).
    pub header_timeout: Duration,
    /// An idle keep-alive connection closes after this.
    pub idle_timeout: Duration,
    /// Queued output that makes no progress for this long aborts the connection.
    pub write_timeout: Duration,
    /// How long an idle connection stays open once a drain begins.
    pub drain_grace: Duration,
    /// HTTP/2 (prior knowledge and ALPN `h2`) and its settings; `None`: HTTP/1.1 only.
    pub http2: Option<crate::h2::connection::H2Config>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            limits: Limits::default(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(15),
            drain_grace: Duration::from_secs(1),
            http2: None,
        }
    }
}

/// How a service answers a request from [`Service::call`].
#[derive(Debug)]
pub enum Reply<W> {
    /// The whole response is in the `Response`.
    Now,
    /// The response comes later: the session calls [`Service::poll_reply`] at `deadline` and
    /// whenever the runtime reports `wait` ready (after an [`Effect::Wait`](super::Effect)).
    Later {
        /// When to poll again at the latest.
        deadline: Option<Instant>,
        /// What the runtime should wait on besides the socket and the timer.
        wait: Option<W>,
    },
    /// The `Response` holds the head of a streamed body; the session frames what
    /// [`Service::poll_chunk`] produces, first at `first` (or at once).
    Stream {
        /// When the first chunk is due.
        first: Option<Instant>,
    },
}

/// What [`Service::poll_reply`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyPoll {
    /// The response is in the `Response`.
    Ready,
    /// Not yet; poll again at `deadline` or when the wait handle is ready.
    Pending {
        /// When to poll again at the latest.
        deadline: Option<Instant>,
    },
}

/// What [`Service::poll_chunk`] appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Data was appended; the next chunk is due at `next`.
    More {
        /// When to poll again.
        next: Instant,
    },
    /// Data (possibly none) was appended and the stream is over.
    Last,
}

/// An application served over HTTP/1.1 by [`Session`](super::Session)s: the per-request
/// contract only (the connection's lifecycle — its slot, the drain, TLS — is the connection
/// layer's, [`crate::server::Lifecycle`]). Every method takes `&self` and the exchange it is
/// about, so one connection may drive many exchanges at once.
pub trait Service {
    /// Per-request state, kept by the session between calls.
    type Exchange: Default + std::fmt::Debug;
    /// A handle the runtime waits on for a deferred reply (a job's completion, say): it is
    /// passed out in an [`Effect::Wait`](super::Effect) and the runtime calls
    /// `Session::handle_wake` when it is ready.
    type Wait: std::fmt::Debug;

    /// The limits and timeouts for this service's connections.
    fn http_config(&self) -> &HttpConfig;

    /// A TLS connection from `peer`, within the connection limit, is about to spend a
    /// handshake (the costliest thing a client can make a server do, about 1 ms of CPU with
    /// RSA); false closes it first, sending nothing. Default: every handshake is welcome.
    fn admit_handshake(&self, now: Now, peer: SocketAddr) -> bool {
        let _ = (now, peer);
        true
    }

    /// A complete head: route, authorize, limit. True: read the body and `call`; false: `res`
    /// holds the refusal. `res` comes empty (the session clears it for every request).
    /// Default: admit everything.
    fn admit(
        &self,
        now: Now,
        head: &Head<'_>,
        peer: SocketAddr,
        ex: &mut Self::Exchange,
        res: &mut Response,
    ) -> bool {
        let _ = (now, head, peer, ex, res);
        true
    }

    /// Header lines every response of this exchange carries (`Name: value\r\n` each, the
    /// rules of [`Response::header`]), written straight into the output after the framing
    /// headers and before the response's own: request IDs, rate-limit state. Called once per
    /// encoded response, refusals and errors included. Default: none.
    fn write_common_lines(&self, ex: &Self::Exchange, out: &mut Vec<u8>) {
        let _ = (ex, out);
    }

    /// The body is complete: answer now, later, or with a stream. `res` comes empty, as in
    /// [`Service::admit`].
    fn call(
        &self,
        now: Now,
        head: &Head<'_>,
        body: &[u8],
        ex: &mut Self::Exchange,
        res: &mut Response,
    ) -> Reply<Self::Wait>;

    /// A deferred reply's deadline passed or its wait handle is ready; with `draining`, the
    /// server is shutting down and the reply should end as soon as it properly can.
    fn poll_reply(
        &self,
        now: Now,
        ex: &mut Self::Exchange,
        res: &mut Response,
        draining: bool,
    ) -> ReplyPoll {
        // Only called after `call` answered `Reply::Later`; a service that never does has
        // nothing pending.
        let _ = (now, ex, draining);
        res.set_status(Status::INTERNAL_ERROR);
        ReplyPoll::Ready
    }

    /// The next chunk of a stream (appended to `out`, unframed); with `draining`, end it.
    fn poll_chunk(
        &self,
        now: Now,
        ex: &mut Self::Exchange,
        out: &mut Vec<u8>,
        draining: bool,
    ) -> Chunk {
        let _ = (now, ex, out, draining);
        Chunk::Last
    }

    /// Fills `res` with the answer to a protocol error (`status`, `message`); the request may
    /// not have been admitted (its head may not even have parsed).
    /// Default: the status with the message as plain text.
    fn error(
        &self,
        now: Now,
        peer: SocketAddr,
        ex: &mut Self::Exchange,
        res: &mut Response,
        status: Status,
        message: &str,
    ) {
        let _ = (now, peer, ex);
        res.set_status(status);
        res.header("Content-Type", b"text/plain; charset=utf-8");
        res.body_mut().extend_from_slice(message.as_bytes());
    }

    /// The response to the current request is queued (`head` when it parsed): `bytes_sent`
    /// bytes of it, head and body (a stream's, all its chunks).
    fn finish(
        &self,
        now: Now,
        ex: &mut Self::Exchange,
        head: Option<&Head<'_>>,
        status: Status,
        bytes_sent: u64,
    ) {
        let _ = (now, ex, head, status, bytes_sent);
    }

    /// The peer left or the socket failed before the response was queued: drop what is
    /// pending (a queued job is cancelled).
    fn abandon(&self, ex: &mut Self::Exchange) {
        *ex = Self::Exchange::default();
    }
}

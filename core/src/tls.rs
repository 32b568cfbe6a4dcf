//! The connection layer: a connection's slot in the server's [`Lifecycle`], its linger after
//! an orderly close, and TLS as a layer between its socket bytes and its [`Session`]: socket bytes →
//! rustls → plaintext into the session; the session's output → rustls → records out. rustls'
//! `ServerConnection` is sans-IO like the session, so this layer is too, and every runtime gets
//! TLS by driving a [`Connection`] instead of a bare session — with the same calls.
//!
//! Invariants:
//! - a plain connection is the session itself (one branch per call, nothing allocated);
//! - the session's output is handed to rustls only while less than [`OUT_HIGH_WATER`] bytes of
//!   records wait to be written, so back-pressure reaches the session as over plain TCP;
//! - records not written for `WRITE_TIMEOUT` (a peer that stopped reading) close the
//!   connection like the session's own write timeout;
//! - a TLS failure (garbage, plain HTTP on the TLS port, a failed handshake) queues rustls'
//!   alert and closes once it is written, or at the write timeout — never a hang;
//! - an orderly close sends `close_notify` and is announced only once every record is out;
//! - the handshake is bounded by the session's header timeout: it closes a connection whose
//!   request never arrives, whether or not the handshake finished;
//! - a client's handshake may send at most [`MAX_HANDSHAKE_BYTES`] of ciphertext (real
//!   clients send a tenth of it), so a stalled handshake holds no more than a stalled head;
//! - an idle connection's record buffers are released with the session's (`SHRINK_AFTER`);
//! - no handshake work is spent on a connection the service refuses (the connection limit,
//!   or its client's limit): it closes at once with `CloseReason::Refused`, sending nothing;
//! - after an orderly close (every byte out) the connection lingers — [`Effect::HalfClose`],
//!   then the peer's bytes read and dropped until its end of stream, [`LINGER_BYTES`] or
//!   [`LINGER_TIME`] in all (its deadline from `poll_timeout`), then `Close` — so the peer
//!   reads the last response instead of a reset; every runtime gets it with one socket call;
//! - the connection holds its slot of the [`Lifecycle`] until it is dropped, and hears the
//!   lifecycle's drain at its next input if the runtime's notice has not come first.

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection};

use crate::http::session::{ReadsInto, feed_through};
use crate::http::{CloseReason, Effect, IoFailure, Service, Session};
use crate::server::{Lifecycle, Slot};
use crate::time::{Instant, Now};

/// Records waiting to be written above which no more plaintext is encrypted.
pub const OUT_HIGH_WATER: usize = 64 * 1024;

/// Most bytes read and dropped while lingering after an orderly close.
pub const LINGER_BYTES: usize = 64 * 1024;

/// Longest linger after an orderly close.
pub const LINGER_TIME: Duration = Duration::from_millis(500);

/// Ciphertext read per call (rustls takes at most one record's worth of room at a time).
const READ_CHUNK: usize = 4096;

/// The most ciphertext a client may send before its handshake completes. Real clients send
/// a ClientHello of 0.5–2 KiB (Chrome's with a post-quantum key share is about 1.8 KiB), and
/// the rest of their flight is smaller still; TLS allows a 64 KiB ClientHello, which a
/// stalled client could make every connection hold until `HEADER_TIMEOUT`. 12 KiB is six
/// times what real clients send, and keeps rustls' read buffer (grown 4 KiB past what it
/// holds, doubling) at 16 KiB: a stalled handshake holds about what a stalled plain head of
/// the default `MAX_HEADER_BYTES` does.
pub const MAX_HANDSHAKE_BYTES: usize = 12 * 1024;

/// One connection: its slot in the server's [`Lifecycle`], and its session, behind TLS when
/// the lifecycle has a TLS configuration. What a runtime drives.
#[derive(Debug)]
pub struct Connection<S: Service> {
    proto: Proto<S>,
    /// A plain connection whose first bytes may still be HTTP/2's preface.
    sniffing: bool,
    tls: Option<Box<Tls>>,
    /// Held while the connection is open (`None`: refused, or a bare session's).
    slot: Option<Slot>,
    /// The session has heard the drain.
    drain_heard: bool,
    /// After an orderly close: the write side is shut and the peer's bytes are dropped.
    linger: Option<Box<Linger>>,
}

/// The linger after an orderly close (see [`Effect::HalfClose`]).
#[derive(Debug)]
struct Linger {
    until: Instant,
    left: usize,
    sink: Vec<u8>,
    /// End of stream, the byte budget or the time is reached: `Close` is due.
    over: bool,
    /// `Close` was emitted.
    announced: bool,
}

impl Linger {
    fn take(&mut self, now: Now, n: usize) {
        self.left = self.left.saturating_sub(n);
        self.over |= n == 0 || self.left == 0 || now.mono >= self.until;
    }
}

/// The TLS state of a connection.
struct Tls {
    conn: ServerConnection,
    /// Ciphertext read from the socket; `[taken..filled]` is not yet given to rustls.
    input: Vec<u8>,
    taken: usize,
    filled: usize,
    /// Records to write; `[sent..]` is not yet written.
    out: Vec<u8>,
    sent: usize,
    write_timeout: Duration,
    /// Set while records wait: the time by which the next write must progress.
    write_deadline: Option<Instant>,
    /// The close to announce once every record is out.
    closing: Option<CloseReason>,
    /// The close was announced.
    closed: bool,
    /// rustls refused the peer's bytes; its alert is queued.
    failed: bool,
    /// Ciphertext given to rustls while handshaking (at most [`MAX_HANDSHAKE_BYTES`]).
    handshake_bytes: usize,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("handshaking", &self.conn.is_handshaking())
            .field("queued", &(self.out.len() - self.sent))
            .field("closing", &self.closing)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<S: Service> Connection<S> {
    /// A connection from `peer` to a server with `lifecycle`: claims a connection slot, and
    /// speaks TLS when the lifecycle has a configuration. Past `MAX_CONNECTIONS` a plain
    /// connection is answered with the service's 503 and closes; a TLS one — or one whose
    /// handshake the service refuses ([`Service::admit_handshake`]) — closes at once, sending
    /// nothing. A connection opened during a drain has heard it.
    pub fn new(service: Arc<S>, lifecycle: &Arc<Lifecycle>, peer: SocketAddr, now: Now) -> Self {
        let slot = lifecycle.claim();
        let config = lifecycle.tls();
        let write_timeout = service.http_config().write_timeout;
        let mut session = Session::new(service, peer, now);
        let mut c = match config {
            None if slot.is_none() => {
                session.refuse(now);
                let mut c = Connection::plain(session);
                c.sniffing = false;
                c
            }
            None => Connection::plain(session),
            Some(config) => {
                if slot.is_some() && session.service().admit_handshake(now, peer) {
                    Connection::tls(session, config, write_timeout)
                } else {
                    refused_before_handshake(lifecycle, now, peer, slot.is_some());
                    session.close_unanswered(now);
                    let mut c = Connection::plain(session);
                    c.sniffing = false;
                    c
                }
            }
        };
        c.slot = slot;
        c.hear_drain(now);
        c
    }

    /// A plain-TCP connection.
    pub fn plain(session: Session<S>) -> Self {
        let sniffing = session.service().http_config().http2.is_some();
        Connection {
            proto: Proto::H1(session),
            sniffing,
            tls: None,
            slot: None,
            drain_heard: false,
            linger: None,
        }
    }

    /// A connection behind TLS with `config`.
    pub fn tls(session: Session<S>, config: Arc<ServerConfig>, write_timeout: Duration) -> Self {
        let tls = ServerConnection::new(config).map(|conn| {
            Box::new(Tls {
                conn,
                input: Vec::new(),
                taken: 0,
                filled: 0,
                out: Vec::new(),
                sent: 0,
                write_timeout,
                write_deadline: None,
                closing: None,
                closed: false,
                failed: false,
                handshake_bytes: 0,
            })
        });
        match tls {
            Ok(tls) => Connection {
                tls: Some(tls),
                sniffing: false,
                ..Connection::plain(session)
            },
            Err(e) => {
                // Only a configuration rustls itself rejects gets here; never serve plaintext
                // on a TLS port: close at once.
                tracing::error!(error = %e, "TLS configuration refused by rustls");
                let mut c = Connection::plain(session);
                c.proto
                    .handle_io_error(Now::default(), ErrorKind::InvalidInput.into());
                c
            }
        }
    }

    /// Whether the connection speaks HTTP/2.
    pub fn is_http2(&self) -> bool {
        matches!(self.proto, Proto::H2(_))
    }

    /// Whether this connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    // ---- inputs ----------------------------------------------------------------------

    /// Free space to read socket bytes into (then call `handle_read`); empty when
    /// [`Connection::wants_read`] is false.
    pub fn recv_buf(&mut self) -> &mut [u8] {
        if !self.wants_read() {
            return &mut [];
        }
        if let Some(l) = self.linger.as_deref_mut() {
            return &mut l.sink[..];
        }
        match self.tls.as_deref_mut() {
            None => self.proto.recv_buf(),
            Some(t) => {
                if t.input.len() < READ_CHUNK {
                    t.input.resize(READ_CHUNK, 0);
                }
                &mut t.input[..]
            }
        }
    }

    /// `n` bytes were read into [`Connection::recv_buf`].
    pub fn handle_read(&mut self, now: Now, n: usize) {
        if let Some(l) = self.linger.as_deref_mut() {
            return l.take(now, n.max(1));
        }
        self.hear_drain(now);
        match self.tls.as_deref_mut() {
            None if self.sniffing => self.sniff(now, n),
            None => self.proto.handle_read(now, n),
            Some(t) => {
                assert!(n <= t.input.len(), "handle_read past recv_buf");
                (t.taken, t.filled) = (0, n);
                self.pump(now);
                // Records that carry no plaintext (a KeyUpdate, an empty record) reach no
                // session input: the deadlines are checked here too, whatever arrives.
                if self.poll_timeout().is_some_and(|d| d <= now.mono) {
                    self.handle_timeout(now);
                }
            }
        }
    }

    /// Copies `bytes` in (tests, fuzzing, runtimes that read elsewhere); returns how many
    /// were taken — fewer than offered only while the connection does not want to read.
    pub fn feed(&mut self, now: Now, bytes: &[u8]) -> usize {
        if let Some(l) = self.linger.as_deref_mut() {
            l.take(now, bytes.len().max(1));
            return bytes.len();
        }
        if self.tls.is_none() && !self.sniffing {
            return self.proto.feed(now, bytes);
        }
        feed_through(self, now, bytes)
    }

    /// The peer closed its sending side.
    pub fn handle_eof(&mut self, now: Now) {
        if let Some(l) = self.linger.as_deref_mut() {
            return l.take(now, 0);
        }
        match self.tls.as_deref_mut() {
            None => self.proto.handle_eof(now),
            Some(t) => {
                // rustls notes the end of stream; the session learns it after the plaintext
                // before it (with or without `close_notify`).
                let _ = t.conn.read_tls(&mut &[][..]);
                if t.conn.is_handshaking() {
                    self.proto.handle_eof(now);
                }
                self.pump(now);
            }
        }
    }

    /// The socket failed.
    pub fn handle_io_error(&mut self, now: Now, failure: IoFailure) {
        if let Some(l) = self.linger.as_deref_mut() {
            return l.take(now, 0);
        }
        self.proto.handle_io_error(now, failure);
        if let Some(t) = self.tls.as_deref_mut() {
            t.out.clear();
            t.sent = 0;
            t.write_deadline = None;
        }
    }

    /// Deadlines up to `now` have passed. Idempotent and safe to call early.
    pub fn handle_timeout(&mut self, now: Now) {
        if let Some(l) = self.linger.as_deref_mut() {
            return l.over |= now.mono >= l.until;
        }
        self.hear_drain(now);
        self.proto.handle_timeout(now);
        if let Some(t) = self.tls.as_deref_mut() {
            // The session released its buffers (idle): so do the records' own.
            if self.proto.heap_bytes() == 0 && t.taken == t.filled && t.sent == t.out.len() {
                t.input = Vec::new();
                t.out = Vec::new();
                (t.taken, t.filled, t.sent) = (0, 0, 0);
            }
            if t.write_deadline.is_some_and(|d| d <= now.mono) && !t.closed {
                t.out.clear();
                t.sent = 0;
                t.write_deadline = None;
                t.closing = Some(CloseReason::WriteTimeout);
                self.proto.handle_io_error(now, ErrorKind::TimedOut.into());
            }
            self.pump(now);
        }
    }

    /// The last wait handle may be ready.
    pub fn handle_wake(&mut self, now: Now) {
        self.hear_drain(now);
        self.proto.handle_wake(now);
        self.pump(now);
    }

    /// The server began draining (the runtime's notice of [`Lifecycle::begin_drain`]).
    /// Idempotent.
    pub fn handle_drain(&mut self, now: Now) {
        self.drain_heard = true;
        self.proto.handle_drain(now);
        self.pump(now);
    }

    /// The first bytes of a plain connection: HTTP/2's preface (prior knowledge) hands the
    /// connection to HTTP/2; anything else, from its first byte that differs, is HTTP/1.1.
    /// A beginning of the preface is kept unread until the rest arrives.
    fn sniff(&mut self, now: Now, n: usize) {
        let Proto::H1(session) = &mut self.proto else {
            return;
        };
        let seen = session.unread_with(n);
        let preface = &crate::h2::frame::PREFACE[..];
        if seen.len() < preface.len() && preface.starts_with(seen) {
            return session.stash(n);
        }
        self.sniffing = false;
        if !seen.starts_with(preface) {
            return self.proto.handle_read(now, n);
        }
        let bytes = seen.to_vec();
        switch_to_http2(&mut self.proto, self.drain_heard, now, &bytes);
    }

    /// Delivers the drain if it began and the session has not heard it: a response queued
    /// after the drain began says `Connection: close` whether or not the runtime's notice
    /// came first (one atomic load per read, wake or timeout).
    #[inline]
    fn hear_drain(&mut self, now: Now) {
        if !self.drain_heard
            && self
                .slot
                .as_ref()
                .is_some_and(|slot| slot.lifecycle().is_draining())
        {
            self.handle_drain(now);
        }
    }

    /// `n` bytes of [`Connection::poll_transmit`] were written.
    pub fn advance_transmit(&mut self, now: Now, n: usize) {
        match self.tls.as_deref_mut() {
            None => self.proto.advance_transmit(now, n),
            Some(t) => {
                assert!(
                    t.sent + n <= t.out.len(),
                    "advance_transmit past the records"
                );
                t.sent += n;
                if t.sent == t.out.len() {
                    t.out.clear();
                    t.sent = 0;
                    t.write_deadline = None;
                } else if n > 0 {
                    t.write_deadline = Some(now.mono.saturating_add(t.write_timeout));
                }
                self.pump(now);
            }
        }
    }

    // ---- outputs ---------------------------------------------------------------------

    /// Bytes to write now.
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        if self.linger.is_some() {
            return None;
        }
        match self.tls.as_deref() {
            None => self.proto.poll_transmit(),
            Some(t) => (t.sent < t.out.len()).then(|| &t.out[t.sent..]),
        }
    }

    /// The next effect (see [`Session::poll_effect`]); over TLS an orderly close (and the
    /// close after a TLS failure) waits until every record, `close_notify` or the alert
    /// included, is written.
    pub fn poll_effect(&mut self) -> Option<Effect<S::Wait>> {
        if let Some(l) = self.linger.as_deref_mut() {
            if !l.over || l.announced {
                return None;
            }
            l.announced = true;
            return Some(Effect::Close(CloseReason::Done));
        }
        match self.poll_layer_effect() {
            Some(Effect::Close(reason)) if reason.wants_linger() => {
                let until = self.proto.latest().mono.saturating_add(LINGER_TIME);
                self.linger = Some(Box::new(Linger {
                    until,
                    left: LINGER_BYTES,
                    sink: vec![0; READ_CHUNK],
                    over: false,
                    announced: false,
                }));
                Some(Effect::HalfClose)
            }
            effect => effect,
        }
    }

    /// The session's effects through the TLS layer.
    fn poll_layer_effect(&mut self) -> Option<Effect<S::Wait>> {
        let Some(t) = self.tls.as_deref_mut() else {
            return self.proto.poll_effect();
        };
        if t.closed {
            return None;
        }
        if t.closing.is_none() {
            // The session's close was taken by `pump` as soon as it closed; anything else
            // (a wait handle) passes through.
            return self.proto.poll_effect();
        }
        let reason = t.closing?;
        let waits = reason == CloseReason::Done || t.failed;
        if waits && t.sent < t.out.len() {
            return None;
        }
        t.closed = true;
        Some(Effect::Close(reason))
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(l) = self.linger.as_deref() {
            return (!l.over).then_some(l.until);
        }
        let session = self.proto.poll_timeout();
        match self.tls.as_deref().and_then(|t| t.write_deadline) {
            None => session,
            Some(d) => Some(session.map_or(d, |s| s.min(d))),
        }
    }

    /// Whether the runtime should read.
    pub fn wants_read(&self) -> bool {
        if let Some(l) = self.linger.as_deref() {
            return !l.over;
        }
        match self.tls.as_deref() {
            None => self.proto.wants_read(),
            Some(t) => {
                !t.failed
                    && t.closing.is_none()
                    && t.taken == t.filled
                    && (t.conn.is_handshaking() || self.proto.wants_read())
                    && t.conn.wants_read()
            }
        }
    }

    /// Whether the connection is closed (its `Close` effect was or will be emitted).
    pub fn is_closed(&self) -> bool {
        if let Some(l) = self.linger.as_deref() {
            return l.announced;
        }
        match self.tls.as_deref() {
            None => self.proto.is_closed(),
            Some(t) => t.closed,
        }
    }

    /// Heap bytes held in buffers (rustls' own not counted).
    pub fn heap_bytes(&self) -> usize {
        self.proto.heap_bytes()
            + self
                .tls
                .as_deref()
                .map_or(0, |t| t.input.capacity() + t.out.capacity())
    }

    /// Requests answered on this connection.
    pub fn requests_served(&self) -> u64 {
        self.proto.requests_served()
    }

    // ---- the layer -------------------------------------------------------------------

    /// Moves bytes through the layer as far as they go: ciphertext into rustls, plaintext
    /// into the session, the session's output into rustls, records out.
    fn pump(&mut self, now: Now) {
        let Some(t) = self.tls.as_deref_mut() else {
            return;
        };
        loop {
            let mut progress = false;
            // Ciphertext in.
            while t.taken < t.filled && !t.failed {
                let mut rest = &t.input[t.taken..t.filled];
                match t.conn.read_tls(&mut rest) {
                    Ok(0) => break,
                    Ok(n) => {
                        t.taken += n;
                        progress = true;
                        if t.conn.is_handshaking() {
                            t.handshake_bytes += n;
                            if t.handshake_bytes > MAX_HANDSHAKE_BYTES {
                                tracing::debug!(
                                    "TLS handshake larger than any real client's; closing"
                                );
                                t.failed = true;
                                (t.taken, t.filled) = (0, 0);
                                self.proto
                                    .handle_io_error(now, ErrorKind::InvalidData.into());
                                break;
                            }
                        }
                    }
                    // The plaintext buffer is full: the session must take some first.
                    Err(_) => break,
                }
                if let Err(e) = t.conn.process_new_packets() {
                    tracing::debug!(error = %e, "TLS failure; closing after the alert");
                    t.failed = true;
                    (t.taken, t.filled) = (0, 0);
                    self.proto
                        .handle_io_error(now, ErrorKind::InvalidData.into());
                }
            }
            // ALPN `h2`: the connection speaks HTTP/2 from its first plaintext byte.
            let h2 = t.conn.alpn_protocol() == Some(b"h2");
            if h2 && !t.failed && !t.conn.is_handshaking() && !matches!(self.proto, Proto::H2(_)) {
                switch_to_http2(&mut self.proto, self.drain_heard, now, &[]);
            }
            // Plaintext to the session (its receive buffer is asked for only when there is
            // plaintext: an idle connection's stays released).
            if !t.failed && !t.conn.is_handshaking() {
                loop {
                    let mut reader = t.conn.reader();
                    let plain = match std::io::BufRead::fill_buf(&mut reader) {
                        Ok([]) => {
                            self.proto.handle_eof(now);
                            break;
                        }
                        Ok(plain) => plain,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            // The peer closed without `close_notify`: an end of stream.
                            self.proto.handle_eof(now);
                            break;
                        }
                    };
                    let buf = self.proto.recv_buf();
                    if buf.is_empty() {
                        break;
                    }
                    let n = buf.len().min(plain.len());
                    buf[..n].copy_from_slice(&plain[..n]);
                    std::io::BufRead::consume(&mut reader, n);
                    self.proto.handle_read(now, n);
                    progress = true;
                }
            }
            // The session's output to rustls, while the records are not backed up.
            while t.closing.is_none() && !t.failed && t.out.len() - t.sent < OUT_HIGH_WATER {
                let Some(plain) = self.proto.poll_transmit() else {
                    break;
                };
                let n = t.conn.writer().write(plain).unwrap_or(0);
                if n == 0 {
                    break;
                }
                self.proto.advance_transmit(now, n);
                progress = true;
            }
            if self.proto.is_closed() && t.closing.is_none() {
                // Take the session's close now, so `close_notify` is queued before the
                // runtime writes (and not after it has stopped writing).
                while let Some(effect) = self.proto.poll_effect() {
                    if let Effect::Close(reason) = effect {
                        let reason = if t.failed {
                            CloseReason::IoError
                        } else {
                            reason
                        };
                        if reason == CloseReason::Done && !t.conn.is_handshaking() {
                            t.conn.send_close_notify();
                        }
                        t.closing = Some(reason);
                    }
                }
            }
            let queued_before = t.out.len();
            t.queue_records();
            if t.out.len() > queued_before && t.write_deadline.is_none() {
                t.write_deadline = Some(now.mono.saturating_add(t.write_timeout));
            }
            if !progress {
                return;
            }
        }
    }
}

impl Tls {
    /// Moves rustls' pending records into `out`.
    fn queue_records(&mut self) {
        if self.sent > 0 && self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.out).is_err() {
                break;
            }
        }
    }
}

/// Logs a TLS connection closed before its handshake, the first of each second (the
/// refusals themselves are counted: the lifecycle's refusals or the service's own limit).
fn refused_before_handshake(lifecycle: &Lifecycle, now: Now, peer: SocketAddr, counted: bool) {
    if !lifecycle.log_refusal(now) {
        return;
    }
    let why = if counted {
        "its client's limit (the service refused the handshake)"
    } else {
        "the connection limit (MAX_CONNECTIONS)"
    };
    tracing::warn!(
        peer = %peer,
        reason = why,
        "TLS connection closed before the handshake (no answer is sent: a 503 would cost the handshake it spares); further refusals this second are not logged"
    );
}

impl<S: Service> ReadsInto for Connection<S> {
    fn recv_buf(&mut self) -> &mut [u8] {
        Connection::recv_buf(self)
    }
    fn handle_read(&mut self, now: Now, n: usize) {
        Connection::handle_read(self, now, n)
    }
}

/// Serves the connection with HTTP/2 from now on, `input` its first bytes (a drain already
/// heard is told at once).
fn switch_to_http2<S: Service>(proto: &mut Proto<S>, draining: bool, now: Now, input: &[u8]) {
    let Proto::H1(session) = &*proto else {
        return;
    };
    let (service, peer) = (session.service().clone(), session.peer());
    let config = service.http_config().http2.unwrap_or_default();
    let h2 = crate::h2::connection::Connection::new(service, peer, config, now, input);
    *proto = Proto::H2(Box::new(h2));
    if draining {
        proto.handle_drain(now);
    }
}

/// The protocol a connection speaks: HTTP/1.1 until HTTP/2's preface or ALPN `h2` says
/// otherwise. Both have the same inputs and outputs.
#[derive(Debug)]
// HTTP/1.1 inline on purpose: its every call is on the hot path; HTTP/2's state is boxed.
#[allow(clippy::large_enum_variant)]
enum Proto<S: Service> {
    H1(Session<S>),
    H2(Box<crate::h2::connection::Connection<S>>),
}

macro_rules! each {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            Proto::H1($p) => $e,
            Proto::H2($p) => $e,
        }
    };
}

impl<S: Service> Proto<S> {
    fn recv_buf(&mut self) -> &mut [u8] {
        each!(self, p => p.recv_buf())
    }
    fn handle_read(&mut self, now: Now, n: usize) {
        each!(self, p => p.handle_read(now, n))
    }
    fn feed(&mut self, now: Now, bytes: &[u8]) -> usize {
        each!(self, p => p.feed(now, bytes))
    }
    fn handle_eof(&mut self, now: Now) {
        each!(self, p => p.handle_eof(now))
    }
    fn handle_io_error(&mut self, now: Now, failure: IoFailure) {
        each!(self, p => p.handle_io_error(now, failure))
    }
    fn handle_timeout(&mut self, now: Now) {
        each!(self, p => p.handle_timeout(now))
    }
    fn handle_wake(&mut self, now: Now) {
        each!(self, p => p.handle_wake(now))
    }
    fn handle_drain(&mut self, now: Now) {
        each!(self, p => p.handle_drain(now))
    }
    fn advance_transmit(&mut self, now: Now, n: usize) {
        each!(self, p => p.advance_transmit(now, n))
    }
    fn poll_transmit(&self) -> Option<&[u8]> {
        each!(self, p => p.poll_transmit())
    }
    fn poll_effect(&mut self) -> Option<Effect<S::Wait>> {
        each!(self, p => p.poll_effect())
    }
    fn poll_timeout(&self) -> Option<Instant> {
        each!(self, p => p.poll_timeout())
    }
    fn wants_read(&self) -> bool {
        each!(self, p => p.wants_read())
    }
    fn is_closed(&self) -> bool {
        each!(self, p => p.is_closed())
    }
    fn heap_bytes(&self) -> usize {
        each!(self, p => p.heap_bytes())
    }
    fn requests_served(&self) -> u64 {
        each!(self, p => p.requests_served())
    }
    fn latest(&self) -> Now {
        each!(self, p => p.latest())
    }
}

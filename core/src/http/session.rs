//! One HTTP/1.1 connection as a sans-IO state machine.
//!
//! Inputs (`handle_*`) change state; outputs (`poll_*`) are drained after every input, in the
//! order `poll_transmit` → `poll_effect` → `poll_timeout`. Invariants:
//! - responses leave in request order (a request is dispatched only once the previous one's
//!   response is queued), so pipelining is answered in order;
//! - every protocol error is answered here with its status and closes the connection;
//! - buffered input is bounded (`MAX_HEADER_BYTES` + one read chunk) and so is queued output
//!   (reading pauses while more than [`OUT_HIGH_WATER`] bytes wait to be written);
//! - `now` never goes backwards: an earlier `now` is clamped to the latest seen;
//! - `handle_timeout` is idempotent and safe to call early;
//! - in steady state on a keep-alive connection nothing allocates: the buffers are reused,
//!   and released after [`SHRINK_AFTER`] of idleness, so an idle connection holds no heap.
//!
//! The states and every transition (`State`; the table h11 keeps for its own):
//!
//! | state | event | next |
//! |---|---|---|
//! | `Head` | a complete head, the service refuses it or it has no body | the response queued, then *after a response* |
//! | `Head` | a complete head with a body (`100 Continue` sent if asked) | `Body` |
//! | `Head` | a refused head whose client waits for `100 Continue` | the refusal, then `Closing(Done)` |
//! | `Head` | a malformed or oversized head; the header timeout | the error (400, 413, 414, 431, 501, 505, 408), then `Closing(Done)` |
//! | `Head`, nothing buffered | end of stream; the idle timeout (or the drain's grace) | `Closing(Done)` |
//! | `Body` | the body complete, admitted: [`Reply::Now`] / `Later` / `Stream` | *after a response* / `Waiting` / `Stream` |
//! | `Body` | the body complete, refused (read to discard) | the refusal, then *after a response* |
//! | `Body` | a malformed body; the body stalls past the header timeout | the error (400, 413, 408), then `Closing(Done)` |
//! | `Waiting` | the wait handle or the deadline, the reply ready (or the drain) | *after a response* |
//! | `Stream` | a chunk due: [`Chunk::More`] / [`Chunk::Last`] (the drain: `Last` at once) | `Stream` / *after a response* |
//! | any but `Head` | end of stream | the exchange abandoned, `Closing(PeerGone)` |
//! | any | a socket error; queued output stalled past the write timeout | the exchange abandoned, `Closing(IoError)` / `Closing(WriteTimeout)` |
//! | `Closing(r)` | every byte written (at once unless `r` is `Done`) | `Closed`, [`Effect::Close`]`(r)` |
//!
//! *After a response*: `Head` (the idle timer set) while the connection is kept alive, else
//! `Closing(Done)`. It is kept alive unless the request said `Connection: close` (or is
//! HTTP/1.0 without `keep-alive`), the response is an error or a refusal that closes, an
//! HTTP/1.0 stream ends with the connection, or the server drains — each decided where the
//! protocol says so, and the `Connection` header written from that one flag.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::body::BodyDecoder;
use super::grammar::BARE_LF;
use super::request::{Framing, HeadError, HeadScanner, Method, ParsedHead, Scan, Version};
use super::response::{BodyFraming, Preamble, Response, Status, encode_chunk, encode_last_chunk};
use super::service::{Chunk, Reply, ReplyPoll, Service};
use crate::time::{Instant, Now};

/// Bytes the receive buffer starts with: a typical head is 100–800 bytes; the buffer doubles
/// (once per connection) for bigger heads or deep pipelines. Small, because every live
/// connection holds it until it has been idle for `SHRINK_AFTER`.
pub const INITIAL_RECV: usize = 1024;

/// The least free space [`Session::recv_buf`] offers, so reads are not tiny.
pub const MIN_READ: usize = 1024;

/// Queued output above which the session stops reading and dispatching (hyper pauses at a
/// similar size): a pipelining client that does not read cannot make the server buffer more.
pub const OUT_HIGH_WATER: usize = 64 * 1024;

/// Idle time after which a keep-alive connection releases its buffers (quinn issue #729:
/// idle connections should cost no buffer memory; waiting a moment keeps busy connections
/// from reallocating between requests).
pub const SHRINK_AFTER: Duration = Duration::from_secs(1);

/// The longest time an idle connection stays open once a drain begins.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// How long an idle connection stays open into a drain: [`DRAIN_GRACE`], or the first tenth
/// of `SHUTDOWN_TIMEOUT` when that is shorter. A request that races the drain arrives in
/// this window and is answered instead of meeting a closed connection.
pub fn drain_grace(shutdown_timeout: Duration) -> Duration {
    DRAIN_GRACE.min(shutdown_timeout / 10)
}

/// What reads into a buffer of its own (a session, an HTTP/2 connection, the connection
/// layer): [`feed_through`] copies bytes in through it.
pub(crate) trait ReadsInto {
    /// Free space to read into; empty when it takes nothing now.
    fn recv_buf(&mut self) -> &mut [u8];
    /// `n` bytes were read into `recv_buf`.
    fn handle_read(&mut self, now: Now, n: usize);
}

/// Copies `bytes` in through `r`'s own buffer (tests, fuzzing, runtimes that read
/// elsewhere); returns how many were taken — fewer only while `r` takes nothing.
pub(crate) fn feed_through<R: ReadsInto>(r: &mut R, now: Now, bytes: &[u8]) -> usize {
    let mut taken = 0;
    while taken < bytes.len() {
        let buf = r.recv_buf();
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(bytes.len() - taken);
        buf[..n].copy_from_slice(&bytes[taken..taken + n]);
        taken += n;
        r.handle_read(now, n);
    }
    taken
}

impl<S: Service> ReadsInto for Session<S> {
    fn recv_buf(&mut self) -> &mut [u8] {
        Session::recv_buf(self)
    }
    fn handle_read(&mut self, now: Now, n: usize) {
        Session::handle_read(self, now, n)
    }
}

/// Why a session wants its connection closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Orderly: the last response was written (or the peer closed while idle).
    Done,
    /// The peer stopped reading for `WRITE_TIMEOUT`: abort without lingering.
    WriteTimeout,
    /// The socket failed.
    IoError,
    /// The peer went away mid-request (its queued job, if any, was cancelled).
    PeerGone,
    /// Refused before anything was read or written: a TLS connection over the connection
    /// limit, or one its client's limit refuses, is closed before any handshake work (a
    /// refusal could only be sent after a full handshake, the work a refusal is meant to
    /// spare).
    Refused,
}

impl CloseReason {
    /// Whether the runtime should half-close and drain the socket briefly before closing,
    /// so that the peer reads the last response instead of a reset.
    pub fn wants_linger(self) -> bool {
        matches!(self, CloseReason::Done)
    }
}

/// A socket failure, forwarded by the runtime (opaque: the session only needs to know that
/// the connection is unusable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoFailure(std::io::ErrorKind);

impl From<std::io::ErrorKind> for IoFailure {
    fn from(kind: std::io::ErrorKind) -> Self {
        IoFailure(kind)
    }
}

/// What the session asks of its runtime besides writing bytes. Exhaustive on purpose: a
/// runtime must handle every effect.
#[derive(Debug)]
pub enum Effect<W> {
    /// Wait for this handle as well as the socket and the timer; when it is ready call
    /// [`Session::handle_wake`]. Dropping it cancels nothing.
    Wait(W),
    /// Shut the socket's write side (`shutdown(SHUT_WR)`) and go on as before: the
    /// connection layer ([`crate::tls::Connection`]) lingers after an orderly close, reading
    /// and dropping what the peer still sends until its end of stream, `LINGER_BYTES` or
    /// `LINGER_TIME`, so the peer reads the last response instead of a reset; then `Close`.
    HalfClose,
    /// Close the connection (after the bytes of `poll_transmit` are written, which by then
    /// is nothing).
    Close(CloseReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
enum Timer {
    /// The request head must be complete.
    Header,
    /// The request body must make progress.
    Body,
    /// An idle keep-alive connection closes.
    Idle,
    /// Queued output must make progress.
    Write,
    /// A deferred reply's or a stream's next poll.
    Handler,
    /// An idle connection releases its buffers.
    Shrink,
}

const TIMERS: [Timer; 6] = [
    Timer::Header,
    Timer::Body,
    Timer::Idle,
    Timer::Write,
    Timer::Handler,
    Timer::Shrink,
];

/// The session's deadlines, one per [`Timer`], as nanosecond instants with `u64::MAX` for
/// none: the earliest is a plain minimum (asked after every input).
#[derive(Clone, Copy, Debug)]
struct TimerSet([u64; TIMERS.len()]);

impl TimerSet {
    const NONE: TimerSet = TimerSet([u64::MAX; TIMERS.len()]);

    fn get(&self, t: Timer) -> Option<Instant> {
        let at = self.0[t as usize];
        (at != u64::MAX).then(|| Instant::from_nanos(at))
    }

    /// Sets `t` to `at` (an instant of `u64::MAX` nanoseconds is never reached: none).
    fn set(&mut self, t: Timer, at: Instant) {
        self.0[t as usize] = at.as_nanos();
    }

    fn clear(&mut self, t: Timer) {
        self.0[t as usize] = u64::MAX;
    }

    fn earliest(&self) -> Option<Instant> {
        let at = self.0.iter().copied().min().unwrap_or(u64::MAX);
        (at != u64::MAX).then(|| Instant::from_nanos(at))
    }
}

#[derive(Debug)]
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Reading a body; `admitted` false means it is read only to be discarded before the
    /// refusal already in `res` is sent.
    Body {
        decoder: BodyDecoder,
        admitted: bool,
    },
    /// The service answers later: poll it at the handler timer or on a wake.
    Waiting,
    /// Streaming the service's chunks; `chunked` unless the client speaks HTTP/1.0.
    Stream {
        chunked: bool,
        /// Waiting for the peer to read: the backlog was above [`OUT_HIGH_WATER`] when the
        /// next chunk was due; `advance_transmit` resumes it.
        paused: bool,
    },
    /// Write what is queued, then close.
    Closing(CloseReason),
    /// Closed: the `Close` effect has been emitted or is pending.
    Closed,
}

/// One connection (see the module docs) serving `S`. Owned by one task or thread; never
/// shared.
#[derive(Debug)]
pub struct Session<S: Service> {
    service: Arc<S>,
    peer: SocketAddr,
    recv: Vec<u8>,
    rpos: usize,
    rend: usize,
    out: Vec<u8>,
    sent: usize,
    head: ParsedHead,
    scanner: HeadScanner,
    head_valid: bool,
    body: Vec<u8>,
    res: Response,
    ex: S::Exchange,
    state: State,
    keep_alive: bool,
    /// `handle_drain` was called.
    draining: bool,
    timers: TimerSet,
    wait_effect: Option<S::Wait>,
    close_effect: Option<CloseReason>,
    latest: Now,
    preamble: Preamble,
    served: u64,
    /// Bytes of the stream being sent so far (head and chunks), for `Service::finish`.
    stream_bytes: u64,
}

impl<S: Service> Session<S> {
    /// A session for a new connection from `peer`. A runtime that creates a session during a
    /// drain calls [`Session::handle_drain`] on it at once (the connection layer does).
    pub fn new(service: Arc<S>, peer: SocketAddr, now: Now) -> Self {
        let header_timeout = service.http_config().header_timeout;
        let mut s = Session {
            service,
            peer,
            recv: Vec::new(),
            rpos: 0,
            rend: 0,
            out: Vec::new(),
            sent: 0,
            head: ParsedHead::default(),
            scanner: HeadScanner::default(),
            head_valid: false,
            body: Vec::new(),
            res: Response::default(),
            ex: S::Exchange::default(),
            state: State::Head,
            keep_alive: true,
            draining: false,
            timers: TimerSet::NONE,
            wait_effect: None,
            close_effect: None,
            latest: now,
            preamble: Preamble::default(),
            served: 0,
            stream_bytes: 0,
        };
        s.set_timer(Timer::Header, now.mono.saturating_add(header_timeout));
        s
    }

    /// The service this session serves.
    pub fn service(&self) -> &Arc<S> {
        &self.service
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The bytes received and not yet taken, with the `n` just read into
    /// [`Session::recv_buf`] (before `handle_read` takes them): what a protocol sniffer reads.
    pub fn unread_with(&self, n: usize) -> &[u8] {
        &self.recv[self.rpos..self.rend + n]
    }

    /// Keeps the `n` bytes just read without looking at them yet (a sniffer waiting for
    /// more); the next `handle_read` takes them with what follows.
    pub fn stash(&mut self, n: usize) {
        self.rend += n;
    }

    /// The latest time the session was given.
    pub fn latest(&self) -> Now {
        self.latest
    }

    /// Answers the connection with the service's 503 (`Retry-After: 1`) and closes: the
    /// connection limit, decided by the connection layer before anything was read.
    pub fn refuse(&mut self, now: Now) {
        self.keep_alive = false;
        self.res.clear();
        self.res.header("Retry-After", b"1");
        let status = Status::SERVICE_UNAVAILABLE;
        self.service.error(
            now,
            self.peer,
            &mut self.ex,
            &mut self.res,
            status,
            "connection limit reached",
        );
        self.send_response(now);
        self.after_input(now);
    }

    /// Closes at once without a word ([`CloseReason::Refused`]): a TLS connection refused
    /// before its handshake, where an answer would cost the handshake it is meant to spare.
    pub fn close_unanswered(&mut self, now: Now) {
        self.state = State::Closing(CloseReason::Refused);
        self.after_input(now);
    }

    // ---- inputs ----------------------------------------------------------------------

    /// Free space to read into, straight into session memory (then call `handle_read`).
    /// Empty when [`Session::wants_read`] is false.
    pub fn recv_buf(&mut self) -> &mut [u8] {
        if !self.wants_read() {
            return &mut [];
        }
        if self.head_valid && self.head.in_buffer() {
            // The request being served still reads its head where it was received; the
            // buffer is about to be reused or moved, so the head is copied out first (only
            // requests whose body or reply outlives the bytes at hand pay for this).
            self.head.detach(&self.recv);
        }
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
        if self.recv.len() - self.rend < MIN_READ {
            if self.rpos > 0 {
                self.recv.copy_within(self.rpos..self.rend, 0);
                self.rend -= self.rpos;
                self.rpos = 0;
            }
            if self.recv.len() - self.rend < MIN_READ {
                let want = (self.recv.len() * 2)
                    .max(INITIAL_RECV)
                    .min(self.recv_limit());
                self.recv.resize(want, 0);
            }
        }
        &mut self.recv[self.rend..]
    }

    /// `n` bytes were read into [`Session::recv_buf`].
    pub fn handle_read(&mut self, now: Now, n: usize) {
        let now = self.clamp(now);
        assert!(
            self.rend + n <= self.recv.len(),
            "handle_read({n}) past the buffer given by recv_buf"
        );
        self.rend += n;
        // Deadlines hold whatever arrives: a peer that trickles bytes faster than any read
        // times out still meets them here.
        self.fire_expired(now);
        self.drive(now);
        self.after_input(now);
    }

    /// Copies `bytes` in (tests, fuzzing, runtimes that read elsewhere); returns how many
    /// were taken — fewer than offered only while the session does not want to read.
    pub fn feed(&mut self, now: Now, bytes: &[u8]) -> usize {
        feed_through(self, now, bytes)
    }

    /// The peer closed its sending side.
    pub fn handle_eof(&mut self, now: Now) {
        let now = self.clamp(now);
        match self.state {
            State::Closing(_) | State::Closed => {}
            State::Head if self.rpos == self.rend => self.state = State::Closing(CloseReason::Done),
            _ => {
                // A partial request, a pending job, sleep or stream: the client left.
                self.abandon(now);
                self.state = State::Closing(CloseReason::PeerGone);
            }
        }
        self.after_input(now);
    }

    /// The socket failed; the session closes without writing more.
    pub fn handle_io_error(&mut self, now: Now, _failure: IoFailure) {
        let now = self.clamp(now);
        self.abandon(now);
        self.out.clear();
        self.sent = 0;
        self.state = State::Closing(CloseReason::IoError);
        self.after_input(now);
    }

    /// Deadlines up to `now` have passed. Idempotent and safe to call early.
    pub fn handle_timeout(&mut self, now: Now) {
        let now = self.clamp(now);
        self.fire_expired(now);
        self.drive(now);
        self.after_input(now);
    }

    /// The handle of the last [`Effect::Wait`] may be ready (spurious calls are fine).
    pub fn handle_wake(&mut self, now: Now) {
        let now = self.clamp(now);
        if matches!(self.state, State::Waiting) {
            self.poll_reply(now);
        }
        self.drive(now);
        self.after_input(now);
    }

    /// The server began draining. An idle connection stays open for a short grace
    /// ([`drain_grace`]) so a request racing the drain is still read and answered (with
    /// `Connection: close`), then closes in order; a busy one closes after its current
    /// response, which carries `Connection: close`; a sleep is answered at once with the time
    /// slept, and a stream ends at once with its last chunk. Idempotent.
    pub fn handle_drain(&mut self, now: Now) {
        let now = self.clamp(now);
        if !self.draining {
            self.draining = true;
            match self.state {
                State::Head => {
                    let at = now
                        .mono
                        .saturating_add(self.service.http_config().drain_grace);
                    if self.timers.get(Timer::Idle).is_none_or(|t| at < t) {
                        self.set_timer(Timer::Idle, at);
                    }
                }
                // The response in progress says `Connection: close` (`connection_header`), or
                // a stream's head already went out: either way no request follows it.
                State::Waiting => self.poll_reply(now),
                State::Stream { .. } => self.stream_next(now),
                _ => {}
            }
            self.drive(now);
        }
        self.after_input(now);
    }

    /// `n` bytes of [`Session::poll_transmit`] were written.
    pub fn advance_transmit(&mut self, now: Now, n: usize) {
        let now = self.clamp(now);
        assert!(
            self.sent + n <= self.out.len(),
            "advance_transmit past the queued output"
        );
        self.sent += n;
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
            self.timers.clear(Timer::Write);
        } else if n > 0 {
            self.set_timer(
                Timer::Write,
                now.mono
                    .saturating_add(self.service.http_config().write_timeout),
            );
        }
        if matches!(self.state, State::Stream { paused: true, .. })
            && self.out.len() - self.sent <= OUT_HIGH_WATER
        {
            self.stream_next(now);
        }
        self.drive(now);
        self.after_input(now);
    }

    // ---- outputs ---------------------------------------------------------------------

    /// Bytes to write now. Changed by every input; `advance_transmit` consumes them.
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        (self.sent < self.out.len()).then(|| &self.out[self.sent..])
    }

    /// The next effect: `Wait` when a reply is deferred on a handle, `Close` once all output
    /// is written and the connection is done. Changed by every input.
    pub fn poll_effect(&mut self) -> Option<Effect<S::Wait>> {
        if let Some(w) = self.wait_effect.take() {
            return Some(Effect::Wait(w));
        }
        self.close_effect.take().map(Effect::Close)
    }

    /// The earliest deadline; call `handle_timeout` when it passes. Changed by every input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.earliest()
    }

    /// Whether the runtime should read. False once closing, while the receive buffer is full
    /// or while output backs up. Changed by every input.
    pub fn wants_read(&self) -> bool {
        !matches!(self.state, State::Closing(_) | State::Closed)
            && self.rend - self.rpos < self.recv_limit() - MIN_READ
            && self.out.len() - self.sent <= OUT_HIGH_WATER
    }

    /// Whether the connection is closed (the `Close` effect was or will be emitted).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Heap bytes this session holds in its buffers (not counting its own struct).
    pub fn heap_bytes(&self) -> usize {
        self.recv.capacity()
            + self.out.capacity()
            + self.body.capacity()
            + self.head.heap_bytes()
            + self.res.heap_bytes()
    }

    /// Requests answered on this connection.
    pub fn requests_served(&self) -> u64 {
        self.served
    }

    // ---- the machine -----------------------------------------------------------------

    fn recv_limit(&self) -> usize {
        self.service.http_config().limits.max_header_bytes + 2 * MIN_READ
    }

    fn clamp(&mut self, now: Now) -> Now {
        let now = if now.mono < self.latest.mono {
            Now {
                mono: self.latest.mono,
                ..now
            }
        } else {
            now
        };
        self.latest = now;
        now
    }

    /// Runs every timer whose deadline is at or before `now`, once.
    fn fire_expired(&mut self, now: Now) {
        if self.timers.earliest().is_none_or(|at| at > now.mono) {
            return;
        }
        for t in TIMERS {
            match self.timers.get(t) {
                Some(at) if at <= now.mono => self.timers.clear(t),
                _ => continue,
            }
            self.on_timer(now, t);
        }
    }

    fn set_timer(&mut self, t: Timer, at: Instant) {
        self.timers.set(t, at);
    }

    fn clear_timer(&mut self, t: Timer) {
        self.timers.clear(t);
    }

    /// Processes buffered input as far as it goes.
    fn drive(&mut self, now: Now) {
        loop {
            if self.out.len() - self.sent > OUT_HIGH_WATER {
                return;
            }
            match &mut self.state {
                State::Head => {
                    if self.rpos == self.rend {
                        if !self.keep_alive {
                            self.state = State::Closing(CloseReason::Done);
                        } else if self.timers.get(Timer::Header).is_none() {
                            if self.timers.get(Timer::Idle).is_none() {
                                self.set_timer(
                                    Timer::Idle,
                                    now.mono
                                        .saturating_add(self.service.http_config().idle_timeout),
                                );
                            }
                            if self.timers.get(Timer::Shrink).is_none() && self.heap_bytes() > 0 {
                                self.set_timer(
                                    Timer::Shrink,
                                    now.mono.saturating_add(SHRINK_AFTER),
                                );
                            }
                        }
                        return;
                    }
                    self.clear_timer(Timer::Shrink);
                    let parsed = self.parse_head();
                    match parsed {
                        Ok(None) => {
                            self.clear_timer(Timer::Idle);
                            if self.timers.get(Timer::Header).is_none() {
                                self.set_timer(
                                    Timer::Header,
                                    now.mono
                                        .saturating_add(self.service.http_config().header_timeout),
                                );
                            }
                            return;
                        }
                        Err(e) => {
                            self.head_valid = false;
                            self.protocol_error(now, e.status(), e.message());
                            return;
                        }
                        Ok(Some(len)) => {
                            self.scanner.reset();
                            self.head.set_home(self.rpos);
                            self.rpos += len;
                            self.head_valid = true;
                            self.clear_timer(Timer::Header);
                            self.clear_timer(Timer::Idle);
                            self.start_request(now);
                        }
                    }
                }
                State::Body { decoder, admitted } => {
                    let admitted = *admitted;
                    let input = &self.recv[self.rpos..self.rend];
                    let out = if admitted { Some(&mut self.body) } else { None };
                    match decoder.decode(input, out) {
                        Err(e) => {
                            self.protocol_error(now, e.status(), e.message());
                            return;
                        }
                        Ok(p) => {
                            self.rpos += p.consumed;
                            if !p.done {
                                if p.consumed > 0 || self.timers.get(Timer::Body).is_none() {
                                    self.set_timer(
                                        Timer::Body,
                                        now.mono.saturating_add(
                                            self.service.http_config().header_timeout,
                                        ),
                                    );
                                }
                                return;
                            }
                            self.clear_timer(Timer::Body);
                            self.state = State::Head;
                            if admitted {
                                self.dispatch(now);
                            } else {
                                self.send_response(now);
                            }
                        }
                    }
                }
                State::Waiting | State::Stream { .. } | State::Closing(_) | State::Closed => {
                    return;
                }
            }
        }
    }

    /// Parses the buffered head. A new head is parsed at once (in a keep-alive or pipelined
    /// stream it is usually whole); one that arrives in pieces is then scanned incrementally
    /// and parsed again only once its end is there, so a head sent a byte at a time costs
    /// O(n), not O(n²).
    fn parse_head(&mut self) -> Result<Option<usize>, HeadError> {
        let input = &self.recv[self.rpos..self.rend];
        let limits = &self.service.http_config().limits;
        if self.scanner.is_fresh() {
            match self.head.parse(input, limits) {
                Ok(None) => {}
                done => return done,
            }
        }
        match self.scanner.scan(input) {
            Scan::Partial { line_done } => {
                ParsedHead::check_partial_len(input.len(), line_done, limits).map(|()| None)
            }
            Scan::BareLf => Err(HeadError::Malformed(BARE_LF)),
            Scan::Complete => self.head.parse(input, limits),
        }
    }

    /// A complete head is in `self.head`: admit it, then read its body or dispatch.
    fn start_request(&mut self, now: Now) {
        self.keep_alive &= self.head.keep_alive;
        self.res.clear();
        // A request without a body must never see the previous request's (capacity is kept).
        self.body.clear();
        // One view of the head for the service's admission and, when the request can be
        // answered from the bytes at hand, its call.
        let head = self.head.view_in(&self.recv);
        let admitted = self
            .service
            .admit(now, &head, self.peer, &mut self.ex, &mut self.res);
        if admitted {
            // No body, or a `Content-Length` body that came whole with its head: the service
            // reads it where it lies.
            let at_hand = match self.head.framing {
                Framing::None => Some(self.rpos..self.rpos),
                Framing::Length(n) if (self.rend - self.rpos) as u64 >= n => {
                    Some(self.rpos..self.rend.min(self.rpos + self.head.body_len()))
                }
                Framing::Length(_) | Framing::Chunked => None,
            };
            if let Some(body) = at_hand {
                self.rpos = body.end;
                let reply =
                    self.service
                        .call(now, &head, &self.recv[body], &mut self.ex, &mut self.res);
                return self.on_reply(now, reply);
            }
        }
        let limits = &self.service.http_config().limits;
        let decoder = match self.head.framing {
            Framing::None => None,
            Framing::Length(n) => Some(BodyDecoder::length(n)),
            Framing::Chunked => Some(BodyDecoder::chunked(
                limits.max_body_bytes,
                limits.max_header_bytes,
            )),
        };
        match (decoder, admitted) {
            (None, _) => self.send_response(now),
            (Some(_), false) if self.head.expect_continue => {
                // The client waits for our word before sending the body: refuse and close
                // rather than read a body we would discard (RFC 9110 §10.1.1).
                self.keep_alive = false;
                self.send_response(now);
            }
            (Some(decoder), admitted) => {
                if admitted && self.head.expect_continue && self.rpos == self.rend {
                    self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                self.set_timer(
                    Timer::Body,
                    now.mono
                        .saturating_add(self.service.http_config().header_timeout),
                );
                self.state = State::Body { decoder, admitted };
            }
        }
    }

    /// Calls the service with the body read into `self.body` (a body that came in later
    /// reads).
    fn dispatch(&mut self, now: Now) {
        let reply = self.service.call(
            now,
            &self.head.view_in(&self.recv),
            &self.body,
            &mut self.ex,
            &mut self.res,
        );
        self.on_reply(now, reply);
    }

    /// Acts on the service's answer to a call. Inlined into both callers: a request answered
    /// at once costs a call less (35 instructions, measured).
    #[inline(always)]
    fn on_reply(&mut self, now: Now, reply: Reply<S::Wait>) {
        match reply {
            Reply::Now => self.queue_response(now),
            Reply::Later { deadline, wait } => {
                self.wait_effect = wait;
                if let Some(d) = deadline {
                    self.set_timer(Timer::Handler, d);
                }
                self.state = State::Waiting;
            }
            Reply::Stream { first } => {
                let chunked = self.head.version == Version::Http11;
                if !chunked {
                    // HTTP/1.0 has no chunked coding: the body ends when the connection does.
                    self.keep_alive = false;
                }
                let connection = self.connection_header();
                self.preamble.refresh(now.unix_secs());
                let with_body = self.head.method != Method::Head;
                let framing = if chunked {
                    BodyFraming::Chunked
                } else {
                    BodyFraming::UntilClose
                };
                let (service, ex) = (&self.service, &self.ex);
                let before = self.out.len();
                self.res.encode(
                    &mut self.out,
                    &self.preamble,
                    connection,
                    with_body,
                    framing,
                    |out| service.write_common_lines(ex, out),
                );
                self.stream_bytes = (self.out.len() - before) as u64;
                self.arm_write(now);
                if !with_body {
                    self.end_stream(now, false);
                    return;
                }
                self.state = State::Stream {
                    chunked,
                    paused: false,
                };
                match first {
                    Some(at) if at > now.mono => self.set_timer(Timer::Handler, at),
                    _ => self.stream_next(now),
                }
            }
        }
    }

    /// Asks the service whether its deferred reply is ready, and sends it if so.
    fn poll_reply(&mut self, now: Now) {
        self.clear_timer(Timer::Handler);
        match self
            .service
            .poll_reply(now, &mut self.ex, &mut self.res, self.draining)
        {
            ReplyPoll::Ready => {
                self.state = State::Head;
                self.send_response(now);
            }
            ReplyPoll::Pending { deadline } => {
                if let Some(d) = deadline {
                    self.set_timer(Timer::Handler, d);
                }
            }
        }
    }

    fn on_timer(&mut self, now: Now, t: Timer) {
        match (t, &mut self.state) {
            (Timer::Header, State::Head) => {
                self.protocol_error(
                    now,
                    Status::REQUEST_TIMEOUT,
                    "request head not received within HEADER_TIMEOUT",
                );
            }
            (Timer::Body, State::Body { .. }) => {
                self.protocol_error(
                    now,
                    Status::REQUEST_TIMEOUT,
                    "request body stalled past HEADER_TIMEOUT",
                );
            }
            (Timer::Idle, State::Head) if self.rpos == self.rend => {
                self.state = State::Closing(CloseReason::Done)
            }
            (Timer::Write, State::Closed) => {}
            (Timer::Write, _) => {
                self.abandon(now);
                self.out.clear();
                self.sent = 0;
                self.state = State::Closing(CloseReason::WriteTimeout);
            }
            (Timer::Handler, State::Waiting) => self.poll_reply(now),
            (Timer::Handler, State::Stream { .. }) => self.stream_next(now),
            (Timer::Shrink, State::Head)
                if self.rpos == self.rend && self.sent == self.out.len() =>
            {
                self.release_buffers();
            }
            _ => {}
        }
    }

    /// Emits the service's next chunk, or pauses the stream while the peer has not read what
    /// is queued: the output a stream holds stays under `OUT_HIGH_WATER` plus one chunk. A
    /// drain ends the stream at once, with its last chunk.
    fn stream_next(&mut self, now: Now) {
        let State::Stream { chunked, paused } = &mut self.state else {
            return;
        };
        let chunked = *chunked;
        if self.out.len() - self.sent > OUT_HIGH_WATER && !self.draining {
            *paused = true;
            return;
        }
        *paused = false;
        self.clear_timer(Timer::Handler);
        let chunk = self.res.body_mut();
        chunk.clear();
        let step = self
            .service
            .poll_chunk(now, &mut self.ex, chunk, self.draining);
        self.compact_out();
        let before = self.out.len();
        if chunked {
            encode_chunk(&mut self.out, self.res.body());
        } else {
            self.out.extend_from_slice(self.res.body());
        }
        self.stream_bytes += (self.out.len() - before) as u64;
        self.arm_write(now);
        match step {
            Chunk::More { next } => self.set_timer(Timer::Handler, next),
            Chunk::Last => self.end_stream(now, chunked),
        }
    }

    /// Drops the written prefix of the output when it is at least half of it, or when the
    /// output is past the high-water mark (a peer that reads in small pieces would otherwise
    /// make the buffer grow past twice the mark, written bytes and all).
    fn compact_out(&mut self) {
        let pending = self.out.len() - self.sent;
        if self.sent > 0 && (self.sent >= pending || self.out.len() > OUT_HIGH_WATER) {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }

    fn end_stream(&mut self, now: Now, chunked: bool) {
        let before = self.out.len();
        if chunked {
            encode_last_chunk(&mut self.out);
        }
        let bytes = self.stream_bytes + (self.out.len() - before) as u64;
        self.service.finish(
            now,
            &mut self.ex,
            Some(&self.head.view_in(&self.recv)),
            Status::OK,
            bytes,
        );
        self.served += 1;
        self.after_response(now);
    }

    /// The `Connection` line to send, if any; clears `keep_alive` when the connection is to
    /// close after this response.
    fn connection_header(&mut self) -> Option<&'static [u8]> {
        if !self.keep_alive || self.res.wants_close() || self.draining {
            self.keep_alive = false;
            Some(b"Connection: close\r\n")
        } else if self.head_valid && self.head.version == Version::Http10 {
            Some(b"Connection: keep-alive\r\n")
        } else {
            None
        }
    }

    fn arm_write(&mut self, now: Now) {
        if self.sent < self.out.len() && self.timers.get(Timer::Write).is_none() {
            self.set_timer(
                Timer::Write,
                now.mono
                    .saturating_add(self.service.http_config().write_timeout),
            );
        }
    }

    /// Queues `self.res` as the response to the current request and moves on.
    #[inline(never)]
    fn send_response(&mut self, now: Now) {
        self.queue_response(now);
    }

    /// [`Session::send_response`], inlined where a request is answered at once (the hot
    /// path: a call less, and its arguments stay in registers).
    #[inline(always)]
    fn queue_response(&mut self, now: Now) {
        self.compact_out();
        let connection = self.connection_header();
        self.preamble.refresh(now.unix_secs());
        let with_body = !(self.head_valid && self.head.method == Method::Head);
        let (service, ex) = (&self.service, &self.ex);
        let before = self.out.len();
        self.res.encode(
            &mut self.out,
            &self.preamble,
            connection,
            with_body,
            BodyFraming::Length,
            |out| service.write_common_lines(ex, out),
        );
        let bytes = (self.out.len() - before) as u64;
        let head = self.head_valid.then(|| self.head.view_in(&self.recv));
        self.service
            .finish(now, &mut self.ex, head.as_ref(), self.res.status(), bytes);
        self.served += 1;
        self.arm_write(now);
        self.after_response(now);
    }

    fn after_response(&mut self, now: Now) {
        // Per-request state ends with its response: a later error (a 408 on the next head)
        // must not inherit this request's method or path.
        self.head_valid = false;
        if self.keep_alive && !self.draining {
            self.state = State::Head;
            self.set_timer(
                Timer::Idle,
                now.mono
                    .saturating_add(self.service.http_config().idle_timeout),
            );
        } else {
            self.state = State::Closing(CloseReason::Done);
        }
    }

    /// Answers a protocol error with its status (the service writes the body), then closes.
    fn protocol_error(&mut self, now: Now, status: Status, message: &str) {
        self.keep_alive = false;
        self.res.clear();
        self.service
            .error(now, self.peer, &mut self.ex, &mut self.res, status, message);
        self.state = State::Head;
        self.send_response(now);
    }

    /// The client left or the socket failed mid-request: the service drops what is pending.
    fn abandon(&mut self, _now: Now) {
        self.service.abandon(&mut self.ex);
        self.state = State::Closed;
        self.timers = TimerSet::NONE;
    }

    fn release_buffers(&mut self) {
        self.recv = Vec::new();
        self.rpos = 0;
        self.rend = 0;
        self.out = Vec::new();
        self.sent = 0;
        self.body = Vec::new();
        self.head.release();
        self.scanner.reset();
        self.head_valid = false;
        self.res.release();
    }

    /// Emits `Close` once closing and all output is written.
    fn after_input(&mut self, _now: Now) {
        if let State::Closing(reason) = self.state {
            if self.sent == self.out.len() || reason != CloseReason::Done {
                self.state = State::Closed;
                self.timers = TimerSet::NONE;
                self.close_effect = Some(reason);
            }
        }
    }
}

impl<S: Service> Drop for Session<S> {
    fn drop(&mut self) {
        self.service.abandon(&mut self.ex);
    }
}

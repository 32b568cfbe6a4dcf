//! One HTTP/2 connection (RFC 9113) as a sans-IO state machine serving a [`Service`]: every
//! stream is one exchange of the service, with the calls and answers it has over HTTP/1.1.
//! Its inputs and outputs are those of [`Session`](crate::http::Session), so the connection
//! layer drives either the same way.
//!
//! Invariants:
//! - frames are read only whole (at most `SETTINGS_MAX_FRAME_SIZE` = 16 KiB each), and input
//!   stops while more than `OUT_HIGH_WATER` of output waits, so buffering is bounded both ways;
//! - a request's head is checked by the HTTP/1.1 grammar (the fields are written as an HTTP/1.1
//!   head, then parsed), so the service sees the same `Head` as over HTTP/1.1;
//! - the peer's windows are respected when sending: DATA leaves only within the connection's
//!   and the stream's window, and never larger than the peer's frame size; what this side
//!   receives is given back at once (WINDOW_UPDATE), so the peer's sending is bounded by the
//!   body limit, not by a window;
//! - a header block may be at most `MAX_HEADER_BYTES` across its CONTINUATION frames, and
//!   decodes to at most as much (an HPACK bomb or a CONTINUATION flood ends the connection with
//!   `ENHANCE_YOUR_CALM`); streams past `MAX_CONCURRENT_STREAMS` are refused
//!   (`REFUSED_STREAM`); streams the peer opens and resets cost a budget that answered
//!   requests refill (rapid reset, CVE-2023-44487: at zero, `GOAWAY ENHANCE_YOUR_CALM`);
//! - a drain sends `GOAWAY` with the last stream taken, answers every stream open, then
//!   closes; every protocol error sends `GOAWAY` with its code and closes once it is written;
//! - a connection with no stream open releases its buffers after `SHRINK_AFTER`, as an idle
//!   HTTP/1.1 session does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use super::frame::{self, ErrorCode, Header, flag, kind, setting};
use super::hpack::{self, Decoder};
use crate::http::response::Preamble;
use crate::http::session::{ReadsInto, SHRINK_AFTER, feed_through};
use crate::http::{
    Chunk, CloseReason, Effect, IoFailure, Method, ParsedHead, Reply, ReplyPoll, Response, Service,
    Status,
};
use crate::time::{Instant, Now};

/// Bytes read at a time (a frame larger than this grows the buffer to its size).
const READ_CHUNK: usize = 4096;

/// Output waiting to be written above which input is not read.
const OUT_HIGH_WATER: usize = 64 * 1024;

/// Resets of unanswered streams a connection may make before it is cut; each answered
/// request gives one back (up to this).
const RESET_BUDGET: u32 = 200;

/// How an HTTP/2 connection is set (from the service's `HttpConfig`).
#[derive(Clone, Copy, Debug)]
pub struct H2Config {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub max_streams: u32,
    /// `SETTINGS_INITIAL_WINDOW_SIZE` this side advertises (for request bodies).
    pub initial_window: u32,
}

impl Default for H2Config {
    fn default() -> Self {
        H2Config {
            max_streams: 100,
            initial_window: frame::DEFAULT_WINDOW,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// The request's head (and maybe body) is arriving.
    Receiving,
    /// The service answers later.
    Waiting,
    /// The service streams its body.
    Streaming,
    /// The whole response is queued (its DATA may still wait for the window).
    Answered,
}

#[derive(Debug)]
struct Stream<S: Service> {
    id: u32,
    ex: S::Exchange,
    head: ParsedHead,
    /// The head as HTTP/1.1 text, which `head` indexes.
    head_text: Vec<u8>,
    /// The head parsed (an error answers a head that did not).
    parsed: bool,
    admitted: bool,
    body: Vec<u8>,
    /// The peer sent END_STREAM.
    ended: bool,
    phase: Phase,
    res: Response,
    /// The peer's window for this stream.
    window: i64,
    /// DATA payload queued, not yet sent; END_STREAM goes with its end when `last`.
    pending: Vec<u8>,
    sent: usize,
    last: bool,
    /// Deferred reply or next chunk.
    deadline: Option<Instant>,
    bytes: u64,
}

/// One HTTP/2 connection (see the module docs).
#[derive(Debug)]
pub struct Connection<S: Service> {
    service: Arc<S>,
    peer: SocketAddr,
    config: H2Config,
    recv: Vec<u8>,
    rpos: usize,
    rend: usize,
    out: Vec<u8>,
    sent: usize,
    decoder: Decoder,
    preface: bool,
    streams: Vec<Stream<S>>,
    /// The highest stream id the peer opened.
    last_stream: u32,
    /// A header block being assembled: (stream, END_STREAM, its bytes).
    block: Option<(u32, bool)>,
    block_bytes: Vec<u8>,
    peer_max_frame: usize,
    peer_window: i64,
    /// The connection-level window the peer gave.
    send_window: i64,
    waits: VecDeque<S::Wait>,
    waiting: bool,
    goaway: bool,
    peer_goaway: bool,
    draining: bool,
    close: Option<CloseReason>,
    closed: bool,
    resets: u32,
    latest: Now,
    idle_at: Option<Instant>,
    /// With no stream open: when the buffers are released (an idle connection holds none).
    shrink_at: Option<Instant>,
    write_at: Option<Instant>,
    preamble: Preamble,
    served: u64,
    scratch: Vec<u8>,
}

impl<S: Service> Connection<S> {
    /// A connection whose peer sent (or will send) the client preface; `input` is what was
    /// read of it so far (the HTTP/1.1 sniffing's bytes).
    pub fn new(
        service: Arc<S>,
        peer: SocketAddr,
        config: H2Config,
        now: Now,
        input: &[u8],
    ) -> Self {
        let limits = service.http_config().limits;
        let mut c = Connection {
            decoder: Decoder::new(hpack::DEFAULT_TABLE_SIZE),
            service,
            peer,
            config,
            recv: Vec::new(),
            rpos: 0,
            rend: 0,
            out: Vec::new(),
            sent: 0,
            preface: false,
            streams: Vec::new(),
            last_stream: 0,
            block: None,
            block_bytes: Vec::new(),
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            peer_window: i64::from(frame::DEFAULT_WINDOW),
            send_window: i64::from(frame::DEFAULT_WINDOW),
            waits: VecDeque::new(),
            waiting: false,
            goaway: false,
            peer_goaway: false,
            draining: false,
            close: None,
            closed: false,
            resets: RESET_BUDGET,
            latest: now,
            idle_at: None,
            shrink_at: None,
            write_at: None,
            preamble: Preamble::default(),
            served: 0,
            scratch: Vec::new(),
        };
        frame::put_settings(
            &mut c.out,
            &[
                (setting::MAX_CONCURRENT_STREAMS, c.config.max_streams),
                (setting::INITIAL_WINDOW_SIZE, c.config.initial_window),
                (
                    setting::MAX_HEADER_LIST_SIZE,
                    limits.max_header_bytes as u32,
                ),
                (setting::ENABLE_PUSH, 0),
            ],
        );
        // The connection window starts at 65,535 whatever the settings say: open it as wide.
        if c.config.initial_window > frame::DEFAULT_WINDOW {
            frame::put_window_update(
                &mut c.out,
                0,
                c.config.initial_window - frame::DEFAULT_WINDOW,
            );
        }
        let header = c.service.http_config().header_timeout;
        c.idle_at = Some(now.mono.saturating_add(header));
        c.feed(now, input);
        c
    }

    // ---- inputs ----------------------------------------------------------------------

    /// Free space to read into (empty when reading should wait).
    pub fn recv_buf(&mut self) -> &mut [u8] {
        if !self.wants_read() {
            return &mut [];
        }
        if self.rpos == self.rend {
            (self.rpos, self.rend) = (0, 0);
        } else if self.rpos > 0 {
            self.recv.copy_within(self.rpos..self.rend, 0);
            (self.rend, self.rpos) = (self.rend - self.rpos, 0);
        }
        // Room for what is read at a time, and for the whole of a frame begun (at most 16 KiB):
        // a connection only grows its buffer for the frames its peer sends.
        let partial = (self.rend >= frame::HEADER_LEN).then(|| {
            frame::HEADER_LEN + Header::parse(&self.recv).len.min(frame::DEFAULT_MAX_FRAME)
        });
        let want = (self.rend + READ_CHUNK).max(partial.unwrap_or(0));
        if self.recv.len() < want {
            self.recv.resize(want, 0);
        }
        &mut self.recv[self.rend..]
    }

    /// `n` bytes were read into [`Connection::recv_buf`].
    pub fn handle_read(&mut self, now: Now, n: usize) {
        self.latest = now;
        self.rend += n;
        self.process(now);
    }

    /// Copies `bytes` in; returns how many were taken.
    pub fn feed(&mut self, now: Now, bytes: &[u8]) -> usize {
        feed_through(self, now, bytes)
    }

    /// The peer closed its side: every stream is abandoned.
    pub fn handle_eof(&mut self, _now: Now) {
        self.abandon_all();
        self.finish(CloseReason::PeerGone);
    }

    /// The socket failed.
    pub fn handle_io_error(&mut self, _now: Now, _failure: IoFailure) {
        self.abandon_all();
        self.out.clear();
        self.sent = 0;
        self.finish(CloseReason::IoError);
    }

    /// Deadlines up to `now` have passed (idempotent).
    pub fn handle_timeout(&mut self, now: Now) {
        self.latest = now;
        if self.write_at.is_some_and(|t| t <= now.mono) {
            self.abandon_all();
            self.out.clear();
            self.sent = 0;
            return self.finish(CloseReason::WriteTimeout);
        }
        if self.streams.is_empty() && self.idle_at.is_some_and(|t| t <= now.mono) {
            self.go_away(ErrorCode::NoError);
            return self.finish(CloseReason::Done);
        }
        if self.shrink_at.is_some_and(|t| t <= now.mono) {
            self.shrink_at = None;
            let idle = self.streams.is_empty() && self.rpos == self.rend && self.block.is_none();
            if idle && self.sent == self.out.len() {
                (self.recv, self.out, self.block_bytes) = (Vec::new(), Vec::new(), Vec::new());
                self.scratch = Vec::new();
                (self.rpos, self.rend, self.sent) = (0, 0, 0);
            }
        }
        self.poll_streams(now);
    }

    /// A wait handle may be ready.
    pub fn handle_wake(&mut self, now: Now) {
        self.latest = now;
        self.waiting = false;
        self.poll_streams(now);
    }

    /// The server drains: GOAWAY, every open stream answered, then close.
    pub fn handle_drain(&mut self, now: Now) {
        if !self.draining {
            self.draining = true;
            self.go_away(ErrorCode::NoError);
            self.poll_streams(now);
            self.maybe_done();
        }
    }

    /// `n` bytes of [`Connection::poll_transmit`] were written.
    pub fn advance_transmit(&mut self, now: Now, n: usize) {
        self.sent += n;
        if self.sent >= self.out.len() {
            self.out.clear();
            self.sent = 0;
            self.write_at = None;
        } else if n > 0 {
            let timeout = self.service.http_config().write_timeout;
            self.write_at = Some(now.mono.saturating_add(timeout));
        }
        self.send_data();
        if self.rpos < self.rend && self.out.len() - self.sent <= OUT_HIGH_WATER {
            self.process(now);
        }
        self.maybe_done();
    }

    // ---- outputs ---------------------------------------------------------------------

    /// Bytes to write now.
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        (self.sent < self.out.len()).then(|| &self.out[self.sent..])
    }

    /// The next effect.
    pub fn poll_effect(&mut self) -> Option<Effect<S::Wait>> {
        if !self.waiting {
            if let Some(w) = self.waits.pop_front() {
                self.waiting = true;
                return Some(Effect::Wait(w));
            }
        }
        let reason = self.close?;
        let done = reason != CloseReason::Done || self.sent == self.out.len();
        if done && !self.closed {
            self.closed = true;
            return Some(Effect::Close(reason));
        }
        None
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let streams = self.streams.iter().filter_map(|s| s.deadline);
        let idle = self.idle_at.filter(|_| self.streams.is_empty());
        let shrink = self.shrink_at.filter(|_| self.streams.is_empty());
        streams.chain(idle).chain(shrink).chain(self.write_at).min()
    }

    /// Whether the runtime should read.
    pub fn wants_read(&self) -> bool {
        self.close.is_none() && self.out.len() - self.sent <= OUT_HIGH_WATER
    }

    /// Whether the connection is closed: its `Close` effect was emitted or is due (every
    /// byte of an orderly close written).
    pub fn is_closed(&self) -> bool {
        self.closed
            || self
                .close
                .is_some_and(|r| r != CloseReason::Done || self.sent == self.out.len())
    }

    /// Heap held in the connection's own buffers.
    pub fn heap_bytes(&self) -> usize {
        self.recv.capacity()
            + self.out.capacity()
            + self.block_bytes.capacity()
            + self.scratch.capacity()
    }

    /// Requests answered.
    pub fn requests_served(&self) -> u64 {
        self.served
    }

    /// The latest time given.
    pub fn latest(&self) -> Now {
        self.latest
    }

    // ---- frames ----------------------------------------------------------------------

    fn process(&mut self, now: Now) {
        if !self.preface {
            if self.rend - self.rpos < frame::PREFACE.len() {
                return;
            }
            if &self.recv[self.rpos..self.rpos + frame::PREFACE.len()] != frame::PREFACE {
                return self.fail(ErrorCode::Protocol);
            }
            self.rpos += frame::PREFACE.len();
            self.preface = true;
        }
        while self.close.is_none() && self.out.len() - self.sent <= OUT_HIGH_WATER {
            if self.rend - self.rpos < frame::HEADER_LEN {
                break;
            }
            let h = Header::parse(&self.recv[self.rpos..]);
            if h.len > frame::DEFAULT_MAX_FRAME {
                return self.fail(ErrorCode::FrameSize);
            }
            let end = self.rpos + frame::HEADER_LEN + h.len;
            if self.rend < end {
                break;
            }
            let payload = std::mem::take(&mut self.scratch);
            let mut payload = payload;
            payload.clear();
            payload.extend_from_slice(&self.recv[self.rpos + frame::HEADER_LEN..end]);
            self.rpos = end;
            self.frame(now, h, &payload);
            self.scratch = payload;
        }
        self.send_data();
        self.maybe_done();
    }

    fn frame(&mut self, now: Now, h: Header, p: &[u8]) {
        if let Some((id, _)) = self.block {
            if h.kind != kind::CONTINUATION || h.stream != id {
                return self.fail(ErrorCode::Protocol);
            }
        }
        match h.kind {
            kind::DATA => self.data(now, h, p),
            kind::HEADERS => self.headers(now, h, p),
            kind::CONTINUATION => {
                let Some((id, end_stream)) = self.block else {
                    return self.fail(ErrorCode::Protocol);
                };
                self.append_block(now, id, end_stream, h.has(flag::END_HEADERS), p);
            }
            kind::PRIORITY if h.len != 5 || h.stream == 0 => self.fail(ErrorCode::FrameSize),
            kind::PRIORITY => {}
            kind::RST_STREAM if h.len != 4 || h.stream == 0 => self.fail(ErrorCode::Protocol),
            kind::RST_STREAM => self.reset(h.stream),
            kind::SETTINGS => self.settings(h, p),
            kind::PING if h.len != 8 || h.stream != 0 => self.fail(ErrorCode::FrameSize),
            kind::PING if !h.has(flag::ACK) => {
                frame::put_header(&mut self.out, 8, kind::PING, flag::ACK, 0);
                self.out.extend_from_slice(p);
            }
            kind::PING => {}
            kind::GOAWAY if h.stream != 0 || h.len < 8 => self.fail(ErrorCode::Protocol),
            kind::GOAWAY => self.peer_goaway = true,
            kind::WINDOW_UPDATE => self.window_update(h, p),
            kind::PUSH_PROMISE => self.fail(ErrorCode::Protocol),
            _ => {} // unknown types are ignored (§4.1)
        }
    }

    fn settings(&mut self, h: Header, p: &[u8]) {
        if h.stream != 0 {
            return self.fail(ErrorCode::Protocol);
        }
        if h.has(flag::ACK) {
            if h.len != 0 {
                self.fail(ErrorCode::FrameSize);
            }
            return;
        }
        if h.len % 6 != 0 {
            return self.fail(ErrorCode::FrameSize);
        }
        for s in p.chunks_exact(6) {
            let (id, value) = (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            );
            match id {
                setting::ENABLE_PUSH if value > 1 => return self.fail(ErrorCode::Protocol),
                setting::INITIAL_WINDOW_SIZE if value > 0x7fff_ffff => {
                    return self.fail(ErrorCode::FlowControl);
                }
                setting::INITIAL_WINDOW_SIZE => {
                    let delta = i64::from(value) - self.peer_window;
                    self.peer_window = i64::from(value);
                    for s in &mut self.streams {
                        s.window += delta;
                    }
                }
                setting::MAX_FRAME_SIZE if !(16_384..=16_777_215).contains(&value) => {
                    return self.fail(ErrorCode::Protocol);
                }
                setting::MAX_FRAME_SIZE => self.peer_max_frame = value as usize,
                _ => {} // header table size (this side never indexes), limits, unknown
            }
        }
        frame::put_header(&mut self.out, 0, kind::SETTINGS, flag::ACK, 0);
    }

    fn window_update(&mut self, h: Header, p: &[u8]) {
        if h.len != 4 {
            return self.fail(ErrorCode::FrameSize);
        }
        let inc = i64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff);
        if inc == 0 {
            return self.fail(ErrorCode::Protocol);
        }
        if h.stream == 0 {
            self.send_window += inc;
            if self.send_window > 0x7fff_ffff {
                self.fail(ErrorCode::FlowControl);
            }
        } else if let Some(s) = self.streams.iter_mut().find(|s| s.id == h.stream) {
            s.window += inc;
            if s.window > 0x7fff_ffff {
                let id = s.id;
                self.drop_stream(id, Some(ErrorCode::FlowControl));
            }
        }
    }

    fn reset(&mut self, id: u32) {
        if id > self.last_stream {
            return self.fail(ErrorCode::Protocol);
        }
        if self
            .streams
            .iter()
            .any(|s| s.id == id && s.phase != Phase::Answered)
        {
            self.resets = self.resets.saturating_sub(1);
        }
        self.drop_stream(id, None);
        if self.resets == 0 {
            self.fail(ErrorCode::EnhanceYourCalm);
        }
    }

    fn headers(&mut self, now: Now, h: Header, p: &[u8]) {
        let id = h.stream;
        if id == 0 || id % 2 == 0 {
            return self.fail(ErrorCode::Protocol);
        }
        let Some(mut block) = unpad(h, p) else {
            return self.fail(ErrorCode::Protocol);
        };
        if h.has(flag::PRIORITY) {
            if block.len() < 5 {
                return self.fail(ErrorCode::FrameSize);
            }
            block = &block[5..];
        }
        let open = self.streams.iter().any(|s| s.id == id);
        if !open && id <= self.last_stream {
            return self.fail(ErrorCode::StreamClosed);
        }
        self.block_bytes.clear();
        self.append_block(
            now,
            id,
            h.has(flag::END_STREAM),
            h.has(flag::END_HEADERS),
            block,
        );
    }

    fn append_block(&mut self, now: Now, id: u32, end_stream: bool, end_headers: bool, p: &[u8]) {
        let limit = self.service.http_config().limits.max_header_bytes;
        if self.block_bytes.len() + p.len() > limit {
            // A header block past the limit, whether one frame or a CONTINUATION flood.
            return self.fail(ErrorCode::EnhanceYourCalm);
        }
        self.block_bytes.extend_from_slice(p);
        if !end_headers {
            self.block = Some((id, end_stream));
            return;
        }
        self.block = None;
        let block = std::mem::take(&mut self.block_bytes);
        self.header_block(now, id, end_stream, &block);
        self.block_bytes = block;
    }

    /// A complete header block: trailers of an open stream, or a new request.
    fn header_block(&mut self, now: Now, id: u32, end_stream: bool, block: &[u8]) {
        let limit = self.service.http_config().limits.max_header_bytes;
        if let Some(i) = self.streams.iter().position(|s| s.id == id) {
            // Trailers: decoded (the table must follow) and ignored.
            if self
                .decoder
                .decode::<()>(block, limit, |_, _| Ok(()))
                .is_err()
            {
                return self.fail(ErrorCode::Compression);
            }
            if !end_stream || self.streams[i].ended {
                return self.fail(ErrorCode::Protocol);
            }
            self.streams[i].ended = true;
            return self.request_complete(now, i);
        }
        self.last_stream = id;
        let mut text = Vec::new();
        let fields = self.request_text(block, limit, &mut text);
        let malformed = match fields {
            Err(Ok(hpack::HpackError::TooLarge)) => return self.fail(ErrorCode::EnhanceYourCalm),
            Err(Ok(_)) => return self.fail(ErrorCode::Compression),
            Err(Err(())) => true,
            Ok(()) => false,
        };
        let refuse = self.goaway || self.streams.len() >= self.config.max_streams as usize;
        if refuse {
            frame::put_rst(&mut self.out, id, ErrorCode::RefusedStream);
            return;
        }
        if malformed {
            frame::put_rst(&mut self.out, id, ErrorCode::Protocol);
            return;
        }
        let mut s = Stream {
            id,
            ex: S::Exchange::default(),
            head: ParsedHead::default(),
            head_text: text,
            parsed: false,
            admitted: false,
            body: Vec::new(),
            ended: end_stream,
            phase: Phase::Receiving,
            res: Response::default(),
            window: self.peer_window,
            pending: Vec::new(),
            sent: 0,
            last: false,
            deadline: None,
            bytes: 0,
        };
        let limits = self.service.http_config().limits;
        match s.head.parse(&s.head_text, &limits) {
            Ok(Some(_)) => {
                s.parsed = true;
                let head = s.head.view_in(&s.head_text);
                s.admitted = self
                    .service
                    .admit(now, &head, self.peer, &mut s.ex, &mut s.res);
            }
            Ok(None) => {
                s.res.clear();
                let msg = "an incomplete request head";
                let status = Status::BAD_REQUEST;
                self.service
                    .error(now, self.peer, &mut s.ex, &mut s.res, status, msg);
            }
            Err(e) => {
                s.res.clear();
                self.service.error(
                    now,
                    self.peer,
                    &mut s.ex,
                    &mut s.res,
                    e.status(),
                    e.message(),
                );
            }
        }
        self.streams.push(s);
        let i = self.streams.len() - 1;
        if !self.streams[i].admitted {
            // The refusal (or the error) is in `res`: answer now; a body still coming is
            // discarded.
            return self.answer(now, i);
        }
        if end_stream {
            self.request_complete(now, i);
        }
    }

    /// Writes the fields as an HTTP/1.1 head; `Err(Err(()))` when they break HTTP/2's rules
    /// (a malformed request: RST_STREAM).
    fn request_text(
        &mut self,
        block: &[u8],
        limit: usize,
        text: &mut Vec<u8>,
    ) -> Result<(), Result<hpack::HpackError, ()>> {
        let (mut method, mut path, mut authority) =
            (None::<Vec<u8>>, None::<Vec<u8>>, None::<Vec<u8>>);
        let mut fields = Vec::new();
        let mut bad = false;
        let mut regular = false;
        self.decoder.decode::<()>(block, limit, |n, v| {
            if let Some(pseudo) = n.strip_prefix(b":") {
                let slot = match pseudo {
                    b"method" => &mut method,
                    b"path" => &mut path,
                    b"authority" => &mut authority,
                    b"scheme" => return Ok(()),
                    _ => {
                        bad = true;
                        return Ok(());
                    }
                };
                bad |= regular || slot.is_some();
                *slot = Some(v.to_vec());
                return Ok(());
            }
            regular = true;
            let connection_specific = matches!(
                n,
                b"connection"
                    | b"keep-alive"
                    | b"proxy-connection"
                    | b"transfer-encoding"
                    | b"upgrade"
            );
            bad |= connection_specific
                || n.iter().any(u8::is_ascii_uppercase)
                || (n == b"te" && v != b"trailers")
                || (n == b"host" && authority.is_some());
            fields.extend_from_slice(n);
            fields.extend_from_slice(b": ");
            fields.extend_from_slice(v);
            fields.extend_from_slice(b"\r\n");
            Ok(())
        })?;
        let (Some(method), Some(path)) = (method, path) else {
            return Err(Err(()));
        };
        if bad || path.is_empty() {
            return Err(Err(()));
        }
        text.extend_from_slice(&method);
        text.push(b' ');
        text.extend_from_slice(&path);
        text.extend_from_slice(b" HTTP/1.1\r\n");
        // `:authority` is the Host of HTTP/1.1; HTTP/2 makes it optional, HTTP/1.1 requires
        // the field: an empty one is what a request without an authority has (RFC 9112 §3.2).
        let host_given =
            fields.starts_with(b"host: ") || fields.windows(8).any(|w| w == b"\r\nhost: ");
        if authority.is_some() || !host_given {
            text.extend_from_slice(b"host: ");
            text.extend_from_slice(authority.as_deref().unwrap_or_default());
            text.extend_from_slice(b"\r\n");
        }
        text.extend_from_slice(&fields);
        text.extend_from_slice(b"\r\n");
        Ok(())
    }

    fn data(&mut self, now: Now, h: Header, p: &[u8]) {
        if h.stream == 0 {
            return self.fail(ErrorCode::Protocol);
        }
        // Flow control counts the whole payload, padding included: give it all back.
        if h.len > 0 {
            frame::put_window_update(&mut self.out, 0, h.len as u32);
        }
        let Some(data) = unpad(h, p) else {
            return self.fail(ErrorCode::Protocol);
        };
        let Some(i) = self.streams.iter().position(|s| s.id == h.stream) else {
            if h.stream > self.last_stream {
                return self.fail(ErrorCode::Protocol);
            }
            frame::put_rst(&mut self.out, h.stream, ErrorCode::StreamClosed);
            return;
        };
        let max_body = self.service.http_config().limits.max_body_bytes;
        let s = &mut self.streams[i];
        if s.ended {
            let id = s.id;
            return self.drop_stream(id, Some(ErrorCode::StreamClosed));
        }
        s.ended = h.has(flag::END_STREAM);
        if h.len > 0 && !s.ended {
            frame::put_window_update(&mut self.out, s.id, h.len as u32);
        }
        if s.phase != Phase::Receiving || !s.admitted {
            return; // answered already: the rest of the body is dropped
        }
        if s.body.len() + data.len() > max_body {
            s.res.clear();
            let msg = "request body larger than MAX_BODY_BYTES";
            self.service.error(
                now,
                self.peer,
                &mut s.ex,
                &mut s.res,
                Status::PAYLOAD_TOO_LARGE,
                msg,
            );
            return self.answer(now, i);
        }
        s.body.extend_from_slice(data);
        if s.ended {
            self.request_complete(now, i);
        }
    }

    /// The request's body is complete: call the service.
    fn request_complete(&mut self, now: Now, i: usize) {
        let s = &mut self.streams[i];
        if s.phase != Phase::Receiving || !s.admitted {
            return;
        }
        s.res.clear();
        let head = s.head.view_in(&s.head_text);
        match self
            .service
            .call(now, &head, &s.body, &mut s.ex, &mut s.res)
        {
            Reply::Now => self.answer(now, i),
            Reply::Later { deadline, wait } => {
                s.phase = Phase::Waiting;
                s.deadline = deadline;
                self.waits.extend(wait);
            }
            Reply::Stream { first } => {
                s.phase = Phase::Streaming;
                s.deadline = Some(first.unwrap_or(now.mono));
                self.write_head(now, i, false);
                if first.is_none() {
                    self.next_chunk(now, i);
                }
            }
        }
    }

    /// Polls every waiting or streaming stream whose time came (or all, at a wake).
    fn poll_streams(&mut self, now: Now) {
        let mut i = 0;
        while i < self.streams.len() {
            let due = self.streams[i].deadline.is_some_and(|d| d <= now.mono)
                || self.draining
                || !self.waiting;
            match self.streams[i].phase {
                Phase::Waiting if due => {
                    let s = &mut self.streams[i];
                    match self
                        .service
                        .poll_reply(now, &mut s.ex, &mut s.res, self.draining)
                    {
                        ReplyPoll::Ready => self.answer(now, i),
                        ReplyPoll::Pending { deadline } => s.deadline = deadline,
                    }
                }
                Phase::Streaming
                    if self.streams[i].deadline.is_some_and(|d| d <= now.mono) || self.draining =>
                {
                    self.next_chunk(now, i)
                }
                _ => {}
            }
            i += 1;
        }
        self.send_data();
        self.maybe_done();
    }

    fn next_chunk(&mut self, now: Now, i: usize) {
        let s = &mut self.streams[i];
        if s.pending.len() - s.sent > OUT_HIGH_WATER && !self.draining {
            return; // the peer has not read what is queued: wait for its window
        }
        let mut chunk = std::mem::take(&mut s.pending);
        let step = self
            .service
            .poll_chunk(now, &mut s.ex, &mut chunk, self.draining);
        s.pending = chunk;
        match step {
            Chunk::More { next } => s.deadline = Some(next),
            Chunk::Last => {
                s.deadline = None;
                s.last = true;
                s.phase = Phase::Answered;
                let (status, bytes) = (s.res.status(), s.bytes + s.pending.len() as u64);
                let head = s.head.view_in(&s.head_text);
                self.service
                    .finish(now, &mut s.ex, Some(&head), status, bytes);
                self.served += 1;
                self.resets = (self.resets + 1).min(RESET_BUDGET);
            }
        }
        self.send_data();
    }

    /// Queues the whole response in `res` (HEADERS, then its body as DATA) and finishes the
    /// exchange.
    fn answer(&mut self, now: Now, i: usize) {
        let s = &self.streams[i];
        let with_body = !(s.parsed && s.head.method == Method::Head);
        let body_len = self.streams[i].res.body().len();
        let head_len = self.write_head(now, i, body_len == 0 || !with_body);
        let s = &mut self.streams[i];
        s.phase = Phase::Answered;
        s.deadline = None;
        if with_body && body_len > 0 {
            s.pending.clear();
            s.pending.extend_from_slice(s.res.body());
            s.last = true;
        }
        let head = s.parsed.then(|| s.head.view_in(&s.head_text));
        let bytes = (head_len + if with_body { body_len } else { 0 }) as u64;
        self.service
            .finish(now, &mut s.ex, head.as_ref(), s.res.status(), bytes);
        self.served += 1;
        self.resets = (self.resets + 1).min(RESET_BUDGET);
        self.send_data();
    }

    /// Writes the response head of stream `i` (END_STREAM when `end`); returns its length.
    fn write_head(&mut self, now: Now, i: usize, end: bool) -> usize {
        self.preamble.refresh(now.unix_secs());
        let s = &mut self.streams[i];
        let mut block = Vec::new();
        hpack::encode_status(&mut block, s.res.status().code());
        hpack::encode_field(
            &mut block,
            b"server",
            crate::http::response::SERVER.as_bytes(),
        );
        hpack::encode_field(
            &mut block,
            b"date",
            &crate::time::http_date(now.unix_secs()),
        );
        let mut lines = Vec::new();
        self.service.write_common_lines(&s.ex, &mut lines);
        lines.extend_from_slice(s.res.header_bytes());
        let mut name = Vec::new();
        for line in lines.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            name.clear();
            name.extend(line[..colon].iter().map(u8::to_ascii_lowercase));
            if matches!(
                &name[..],
                b"connection" | b"keep-alive" | b"transfer-encoding"
            ) {
                continue;
            }
            hpack::encode_field(&mut block, &name, line[colon + 1..].trim_ascii());
        }
        if s.phase != Phase::Streaming {
            let mut len = Vec::new();
            crate::http::response::put_u64(&mut len, s.res.body().len() as u64);
            hpack::encode_field(&mut block, b"content-length", &len);
        }
        let flags = flag::END_HEADERS | if end { flag::END_STREAM } else { 0 };
        // A response head fits one frame (the service's headers are small).
        frame::put_header(&mut self.out, block.len(), kind::HEADERS, flags, s.id);
        self.out.extend_from_slice(&block);
        s.last = end;
        s.bytes += (frame::HEADER_LEN + block.len()) as u64;
        frame::HEADER_LEN + block.len()
    }

    /// Sends queued DATA within the windows; removes streams whose response is out.
    fn send_data(&mut self) {
        let mut i = 0;
        while i < self.streams.len() {
            let s = &mut self.streams[i];
            while s.sent < s.pending.len() && self.send_window > 0 && s.window > 0 {
                let n = (s.pending.len() - s.sent)
                    .min(self.peer_max_frame)
                    .min(self.send_window as usize)
                    .min(s.window as usize);
                let end = s.last && s.sent + n == s.pending.len() && s.phase == Phase::Answered;
                let flags = if end { flag::END_STREAM } else { 0 };
                frame::put_header(&mut self.out, n, kind::DATA, flags, s.id);
                self.out.extend_from_slice(&s.pending[s.sent..s.sent + n]);
                s.sent += n;
                (self.send_window, s.window) = (self.send_window - n as i64, s.window - n as i64);
                s.bytes += n as u64;
            }
            if s.sent == s.pending.len() {
                s.pending.clear();
                s.sent = 0;
            }
            let done = s.phase == Phase::Answered && s.pending.is_empty() && s.last;
            if done && s.ended {
                self.streams.swap_remove(i);
                continue;
            }
            if done {
                // Answered before the request ended: the rest of it is not needed (§8.1).
                let id = s.id;
                frame::put_rst(&mut self.out, id, ErrorCode::NoError);
                self.streams.swap_remove(i);
                continue;
            }
            i += 1;
        }
        if self.streams.is_empty() {
            let idle = self.service.http_config().idle_timeout;
            self.idle_at = Some(self.latest.mono.saturating_add(idle));
            self.shrink_at = Some(self.latest.mono.saturating_add(SHRINK_AFTER));
        }
    }

    fn drop_stream(&mut self, id: u32, rst: Option<ErrorCode>) {
        if let Some(i) = self.streams.iter().position(|s| s.id == id) {
            let mut s = self.streams.swap_remove(i);
            if s.phase != Phase::Answered {
                self.service.abandon(&mut s.ex);
            }
        }
        if let Some(code) = rst {
            frame::put_rst(&mut self.out, id, code);
        }
    }

    fn abandon_all(&mut self) {
        for mut s in self.streams.drain(..) {
            if s.phase != Phase::Answered {
                self.service.abandon(&mut s.ex);
            }
        }
    }

    fn go_away(&mut self, code: ErrorCode) {
        if !self.goaway {
            self.goaway = true;
            frame::put_goaway(&mut self.out, self.last_stream, code);
        }
    }

    /// A connection error: GOAWAY with `code`, then close once it is written.
    fn fail(&mut self, code: ErrorCode) {
        self.go_away(code);
        self.abandon_all();
        self.finish(CloseReason::Done);
    }

    fn finish(&mut self, reason: CloseReason) {
        if self.close.is_none() {
            self.close = Some(reason);
        }
    }

    /// After a GOAWAY (ours or the peer's), close once no stream is left.
    fn maybe_done(&mut self) {
        if (self.goaway || self.peer_goaway) && self.streams.is_empty() && self.block.is_none() {
            self.go_away(ErrorCode::NoError);
            self.finish(CloseReason::Done);
        }
    }
}

impl<S: Service> ReadsInto for Connection<S> {
    fn recv_buf(&mut self) -> &mut [u8] {
        Connection::recv_buf(self)
    }
    fn handle_read(&mut self, now: Now, n: usize) {
        Connection::handle_read(self, now, n)
    }
}

impl<S: Service> Drop for Connection<S> {
    fn drop(&mut self) {
        self.abandon_all();
    }
}

/// A DATA or HEADERS payload without its padding; `None` when the padding does not fit.
fn unpad(h: Header, p: &[u8]) -> Option<&[u8]> {
    if !h.has(flag::PADDED) {
        return Some(p);
    }
    let (&pad, rest) = p.split_first()?;
    rest.len().checked_sub(pad as usize).map(|len| &rest[..len])
}

//! One I/O thread of weir-uring: its ring, the connections it accepted, their timers. Each
//! turn submits everything queued and waits in one `io_uring_enter`, then hands every
//! completion to its session and queues what the session wants next (a receive, a send).
//!
//! Invariants:
//! - a connection has at most one (multishot) receive and one send in flight; its slot (and
//!   descriptor) is released only once neither is, so no completion ever names a freed slot
//!   and no operation a closed (or reused) descriptor;
//! - the receive stays armed while the session wants to read: one pool buffer at a time until
//!   the connection has answered with little output queued (and for good once its peer has sent more than
//!   the session could take), multishot after that; when the session stops
//!   wanting to read (its output is above the high-water mark, its buffer full), the receive
//!   is cancelled and the cancel submitted at once, and what arrived before it took effect
//!   waits in the backlog;
//! - a send carries a copy of at most [`SEND_CHUNK`] of the session's queued output, owned by
//!   the ring until its completion; the session's output is advanced by what the kernel reports sent, only while
//!   the session is still open (a session that closed has discarded its output);
//! - received bytes are fed to the session straight from the pool buffer, which goes back to
//!   the kernel at once; what the session cannot take yet (its output is backed up) is copied
//!   to the connection's backlog (at most one buffer's worth), and no receive is queued until
//!   the backlog has been taken — so the pool is never held across turns and back-pressure
//!   reaches the peer through TCP;
//! - a timer entry is pushed only when the connection's alarm moves earlier (the kit's
//!   re-arm rule); stale entries are recognised by the alarm and skipped;
//! - nothing on the request path allocates once warm: send buffers come from a free list,
//!   completions and wake-ups go into reused vectors, the waker is made per connection.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};

use weir_core::server::Hosted;
use weir_core::tls::Connection;
use weir_core::{Instant, Now, Service};
use weir_kit::serve::{self as kit, Acceptor, Alarm, Drain};
use weir_kit::{clock, net};

use crate::ring::{self, Completion, Ring};
use crate::wake::Wakeups;

/// The most of a connection's queued output one send carries (and the ring holds a copy of):
/// a peer that stops reading makes the connection hold at most this beside the session's own
/// output, and a large response goes out in several sends.
const SEND_CHUNK: usize = 16 * 1024;

/// Output still queued at which a connection's peer counts as one that waits for its answers
/// (a few responses in flight): past it, its receive stays one buffer at a time.
const STEADY_OUTPUT: usize = 4 * 1024;

/// What an operation was, in the top byte of its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Wake = 4,
    Drain = 5,
    /// The completion of a cancel request (nothing to do: the cancelled operation completes
    /// on its own token).
    Cancel = 6,
}

/// A token: the operation, the slot's generation (24 bits) and the slot (32 bits).
fn token(op: Op, slot: usize, generation: u32) -> u64 {
    (op as u64) << 56 | ((generation & 0xFF_FFFF) as u64) << 32 | slot as u64
}

fn split(token: u64) -> (u8, usize, u32) {
    (
        (token >> 56) as u8,
        (token & 0xFFFF_FFFF) as usize,
        ((token >> 32) & 0xFF_FFFF) as u32,
    )
}

#[derive(Debug)]
struct Conn<S: Service> {
    stream: TcpStream,
    generation: u32,
    /// `None` once closed: the slot waits for its operations in flight to complete.
    session: Option<Connection<S>>,
    job: Option<S::Wait>,
    waker: Waker,
    alarm: Alarm,
    /// The multishot receive is armed (until a completion without "more").
    recv_busy: bool,
    /// Its cancel was requested.
    recv_cancelling: bool,
    send_busy: bool,
    /// The last receive found the pool empty; retried next turn.
    starved: bool,
    /// The peer once sent more than the session could take (its output was backed up):
    /// from then on it receives one buffer at a time.
    pressed: bool,
    /// Received bytes the session could not take yet.
    backlog: Vec<u8>,
}

impl<S: Service> Conn<S> {
    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

/// One I/O thread's state.
#[derive(Debug)]
pub struct EventLoop<S: Service> {
    service: Arc<S>,
    ring: Ring,
    conns: Vec<Option<Conn<S>>>,
    free: Vec<usize>,
    generations: u32,
    timers: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    wakeups: Arc<Wakeups>,
    woken: Vec<u64>,
    completions: Vec<Completion>,
    send_buffers: Vec<Vec<u8>>,
    starved: Vec<(usize, u32)>,
    listener: Option<TcpListener>,
    accepting: bool,
    accept_again_at: Option<Instant>,
    drain: Arc<Drain>,
    acceptor: Option<Acceptor>,
    draining: bool,
}

impl<S: Hosted> EventLoop<S> {
    /// This thread's ring (with `buffers` receive buffers) and wake-up channel; fails when
    /// the kernel refuses a ring.
    pub fn new(
        service: Arc<S>,
        buffers: u16,
        listener: TcpListener,
        drain: Arc<Drain>,
        acceptor: Acceptor,
    ) -> std::io::Result<EventLoop<S>> {
        Ok(EventLoop {
            ring: Ring::new(buffers)?,
            service,
            conns: Vec::new(),
            free: Vec::new(),
            generations: 0,
            timers: BinaryHeap::new(),
            wakeups: Wakeups::new()?,
            woken: Vec::new(),
            completions: Vec::new(),
            send_buffers: Vec::new(),
            starved: Vec::new(),
            listener: Some(listener),
            accepting: false,
            accept_again_at: None,
            drain,
            acceptor: Some(acceptor),
            draining: false,
        })
    }

    /// Serves until the process exits.
    pub fn run(mut self) -> ! {
        self.arm_accept();
        self.ring
            .poll_readable(self.drain.pollable().as_raw_fd(), token(Op::Drain, 0, 0));
        self.ring
            .read_counter(self.wakeups.eventfd(), token(Op::Wake, 0, 0));
        let mut completions = std::mem::take(&mut self.completions);
        loop {
            let timeout = self.next_timeout();
            if let Err(e) = self.ring.submit_and_wait(timeout) {
                tracing::error!(error = %e, "io_uring_enter failed");
                std::thread::sleep(net::ACCEPT_BACKOFF);
            }
            self.ring.reap(&mut completions);
            for c in &completions {
                self.complete(*c);
            }
            let now = clock::now();
            self.fire_timers(now);
            self.feed_starved(now);
            if self.accept_again_at.is_some_and(|at| at <= now.mono) {
                self.accept_again_at = None;
                self.arm_accept();
            }
        }
    }

    fn next_timeout(&self) -> Option<std::time::Duration> {
        let earliest = [
            self.timers.peek().map(|Reverse((at, _, _))| *at),
            self.accept_again_at,
        ]
        .into_iter()
        .flatten()
        .min()?;
        let now = clock::now().mono;
        Some(
            earliest
                .since(now)
                .max(std::time::Duration::from_micros(50)),
        )
    }

    fn complete(&mut self, c: Completion) {
        let (op, slot, generation) = split(c.token);
        match op {
            x if x == Op::Accept as u8 => self.accepted(c),
            x if x == Op::Recv as u8 => self.received(slot, c),
            x if x == Op::Send as u8 => self.sent(slot, c),
            x if x == Op::Wake as u8 => self.woken(),
            x if x == Op::Drain as u8 => self.begin_drain(),
            x if x == Op::Cancel as u8 => {}
            _ => debug_assert!(
                false,
                "unknown token {:#x} (generation {generation})",
                c.token
            ),
        }
    }

    // ---- accepting -------------------------------------------------------------------

    fn arm_accept(&mut self) {
        if let (Some(listener), false, false) = (&self.listener, self.accepting, self.draining) {
            self.ring
                .accept_multi(listener.as_raw_fd(), token(Op::Accept, 0, 0));
            self.accepting = true;
        }
    }

    fn accepted(&mut self, c: Completion) {
        if !c.more() {
            self.accepting = false;
        }
        if c.result >= 0 {
            self.adopt(ring::adopt(c.result));
        } else if c.result == -libc::ECANCELED || self.draining {
            // The drain cancelled accepting: this thread's copy of the listener can go.
            self.listener = None;
        } else {
            let e = std::io::Error::from_raw_os_error(-c.result);
            match net::accept_error(&e) {
                Some(pause) => {
                    self.accept_again_at = Some(clock::now().mono.saturating_add(pause));
                }
                None => self.arm_accept(),
            }
            return;
        }
        if !self.accepting && !self.draining {
            self.arm_accept();
        }
    }

    fn adopt(&mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let now = clock::now();
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.generations = self.generations.wrapping_add(1) & 0xFF_FFFF;
        let generation = self.generations;
        // A connection opened during the drain has heard it.
        let session = Connection::new(self.service.clone(), self.drain.lifecycle(), peer, now);
        self.conns[slot] = Some(Conn {
            stream,
            generation,
            session: Some(session),
            job: None,
            waker: self.wakeups.waker(token(Op::Wake, slot, generation)),
            alarm: Alarm::default(),
            recv_busy: false,
            recv_cancelling: false,
            send_busy: false,
            starved: false,
            pressed: false,
            backlog: Vec::new(),
        });
        self.pump(slot, now);
    }

    /// The drain began: stop accepting, accept what the kernel queued, tell every session.
    fn begin_drain(&mut self) {
        self.draining = true;
        if self.accepting {
            self.ring
                .cancel(token(Op::Accept, 0, 0), token(Op::Cancel, 0, 0));
        }
        if let Some(listener) = self.listener.as_ref() {
            let mut queued = Vec::new();
            let _ = kit::accept_queued(listener, |stream, _| queued.push(stream));
            for stream in queued {
                self.adopt(stream);
            }
        }
        if !self.accepting {
            self.listener = None;
        }
        drop(self.acceptor.take());
        let now = clock::now();
        for slot in 0..self.conns.len() {
            if let Some(s) = self.session(slot) {
                s.handle_drain(now);
                self.pump(slot, now);
            }
        }
    }

    // ---- completions of a connection -------------------------------------------------

    fn received(&mut self, slot: usize, c: Completion) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if !c.more() {
            conn.recv_busy = false;
            conn.recv_cancelling = false;
        }
        let now = clock::now();
        if let Some(bid) = c.buffer() {
            let len = c.result.max(0) as usize;
            if let Some(s) = conn.session.as_mut() {
                let bytes = self.ring.received(bid, 0..len);
                let taken = s.feed(now, bytes);
                if taken < bytes.len() {
                    conn.pressed = true;
                    conn.backlog.extend_from_slice(&bytes[taken..]);
                }
            }
            self.ring.recycle(bid);
        } else if c.result == -libc::ENOBUFS {
            conn.starved = true;
            self.starved.push((slot, conn.generation));
        } else if c.result == -libc::ECANCELED {
            // Cancelled for back-pressure, or by `finish`.
        } else if let Some(s) = conn.session.as_mut() {
            if c.result == 0 {
                s.handle_eof(now);
            } else {
                let e = std::io::Error::from_raw_os_error(-c.result);
                s.handle_io_error(now, e.kind().into());
            }
        }
        self.pump(slot, now);
        self.release(slot);
    }

    fn sent(&mut self, slot: usize, c: Completion) {
        if let Some(mut bytes) = self.ring.take_sent(slot) {
            bytes.clear();
            self.send_buffers.push(bytes);
        }
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        conn.send_busy = false;
        let now = clock::now();
        if let Some(s) = conn.session.as_mut() {
            if c.result >= 0 {
                let queued = s.poll_transmit().map_or(0, <[u8]>::len);
                s.advance_transmit(now, (c.result as usize).min(queued));
            } else if c.result != -libc::ECANCELED {
                let e = std::io::Error::from_raw_os_error(-c.result);
                s.handle_io_error(now, e.kind().into());
            }
        }
        self.pump(slot, now);
        self.release(slot);
    }

    /// Jobs finished: wake the connections waiting for them.
    fn woken(&mut self) {
        self.ring
            .read_counter(self.wakeups.eventfd(), token(Op::Wake, 0, 0));
        let mut woken = std::mem::take(&mut self.woken);
        self.wakeups.take(&mut woken);
        let now = clock::now();
        for key in &woken {
            let (_, slot, generation) = split(*key);
            let live = self.conns.get(slot).and_then(Option::as_ref);
            if live.is_some_and(|c| c.generation == generation && c.job.is_some()) {
                self.pump(slot, now);
            }
        }
        self.woken = woken;
    }

    fn fire_timers(&mut self, now: Now) {
        while let Some(Reverse((at, slot, generation))) = self.timers.peek().copied() {
            if at > now.mono {
                return;
            }
            self.timers.pop();
            let Some(conn) = self.conns[slot]
                .as_mut()
                .filter(|c| c.generation == generation)
            else {
                continue;
            };
            if !conn.alarm.is_due(now) {
                continue;
            }
            conn.alarm.fired();
            if let Some(s) = conn.session.as_mut() {
                s.handle_timeout(now);
            }
            self.pump(slot, now);
        }
    }

    /// Retries receives that found the pool empty (every buffer is back by the end of a
    /// turn).
    fn feed_starved(&mut self, now: Now) {
        if self.starved.is_empty() {
            return;
        }
        let starved = std::mem::take(&mut self.starved);
        for &(slot, generation) in &starved {
            if let Some(conn) = self.conns[slot]
                .as_mut()
                .filter(|c| c.generation == generation)
            {
                conn.starved = false;
                self.pump(slot, now);
            }
        }
        let mut starved = starved;
        starved.clear();
        if self.starved.is_empty() {
            self.starved = starved;
        }
    }

    // ---- driving a session -----------------------------------------------------------

    fn session(&mut self, slot: usize) -> Option<&mut Connection<S>> {
        self.conns[slot].as_mut().and_then(|c| c.session.as_mut())
    }

    /// After any input: feed what was received, send what is queued, take the effects,
    /// then queue the next receive and set the timer.
    fn pump(&mut self, slot: usize, now: Now) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let Some(s) = conn.session.as_mut() else {
            return;
        };
        loop {
            if !conn.backlog.is_empty() {
                let taken = s.feed(now, &conn.backlog);
                conn.backlog.drain(..taken);
                if conn.backlog.is_empty() {
                    // Rare (output backed up): do not keep the memory on an idle connection.
                    conn.backlog = Vec::new();
                }
            }
            if !conn.send_busy {
                if let Some(bytes) = s.poll_transmit() {
                    let mut buf = self.send_buffers.pop().unwrap_or_default();
                    buf.extend_from_slice(&bytes[..bytes.len().min(SEND_CHUNK)]);
                    let t = token(Op::Send, slot, conn.generation);
                    self.ring.send(conn.stream.as_raw_fd(), slot, buf, t);
                    conn.send_busy = true;
                }
            }
            if kit::take_effects(s, &mut conn.job, &conn.stream).is_some() {
                self.finish(slot);
                return;
            }
            let ready = conn.job.as_mut().is_some_and(|job| {
                let mut cx = Context::from_waker(&conn.waker);
                Pin::new(job).poll(&mut cx).is_ready()
            });
            if !ready {
                break;
            }
            conn.job = None;
            s.handle_wake(now);
        }
        let deadline = s.poll_timeout();
        if conn.alarm.rearm(deadline).is_some() {
            if let Some(at) = deadline {
                self.timers.push(Reverse((at, slot, conn.generation)));
            }
        }
        if s.wants_read() && conn.backlog.is_empty() {
            self.arm_recv(slot);
        } else if self.cancel_recv(slot) {
            // Back-pressure: every completion that lands before the cancel takes effect is
            // copied to the backlog, so it takes effect now, not at the next turn.
            self.ring.submit_now();
        }
    }

    /// Arms the connection's receive: one pool buffer at a time until the connection has
    /// answered a request with less than `STEADY_OUTPUT` queued, then multishot (one arming then serves the
    /// whole keep-alive connection: the common case pays nothing per request). A peer that
    /// once sent more than its session could take goes back to one buffer at a time for
    /// good. A multishot receive turns whatever the peer has sent into completions before
    /// its cancel can stop it, so it is kept for peers that wait for their answers: one that
    /// floods from its first bytes adds at most one pool buffer to what its connection holds,
    /// and one that floods later at most what the kernel receives before the cancel (submitted
    /// at once), once.
    fn arm_recv(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if !conn.recv_busy && !conn.starved && conn.backlog.is_empty() {
            let t = token(Op::Recv, slot, conn.generation);
            let steady = conn.session.as_ref().is_some_and(|s| {
                let queued = s.poll_transmit().map_or(0, <[u8]>::len);
                !conn.pressed && s.requests_served() > 0 && queued <= STEADY_OUTPUT
            });
            if steady {
                self.ring.recv_multi(conn.fd(), t);
            } else {
                self.ring.recv_once(conn.fd(), t);
            }
            conn.recv_busy = true;
        }
    }

    /// Cancels the receive in flight; true when a cancel was queued.
    fn cancel_recv(&mut self, slot: usize) -> bool {
        let Some(conn) = self.conns[slot].as_mut() else {
            return false;
        };
        if conn.recv_busy && !conn.recv_cancelling {
            let (t, generation) = (token(Op::Recv, slot, conn.generation), conn.generation);
            self.ring.cancel(t, token(Op::Cancel, slot, generation));
            conn.recv_cancelling = true;
            return true;
        }
        false
    }

    /// Drops the session, cancels what is in flight and releases the slot once nothing is.
    fn finish(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        conn.session = None;
        conn.job = None;
        conn.backlog = Vec::new();
        let generation = conn.generation;
        let send_busy = conn.send_busy;
        self.cancel_recv(slot);
        if send_busy {
            let t = token(Op::Send, slot, generation);
            self.ring.cancel(t, token(Op::Cancel, slot, generation));
        }
        self.release(slot);
    }

    /// Frees a closed connection's slot (closing its descriptor) once nothing is in flight.
    fn release(&mut self, slot: usize) {
        let done = self.conns[slot]
            .as_ref()
            .is_some_and(|c| c.session.is_none() && !c.recv_busy && !c.send_busy);
        if done {
            self.conns[slot] = None;
            self.free.push(slot);
        }
    }
}

//! What an async connection waits on besides its socket — its deferred reply (the job), its
//! deadline and the drain — polled by hand in one fixed order after the socket's readiness,
//! and handed to the session once one of them is ready. Written once for weir-tokio and
//! weir-smol; each adds only how its socket signals readiness.
//!
//! Polled by hand rather than through a select macro or `or` combinators: the general
//! machinery cost about a hundred instructions a wait (measured on weir-tokio), and a wait
//! happens for every request that is not pipelined.
//!
//! Invariants: the timer is re-armed only for an earlier deadline ([`Alarm`]), so a deadline
//! that moves later with every request costs nothing; a wake is delivered to the session at
//! most once (the job and the drain watch are dropped when they fire, the alarm is cleared);
//! each handler of the session is idempotent, so a stale wake is harmless.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use weir_core::tls::Connection;
use weir_core::{CloseReason, Now, Service};

use crate::clock;
use crate::deadlines::{ConnTimer, RuntimeTimer};
use crate::serve::{Alarm, Drain, DrainWatch, take_effects};

/// What the connections of one accept loop share: the service, the drain, and whether their
/// tasks stay on the thread that made them (their deadlines then go on its timerfd).
#[derive(Debug)]
pub struct Serving<S> {
    /// The service every connection serves.
    pub service: Arc<S>,
    /// The process's drain signal.
    pub drain: Arc<Drain>,
    /// Tasks never leave their thread.
    pub local: bool,
}

impl<S> Clone for Serving<S> {
    fn clone(&self) -> Self {
        Serving {
            service: self.service.clone(),
            drain: self.drain.clone(),
            local: self.local,
        }
    }
}

impl<S: Service<Wait: Future<Output = ()> + Unpin>> Serving<S> {
    /// A new connection from `peer`: its session, its waits and the time it opened. A drain
    /// that already began has been told to the session.
    pub fn open<T: RuntimeTimer>(
        &self,
        peer: SocketAddr,
    ) -> (Connection<S>, Waits<'_, S::Wait, T>, Now) {
        let now = clock::now();
        let mut s = Connection::new(self.service.clone(), peer, now);
        let waits = Waits::new(&self.drain, self.local);
        if waits.draining() {
            s.handle_drain(now);
        }
        (s, waits, now)
    }
}

/// What woke a connection: its socket (with what the runtime's readiness poll returned) or
/// one of its [`Waits`].
#[derive(Debug)]
pub enum Wake<R> {
    /// The socket may be readable.
    Readable(R),
    /// The socket may be writable.
    Writable(R),
    /// The job, the deadline or the drain: give it to [`Waits::deliver`].
    Waited(Waited),
}

/// Which of a connection's waits fired (only [`Waits::deliver`] looks inside).
#[derive(Debug)]
pub struct Waited(Kind);

#[derive(Debug)]
enum Kind {
    Job,
    Timer,
    Drain,
}

/// A connection's waits besides its socket.
#[derive(Debug)]
pub struct Waits<'d, W, T> {
    job: Option<W>,
    timer: ConnTimer<T>,
    alarm: Alarm,
    drained: Option<DrainWatch<'d>>,
}

impl<'d, W: Future<Output = ()> + Unpin, T: RuntimeTimer> Waits<'d, W, T> {
    /// No job, no deadline, watching `drain`; `local`: the task never leaves its thread, so
    /// the deadline goes on the thread's timerfd.
    pub fn new(drain: &'d Drain, local: bool) -> Self {
        Waits {
            job: None,
            timer: ConnTimer::new(local),
            alarm: Alarm::default(),
            drained: drain.watch(),
        }
    }

    /// Whether the drain had begun when the connection started (the session must hear it).
    pub fn draining(&self) -> bool {
        self.drained.is_none()
    }

    /// Takes the session's effects, keeping a wait handle; returns the reason to close.
    #[inline]
    pub fn take_effects<S: Service<Wait = W>>(
        &mut self,
        s: &mut Connection<S>,
    ) -> Option<CloseReason> {
        take_effects(s, &mut self.job)
    }

    /// Sets the timer for the session's earliest deadline, when it is earlier than the one
    /// set (a later one waits for the alarm, which is harmless early).
    #[inline]
    pub fn arm(&mut self, deadline: Option<weir_core::Instant>) {
        if let Some(at) = self.alarm.rearm(deadline) {
            self.timer.set_at(at);
        }
    }

    /// Polls, in order, the socket's readability and writability (each only when given),
    /// the job, the timer (only while armed) and the drain; the first ready one woke.
    #[inline]
    pub fn poll<R>(
        &mut self,
        cx: &mut Context<'_>,
        readable: Option<impl FnOnce(&mut Context<'_>) -> Poll<R>>,
        writable: Option<impl FnOnce(&mut Context<'_>) -> Poll<R>>,
    ) -> Poll<Wake<R>> {
        if let Some(Poll::Ready(r)) = readable.map(|poll| poll(cx)) {
            return Poll::Ready(Wake::Readable(r));
        }
        if let Some(Poll::Ready(r)) = writable.map(|poll| poll(cx)) {
            return Poll::Ready(Wake::Writable(r));
        }
        let kind = if self
            .job
            .as_mut()
            .is_some_and(|j| Pin::new(j).poll(cx).is_ready())
        {
            Kind::Job
        } else if self.alarm.is_armed() && self.timer.poll_fired(cx).is_ready() {
            Kind::Timer
        } else if self
            .drained
            .as_mut()
            .is_some_and(|d| Pin::new(d).poll(cx).is_ready())
        {
            Kind::Drain
        } else {
            return Poll::Pending;
        };
        Poll::Ready(Wake::Waited(Waited(kind)))
    }

    /// Hands what fired to the session, and forgets it.
    pub fn deliver<S: Service>(&mut self, waited: Waited, s: &mut Connection<S>, now: Now) {
        match waited.0 {
            Kind::Job => {
                self.job = None;
                s.handle_wake(now);
            }
            Kind::Timer => {
                self.alarm.fired();
                s.handle_timeout(now);
            }
            Kind::Drain => {
                self.drained = None;
                s.handle_drain(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Waker;

    use weir_core::jobs::JobWatch;
    use weir_core::{App, Config, Instant};

    use super::*;

    /// A runtime timer that has fired once the time it was set to has passed.
    struct Passed(Option<std::time::Instant>);

    impl RuntimeTimer for Passed {
        fn never() -> Self {
            Passed(None)
        }
        fn set_at(&mut self, at: std::time::Instant) {
            self.0 = Some(at);
        }
        fn poll_fired(&mut self, _: &mut Context<'_>) -> Poll<()> {
            match self.0 {
                Some(at) if at <= std::time::Instant::now() => Poll::Ready(()),
                _ => Poll::Pending,
            }
        }
    }

    type Probe = fn(&mut Context<'_>) -> Poll<u8>;
    const READY: Option<Probe> = Some(|_| Poll::Ready(1));
    const PENDING: Option<Probe> = Some(|_| Poll::Pending);

    fn poll(waits: &mut Waits<'_, JobWatch, Passed>, r: Option<Probe>, w: Option<Probe>) -> String {
        let mut cx = Context::from_waker(Waker::noop());
        match waits.poll(&mut cx, r, w) {
            Poll::Pending => "pending".into(),
            Poll::Ready(Wake::Readable(_)) => "readable".into(),
            Poll::Ready(Wake::Writable(_)) => "writable".into(),
            Poll::Ready(Wake::Waited(Waited(kind))) => format!("{kind:?}"),
        }
    }

    #[test]
    fn the_socket_comes_first_then_the_timer_then_the_drain_each_delivered_once() {
        let config = Config::from_sources([("WORKER_COUNT", "1")], 1).expect("valid config");
        let start = weir_core::Now::new(Instant::from_nanos(1_000_000_000), 1_795_305_600_000);
        let app = Arc::new(App::builder(config).runtime("test").build(start));
        let drain = Drain::default();
        let mut waits = Waits::<JobWatch, Passed>::new(&drain, false);
        assert!(!waits.draining());
        assert_eq!(poll(&mut waits, PENDING, None), "pending");
        assert_eq!(poll(&mut waits, None, None), "pending", "nothing armed");

        // The deadline has passed and the drain began: the socket still comes first.
        waits.arm(Some(Instant::from_nanos(0)));
        drain.begin();
        assert_eq!(poll(&mut waits, READY, READY), "readable");
        assert_eq!(poll(&mut waits, PENDING, READY), "writable");
        assert_eq!(poll(&mut waits, PENDING, PENDING), "Timer");

        // Delivered, the timer is disarmed and the session heard it (an idle connection
        // past its deadline closes).
        let mut s = app.connection("192.0.2.7:40000".parse().unwrap(), start);
        let later = weir_core::Now::new(Instant::from_nanos(u64::MAX / 2), 1_795_305_600_000);
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Wake::Waited(timer)) = waits.poll(&mut cx, PENDING, None::<Probe>) else {
            panic!("the timer is due");
        };
        waits.deliver(timer, &mut s, later);
        assert!(
            s.poll_transmit()
                .is_some_and(|out| out.starts_with(b"HTTP/1.1 408")),
            "the session heard its deadline"
        );
        assert_eq!(poll(&mut waits, PENDING, None), "Drain");

        // The drain, delivered, is not seen again; the session heard it.
        let mut s = app.connection("192.0.2.7:40001".parse().unwrap(), start);
        let Poll::Ready(Wake::Waited(drained)) = waits.poll(&mut cx, None::<Probe>, None::<Probe>)
        else {
            panic!("the drain began");
        };
        assert!(
            waits.take_effects(&mut s).is_none(),
            "open before the drain"
        );
        waits.deliver(drained, &mut s, start);
        assert_eq!(poll(&mut waits, PENDING, None), "pending");
        // The session heard the drain: its next response closes the connection.
        let req = b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n";
        s.recv_buf()[..req.len()].copy_from_slice(req);
        s.handle_read(start, req.len());
        let out = s.poll_transmit().expect("a response");
        assert!(
            out.windows(19)
                .any(|w| w.eq_ignore_ascii_case(b"connection: close\r\n"))
        );
        assert!(
            Waits::<JobWatch, Passed>::new(&drain, false).draining(),
            "a connection opened after the drain began hears of it at once"
        );
    }
}

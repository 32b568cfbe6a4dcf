//! What an async connection waits on besides its socket — its deferred reply (the service's
//! wait handle, a job's completion for weir's application), its
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
//! most once (the wait handle and the drain watch are dropped when they fire, the alarm is
//! cleared);
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
pub struct Connections<S> {
    /// The service every connection serves.
    pub service: Arc<S>,
    /// The process's drain signal.
    pub drain: Arc<Drain>,
    /// Tasks never leave their thread.
    pub local: bool,
}

impl<S> Clone for Connections<S> {
    fn clone(&self) -> Self {
        Connections {
            service: self.service.clone(),
            drain: self.drain.clone(),
            local: self.local,
        }
    }
}

impl<S: Service<Wait: Future<Output = ()> + Unpin>> Connections<S> {
    /// A new connection from `peer`: its session, its waits and the time it opened (the
    /// connection has heard a drain that already began).
    pub fn open<T: RuntimeTimer>(
        &self,
        peer: SocketAddr,
    ) -> (Connection<S>, Waits<'_, S::Wait, T>, Now) {
        let now = clock::now();
        let s = Connection::new(self.service.clone(), self.drain.lifecycle(), peer, now);
        (s, Waits::new(&self.drain, self.local), now)
    }
}

/// Waits for `f` on this thread for at most `timeout` (a blocking runtime's wait on a
/// [`Service::Wait`]): polls it with a waker that unparks the thread, and parks in between.
/// `None`: not ready in time.
pub fn block_on_timeout<F: Future + Unpin>(
    f: &mut F,
    timeout: std::time::Duration,
) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let start = std::time::Instant::now();
    loop {
        if let Poll::Ready(v) = Pin::new(&mut *f).poll(&mut cx) {
            return Some(v);
        }
        let left = timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())?;
        std::thread::park_timeout(left);
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
    /// The wait handle, the deadline or the drain: give it to [`Waits::deliver`].
    Waited(Waited),
}

/// Which of a connection's waits fired (only [`Waits::deliver`] looks inside).
#[derive(Debug)]
pub struct Waited(Kind);

#[derive(Debug)]
enum Kind {
    Wait,
    Timer,
    Drain,
}

/// A connection's waits besides its socket.
#[derive(Debug)]
pub struct Waits<'d, W, T> {
    wait: Option<W>,
    timer: ConnTimer<T>,
    alarm: Alarm,
    drained: Option<DrainWatch<'d>>,
}

impl<'d, W: Future<Output = ()> + Unpin, T: RuntimeTimer> Waits<'d, W, T> {
    /// No wait handle, no deadline, watching `drain`; `local`: the task never leaves its thread, so
    /// the deadline goes on the thread's timerfd.
    pub fn new(drain: &'d Drain, local: bool) -> Self {
        Waits {
            wait: None,
            timer: ConnTimer::new(local),
            alarm: Alarm::default(),
            drained: drain.watch(),
        }
    }

    /// Whether the drain had begun when the connection started (the session must hear it).
    pub fn draining(&self) -> bool {
        self.drained.is_none()
    }

    /// Takes the connection's effects, keeping a wait handle, shutting `sock`'s write side
    /// for a linger; returns the reason to close.
    #[inline]
    pub fn take_effects<S: Service<Wait = W>>(
        &mut self,
        s: &mut Connection<S>,
        sock: impl std::os::fd::AsFd,
    ) -> Option<CloseReason> {
        take_effects(s, &mut self.wait, sock)
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
    /// the wait handle, the timer (only while armed) and the drain; the first ready one woke.
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
            .wait
            .as_mut()
            .is_some_and(|j| Pin::new(j).poll(cx).is_ready())
        {
            Kind::Wait
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
            Kind::Wait => {
                self.wait = None;
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

    use weir_core::http::{Head, HttpConfig, Reply, Response};
    use weir_core::jobs::JobWatch;
    use weir_core::server::Lifecycle;
    use weir_core::{Instant, Service};

    use super::*;

    /// Answers every request with an empty 200.
    struct Empty(HttpConfig);

    impl Service for Empty {
        type Exchange = ();
        type Wait = JobWatch;

        fn http_config(&self) -> &HttpConfig {
            &self.0
        }

        fn call(
            &self,
            _: Now,
            _: &Head<'_>,
            _: &[u8],
            _: &mut (),
            _: &mut Response,
        ) -> Reply<JobWatch> {
            Reply::Now
        }
    }

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
        let start = weir_core::Now::new(Instant::from_nanos(1_000_000_000), 1_795_305_600_000);
        let service = Arc::new(Empty(HttpConfig::default()));
        // The connections' own lifecycle never drains: they hear the drain only as delivered.
        let lifecycle = Lifecycle::new(10, 0);
        let connection = |port| {
            let peer = SocketAddr::from(([192, 0, 2, 7], port));
            Connection::new(service.clone(), &lifecycle, peer, start)
        };
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
        let mut s = connection(40000);
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
        let mut s = connection(40001);
        let Poll::Ready(Wake::Waited(drained)) = waits.poll(&mut cx, None::<Probe>, None::<Probe>)
        else {
            panic!("the drain began");
        };
        assert!(
            waits.take_effects(&mut s, std::io::stdin()).is_none(),
            "open before the drain"
        );
        waits.deliver(drained, &mut s, start);
        assert_eq!(poll(&mut waits, PENDING, None), "pending");
        // The session heard the drain: its next response closes the connection.
        let req = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
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

    #[test]
    fn a_blocking_wait_ends_when_the_future_is_woken_or_at_its_timeout() {
        use std::time::Duration;
        let mut never = std::future::pending::<()>();
        let start = std::time::Instant::now();
        assert!(block_on_timeout(&mut never, Duration::from_millis(50)).is_none());
        assert!(start.elapsed() >= Duration::from_millis(50));
        // A future completed from another thread wakes the parked one.
        let queue = weir_core::jobs::JobQueue::new(1, 1);
        let wait = queue
            .submit(Instant::ZERO, 3, Instant::from_nanos(u64::MAX))
            .unwrap();
        let mut watch = wait.watcher();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                let job = queue.take().expect("queued");
                job.start(Instant::ZERO);
                job.complete(Instant::ZERO, Some(9));
            });
            let start = std::time::Instant::now();
            assert!(block_on_timeout(&mut watch, Duration::from_secs(30)).is_some());
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "woken, not timed out"
            );
        });
        assert!(wait.try_done().is_some());
    }
}

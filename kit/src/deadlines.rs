//! Connection deadlines on one timerfd per I/O thread, for runtimes whose tasks stay on the
//! thread that made them (weir-smol's and weir-tokio's per-core layouts), in place of the
//! runtime's own timers.
//!
//! async-io keeps its timers in a `BTreeMap` that it splits at every reactor turn, which
//! allocates whenever any timer is set, and tokio's time driver walks its wheel at every park
//! while any timer is registered; a connection always has a deadline (its idle or header
//! timeout), so either cost is paid per batch of requests. Here the connections of an I/O
//! thread keep their deadlines in one binary heap in a thread-local, and one driver task per
//! thread (the runtime's: it waits for [`timer_fd`] to be readable, reads it, then calls
//! [`expire`])
//! sleeps on a timerfd set to the earliest of them. Nothing is allocated per request (the
//! heap and the slots keep their capacity) and a deadline that does not move costs nothing.
//!
//! Invariants:
//! - a [`Deadline`] is only touched on its thread (checked in debug builds);
//! - a heap entry stands for its slot only while the slot's generation is the entry's; a
//!   setting that was replaced, or a deadline that was dropped, leaves an entry that is
//!   skipped when it comes due, so the heap holds at most the settings of the last longest
//!   timeout;
//! - the timerfd is armed for the earliest entry, live or not, or disarmed when there is none,
//!   so every live deadline is met and a stale entry costs at most one early wake-up.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

/// One deadline's state.
#[derive(Default)]
struct Slot {
    /// The deadline, while set and not yet passed.
    at: Option<Instant>,
    /// Bumped by every change, so older heap entries of this slot are known stale.
    generation: u64,
    /// It passed, and the owner has not seen it yet.
    fired: bool,
    waker: Option<Waker>,
}

/// The deadlines of one thread.
struct Deadlines {
    fd: OwnedFd,
    /// (when, slot, generation), earliest first.
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// What the timerfd is armed for.
    armed: Option<Instant>,
}

thread_local! {
    static DEADLINES: RefCell<Option<Deadlines>> = const { RefCell::new(None) };
}

#[inline]
fn with<R>(f: impl FnOnce(&mut Deadlines) -> R) -> R {
    DEADLINES.with(|cell| {
        let mut cell = cell.borrow_mut();
        let d = cell.get_or_insert_with(|| Deadlines {
            fd: timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )
            .expect("invariant: a timerfd can be created (Linux >= 2.6.27)"),
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            armed: None,
        });
        f(d)
    })
}

impl Deadlines {
    /// Arms the timerfd for the earliest entry (or disarms it).
    fn rearm(&mut self, now: Instant) {
        let next = self.heap.peek().map(|Reverse((at, _, _))| *at);
        if next == self.armed {
            return;
        }
        self.armed = next;
        let value = match next {
            // A zero value disarms: a time already come is one nanosecond away.
            Some(at) => at
                .saturating_duration_since(now)
                .max(Duration::from_nanos(1)),
            None => Duration::ZERO,
        };
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: value.as_secs() as i64,
                tv_nsec: i64::from(value.subsec_nanos()),
            },
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec)
            .expect("invariant: a valid timerfd accepts a valid time");
    }
}

/// This thread's timerfd, duplicated for the runtime's driver to register with its reactor
/// and wait on: readable once the earliest deadline has come; reading its eight bytes resets
/// it (a `File`, so any runtime can read it through `std::io::Read`).
pub fn timer_fd() -> std::io::Result<std::fs::File> {
    with(|d| d.fd.try_clone()).map(std::fs::File::from)
}

/// The driver's step once it has read [`timer_fd`]: marks the deadlines that have passed,
/// wakes their owners and arms the timerfd for the next. Safe to call at any time.
pub fn expire() {
    let now = Instant::now();
    with(|d| {
        while let Some(&Reverse((at, slot, generation))) = d.heap.peek() {
            if at > now {
                break;
            }
            d.heap.pop();
            let s = &mut d.slots[slot];
            if s.generation == generation && s.at == Some(at) {
                s.at = None;
                s.fired = true;
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
        d.rearm(now);
    });
}

/// Runs this thread's deadlines for as long as the runtime runs: `readable` waits until the
/// timerfd `fd` (from [`timer_fd`], registered with the runtime's reactor by the caller) may
/// be read; then it is read, which resets it, and what is due expires. A wake with nothing
/// to read waits again. Ends only if the runtime's wait fails.
pub async fn drive<R>(fd: &std::fs::File, mut readable: impl FnMut() -> R)
where
    R: std::future::Future<Output = std::io::Result<()>>,
{
    use std::io::Read;
    while readable().await.is_ok() {
        let mut expirations = [0u8; 8];
        let _ = (&*fd).read(&mut expirations);
        expire();
    }
    tracing::error!("connection deadlines: the runtime cannot wait for the timerfd");
}

/// A connection's deadline, like a runtime timer but on the thread's timerfd.
#[derive(Debug)]
pub struct Deadline {
    slot: usize,
    #[cfg(debug_assertions)]
    thread: std::thread::ThreadId,
}

impl Deadline {
    /// A deadline that is not set (it never fires until [`Deadline::set_at`]).
    pub fn never() -> Deadline {
        let slot = with(|d| {
            d.free.pop().unwrap_or_else(|| {
                d.slots.push(Slot::default());
                d.slots.len() - 1
            })
        });
        Deadline {
            slot,
            #[cfg(debug_assertions)]
            thread: std::thread::current().id(),
        }
    }

    fn on_own_thread(&self) {
        #[cfg(debug_assertions)]
        assert_eq!(
            self.thread,
            std::thread::current().id(),
            "a Deadline is used only on the thread that made it"
        );
    }

    /// Sets the deadline to `at` (replacing any earlier setting).
    #[inline]
    pub fn set_at(&mut self, at: Instant) {
        self.on_own_thread();
        with(|d| {
            let s = &mut d.slots[self.slot];
            s.generation += 1;
            s.at = Some(at);
            s.fired = false;
            d.heap.push(Reverse((at, self.slot, s.generation)));
            if d.armed.is_none_or(|armed| at < armed) {
                d.rearm(Instant::now());
            }
        });
    }

    /// Ready once the deadline set last has passed (then not again until it is set anew).
    #[inline]
    pub fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.on_own_thread();
        with(|d| {
            let s = &mut d.slots[self.slot];
            if s.fired {
                s.fired = false;
                return Poll::Ready(());
            }
            if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                s.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// Completes once the deadline set last has passed.
    #[inline]
    pub async fn wait(&mut self) {
        std::future::poll_fn(|cx| self.poll_fired(cx)).await
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        // During thread teardown the registry may be gone already: nothing to free then.
        let _ = DEADLINES.try_with(|cell| {
            if let Ok(mut cell) = cell.try_borrow_mut() {
                if let Some(d) = cell.as_mut() {
                    let s = &mut d.slots[self.slot];
                    s.generation += 1;
                    s.at = None;
                    s.fired = false;
                    s.waker = None;
                    d.free.push(self.slot);
                }
            }
        });
    }
}

/// A runtime's own timer, for tasks a runtime may move between threads (each runtime wraps
/// its timer type in a newtype implementing this).
pub trait RuntimeTimer {
    /// A timer that is not set.
    fn never() -> Self;
    /// Sets it to `at`.
    fn set_at(&mut self, at: Instant);
    /// Ready once the time set last has come.
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// A connection's timer: on the thread's timerfd ([`Deadline`]) when its task stays on its
/// thread, else the runtime's own.
#[derive(Debug)]
pub enum ConnTimer<T> {
    /// The thread's timerfd.
    Local(Deadline),
    /// The runtime's timer.
    Runtime(T),
}

impl<T: RuntimeTimer> ConnTimer<T> {
    /// An unset timer; `local`: the task never leaves this thread.
    pub fn new(local: bool) -> Self {
        if local {
            ConnTimer::Local(Deadline::never())
        } else {
            ConnTimer::Runtime(T::never())
        }
    }

    /// Sets the timer to `at` (replacing any earlier setting).
    #[inline]
    pub fn set_at(&mut self, at: Instant) {
        match self {
            ConnTimer::Local(d) => d.set_at(at),
            ConnTimer::Runtime(t) => t.set_at(at),
        }
    }

    /// Ready once the time set last has come.
    #[inline]
    pub fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            ConnTimer::Local(d) => d.poll_fired(cx),
            ConnTimer::Runtime(t) => t.poll_fired(cx),
        }
    }

    /// Completes once the time set last has come.
    pub async fn wait(&mut self) {
        std::future::poll_fn(|cx| self.poll_fired(cx)).await
    }

    /// Waits `d` (a one-shot timer of the same kind).
    pub async fn sleep(local: bool, d: Duration) {
        let mut timer = Self::new(local);
        timer.set_at(Instant::now() + d);
        timer.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Flag(std::sync::atomic::AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Drives the thread's deadlines by hand: blocks on the timerfd, reads it, expires.
    fn wait_and_expire(fd: &std::fs::File) {
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        rustix::event::poll(&mut fds, None).expect("poll");
        let _ = std::io::Read::read(&mut &*fd, &mut [0u8; 8]);
        expire();
    }

    #[test]
    fn deadlines_fire_in_order_and_not_before_their_time() {
        let fd = timer_fd().unwrap();
        let flag = Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let start = Instant::now();
        let (mut late, mut early) = (Deadline::never(), Deadline::never());
        late.set_at(start + Duration::from_millis(40));
        early.set_at(start + Duration::from_millis(10));
        assert!(early.poll_fired(&mut cx).is_pending());
        assert!(late.poll_fired(&mut cx).is_pending());
        while early.poll_fired(&mut cx).is_pending() {
            wait_and_expire(&fd);
        }
        assert!(start.elapsed() >= Duration::from_millis(10));
        assert!(
            flag.0.load(std::sync::atomic::Ordering::SeqCst),
            "its owner was woken"
        );
        while late.poll_fired(&mut cx).is_pending() {
            wait_and_expire(&fd);
        }
        assert!(start.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn the_driver_reads_the_timerfd_and_expires_until_the_runtime_cannot_wait() {
        let fd = timer_fd().unwrap();
        let mut due = Deadline::never();
        due.set_at(Instant::now() + Duration::from_millis(5));
        let waits = std::cell::Cell::new(0);
        // The runtime's readiness, played by `poll`: readable once the timer has expired.
        let readable = || {
            waits.set(waits.get() + 1);
            let first = waits.get() == 1;
            if first {
                let mut pfd = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::IN,
                )];
                rustix::event::poll(&mut pfd, None).unwrap();
            }
            std::future::ready(if first {
                Ok(())
            } else {
                Err(std::io::ErrorKind::Other.into())
            })
        };
        let mut driving = std::pin::pin!(drive(&fd, readable));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            driving.as_mut().poll(&mut cx).is_ready(),
            "ends when it cannot wait"
        );
        assert_eq!(waits.get(), 2);
        assert!(due.poll_fired(&mut cx).is_ready(), "the deadline expired");
        let mut buf = [0u8; 8];
        assert!(
            std::io::Read::read(&mut &fd, &mut buf).is_err(),
            "the driver read the timerfd (it is reset)"
        );
    }

    #[test]
    fn a_deadline_set_again_wakes_the_same_waker_again() {
        let fd = timer_fd().unwrap();
        let flag = Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut d = Deadline::never();
        for round in 0..3 {
            flag.0.store(false, std::sync::atomic::Ordering::SeqCst);
            d.set_at(Instant::now() + Duration::from_millis(2));
            assert!(d.poll_fired(&mut cx).is_pending());
            assert!(d.poll_fired(&mut cx).is_pending());
            while !flag.0.load(std::sync::atomic::Ordering::SeqCst) {
                wait_and_expire(&fd);
            }
            assert!(
                d.poll_fired(&mut cx).is_ready(),
                "round {round}: woken, then ready"
            );
        }
        // Moved before a poll saw the firing: the new setting still wakes the task.
        d.set_at(Instant::now());
        wait_and_expire(&fd);
        d.set_at(Instant::now() + Duration::from_millis(2));
        flag.0.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(d.poll_fired(&mut cx).is_pending());
        while !flag.0.load(std::sync::atomic::Ordering::SeqCst) {
            wait_and_expire(&fd);
        }
        assert!(d.poll_fired(&mut cx).is_ready());
    }

    #[test]
    fn a_moved_or_dropped_deadline_fires_at_its_new_time_only() {
        let fd = timer_fd().unwrap();
        let waker = Waker::from(Arc::new(Flag(Default::default())));
        let mut cx = Context::from_waker(&waker);
        let start = Instant::now();
        let mut d = Deadline::never();
        d.set_at(start + Duration::from_millis(5));
        d.set_at(start + Duration::from_millis(30));
        let mut gone = Deadline::never();
        gone.set_at(start + Duration::from_millis(1));
        let slot = gone.slot;
        drop(gone);
        assert_eq!(
            Deadline::never().slot,
            slot,
            "a dropped deadline's slot is reused"
        );
        while d.poll_fired(&mut cx).is_pending() {
            wait_and_expire(&fd);
        }
        // The older settings came due first and were skipped.
        assert!(start.elapsed() >= Duration::from_millis(30));
        // Moved earlier: the timerfd is re-armed for it.
        let again = Instant::now();
        d.set_at(again + Duration::from_secs(3600));
        d.set_at(again + Duration::from_millis(5));
        while d.poll_fired(&mut cx).is_pending() {
            wait_and_expire(&fd);
        }
        assert!(again.elapsed() < Duration::from_secs(3600));
    }
}

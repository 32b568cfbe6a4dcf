//! Connection deadlines on one timerfd per I/O thread, in place of async-io's timers.
//!
//! async-io keeps its timers in a `BTreeMap` that it splits at every reactor turn, which
//! allocates whenever any timer is set; a connection always has one (its idle or header
//! deadline), so weir-smol made a fifth of a heap allocation per request there (measured with
//! `benches/scripts/allocs-per-request.sh`). Here the connections of an I/O thread keep their
//! deadlines in one binary heap in a thread-local, and one [`drive`] task per thread sleeps on
//! a timerfd set to the earliest of them: nothing is allocated per request, since the heap and
//! the slots keep their capacity, and a deadline that does not move costs nothing.
//!
//! Invariants:
//! - for tasks that stay on the thread that made them (the per-core layout's
//!   `LocalExecutor`): a [`Deadline`] is only touched on its thread (checked in debug builds);
//! - a heap entry stands for its slot only while the slot's generation is the entry's; a
//!   setting that was replaced, or a deadline that was dropped, leaves an entry that is
//!   skipped when it comes due, so the heap holds at most the settings of the last longest
//!   timeout;
//! - the timerfd is armed for the earliest entry, live or not, or disarmed when there is none,
//!   so every live deadline is met and a stale entry costs at most one early wake-up.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::poll_fn;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use async_io::Async;
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
    fd: Arc<Async<OwnedFd>>,
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

fn with<R>(f: impl FnOnce(&mut Deadlines) -> R) -> R {
    DEADLINES.with(|cell| {
        let mut cell = cell.borrow_mut();
        let d = cell.get_or_insert_with(|| {
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )
            .expect("invariant: a timerfd can be created (Linux >= 2.6.27)");
            Deadlines {
                fd: Arc::new(Async::new(fd).expect("invariant: a timerfd registers with async-io")),
                heap: BinaryHeap::new(),
                slots: Vec::new(),
                free: Vec::new(),
                armed: None,
            }
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
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)
            .expect("invariant: a valid timerfd accepts a valid time");
    }

    /// Marks the deadlines that have passed and wakes their owners.
    fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot, generation))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let s = &mut self.slots[slot];
            if s.generation == generation && s.at == Some(at) {
                s.at = None;
                s.fired = true;
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
        self.rearm(now);
    }
}

/// Runs the thread's deadlines: spawn once on each per-core executor. Never returns.
pub async fn drive() {
    let fd = with(|d| d.fd.clone());
    loop {
        let mut expirations = [0u8; 8];
        // Readable once the armed time has come; the read resets it.
        let _ = fd
            .read_with(|fd| rustix::io::read(fd, &mut expirations).map_err(Into::into))
            .await;
        with(|d| d.expire(Instant::now()));
    }
}

/// A connection's deadline, like `async_io::Timer` but on the thread's timerfd.
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

    /// Completes once the deadline set last has passed.
    pub async fn wait(&mut self) {
        self.on_own_thread();
        poll_fn(|cx| {
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
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        let ex = async_executor::LocalExecutor::new();
        ex.spawn(drive()).detach();
        async_io::block_on(ex.run(f))
    }

    #[test]
    fn deadlines_fire_in_order_and_not_before_their_time() {
        run(async {
            let start = Instant::now();
            let mut late = Deadline::never();
            let mut early = Deadline::never();
            late.set_at(start + Duration::from_millis(60));
            early.set_at(start + Duration::from_millis(20));
            early.wait().await;
            let first = start.elapsed();
            late.wait().await;
            let second = start.elapsed();
            assert!(first >= Duration::from_millis(20), "{first:?}");
            assert!(second >= Duration::from_millis(60), "{second:?}");
        });
    }

    #[test]
    fn a_moved_deadline_fires_at_its_new_time_only() {
        run(async {
            let start = Instant::now();
            let mut d = Deadline::never();
            d.set_at(start + Duration::from_millis(10));
            d.set_at(start + Duration::from_millis(50));
            d.wait().await;
            assert!(start.elapsed() >= Duration::from_millis(50));
            // Moved earlier: the timerfd is re-armed for it.
            let again = Instant::now();
            d.set_at(again + Duration::from_secs(3600));
            d.set_at(again + Duration::from_millis(10));
            d.wait().await;
            assert!(again.elapsed() < Duration::from_secs(3600));
        });
    }

    #[test]
    fn a_dropped_deadline_frees_its_slot_and_never_fires() {
        run(async {
            let start = Instant::now();
            let mut gone = Deadline::never();
            gone.set_at(start + Duration::from_millis(5));
            let slot = gone.slot;
            drop(gone);
            let mut next = Deadline::never();
            assert_eq!(next.slot, slot, "the slot is reused");
            next.set_at(start + Duration::from_millis(30));
            next.wait().await;
            // The dropped setting came due first and was skipped: `next` fired at its own time.
            assert!(start.elapsed() >= Duration::from_millis(30));
        });
    }
}

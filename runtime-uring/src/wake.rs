//! Wake-ups from other threads into a ring: a worker finishing a job wakes the connection
//! that waits for it. The waker records the connection's key in a shared list and bumps an
//! eventfd that the ring reads (one read completion collects any number of wake-ups).
//!
//! Invariants: one [`ConnWaker`] per connection, made when it is accepted, so a request
//! allocates nothing; a key names a slot *and* its generation, so a wake-up for a connection
//! that has since closed (and whose slot was reused) is recognised and ignored.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

/// The wake-ups of one I/O thread.
#[derive(Debug)]
pub struct Wakeups {
    woken: Mutex<Vec<u64>>,
    eventfd: OwnedFd,
}

impl Wakeups {
    /// A non-blocking eventfd (the ring's read of it is armed, never blocking a thread).
    pub fn new() -> std::io::Result<Arc<Wakeups>> {
        use rustix::event::{EventfdFlags, eventfd};
        let eventfd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Arc::new(Wakeups {
            woken: Mutex::new(Vec::new()),
            eventfd,
        }))
    }

    /// The descriptor the ring reads.
    pub fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Moves the keys woken so far into `out` (which the caller reuses; so does this list).
    pub fn take(&self, out: &mut Vec<u64>) {
        out.clear();
        let mut woken = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *woken, out);
    }

    /// A waker for the connection with `key`.
    pub fn waker(self: &Arc<Self>, key: u64) -> Waker {
        Waker::from(Arc::new(ConnWaker {
            key,
            wakeups: self.clone(),
        }))
    }
}

/// Wakes one connection of one ring.
#[derive(Debug)]
struct ConnWaker {
    key: u64,
    wakeups: Arc<Wakeups>,
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let first = {
            let mut woken = self.wakeups.woken.lock().unwrap_or_else(|e| e.into_inner());
            woken.push(self.key);
            woken.len() == 1
        };
        // The ring's read already pending collects every later wake-up with the first.
        if first {
            let _ = rustix::io::write(&self.wakeups.eventfd, &1u64.to_ne_bytes());
        }
    }
}

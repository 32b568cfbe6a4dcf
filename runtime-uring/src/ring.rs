//! One I/O thread's io_uring, and every `unsafe` block of weir-uring.
//!
//! The ring owns all memory the kernel may touch, so that no caller can free it early:
//! - received bytes land in the **provided-buffer pool** (a buffer ring registered with the
//!   kernel, `URING_BUFFERS` × [`POOL_BUFFER_BYTES`]); the kernel picks a buffer only when
//!   data arrives, so an idle connection holds none;
//! - a send's bytes are **moved into the ring** ([`Ring::send`]) and handed back by
//!   [`Ring::take_sent`] only after its completion was reaped;
//! - the eventfd counter a wake-up read fills is a boxed field of the ring.
//!
//! Invariants (what the `unsafe` blocks rely on):
//! - a buffer is on the kernel's buffer ring (the kernel may write it) only from
//!   [`BufPool::new`] or [`Ring::recycle`] until a receive completion names it; between that
//!   completion and `recycle` only [`Ring::received`] reads it, and `recycle` takes `&mut
//!   self`, so no borrow of its bytes survives;
//! - at most one send per slot is in flight, and its `Vec` is not touched until its
//!   completion (`take_sent` is the only way back);
//! - the pool's memory is never freed once registered (`BufPool` has no `Drop`): an I/O
//!   thread loops until the process exits, and were a ring dropped, the kernel could still
//!   finish cancelled receives into the pool after its descriptor closed.
//!
//! Descriptors are the caller's: one named in an operation must stay open until that
//! operation completes (the event loop closes a connection only with nothing in flight).
#![allow(unsafe_code)]

use std::alloc::Layout;
use std::io;
use std::net::TcpStream;
use std::os::fd::{FromRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

/// Bytes per receive buffer: a typical request fits one; a bigger one takes several reads.
pub const POOL_BUFFER_BYTES: u32 = 4096;

/// Submission queue entries; the completion queue holds four times as many.
const SQ_ENTRIES: u32 = 1024;

/// The buffer group of the pool (one per ring).
const GROUP: u16 = 0;

/// One reaped completion.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub token: u64,
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    /// The provided buffer a receive filled.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }

    /// Whether a multishot operation goes on after this completion.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

/// Why io_uring cannot be used here, or `None` when everything weir-uring needs works:
/// Linux 6.0 (multishot receive), ring setup, the opcodes it submits and a provided-buffer
/// ring.
pub fn unavailable() -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .trim()
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().ok());
    if let (Some(Some(major)), Some(Some(minor))) = (numbers.next(), numbers.next()) {
        if (major, minor) < (6, 0) {
            return Some(format!(
                "Linux {major}.{minor} lacks multishot receive (6.0 or later is needed)"
            ));
        }
    }
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .filter(|v| v.trim() != "0")
        .map(|v| format!(" (kernel.io_uring_disabled = {})", v.trim()))
        .unwrap_or_default();
    let ring = match IoUring::new(8) {
        Ok(ring) => ring,
        Err(e) => return Some(format!("io_uring_setup failed: {e}{disabled}")),
    };
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return Some(format!("the io_uring opcode probe failed: {e}"));
    }
    let needed = [
        ("accept", opcode::AcceptMulti::CODE),
        ("recv", opcode::RecvMulti::CODE),
        ("send", opcode::Send::CODE),
        ("read", opcode::Read::CODE),
        ("poll_add", opcode::PollAdd::CODE),
        ("async_cancel", opcode::AsyncCancel::CODE),
    ];
    if let Some((name, _)) = needed.iter().find(|(_, code)| !probe.is_supported(*code)) {
        return Some(format!("the kernel's io_uring lacks the {name} operation"));
    }
    match BufPool::new(&ring, 8, 64) {
        Ok(pool) => {
            let _ = ring.submitter().unregister_buf_ring(GROUP);
            pool.free();
            None
        }
        Err(e) => Some(format!(
            "provided-buffer rings are not supported (Linux 5.19 or later is needed): {e}"
        )),
    }
}

/// A thread's ring, its receive-buffer pool and the memory of its operations in flight.
pub struct Ring {
    uring: IoUring,
    pool: BufPool,
    /// Per connection slot: the bytes of its send in flight.
    sends: Vec<Option<Vec<u8>>>,
    /// Filled by the wake-up eventfd read.
    counter: Box<u64>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("buffers", &self.pool.count)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// A ring for one I/O thread with `buffers` receive buffers (a power of two): a single
    /// submitter whose completions run when it waits (`DEFER_TASKRUN`, Linux 6.1), or a plain
    /// ring where that is refused.
    pub fn new(buffers: u16) -> io::Result<Ring> {
        let uring = IoUring::builder()
            .setup_cqsize(SQ_ENTRIES * 4)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(SQ_ENTRIES * 4)
                    .build(SQ_ENTRIES)
            })?;
        let pool = BufPool::new(&uring, buffers, POOL_BUFFER_BYTES)?;
        Ok(Ring {
            uring,
            pool,
            sends: Vec::new(),
            counter: Box::new(0),
        })
    }

    /// Accepts on `listener` until cancelled or failed (one completion per connection).
    pub fn accept_multi(&mut self, listener: RawFd, token: u64) {
        let e = opcode::AcceptMulti::new(Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build();
        self.push(e.user_data(token));
    }

    /// Receives from `fd` until cancelled, the peer closes, an error, or the pool is empty
    /// (the last completion lacks the "more" flag); each completion names the pool buffer the
    /// kernel chose when the bytes arrived.
    pub fn recv_multi(&mut self, fd: RawFd, token: u64) {
        let e = opcode::RecvMulti::new(Fd(fd), GROUP).build();
        self.push(e.user_data(token));
    }

    /// One receive on `fd` into one pool buffer: at most [`POOL_BUFFER_BYTES`] arrive per
    /// arming (a connection whose output is backed up takes no more than that at a time).
    pub fn recv_once(&mut self, fd: RawFd, token: u64) {
        let e = opcode::Recv::new(Fd(fd), std::ptr::null_mut(), POOL_BUFFER_BYTES)
            .buf_group(GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT);
        self.push(e.user_data(token));
    }

    /// Submits what is queued now, without waiting (a cancel that must take effect before
    /// more completions arrive).
    pub fn submit_now(&mut self) {
        let _ = self.uring.submit();
    }

    /// Sends `bytes` on `fd`; the ring keeps them until [`Ring::take_sent`] after the
    /// completion. One send per `slot` at a time.
    pub fn send(&mut self, fd: RawFd, slot: usize, bytes: Vec<u8>, token: u64) {
        if self.sends.len() <= slot {
            self.sends.resize_with(slot + 1, || None);
        }
        assert!(
            self.sends[slot].is_none(),
            "one send per connection at a time"
        );
        let (ptr, len) = (bytes.as_ptr(), bytes.len() as u32);
        // The heap block of `bytes` does not move when the `Vec` value moves into `sends`.
        self.sends[slot] = Some(bytes);
        let e = opcode::Send::new(Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        self.push(e.user_data(token));
    }

    /// The bytes of `slot`'s completed send, for reuse.
    pub fn take_sent(&mut self, slot: usize) -> Option<Vec<u8>> {
        self.sends.get_mut(slot).and_then(Option::take)
    }

    /// Reads the eventfd's counter (a wake-up from another thread).
    pub fn read_counter(&mut self, eventfd: RawFd, token: u64) {
        let ptr: *mut u64 = &mut *self.counter;
        let e = opcode::Read::new(Fd(eventfd), ptr.cast(), 8).build();
        self.push(e.user_data(token));
    }

    /// Completes once `fd` is readable (or hung up).
    pub fn poll_readable(&mut self, fd: RawFd, token: u64) {
        let e = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32).build();
        self.push(e.user_data(token));
    }

    /// Cancels the operation submitted with `target`; its own completion carries `token`.
    pub fn cancel(&mut self, target: u64, token: u64) {
        self.push(opcode::AsyncCancel::new(target).build().user_data(token));
    }

    /// The bytes a receive completion put in buffer `bid`.
    pub fn received(&self, bid: u16, range: std::ops::Range<usize>) -> &[u8] {
        assert!(
            bid < self.pool.count && range.end <= self.pool.size as usize,
            "a buffer of the pool"
        );
        // SAFETY: `bid` names a buffer the kernel filled and gave back in a completion and
        // that is not yet recycled (module invariant), so the kernel does not write it; the
        // range lies inside it (asserted); the borrow of `self` ends before `recycle`.
        unsafe {
            let start = self
                .pool
                .mem
                .as_ptr()
                .add(bid as usize * self.pool.size as usize);
            std::slice::from_raw_parts(start.add(range.start), range.len())
        }
    }

    /// Gives buffer `bid` back to the kernel once its bytes were consumed.
    pub fn recycle(&mut self, bid: u16) {
        self.pool.give(bid);
    }

    /// Submits what is queued and waits for at least one completion, or for `timeout`.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let submitter = self.uring.submitter();
        let result = match timeout {
            None => submitter.submit_and_wait(1),
            Some(d) => {
                let ts = Timespec::from(d);
                submitter.submit_with_args(1, &SubmitArgs::new().timespec(&ts))
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves the completions reaped so far into `out` (cleared first).
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        out.extend(self.uring.completion().map(|c| Completion {
            token: c.user_data(),
            result: c.result(),
            flags: c.flags(),
        }));
    }

    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry built above names memory the ring owns until the
            // operation's completion (module invariant): no buffer (the pool is chosen by
            // the kernel), `sends[slot]`, or `counter`.
            if unsafe { self.uring.submission().push(&entry) }.is_ok() {
                return;
            }
            // The submission queue is full: hand it to the kernel and retry.
            if let Err(e) = self.uring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) {
                    tracing::error!(error = %e, "io_uring submit failed");
                }
            }
        }
    }
}

/// Takes ownership of a descriptor an accept completion returned.
pub fn adopt(fd: RawFd) -> TcpStream {
    assert!(fd >= 0, "a descriptor from a successful accept");
    // SAFETY: the kernel just created this descriptor for us in an accept completion;
    // nothing else owns or will close it.
    unsafe { TcpStream::from_raw_fd(fd) }
}

/// The provided-buffer ring: `count` entries naming `count` buffers of `size` bytes.
struct BufPool {
    entries: NonNull<BufRingEntry>,
    mem: NonNull<u8>,
    count: u16,
    size: u32,
    tail: u16,
}

impl BufPool {
    fn layouts(count: u16, size: u32) -> (Layout, Layout) {
        let entries = Layout::from_size_align(
            (count as usize * std::mem::size_of::<BufRingEntry>()).max(4096),
            4096,
        );
        let mem = Layout::from_size_align(count as usize * size as usize, 64);
        (
            entries.expect("invariant: a valid layout"),
            mem.expect("invariant: a valid layout"),
        )
    }

    /// Allocates the pool, registers it with `uring` and gives every buffer to the kernel.
    fn new(uring: &IoUring, count: u16, size: u32) -> io::Result<BufPool> {
        assert!(count.is_power_of_two() && size > 0);
        let (entries_layout, mem_layout) = Self::layouts(count, size);
        // SAFETY: both layouts have a non-zero size; null results are handled.
        let (entries, mem) = unsafe {
            (
                std::alloc::alloc_zeroed(entries_layout),
                std::alloc::alloc(mem_layout),
            )
        };
        let (Some(entries), Some(mem)) = (NonNull::new(entries.cast()), NonNull::new(mem)) else {
            std::alloc::handle_alloc_error(entries_layout)
        };
        let mut pool = BufPool {
            entries,
            mem,
            count,
            size,
            tail: 0,
        };
        // SAFETY: `entries` is page-aligned, zeroed, `count` entries long and lives until
        // `free` (which the caller runs only after unregistering) or forever (module
        // invariant: a ring in use is never dropped).
        let registered = unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(entries.as_ptr() as u64, count, GROUP, 0)
        };
        if let Err(e) = registered {
            pool.free();
            return Err(e);
        }
        for bid in 0..count {
            pool.give(bid);
        }
        Ok(pool)
    }

    /// Puts buffer `bid` at the tail of the ring and publishes the new tail.
    fn give(&mut self, bid: u16) {
        assert!(bid < self.count, "a buffer of the pool");
        let index = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `index < count`, inside the entries allocation; the kernel reads only
        // entries between its head and the published tail, and this one is past the tail
        // until the store below.
        unsafe {
            let entry = &mut *self.entries.as_ptr().add(index);
            entry.set_addr(self.mem.as_ptr() as u64 + bid as u64 * self.size as u64);
            entry.set_len(self.size);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays the first entry's reserved bytes (the kernel's
        // `io_uring_buf_ring` layout), aligned for u16; the kernel reads it concurrently,
        // hence the atomic store with release ordering (the entry is written before).
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// Frees the memory of a pool the kernel no longer knows (unregistered, or never
    /// registered).
    fn free(self) {
        let (entries_layout, mem_layout) = Self::layouts(self.count, self.size);
        // SAFETY: allocated in `new` with these very layouts; the caller guarantees the
        // kernel no longer uses them.
        unsafe {
            std::alloc::dealloc(self.entries.as_ptr().cast(), entries_layout);
            std::alloc::dealloc(self.mem.as_ptr(), mem_layout);
        }
    }
}

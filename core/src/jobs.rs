//! The bounded job queue behind `/api/v1/compute/intensive`.
//!
//! Invariants:
//! - at most `capacity` jobs are queued; a full queue refuses at once (never waits);
//! - every submitted job ends exactly once, as completed, rejected, cancelled or timed out,
//!   and is counted once in [`JobStats`] (proptest below);
//! - a job whose waiter was dropped (its client left) or whose deadline passed before a worker
//!   took it is never run;
//! - the core never spawns: worker threads (the runtime kit's) call [`JobQueue::take`] and
//!   [`Job::start`]/[`Job::complete`], and nothing here blocks: the queue is a data
//!   structure, waiting for it ([`JobQueue::incoming`]) or for a job's end (a [`JobWatch`] is a
//!   `Future`) is the runtime kit's.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::metrics::Histogram;
use crate::time::Instant;

/// The CPU work of one intensive job: `cost` rounds of splitmix64 seeded by `number`, so the
/// work cannot be optimised away; the answer is `number²` (the caller checked it fits).
pub fn intensive_work(number: i64, cost: u64) -> i64 {
    let mut x = number as u64;
    for _ in 0..cost {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= z ^ (z >> 31);
    }
    std::hint::black_box(x);
    number.wrapping_mul(number)
}

/// How a job ended, as its waiter sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobDone {
    /// The job ran; `result` is its answer.
    Completed {
        /// The job's id.
        id: u64,
        /// The computed value.
        result: i64,
        /// Time spent queued.
        queue_wait: Duration,
        /// Time spent running.
        run_time: Duration,
    },
    /// The deadline passed before the job finished (504).
    TimedOut,
    /// The job failed while running (500 `PROCESSING_ERROR`).
    Failed,
}

/// Counters of job outcomes (each job lands in exactly one of the last four).
#[derive(Debug, Default)]
pub struct JobStats {
    /// Jobs accepted into the queue.
    pub submitted: AtomicU64,
    /// Jobs that ran to completion.
    pub completed: AtomicU64,
    /// Jobs refused because the queue was full.
    pub rejected: AtomicU64,
    /// Jobs dropped before they ran because their client left.
    pub cancelled: AtomicU64,
    /// Jobs whose deadline passed first.
    pub timed_out: AtomicU64,
    /// Jobs that failed (a panic in the work).
    pub failed: AtomicU64,
}

#[derive(Debug)]
enum State {
    Queued,
    Running {
        started: Instant,
    },
    /// Terminal: the outcome is ready for the waiter.
    Done(JobDone),
    /// Terminal: the waiter left before the job started.
    Cancelled,
}

#[derive(Debug)]
struct Inner {
    state: State,
    waker: Option<Waker>,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    number: i64,
    enqueued: Instant,
    deadline: Instant,
    inner: Mutex<Inner>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves to a terminal outcome and wakes the waiter.
    fn finish(&self, mut inner: MutexGuard<'_, Inner>, done: JobDone) {
        inner.state = State::Done(done);
        let waker = inner.waker.take();
        drop(inner);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A job in the queue, as a worker receives it from [`JobQueue::incoming`].
#[derive(Debug)]
pub struct Queued(Arc<Slot>);

/// The bounded FIFO of jobs, shared by all connections and workers.
#[derive(Debug)]
pub struct JobQueue {
    tx: Sender<Queued>,
    rx: Receiver<Queued>,
    capacity: usize,
    next_id: AtomicU64,
    closed: AtomicBool,
    cost: u64,
    stats: Arc<JobStats>,
    /// Time from submit to start, microseconds.
    pub queue_wait: Histogram,
    /// Time from start to completion, microseconds.
    pub run_time: Histogram,
}

/// Returned by [`JobQueue::submit`] when the queue is full or closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull;

impl JobQueue {
    /// A queue of `capacity` places for jobs of `cost` rounds.
    pub fn new(capacity: usize, cost: u64) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        JobQueue {
            tx,
            rx,
            capacity,
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            cost,
            stats: Arc::new(JobStats::default()),
            queue_wait: Histogram::new(),
            run_time: Histogram::new(),
        }
    }

    /// Enqueues a job for `number` that must finish by `deadline`. Never blocks.
    pub fn submit(
        &self,
        now: Instant,
        number: i64,
        deadline: Instant,
    ) -> Result<JobWait, QueueFull> {
        if self.closed.load(Ordering::Acquire) {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(QueueFull);
        }
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            number,
            enqueued: now,
            deadline,
            inner: Mutex::new(Inner {
                state: State::Queued,
                waker: None,
            }),
        });
        match self.tx.try_send(Queued(slot.clone())) {
            Ok(()) => {
                self.stats.submitted.fetch_add(1, Ordering::Relaxed);
                Ok(JobWait {
                    slot,
                    stats: self.stats.clone(),
                })
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                Err(QueueFull)
            }
        }
    }

    /// Takes the oldest queued job, if any. Never blocks.
    pub fn take(&self) -> Option<Job<'_>> {
        self.rx.try_recv().ok().map(|queued| self.job(queued))
    }

    /// Where queued jobs arrive, for a worker to wait on (the kit's workers block on it
    /// beside their stop signal); hand what it yields to [`JobQueue::job`].
    pub fn incoming(&self) -> &Receiver<Queued> {
        &self.rx
    }

    /// The job a worker received from [`JobQueue::incoming`].
    pub fn job(&self, queued: Queued) -> Job<'_> {
        Job {
            slot: queued.0,
            queue: self,
        }
    }

    /// Refuses new jobs from now on (queued ones still run).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Whether [`JobQueue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Jobs queued now (including cancelled ones not yet skipped by a worker).
    pub fn depth(&self) -> usize {
        self.rx.len()
    }

    /// Places in the queue.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Outcome counters.
    pub fn stats(&self) -> &JobStats {
        &self.stats
    }
}

/// A job a worker took from the queue.
#[derive(Debug)]
pub struct Job<'q> {
    slot: Arc<Slot>,
    queue: &'q JobQueue,
}

impl Job<'_> {
    /// The job's id.
    pub fn id(&self) -> u64 {
        self.slot.id
    }

    /// Claims the job for running at `now`: `Some((number, cost))` to run it, or `None` when
    /// it was cancelled or its deadline passed (it is then never run).
    pub fn start(&self, now: Instant) -> Option<(i64, u64)> {
        let mut inner = self.slot.lock();
        match inner.state {
            State::Queued if now >= self.slot.deadline => {
                self.queue.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                self.slot.finish(inner, JobDone::TimedOut);
                None
            }
            State::Queued => {
                inner.state = State::Running { started: now };
                drop(inner);
                self.queue
                    .queue_wait
                    .record_us(now.since(self.slot.enqueued));
                Some((self.slot.number, self.queue.cost))
            }
            _ => None,
        }
    }

    /// Delivers the result of a started job at `now` (`None`: the work failed).
    pub fn complete(&self, now: Instant, result: Option<i64>) {
        let inner = self.slot.lock();
        let State::Running { started } = inner.state else {
            // Timed out while running: already counted and answered.
            return;
        };
        let run_time = now.since(started);
        self.queue.run_time.record_us(run_time);
        let done = match result {
            Some(result) => {
                self.queue.stats.completed.fetch_add(1, Ordering::Relaxed);
                JobDone::Completed {
                    id: self.slot.id,
                    result,
                    queue_wait: started.since(self.slot.enqueued),
                    run_time,
                }
            }
            None => {
                self.queue.stats.failed.fetch_add(1, Ordering::Relaxed);
                JobDone::Failed
            }
        };
        self.slot.finish(inner, done);
    }
}

/// A connection's claim on its job: a `Future` of the outcome, and a blocking
/// wait. Dropping it before the job starts cancels the job.
#[derive(Debug)]
pub struct JobWait {
    slot: Arc<Slot>,
    stats: Arc<JobStats>,
}

impl JobWait {
    /// The job's id.
    pub fn id(&self) -> u64 {
        self.slot.id
    }

    /// The outcome if the job has ended.
    pub fn try_done(&self) -> Option<JobDone> {
        match self.slot.lock().state {
            State::Done(d) => Some(d),
            _ => None,
        }
    }

    /// Gives up on the job because its deadline passed: a queued job is never run, a running
    /// one's result is discarded. Returns the outcome to answer with (a completion that won
    /// the race is kept).
    pub fn time_out(&self) -> JobDone {
        let inner = self.slot.lock();
        match inner.state {
            State::Done(d) => d,
            State::Queued | State::Running { .. } => {
                self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                self.slot.finish(inner, JobDone::TimedOut);
                JobDone::TimedOut
            }
            State::Cancelled => JobDone::TimedOut,
        }
    }

    /// A cheap clone of the claim for a runtime that waits on it while the session keeps its
    /// own; dropping a clone does not cancel.
    pub fn watcher(&self) -> JobWatch {
        JobWatch {
            slot: self.slot.clone(),
        }
    }
}

impl Drop for JobWait {
    fn drop(&mut self) {
        let mut inner = self.slot.lock();
        // A running job finishes and is counted as completed; nobody reads the result.
        if let State::Queued = inner.state {
            inner.state = State::Cancelled;
            self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        inner.waker = None;
    }
}

/// What a runtime waits on: resolves when the job reaches an outcome. Cancels nothing.
#[derive(Debug, Clone)]
pub struct JobWatch {
    slot: Arc<Slot>,
}

impl JobWatch {
    /// Whether the job has ended (completed, failed, timed out or cancelled).
    pub fn is_done(&self) -> bool {
        !matches!(
            self.slot.lock().state,
            State::Queued | State::Running { .. }
        )
    }
}

impl Future for JobWatch {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.slot.lock();
        match inner.state {
            State::Queued | State::Running { .. } => {
                match &inner.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => inner.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn work_returns_the_square() {
        assert_eq!(intensive_work(12, 1000), 144);
        assert_eq!(intensive_work(-3037000499, 10), 3037000499i64 * 3037000499);
    }

    #[test]
    fn full_queue_refuses_at_once() {
        let q = JobQueue::new(2, 1);
        let a = q.submit(t(0), 1, t(100)).unwrap();
        let _b = q.submit(t(0), 2, t(100)).unwrap();
        assert_eq!(q.submit(t(0), 3, t(100)).unwrap_err(), QueueFull);
        assert_eq!(q.stats().rejected.load(Ordering::Relaxed), 1);
        assert!(a.id() >= 1);
    }

    #[test]
    fn ids_are_unique_and_increasing() {
        let q = JobQueue::new(10, 1);
        let ids: Vec<u64> = (0..5)
            .map(|i| q.submit(t(0), i, t(10)).unwrap().id())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_cancelled_job_is_never_run() {
        let q = JobQueue::new(4, 1);
        drop(q.submit(t(0), 5, t(100)).unwrap());
        let job = q.take().unwrap();
        assert_eq!(job.start(t(1)), None);
        assert_eq!(q.stats().cancelled.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_expired_job_is_not_run_and_times_out() {
        let q = JobQueue::new(4, 1);
        let w = q.submit(t(0), 5, t(100)).unwrap();
        let job = q.take().unwrap();
        assert_eq!(job.start(t(100)), None);
        assert_eq!(w.try_done(), Some(JobDone::TimedOut));
        assert_eq!(q.stats().timed_out.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn completion_reaches_the_waiter_with_timings() {
        let q = JobQueue::new(4, 7);
        let w = q.submit(t(0), 6, t(100)).unwrap();
        let job = q.take().unwrap();
        let (n, cost) = job.start(t(3)).unwrap();
        assert_eq!((n, cost), (6, 7));
        job.complete(t(5), Some(intensive_work(n, cost)));
        let Some(JobDone::Completed {
            id,
            result,
            queue_wait,
            run_time,
        }) = w.try_done()
        else {
            panic!()
        };
        assert_eq!((id, result), (w.id(), 36));
        assert_eq!(
            (queue_wait, run_time),
            (Duration::from_millis(3), Duration::from_millis(2))
        );
        assert_eq!(q.queue_wait.count(), 1);
    }

    #[test]
    fn timing_out_a_running_job_discards_its_result() {
        let q = JobQueue::new(4, 1);
        let w = q.submit(t(0), 6, t(100)).unwrap();
        let job = q.take().unwrap();
        job.start(t(1)).unwrap();
        assert_eq!(w.time_out(), JobDone::TimedOut);
        job.complete(t(200), Some(36));
        assert_eq!(w.try_done(), Some(JobDone::TimedOut));
        assert_eq!(q.stats().completed.load(Ordering::Relaxed), 0);
        assert_eq!(q.stats().timed_out.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn watcher_future_wakes_on_completion() {
        use std::task::Wake;
        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let q = JobQueue::new(4, 1);
        let w = q.submit(t(0), 2, t(100)).unwrap();
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut watch = w.watcher();
        assert!(Pin::new(&mut watch).poll(&mut cx).is_pending());
        let job = q.take().unwrap();
        job.start(t(1));
        job.complete(t(2), Some(4));
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(Pin::new(&mut watch).poll(&mut cx).is_ready());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Submit,
        Take { run: bool },
        DropWaiter(usize),
        TimeOut(usize),
        Tick,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Submit),
            3 => any::<bool>().prop_map(|run| Op::Take { run }),
            1 => (0usize..64).prop_map(Op::DropWaiter),
            1 => (0usize..64).prop_map(Op::TimeOut),
            1 => Just(Op::Tick),
        ]
    }

    proptest! {
        #[test]
        fn never_over_capacity_and_every_job_ends_once(cap in 1usize..8, ops in proptest::collection::vec(op(), 1..200)) {
            let q = JobQueue::new(cap, 1);
            let mut now = 0u64;
            let mut waiters: Vec<JobWait> = Vec::new();
            let mut attempts = 0u64;
            for op in ops {
                match op {
                    Op::Submit => {
                        attempts += 1;
                        if let Ok(w) = q.submit(t(now), 1, t(now + 50)) { waiters.push(w); }
                    }
                    Op::Take { run } => {
                        if let Some(job) = q.take() {
                            if job.start(t(now)).is_some() {
                                if run { job.complete(t(now), Some(1)); } else { job.complete(t(now), None); }
                            }
                        }
                    }
                    Op::DropWaiter(i) => { if !waiters.is_empty() { let i = i % waiters.len(); waiters.remove(i); } }
                    Op::TimeOut(i) => { if !waiters.is_empty() { let i = i % waiters.len(); waiters[i].time_out(); } }
                    Op::Tick => now += 20,
                }
                prop_assert!(q.depth() <= cap);
            }
            // Drain: every queued job reaches a worker.
            while let Some(job) = q.take() { if job.start(t(now)).is_some() { job.complete(t(now), Some(1)); } }
            drop(waiters);
            let s = q.stats();
            let ended = s.completed.load(Ordering::Relaxed) + s.cancelled.load(Ordering::Relaxed)
                + s.timed_out.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed);
            prop_assert_eq!(s.submitted.load(Ordering::Relaxed), ended);
            prop_assert_eq!(s.submitted.load(Ordering::Relaxed) + s.rejected.load(Ordering::Relaxed), attempts);
        }
    }
}

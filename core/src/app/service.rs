//! weir's application as an HTTP [`Service`]: the session calls these, and they call the
//! app's admission, handlers and bookkeeping. Deferred replies (a queued job, a sleep, a
//! stream) keep their state in the request's [`Exchange`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::profile::PROFILE_POLL;
use super::{App, Deferred, ErrorCode, Exchange};
use crate::fleet::FleetShare;
use crate::http::{Chunk, Head, HttpConfig, Reply, ReplyPoll, Response, Service, Status};
use crate::jobs::{JobQueue, JobWatch};
use crate::server::Hosted;
use crate::time::Now;

impl Service for App {
    type Exchange = Exchange;
    type Wait = JobWatch;

    fn http_config(&self) -> &HttpConfig {
        &self.http
    }

    fn admit_handshake(&self, now: Now, peer: SocketAddr) -> bool {
        App::admit_handshake(self, now, peer)
    }

    fn admit(
        &self,
        now: Now,
        head: &Head<'_>,
        peer: SocketAddr,
        ex: &mut Exchange,
        res: &mut Response,
    ) -> bool {
        App::admit(self, now, head, peer, ex, res)
    }

    fn write_common_lines(&self, ex: &Exchange, out: &mut Vec<u8>) {
        App::write_common_lines(self, ex, out)
    }

    fn call(
        &self,
        now: Now,
        head: &Head<'_>,
        body: &[u8],
        ex: &mut Exchange,
        res: &mut Response,
    ) -> Reply<JobWatch> {
        self.answer(now, head, body, ex, res)
    }

    fn poll_reply(
        &self,
        now: Now,
        ex: &mut Exchange,
        res: &mut Response,
        draining: bool,
    ) -> ReplyPoll {
        match &ex.deferred {
            Deferred::Job { wait, deadline } => {
                let done = match wait.try_done() {
                    Some(done) => done,
                    None if now.mono >= *deadline => wait.time_out(),
                    // A drain lets a queued job finish (within SHUTDOWN_TIMEOUT).
                    None => {
                        return ReplyPoll::Pending {
                            deadline: Some(*deadline),
                        };
                    }
                };
                // The job has ended, so dropping the wait cancels nothing.
                ex.deferred = Deferred::None;
                self.job_response(now, ex, done, res);
            }
            &Deferred::Sleep { until, ms } => {
                if now.mono < until && !draining {
                    return ReplyPoll::Pending {
                        deadline: Some(until),
                    };
                }
                // At a drain, answer at once with the time actually slept.
                let slept = (now.mono.since(ex.started).as_millis() as u64).min(ms);
                ex.deferred = Deferred::None;
                self.sleep_response(slept, res);
            }
            Deferred::Profile { .. } => {
                if self.profile_response(now, ex, res).is_none() {
                    // Its time is up and the profiler is still rendering: look again soon.
                    return ReplyPoll::Pending {
                        deadline: Some(now.mono.saturating_add(PROFILE_POLL)),
                    };
                }
            }
            Deferred::None | Deferred::Stream { .. } => {
                res.clear();
                self.error(
                    now,
                    ex,
                    res,
                    ErrorCode::InternalError,
                    "no reply was pending",
                );
            }
        }
        ReplyPoll::Ready
    }

    fn poll_chunk(&self, now: Now, ex: &mut Exchange, out: &mut Vec<u8>, draining: bool) -> Chunk {
        let Deferred::Stream {
            left,
            seq,
            interval,
        } = &mut ex.deferred
        else {
            return Chunk::Last;
        };
        if draining || *left == 0 {
            return Chunk::Last;
        }
        *left -= 1;
        *seq += 1;
        let (left, seq, interval) = (*left, *seq, *interval);
        self.stream_event(now, ex, seq, out);
        if left == 0 {
            Chunk::Last
        } else {
            Chunk::More {
                next: now.mono.saturating_add(interval),
            }
        }
    }

    fn error(
        &self,
        now: Now,
        peer: SocketAddr,
        ex: &mut Exchange,
        res: &mut Response,
        status: Status,
        message: &str,
    ) {
        if !ex.open {
            self.begin_unparsed(now, ex, peer);
        }
        App::error(self, now, ex, res, ErrorCode::for_status(status), message);
    }

    #[inline(always)]
    fn finish(
        &self,
        now: Now,
        ex: &mut Exchange,
        head: Option<&Head<'_>>,
        status: Status,
        bytes_sent: u64,
    ) {
        App::finish(self, now, ex, head, status, bytes_sent)
    }

    fn abandon(&self, ex: &mut Exchange) {
        // Dropping a job's wait cancels it if it has not started.
        ex.deferred = Deferred::None;
        if ex.open {
            ex.open = false;
            self.metrics().request_abandoned();
        }
    }
}

impl Hosted for App {
    fn jobs(&self) -> Option<&JobQueue> {
        Some(self.queue())
    }

    fn fleet(&self) -> Option<&FleetShare> {
        App::fleet(self)
    }

    fn final_statistics(&self) {
        let t = self.totals();
        let q = self.queue().stats();
        let lat = self.metrics().latency().snapshot();
        tracing::info!(
            total_requests = t.total,
            success_count = t.success,
            error_count = t.errors,
            rejected_count = t.rejected,
            connections_total = t.connections_total,
            open_connections = t.active_connections,
            jobs_completed = q.completed.load(Ordering::Relaxed),
            jobs_rejected = q.rejected.load(Ordering::Relaxed),
            jobs_cancelled = q.cancelled.load(Ordering::Relaxed),
            jobs_timed_out = q.timed_out.load(Ordering::Relaxed),
            p50_latency_us = lat.quantile(0.5),
            p99_latency_us = lat.quantile(0.99),
            "final statistics"
        );
    }
}

//! The fleet's global limit: one `RATE_LIMIT` shared by every instance of a `CLUSTER_NAME`,
//! kept in Redis, spent locally from leases.
//!
//! The hot path never touches the network: an instance spends tokens of its current lease
//! (one atomic subtraction per request) until the lease expires. The runtime kit renews the
//! lease ahead of need — it asks [`FleetShare::want`] how many tokens to request, takes them
//! from the fleet's bucket in Redis with one atomic script, and reports the answer with
//! [`FleetShare::granted`] or a failure with [`FleetShare::failed`]. This module sees those
//! answers as inputs and never a socket.
//!
//! Invariants:
//! - while a lease is valid, admitted requests ≤ tokens granted (plus what was left of
//!   earlier leases); the fleet's bucket hands out at most `rate × t + burst` tokens over any
//!   `t`, so the fleet admits at most that, plus at most one unspent lease per instance that
//!   died holding it;
//! - no lease (Redis never answered) or an expired one (Redis stopped answering): the local
//!   fallback share, `RATE_LIMIT / instances` with `instances` the fleet size last seen in
//!   Redis (`CLUSTER_SIZE` before that), admitted by a local GCRA; so losing Redis changes the
//!   limit's accuracy, never its availability;
//! - the per-IP limit is divided the same way: `RATE_LIMIT_PER_IP / instances` each, never
//!   looser than the whole ([`Quota::shared`]: the rate divided exactly, the burst rounded
//!   down; a client pinned to one instance gets only its share). When the limit is below the
//!   fleet size each instance still admits one request at a time, so the sustained rate is
//!   exact and only an instant may see up to one request per instance;
//! - a request refused by the per-IP limit never reaches this share (the application checks
//!   per-IP first), so it is neither spent nor counted as demand; a request this share
//!   refuses counts as demand (that is how the lease learns what to ask for) and gives its
//!   per-IP token back.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::limit::{Gcra, Quota, Verdict};
use crate::time::Instant;

/// The fleet's limit as this instance sees it: its lease, its fallback, its figures.
#[derive(Debug)]
pub struct FleetShare {
    rate: u64,
    burst: u64,
    per_ip: u64,
    period: Duration,
    /// Tokens of the current lease left to spend; negative after refusals (each refused
    /// request still counts as demand).
    tokens: AtomicI64,
    /// The lease is valid before this monotonic time (ns); 0: no lease.
    lease_until: AtomicU64,
    /// `tokens` right after the last grant, to measure the demand since.
    level_at_grant: AtomicI64,
    /// When the last grant arrived (monotonic ns).
    granted_at: AtomicU64,
    /// Live instances last seen in Redis (at least 1).
    instances: AtomicU64,
    /// The local fallback's GCRA state (its quota follows `instances`).
    fallback: Gcra,
    /// Figures for `/metrics`.
    leases: AtomicU64,
    tokens_granted: AtomicU64,
    redis_errors: AtomicU64,
    rtt_us: AtomicU64,
    /// Monotonic ns when the fallback began, 0 while shared.
    fallback_since: AtomicU64,
    fallback_ns: AtomicU64,
}

/// What `/metrics` and `/readyz` show of the fleet limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetFigures {
    /// Shared through Redis now (false: the local fallback share).
    pub shared: bool,
    /// Live instances last seen.
    pub instances: u64,
    /// Leases granted.
    pub leases: u64,
    /// Tokens received in leases.
    pub tokens_granted: u64,
    /// Failed Redis round trips.
    pub redis_errors: u64,
    /// The last Redis round trip, µs.
    pub rtt_us: u64,
    /// Time spent on the fallback, ns (including the current stretch).
    pub fallback_ns: u64,
}

impl FleetShare {
    /// The share of a fleet limit of `rate`/s with `burst`, a per-IP limit of `per_ip`/s (0:
    /// off), renewed every `period`; `expected` instances until Redis tells. On the fallback
    /// from `now` until the first grant.
    pub fn new(
        now: Instant,
        rate: u64,
        burst: u64,
        per_ip: u64,
        period: Duration,
        expected: u64,
    ) -> Self {
        let expected = expected.max(1);
        FleetShare {
            rate,
            burst,
            per_ip,
            period,
            tokens: AtomicI64::new(0),
            lease_until: AtomicU64::new(0),
            level_at_grant: AtomicI64::new(0),
            granted_at: AtomicU64::new(0),
            instances: AtomicU64::new(expected),
            fallback: Gcra::new(Quota::shared(rate, burst, expected).expect("rate is positive")),
            leases: AtomicU64::new(0),
            tokens_granted: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
            fallback_since: AtomicU64::new(now.as_nanos().max(1)),
            fallback_ns: AtomicU64::new(0),
        }
    }

    /// How often the kit renews the lease.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The fleet-wide rate and burst (for the Redis script).
    pub fn rate_and_burst(&self) -> (u64, u64) {
        (self.rate, self.burst)
    }

    /// Admits or refuses one request at `now` against the fleet limit: the lease while it is
    /// valid, else the local fallback share.
    pub fn check(&self, now: Instant) -> Verdict {
        let ns = now.as_nanos();
        if ns < self.lease_until.load(Ordering::Acquire) {
            let left = self.tokens.fetch_sub(1, Ordering::Relaxed);
            return if left > 0 {
                Verdict {
                    allowed: true,
                    remaining: (left - 1) as u64,
                    reset_secs: 1,
                    retry_after_secs: 0,
                }
            } else {
                Verdict {
                    allowed: false,
                    remaining: 0,
                    reset_secs: 1,
                    retry_after_secs: 1,
                }
            };
        }
        let n = self.instances.load(Ordering::Relaxed);
        let quota = Quota::shared(self.rate, self.burst, n).expect("rate is positive");
        self.fallback.check_with(quota, now)
    }

    /// The per-IP quota of this instance: `RATE_LIMIT_PER_IP / instances`, `None` when off.
    pub fn per_ip_quota(&self) -> Option<Quota> {
        let n = self.instances.load(Ordering::Relaxed);
        Quota::shared(self.per_ip, self.per_ip, n)
    }

    /// How many tokens to ask Redis for at `now`: enough for twice the demand seen since the
    /// last grant over one period (at least 1 % of the rate), less what is still left. Not
    /// capped by the burst: Redis divides what it holds in proportion to the asks, so the
    /// ask must say how much this instance is offered, refusals included.
    pub fn want(&self, now: Instant) -> u64 {
        let left = self.tokens.load(Ordering::Relaxed);
        let since = now
            .as_nanos()
            .saturating_sub(self.granted_at.load(Ordering::Relaxed))
            .max(1);
        let spent = (self.level_at_grant.load(Ordering::Relaxed) - left).max(0) as u64;
        let per_period = if self.granted_at.load(Ordering::Relaxed) == 0 {
            // No lease yet: this instance's even share of a period.
            self.rate * self.period.as_nanos() as u64
                / 1_000_000_000
                / self.instances.load(Ordering::Relaxed)
        } else {
            (spent as u128 * self.period.as_nanos() / since as u128) as u64
        };
        let floor = (self.rate / 100).max(1);
        let target = (2 * per_period).max(floor);
        target.saturating_sub(left.max(0) as u64)
    }

    /// Redis answered at `now` after `rtt`: `tokens` more for this instance, `instances` live
    /// in the fleet. The lease is valid for two periods (one renewal may be missed).
    pub fn granted(&self, now: Instant, tokens: u64, instances: u64, rtt: Duration) {
        let ns = now.as_nanos();
        // The kit validates replies; clamped here too, so no input can wrap the counter.
        let tokens = tokens.min(self.burst).min(i64::MAX as u64 / 2) as i64;
        let mut level = 0;
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                level = cur.max(0) + tokens;
                Some(level)
            });
        self.level_at_grant.store(level, Ordering::Relaxed);
        self.granted_at.store(ns.max(1), Ordering::Relaxed);
        self.instances.store(instances.max(1), Ordering::Relaxed);
        self.leases.fetch_add(1, Ordering::Relaxed);
        self.tokens_granted
            .fetch_add(tokens as u64, Ordering::Relaxed);
        self.rtt_us.store(rtt.as_micros() as u64, Ordering::Relaxed);
        let until = ns.saturating_add(2 * self.period.as_nanos() as u64);
        self.lease_until.store(until, Ordering::Release);
        let since = self.fallback_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            self.fallback_ns
                .fetch_add(ns.saturating_sub(since), Ordering::Relaxed);
        }
    }

    /// A Redis round trip failed at `now`: the local fallback share from now on, until a
    /// grant. Returns true when this began the fallback (the kit logs it once).
    pub fn failed(&self, now: Instant) -> bool {
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
        self.lease_until.store(0, Ordering::Release);
        self.fallback_since
            .compare_exchange(
                0,
                now.as_nanos().max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Whether the limit is shared through Redis at `now`.
    pub fn is_shared(&self, now: Instant) -> bool {
        now.as_nanos() < self.lease_until.load(Ordering::Acquire)
    }

    /// The figures at `now`.
    pub fn figures(&self, now: Instant) -> FleetFigures {
        let since = self.fallback_since.load(Ordering::Relaxed);
        let current = if since == 0 {
            0
        } else {
            now.as_nanos().saturating_sub(since)
        };
        FleetFigures {
            shared: self.is_shared(now),
            instances: self.instances.load(Ordering::Relaxed),
            leases: self.leases.load(Ordering::Relaxed),
            tokens_granted: self.tokens_granted.load(Ordering::Relaxed),
            redis_errors: self.redis_errors.load(Ordering::Relaxed),
            rtt_us: self.rtt_us.load(Ordering::Relaxed),
            fallback_ns: self.fallback_ns.load(Ordering::Relaxed) + current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(1_000_000_000 + ms * 1_000_000)
    }

    fn admitted(f: &FleetShare, now: Instant, n: u64) -> u64 {
        (0..n).filter(|_| f.check(now).allowed).count() as u64
    }

    #[test]
    fn a_lease_admits_exactly_its_tokens_until_it_expires() {
        let f = FleetShare::new(at(0), 1000, 1000, 0, Duration::from_millis(100), 1);
        f.granted(at(0), 50, 3, Duration::from_micros(200));
        assert!(f.is_shared(at(0)));
        assert_eq!(admitted(&f, at(10), 80), 50, "the lease's tokens, no more");
        // Refusals count as demand: 80 attempts in 10 ms are 800 per 100 ms; ask for twice.
        assert_eq!(f.want(at(10)), 1600);
        // Two periods later the lease has expired: the fallback, a third of the limit.
        assert!(!f.is_shared(at(200)));
        assert_eq!(
            admitted(&f, at(200), 1000),
            333,
            "1000/3 rounded down (never looser), as a burst"
        );
    }

    #[test]
    fn a_grant_after_refusals_starts_from_zero_and_keeps_leftovers() {
        let f = FleetShare::new(at(0), 1000, 1000, 0, Duration::from_millis(100), 1);
        f.granted(at(0), 5, 1, Duration::ZERO);
        assert_eq!(admitted(&f, at(1), 8), 5);
        f.granted(at(2), 10, 1, Duration::ZERO);
        assert_eq!(
            admitted(&f, at(3), 4),
            4,
            "refusals did not eat into the new grant"
        );
        f.granted(at(4), 10, 1, Duration::ZERO);
        assert_eq!(admitted(&f, at(5), 100), 16, "6 left over + 10");
    }

    #[test]
    fn a_failure_falls_back_at_once_and_a_grant_shares_again() {
        let f = FleetShare::new(at(0), 600, 600, 60, Duration::from_millis(100), 2);
        assert!(!f.is_shared(at(0)), "no lease before Redis answers");
        assert_eq!(
            f.per_ip_quota().unwrap().burst(),
            30,
            "60 per IP over 2 expected"
        );
        assert_eq!(
            admitted(&f, at(0), 1000),
            300,
            "half the limit while on the fallback"
        );
        f.granted(at(10), 100, 3, Duration::from_millis(1));
        assert!(f.is_shared(at(10)));
        assert_eq!(
            f.per_ip_quota().unwrap().burst(),
            20,
            "60 per IP over 3 live"
        );
        assert!(f.failed(at(20)), "the first failure begins the fallback");
        assert!(!f.failed(at(30)), "later ones do not begin it again");
        assert!(!f.is_shared(at(20)));
        let fig = f.figures(at(40));
        assert_eq!((fig.shared, fig.redis_errors, fig.leases), (false, 2, 1));
        assert_eq!(
            fig.fallback_ns,
            10_000_000 + 20_000_000,
            "before the grant + since"
        );
        f.granted(at(50), 10, 3, Duration::ZERO);
        assert!(f.is_shared(at(50)));
    }

    #[test]
    fn the_per_ip_share_is_never_looser_than_the_limit() {
        // RATE_LIMIT_PER_IP=1 over two instances: one request per 2 s each, so a client
        // spread evenly over both gets 1/s fleet-wide (it got 2/s when the share rounded up).
        let f = FleetShare::new(at(0), 1000, 1000, 1, Duration::from_millis(100), 2);
        let q = f.per_ip_quota().unwrap();
        assert_eq!((q.burst(), q.window_secs()), (1, 2));
        let g = Gcra::new(q);
        let admitted = (0..100)
            .filter(|i| g.check_with(q, at(i * 100)).allowed)
            .count();
        assert_eq!(admitted, 5, "10 s at 10 req/s: at 0, 2, 4, 6 and 8 s");
        // 3 per IP over 2: 1.5/s each, burst 1.
        let q = Quota::shared(3, 3, 2).unwrap();
        let g = Gcra::new(q);
        let admitted = (0..1000)
            .filter(|i| g.check_with(q, at(i * 10)).allowed)
            .count();
        assert_eq!(admitted, 15, "1.5/s over 10 s");
    }

    #[test]
    fn the_ask_follows_demand() {
        let f = FleetShare::new(at(0), 10_000, 10_000, 0, Duration::from_millis(100), 4);
        assert_eq!(
            f.want(at(0)),
            500,
            "no lease yet: twice an even share of a period"
        );
        f.granted(at(0), 250, 4, Duration::ZERO);
        assert_eq!(admitted(&f, at(50), 100), 100);
        // 100 in 50 ms → 200 per period → ask 400, less the 150 left.
        assert_eq!(f.want(at(50)), 250);
        // Idle: the floor (1 % of the rate) less what is left asks for nothing.
        f.granted(at(100), 0, 4, Duration::ZERO);
        assert_eq!(f.want(at(10_000)), 0);
    }
}

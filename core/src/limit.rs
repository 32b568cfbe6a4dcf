//! Rate limiting: a lock-free GCRA for the global limit and a bounded per-key table.
//!
//! GCRA (the generic cell rate algorithm, as in governor) keeps one "theoretical arrival
//! time" (TAT) per bucket. A request at `now` is admitted when `max(TAT, now) + T - now <=
//! burst × T` (T = 1 s / rate) and moves TAT forward by T. Invariants:
//! - admitted requests over any interval `[a, b]` ≤ rate × (b − a) + burst (proptest below);
//! - a clock that steps back makes `now` smaller, which only lowers admission;
//! - a key whose TAT is in the past holds exactly the state of a fresh key, so evicting idle
//!   keys loses nothing, and the per-key table's memory is bounded by `max_keys`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::time::Instant;

const NANOS: u64 = 1_000_000_000;

/// Shards of the per-key table: enough that 2 × cores threads rarely meet on one lock.
const KEY_SHARDS: usize = 64;

/// How many still-active keys the CLOCK sweep passes over before evicting one anyway.
const EVICTION_PROBES: usize = 8;

/// A limiter's verdict, with what the `RateLimit` headers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The request may proceed.
    pub allowed: bool,
    /// Requests still allowed right now after this one.
    pub remaining: u64,
    /// Seconds until the bucket is full again (the `t` of `RateLimit`).
    pub reset_secs: u64,
    /// When refused: seconds until one more request would be admitted (`Retry-After`).
    pub retry_after_secs: u64,
}

/// The parameters of one bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    interval_ns: u64,
    burst: u64,
    /// `burst × interval_ns` (saturating), the most TAT may run ahead of now.
    limit_ns: u64,
}

impl Quota {
    /// `rate` per second with `burst`; `None` when `rate` is 0 (limiting off).
    pub fn new(rate: u64, burst: u64) -> Option<Quota> {
        (rate > 0).then(|| {
            let (interval_ns, burst) = (NANOS.div_ceil(rate).max(1), burst.max(1));
            Quota {
                interval_ns,
                burst,
                limit_ns: burst.saturating_mul(interval_ns),
            }
        })
    }

    /// One instance's share of `rate`/s with `burst` split among `n` instances, never looser
    /// than the whole: the rate is divided exactly (one request per `n / rate` s, rounded
    /// up to the nanosecond) and the burst rounded down. A bucket must hold at least one
    /// request, so when `burst < n` each instance still admits one at a time: the sustained
    /// rate stays exact, and only an instant may see up to `n` requests at once.
    /// `None` when `rate` is 0 (limiting off).
    pub fn shared(rate: u64, burst: u64, n: u64) -> Option<Quota> {
        let n = n.max(1);
        (rate > 0).then(|| {
            let interval_ns = (u128::from(NANOS) * u128::from(n))
                .div_ceil(u128::from(rate))
                .clamp(1, u128::from(u64::MAX)) as u64;
            let burst = (burst / n).max(1);
            Quota {
                interval_ns,
                burst,
                limit_ns: burst.saturating_mul(interval_ns),
            }
        })
    }

    /// The burst (the `q` of `RateLimit-Policy`).
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Seconds for an empty bucket to refill (the `w` of `RateLimit-Policy`, at least 1).
    pub fn window_secs(&self) -> u64 {
        (self.burst.saturating_mul(self.interval_ns))
            .div_ceil(NANOS)
            .max(1)
    }

    fn limit_ns(&self) -> u64 {
        self.limit_ns
    }

    /// The GCRA step: from the stored TAT, the new TAT if admitted, and the verdict.
    fn step(&self, tat: u64, now: u64) -> (Option<u64>, Verdict) {
        let new_tat = tat.max(now).saturating_add(self.interval_ns);
        let used = new_tat - now;
        let limit = self.limit_ns();
        if used <= limit {
            let verdict = Verdict {
                allowed: true,
                remaining: (limit - used) / self.interval_ns,
                reset_secs: used.div_ceil(NANOS),
                retry_after_secs: 0,
            };
            (Some(new_tat), verdict)
        } else {
            let verdict = Verdict {
                allowed: false,
                remaining: 0,
                reset_secs: (tat.max(now) - now).div_ceil(NANOS),
                retry_after_secs: (used - limit).div_ceil(NANOS).max(1),
            };
            (None, verdict)
        }
    }
}

/// A lock-free GCRA bucket shared by every thread.
#[derive(Debug)]
pub struct Gcra {
    quota: Quota,
    tat: AtomicU64,
}

impl Gcra {
    /// A full bucket.
    pub fn new(quota: Quota) -> Self {
        Gcra {
            quota,
            tat: AtomicU64::new(0),
        }
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Admits or refuses one request at `now`.
    pub fn check(&self, now: Instant) -> Verdict {
        self.check_with(self.quota, now)
    }

    /// Admits or refuses one request at `now` under `quota` instead of the bucket's own (a
    /// quota that changes over time, as the fleet's fallback share does).
    pub fn check_with(&self, quota: Quota, now: Instant) -> Verdict {
        let now = now.as_nanos();
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let (next, verdict) = quota.step(tat, now);
            let Some(next) = next else { return verdict };
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return verdict,
                Err(actual) => tat = actual,
            }
        }
    }

    /// Gives back the request admitted by the last `check_with(quota, …)` (another limit
    /// refused it): the TAT moves back one interval, so it costs nothing here.
    pub fn give_back(&self, quota: Quota) {
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.saturating_sub(quota.interval_ns))
            });
    }
}

/// The key of a client: its IPv4 address, or its IPv6 /64 prefix (one host usually owns a
/// whole /64, so keying by full address would let it rotate through 2^64 keys).
pub fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => 1 << 64 | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => 1 << 64 | u128::from(u32::from(v4)),
            None => 2 << 64 | (u128::from(v6) >> 64),
        },
    }
}

#[derive(Debug, Default)]
struct KeyShard {
    tats: HashMap<u128, u64>,
    /// Every key of `tats` exactly once, oldest insertion first (the CLOCK hand is the front).
    order: VecDeque<u128>,
}

/// A GCRA per key with bounded memory: at most `max_keys` keys; idle keys are evicted first,
/// then the oldest.
#[derive(Debug)]
pub struct KeyedGcra {
    quota: Quota,
    per_shard: usize,
    shards: Box<[Mutex<KeyShard>]>,
    /// SipHash keys from the process secret: which shard a key lands in cannot be aimed at
    /// from outside (an unkeyed hash let a client crowd one shard and evict a victim 64x
    /// more cheaply).
    hash_keys: (u64, u64),
}

impl KeyedGcra {
    /// A table for at most `max_keys` keys (rounded up to a multiple of the shard count);
    /// `hash_keys` key the shard hash (derive them from a per-process secret).
    pub fn new(quota: Quota, max_keys: usize, hash_keys: (u64, u64)) -> Self {
        let shards = (0..KEY_SHARDS)
            .map(|_| Mutex::new(KeyShard::default()))
            .collect();
        KeyedGcra {
            quota,
            per_shard: max_keys.div_ceil(KEY_SHARDS).max(1),
            shards,
            hash_keys,
        }
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Admits or refuses one request of `key` at `now`.
    pub fn check(&self, key: u128, now: Instant) -> Verdict {
        self.check_with(key, now, self.quota)
    }

    /// Admits or refuses one request of `key` at `now` under `quota` (the fleet's per-IP
    /// share, which follows the number of live instances).
    pub fn check_with(&self, key: u128, now: Instant, quota: Quota) -> Verdict {
        let now = now.as_nanos();
        let shard = &self.shards[self.shard_of(key)];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tat) = s.tats.get_mut(&key) {
            let (next, verdict) = quota.step(*tat, now);
            if let Some(next) = next {
                *tat = next;
            }
            return verdict;
        }
        let (next, verdict) = quota.step(0, now);
        let Some(next) = next else { return verdict };
        // Idle keys at the hand are free to drop: their state equals a fresh key's.
        while let Some(&front) = s.order.front() {
            if s.tats.get(&front).is_some_and(|&t| t <= now) {
                s.order.pop_front();
                s.tats.remove(&front);
            } else {
                break;
            }
        }
        if s.tats.len() >= self.per_shard {
            Self::evict_one(&mut s, now);
        }
        s.tats.insert(key, next);
        s.order.push_back(key);
        verdict
    }

    /// Gives back the request of `key` admitted under `quota` (another limit refused it).
    /// A key evicted meanwhile is already as fresh as it can be.
    pub fn give_back(&self, key: u128, quota: Quota) {
        let shard = &self.shards[self.shard_of(key)];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tat) = s.tats.get_mut(&key) {
            *tat = tat.saturating_sub(quota.interval_ns);
        }
    }

    fn shard_of(&self, key: u128) -> usize {
        use std::hash::Hasher;
        let mut h = siphasher::sip::SipHasher13::new_with_keys(self.hash_keys.0, self.hash_keys.1);
        h.write_u128(key);
        h.finish() as usize % KEY_SHARDS
    }

    /// CLOCK sweep: give active keys at the hand a second chance, evict the first idle one,
    /// or the last probed one when all are active.
    fn evict_one(s: &mut KeyShard, now: u64) {
        for probe in 0..EVICTION_PROBES {
            let Some(front) = s.order.pop_front() else {
                return;
            };
            let idle = s.tats.get(&front).is_none_or(|&t| t <= now);
            if idle || probe + 1 == EVICTION_PROBES {
                s.tats.remove(&front);
                return;
            }
            s.order.push_back(front);
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).tats.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this table can hold.
    pub fn capacity(&self) -> usize {
        self.per_shard * KEY_SHARDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn burst_then_steady_rate() {
        let g = Gcra::new(Quota::new(10, 5).unwrap());
        let t0 = at(1_000);
        let admitted = (0..20).filter(|_| g.check(t0).allowed).count();
        assert_eq!(admitted, 5, "burst of 5 at one instant");
        let refused = g.check(t0);
        assert!(!refused.allowed && refused.retry_after_secs >= 1);
        assert!(g.check(at(1_100)).allowed, "one more after 100 ms at 10/s");
        assert!(!g.check(at(1_100)).allowed);
    }

    #[test]
    fn verdict_reports_remaining_and_reset() {
        let g = Gcra::new(Quota::new(2, 4).unwrap());
        let v = g.check(at(10_000));
        assert_eq!((v.remaining, v.reset_secs), (3, 1));
        let q = g.quota();
        assert_eq!((q.burst(), q.window_secs()), (4, 2));
    }

    #[test]
    fn clock_stepping_back_admits_nothing_extra() {
        let g = Gcra::new(Quota::new(10, 2).unwrap());
        assert!(g.check(at(5_000)).allowed);
        assert!(g.check(at(5_000)).allowed);
        assert!(!g.check(at(5_000)).allowed);
        assert!(
            !g.check(at(1_000)).allowed,
            "going back in time does not refill"
        );
    }

    #[test]
    fn zero_rate_is_off() {
        assert!(Quota::new(0, 10).is_none());
    }

    #[test]
    fn ipv6_is_keyed_by_slash_64() {
        let a = client_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = client_key("2001:db8:1:2:bbbb::2".parse().unwrap());
        let c = client_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            client_key("::ffff:1.2.3.4".parse().unwrap()),
            client_key("1.2.3.4".parse().unwrap())
        );
        assert_ne!(
            client_key("0.0.0.1".parse().unwrap()),
            client_key("::1".parse().unwrap())
        );
    }

    #[test]
    fn per_key_limits_are_independent() {
        let k = KeyedGcra::new(Quota::new(1, 1).unwrap(), 100, (1, 2));
        assert!(k.check(1, at(1_000)).allowed);
        assert!(!k.check(1, at(1_000)).allowed);
        assert!(k.check(2, at(1_000)).allowed);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_unique_keys() {
        let k = KeyedGcra::new(Quota::new(1, 1).unwrap(), 1_000, (1, 2));
        for i in 0..200_000u128 {
            // All requests in one second: every key stays active, so eviction must bite.
            assert!(k.check(i, at(1_000 + (i as u64 % 1_000) / 1_000)).allowed);
            assert!(k.len() <= k.capacity());
        }
        assert!(k.len() <= k.capacity() && k.capacity() < 1_100);
        for s in k.shards.iter() {
            let s = s.lock().unwrap();
            assert_eq!(s.tats.len(), s.order.len(), "order and table stay in step");
        }
    }

    #[test]
    fn idle_keys_are_evicted_first() {
        let k = KeyedGcra::new(Quota::new(1, 1).unwrap(), 64, (1, 2));
        // One key per shard at most: find two keys sharing a shard by brute force.
        let shard_of = |key: u128| k.shard_of(key);
        let a = 1u128;
        let b = (2..).find(|&x| shard_of(x) == shard_of(a)).unwrap();
        assert!(k.check(a, at(0)).allowed);
        assert!(!k.check(a, at(0)).allowed, "a is limited");
        // Much later a is idle; b's insert drops it, and a then starts fresh with no penalty.
        assert!(k.check(b, at(10_000)).allowed);
        assert!(k.check(a, at(10_000)).allowed);
    }

    #[test]
    fn shard_choice_depends_on_the_secret_key() {
        // Keys an attacker found to share a shard under one secret are spread under another:
        // without the real secret, shards cannot be aimed at.
        let known = KeyedGcra::new(Quota::new(1, 1).unwrap(), 64, (1, 2));
        let target = known.shard_of(0);
        let crowd: Vec<u128> = (1..)
            .filter(|&k| known.shard_of(k) == target)
            .take(64)
            .collect();
        let secret = KeyedGcra::new(Quota::new(1, 1).unwrap(), 64, (0x1234_5678, 0x9abc_def0));
        let spread: std::collections::HashSet<usize> =
            crowd.iter().map(|&k| secret.shard_of(k)).collect();
        assert!(
            spread.len() > 20,
            "64 aimed keys land in {} shards",
            spread.len()
        );
    }

    proptest! {
        #[test]
        fn never_admits_more_than_rate_times_time_plus_burst(
            rate in 1u64..2_000,
            burst in 1u64..50,
            steps in proptest::collection::vec(0u64..50_000_000, 1..400),
        ) {
            let g = Gcra::new(Quota::new(rate, burst).unwrap());
            let mut now = 1_000_000_000u64;
            let start = now;
            let mut admitted = 0u64;
            for s in steps {
                now += s;
                if g.check(Instant::from_nanos(now)).allowed { admitted += 1; }
                let elapsed = (now - start) as f64 / 1e9;
                prop_assert!(admitted as f64 <= rate as f64 * elapsed + burst as f64 + 1e-9);
            }
        }

        #[test]
        fn a_steady_rate_below_the_limit_is_never_refused(
            rate in 1u64..100_000,
            burst in 1u64..10,
            slack in 0u64..1_000,
            n in 1usize..500,
        ) {
            let g = Gcra::new(Quota::new(rate, burst).unwrap());
            let period = 1_000_000_000u64.div_ceil(rate) + slack;
            for i in 0..n as u64 {
                prop_assert!(g.check(Instant::from_nanos(1_000 + i * period)).allowed);
            }
        }

        #[test]
        fn keyed_table_never_exceeds_its_bound(keys in proptest::collection::vec(0u128..10_000, 1..2_000)) {
            let k = KeyedGcra::new(Quota::new(5, 5).unwrap(), 128, (1, 2));
            for (i, key) in keys.into_iter().enumerate() {
                k.check(key, Instant::from_nanos(i as u64 * 1_000_000));
                prop_assert!(k.len() <= k.capacity());
            }
        }
    }
}

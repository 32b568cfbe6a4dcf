//! The rate limits of a request and of a TLS handshake: the per-IP limit first, then the
//! global (or the fleet's share of it), and the `RateLimit` headers that report them.
//!
//! Invariants: a request refused by its client's limit spends nothing of the global (or
//! fleet) budget; one the global limit refuses gives its per-IP token back; every refusal is
//! counted by the policy that refused it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::{App, ErrorCode, Exchange};
use crate::fleet::FleetShare;
use crate::http::Response;
use crate::limit::{Verdict, client_key};
use crate::time::Now;

impl App {
    /// Whether a TLS handshake may be spent on a new connection from `peer`: with
    /// `RATE_LIMIT_PER_IP` (and no proxy in front, whose address is no client's), a handshake
    /// costs its client one token, so one address cannot flood an I/O thread with handshakes.
    pub(crate) fn admit_handshake(&self, now: Now, peer: SocketAddr) -> bool {
        let Some(k) = self.per_ip.as_ref().filter(|_| !self.config.trust_proxy) else {
            return true;
        };
        let quota = self
            .fleet
            .as_ref()
            .and_then(FleetShare::per_ip_quota)
            .unwrap_or_else(|| k.quota());
        let allowed = k.check_with(client_key(peer.ip()), now.mono, quota).allowed;
        if !allowed {
            self.rate_limited[RatePolicy::PerIp as usize].fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// The rate limits, per-IP first: a request refused by its client's limit spends nothing
    /// of the global (or fleet) budget, and one the global limit refuses gives its per-IP
    /// token back — so one noisy client cannot starve the others.
    pub(super) fn check_rate(&self, now: Now, ex: &mut Exchange, res: &mut Response) -> bool {
        let mut per_ip = None;
        if let (Some(k), Some(ip)) = (&self.per_ip, ex.client_ip) {
            let quota = self
                .fleet
                .as_ref()
                .and_then(FleetShare::per_ip_quota)
                .unwrap_or_else(|| k.quota());
            let key = client_key(ip);
            let v = k.check_with(key, now.mono, quota);
            if !v.allowed {
                return self.refuse_rate(now, ex, res, v, RatePolicy::PerIp);
            }
            per_ip = Some((k, key, quota, v));
        }
        let global = match (&self.fleet, &self.global) {
            (Some(f), _) => Some(f.check(now.mono)),
            (None, Some(g)) => Some(g.check(now.mono)),
            (None, None) => None,
        };
        ex.verdict = match (global, per_ip) {
            (Some(g), Some((k, key, quota, _))) if !g.allowed => {
                k.give_back(key, quota);
                return self.refuse_rate(now, ex, res, g, RatePolicy::Global);
            }
            (Some(g), None) if !g.allowed => {
                return self.refuse_rate(now, ex, res, g, RatePolicy::Global);
            }
            // Both admitted: report the one with less left.
            (Some(g), Some((_, _, _, v))) if v.remaining < g.remaining => {
                Some((v, RatePolicy::PerIp))
            }
            (Some(g), _) => Some((g, RatePolicy::Global)),
            (None, Some((_, _, _, v))) => Some((v, RatePolicy::PerIp)),
            (None, None) => None,
        };
        true
    }

    /// Answers 429 for the limit `policy` that refused with `v`.
    fn refuse_rate(
        &self,
        now: Now,
        ex: &mut Exchange,
        res: &mut Response,
        v: Verdict,
        policy: RatePolicy,
    ) -> bool {
        ex.verdict = Some((v, policy));
        self.rate_limited[policy as usize].fetch_add(1, Ordering::Relaxed);
        res.header_num("Retry-After", v.retry_after_secs);
        self.error(
            now,
            ex,
            res,
            ErrorCode::RateLimitExceeded,
            "rate limit exceeded",
        );
        false
    }
}

/// Room for a precomputed `RateLimit-Policy` line and the start of `RateLimit`: two policies
/// with 20-digit quotas take 114 bytes, and 128 bytes are copied inline (a larger constant
/// copy becomes a `memcpy` call: 21 instructions more a request, measured).
pub(super) const RATE_BLOCK: usize = 128;

/// A precomputed header block: the bytes (in a fixed array, copied whole) and their length.
pub(super) type RateBlock = ([u8; RATE_BLOCK], usize);

/// Which limit a `RateLimit` header reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(super) enum RatePolicy {
    Global = 0,
    PerIp = 1,
}

impl RatePolicy {
    pub(super) const ALL: [RatePolicy; 2] = [RatePolicy::Global, RatePolicy::PerIp];

    pub(super) fn name(self) -> &'static str {
        match self {
            RatePolicy::Global => "global",
            RatePolicy::PerIp => "per-ip",
        }
    }
}

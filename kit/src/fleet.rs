//! The fleet's lease renewal: one background thread per process talks to Redis, so no request
//! ever waits on the network (the core spends the lease; `weir_core::fleet`).
//!
//! Every `LEASE_PERIOD` the thread runs one atomic Lua script that refills the cluster's token
//! bucket at `RATE_LIMIT` per second (capped at `RATE_BURST`, timed by Redis's own clock),
//! takes this instance's slice from it, renews this instance's heartbeat and counts the live
//! instances. A failure — refused, reset, or no answer within one period — puts the core on
//! its local fallback share until a later round trip succeeds; the thread logs each change
//! once. Invariants:
//! - a renewal has one total deadline, one period: the round trip runs on a helper thread
//!   (connect, read and write timeouts of one period each) and the renewal thread waits for
//!   its reply at most until the deadline — a reply trickled a byte at a time counts as a
//!   failure when the period is up, and while that round trip is still stuck no other is
//!   started (at most one helper, one connection);
//! - a reply is never trusted: anything but `{tokens, live}` with `0 <= tokens <= RATE_BURST`
//!   (the most the script can grant) and `1 <= live <= MAX_INSTANCES` is a malformed reply,
//!   counted and logged as a failure (the fallback share), never a lease;
//! - a dead instance's heartbeat lapses after three periods, and its unspent lease (at most
//!   one slice) lapses with it.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir_core::config::{FleetConfig, redis_host};
use weir_core::server::Hosted;

use crate::clock;

/// The script: KEYS = bucket, instances (heartbeats), demands; ARGV = rate/s, burst, tokens
/// wanted, instance id, heartbeat TTL (ms), lease period (ms). Returns {tokens granted, live
/// instances}. When the live instances together want more than the bucket holds, each is
/// entitled to the part of one period's refill (or of the bucket, when it holds more) that
/// its own demand is of theirs: shares follow demand, whatever order the calls come in.
const LEASE_SCRIPT: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local ttl = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idle = math.max(60000, math.ceil(burst * 1000 / rate))
redis.call('ZADD', KEYS[2], now + ttl, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('PEXPIRE', KEYS[2], idle)
redis.call('HSET', KEYS[3], ARGV[4], want)
redis.call('PEXPIRE', KEYS[3], idle)
local live = redis.call('ZRANGE', KEYS[2], 0, -1)
if redis.call('HLEN', KEYS[3]) > #live then
  for _, who in ipairs(redis.call('HKEYS', KEYS[3])) do
    if not redis.call('ZSCORE', KEYS[2], who) then redis.call('HDEL', KEYS[3], who) end
  end
end
local total = 0
for _, d in ipairs(redis.call('HMGET', KEYS[3], unpack(live))) do
  total = total + (tonumber(d) or 0)
end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local avail = math.max(0, math.floor(tokens))
local grant = want
if total > avail then
  local pool = math.max(avail, rate * tonumber(ARGV[6]) / 1000)
  grant = math.floor(pool * want / total)
end
grant = math.max(0, math.min(grant, avail))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - grant), 'ts', now)
redis.call('PEXPIRE', KEYS[1], idle)
return {grant, #live}
";

/// Checks `REDIS_URL` can be used (a URL the client understands); the error names the
/// variable, never the password. Called before anything is bound.
pub fn check(config: &FleetConfig) -> Result<redis::Client, String> {
    // The client's own message may quote any part of the URL (a `?protocol=` value, the
    // password): say what kind of problem it is and name only the host and port.
    redis::Client::open(config.redis_url.expose()).map_err(|e| {
        format!(
            "invalid REDIS_URL (host {}): {:?}: expected redis://[user:password@]host[:port][/db] or rediss://…",
            redis_host(config.redis_url.expose()),
            e.kind()
        )
    })
}

/// Starts the renewal thread for `service`'s fleet share ([`Hosted::fleet`]).
pub fn spawn<S: Hosted>(service: Arc<S>, config: FleetConfig, client: redis::Client) {
    std::thread::Builder::new()
        .name("weir-fleet".into())
        .spawn(move || renew_forever(&*service, &config, &client))
        .expect("invariant: the OS can start the fleet thread");
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Shared,
    Fallback,
}

/// The most instances a reply may claim: far past any real fleet, far below what would make
/// a share round to nothing.
const MAX_INSTANCES: i64 = 1 << 20;

/// Why a renewal failed.
#[derive(Debug)]
enum Failure {
    Redis(redis::RedisError),
    /// The reply was not what the script returns.
    Malformed(String),
    /// No complete reply within one period.
    Deadline,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Redis(e) => write!(f, "{e}"),
            Failure::Malformed(what) => write!(f, "malformed reply from Redis: {what}"),
            Failure::Deadline => f.write_str("no complete reply within one lease period"),
        }
    }
}

/// Checks the script's reply: `{tokens, live}` within what the script can return.
fn validate(reply: redis::Value, burst: u64) -> Result<(u64, u64), Failure> {
    use redis::Value;
    let Value::Array(items) = reply else {
        return Err(Failure::Malformed("not an array".into()));
    };
    let [Value::Int(tokens), Value::Int(live)] = items[..] else {
        return Err(Failure::Malformed(format!(
            "expected two integers, got {} items",
            items.len()
        )));
    };
    if !(0..=i64::try_from(burst).unwrap_or(i64::MAX)).contains(&tokens) {
        return Err(Failure::Malformed(format!(
            "a grant of {tokens} tokens (0 to {burst} possible)"
        )));
    }
    if !(1..=MAX_INSTANCES).contains(&live) {
        return Err(Failure::Malformed(format!(
            "{live} live instances (1 to {MAX_INSTANCES} possible)"
        )));
    }
    Ok((tokens as u64, live as u64))
}

/// One round trip's question: how many tokens to ask for.
struct Ask {
    want: u64,
}

/// The helper that does the round trips, so the renewal thread can keep its deadline.
fn round_trips(
    client: redis::Client,
    script: redis::Script,
    keys: [String; 3],
    args: (u64, u64, String, u64, u64),
    period: Duration,
    asks: mpsc::Receiver<Ask>,
    replies: mpsc::Sender<Result<redis::Value, redis::RedisError>>,
) {
    let mut con: Option<redis::Connection> = None;
    let (rate, burst, id, ttl_ms, period_ms) = args;
    for ask in asks {
        let result = connection(&client, &mut con, period).and_then(|c| {
            script
                .key(&keys[0])
                .key(&keys[1])
                .key(&keys[2])
                .arg(rate)
                .arg(burst)
                .arg(ask.want)
                .arg(&id)
                .arg(ttl_ms)
                .arg(period_ms)
                .invoke::<redis::Value>(c)
        });
        if result.is_err() {
            con = None;
        }
        if replies.send(result).is_err() {
            return;
        }
    }
}

fn renew_forever<S: Hosted>(service: &S, config: &FleetConfig, client: &redis::Client) {
    let Some(share) = service.fleet() else { return };
    let period = share.period();
    let (rate, burst) = share.rate_and_burst();
    let keys =
        ["bucket", "instances", "demands"].map(|k| format!("weir:{{{}}}:{k}", config.cluster));
    // Unique even when a PID is reused in another container of the same host name.
    let mut nonce = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut nonce, rustix::rand::GetRandomFlags::empty());
    let id = format!(
        "{}-{}-{:016x}",
        hostname(),
        std::process::id(),
        u64::from_ne_bytes(nonce)
    );
    let ttl_ms = (3 * period.as_millis()).max(30) as u64;
    let host = redis_host(config.redis_url.expose()).to_owned();
    let (ask_tx, ask_rx) = mpsc::channel();
    let (reply_tx, reply_rx) = mpsc::channel();
    {
        let client = client.clone();
        let args = (rate, burst, id, ttl_ms, period.as_millis() as u64);
        std::thread::Builder::new()
            .name("weir-fleet-io".into())
            .spawn(move || {
                let script = redis::Script::new(LEASE_SCRIPT);
                round_trips(client, script, keys, args, period, ask_rx, reply_tx)
            })
            .expect("invariant: the OS can start the fleet I/O thread");
    }
    let mut state = State::Starting;
    // A round trip that missed its deadline and has not answered yet.
    let mut stuck = false;
    loop {
        let began = Instant::now();
        let deadline = began + period;
        if stuck {
            // Its late answer, if any, is stale: drop it.
            stuck = reply_rx.try_recv().is_err();
        }
        let result = if stuck {
            Err(Failure::Deadline)
        } else if ask_tx
            .send(Ask {
                want: share.want(clock::now().mono),
            })
            .is_err()
        {
            tracing::error!("the fleet I/O thread has stopped; the fallback share stays");
            share.failed(clock::now().mono);
            return;
        } else {
            match reply_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(reply)) => validate(reply, burst),
                Ok(Err(e)) => Err(Failure::Redis(e)),
                Err(_) => {
                    stuck = true;
                    Err(Failure::Deadline)
                }
            }
        };
        let now = clock::now().mono;
        match result {
            Ok((tokens, live)) => {
                share.granted(now, tokens, live, began.elapsed());
                if state != State::Shared {
                    tracing::info!(redis = %host, cluster = %config.cluster, instances = live, "fleet limit shared through Redis");
                    state = State::Shared;
                }
            }
            Err(e) => {
                share.failed(now);
                if state != State::Fallback {
                    let figures = share.figures(now);
                    tracing::warn!(
                        redis = %host,
                        error = %e,
                        instances = figures.instances,
                        "Redis unreachable: serving with the local fallback share of the limit (RATE_LIMIT / instances) until it answers"
                    );
                    state = State::Fallback;
                } else {
                    tracing::debug!(redis = %host, error = %e, "lease renewal failed");
                }
            }
        }
        std::thread::sleep(period.saturating_sub(began.elapsed()));
    }
}

/// The open connection, or a new one; every wait on it is bounded by `period`.
fn connection<'a>(
    client: &redis::Client,
    con: &'a mut Option<redis::Connection>,
    period: Duration,
) -> redis::RedisResult<&'a mut redis::Connection> {
    if con.is_none() {
        let c = client.get_connection_with_timeout(period)?;
        c.set_read_timeout(Some(period))?;
        c.set_write_timeout(Some(period))?;
        *con = Some(c);
    }
    Ok(con.as_mut().expect("just set"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "weir".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_redis_url_is_named_by_host_and_port_only() {
        let env = [
            (
                "REDIS_URL",
                "redis://:hunter2@cache:6380/0?protocol=SECRET-VALUE",
            ),
            ("RATE_LIMIT", "100"),
        ];
        let config = weir_core::Config::from_sources(env, 2).unwrap();
        let e = check(config.fleet.as_ref().unwrap()).unwrap_err();
        assert!(e.contains("cache:6380"), "{e}");
        assert!(!e.contains("SECRET") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn only_what_the_script_can_return_is_a_grant() {
        use redis::Value::{Array, Int, Nil};
        let ok = |v| validate(v, 100).ok();
        assert_eq!(ok(Array(vec![Int(5), Int(2)])), Some((5, 2)));
        assert_eq!(ok(Array(vec![Int(100), Int(1)])), Some((100, 1)));
        for bad in [
            Array(vec![Int(-5), Int(1)]),
            Array(vec![Int(101), Int(1)]),
            Array(vec![Int(i64::MAX), Int(i64::MAX)]),
            Array(vec![Int(5), Int(0)]),
            Array(vec![Int(5)]),
            Array(vec![Int(5), Int(1), Int(1)]),
            Nil,
        ] {
            assert_eq!(ok(bad.clone()), None, "{bad:?}");
        }
    }
}

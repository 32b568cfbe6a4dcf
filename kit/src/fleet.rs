//! The fleet's lease renewal: one background thread per process talks to Redis, so no request
//! ever waits on the network (the core spends the lease; `weir_core::fleet`).
//!
//! Every `LEASE_PERIOD` the thread runs one atomic Lua script that refills the cluster's token
//! bucket at `RATE_LIMIT` per second (capped at `RATE_BURST`, timed by Redis's own clock),
//! takes this instance's slice from it, renews this instance's heartbeat and counts the live
//! instances. A failure — refused, reset, or no answer within one period — puts the core on
//! its local fallback share until a later round trip succeeds; the thread logs each change
//! once. Invariants: the thread never blocks longer than one period per attempt (connect,
//! read and write timeouts); a dead instance's heartbeat lapses after three periods, and its
//! unspent lease (at most one slice) lapses with it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_core::App;
use weir_core::config::{FleetConfig, redis_host};

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
    redis::Client::open(config.redis_url.expose()).map_err(|e| {
        format!(
            "invalid REDIS_URL (host {}): {e}",
            redis_host(config.redis_url.expose())
        )
    })
}

/// Starts the renewal thread for `app`'s fleet share.
pub fn spawn(app: Arc<App>, config: FleetConfig, client: redis::Client) {
    std::thread::Builder::new()
        .name("weir-fleet".into())
        .spawn(move || renew_forever(&app, &config, &client))
        .expect("invariant: the OS can start the fleet thread");
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Shared,
    Fallback,
}

fn renew_forever(app: &App, config: &FleetConfig, client: &redis::Client) {
    let Some(share) = app.fleet() else { return };
    let period = share.period();
    let (rate, burst) = share.rate_and_burst();
    let bucket = format!("weir:{{{}}}:bucket", config.cluster);
    let instances = format!("weir:{{{}}}:instances", config.cluster);
    let demands = format!("weir:{{{}}}:demands", config.cluster);
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
    let script = redis::Script::new(LEASE_SCRIPT);
    let host = redis_host(config.redis_url.expose()).to_owned();
    let mut con: Option<redis::Connection> = None;
    let mut state = State::Starting;
    loop {
        let began = Instant::now();
        let result = connection(client, &mut con, period).and_then(|c| {
            script
                .key(&bucket)
                .key(&instances)
                .key(&demands)
                .arg(rate)
                .arg(burst)
                .arg(share.want(clock::now().mono))
                .arg(&id)
                .arg(ttl_ms)
                .arg(period.as_millis() as u64)
                .invoke::<(u64, u64)>(c)
        });
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
                con = None;
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

//! weir's application: one [`App`] per process, shared by every connection, serving the API
//! of docs/api.md as an HTTP [`Service`](crate::http::Service).
//!
//! `App` holds the configuration, the frozen router, the limiters, the job queue, the metrics
//! and the health checks; it reads the server's [`Lifecycle`] to report it, never changes
//! it. Every method takes `&self` and the hot path is lock-free (the per-IP table, when
//! enabled, takes one of 64 shard locks). The rooms:
//! - this module: the builder, admission (`admit`: route, auth, limits — before any
//!   body is read) and the bookkeeping of a finished request (`finish`: metrics, access log);
//! - `service`: the `Service` methods, calling into the rest;
//! - `handlers`: the endpoints (`answer`, once the body is complete) and their deferred work;
//! - `rate`: the per-IP and global limits and the `RateLimit` headers;
//! - `client_ip`: the client's address, `X-Forwarded-For` with `TRUST_PROXY`;
//! - `access_log`: the access log line; `exposition`: `/metrics` in JSON and Prometheus text
//!   from one list of figures; `process`: the process's own figures; `secret`, `request_id`,
//!   `router`, `error`, `json`.

mod access_log;
mod client_ip;
pub mod error;
mod exposition;
mod handlers;
pub mod json;
mod process;
pub mod profile;
mod rate;
pub mod request_id;
pub mod router;
mod secret;
mod service;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Config;
use crate::fleet::FleetShare;
use crate::http::response::{put_block, put_decimal};
use crate::http::{Head, HttpConfig, Limits, Method, Response, Session, Status};
use crate::jobs::{JobQueue, JobWait};
use crate::limit::{Gcra, KeyedGcra, Quota, Verdict};
use crate::metrics::{Metrics, RequestRecord, Totals};
use crate::server::{Lifecycle, Setup};
use crate::time::{Instant, Now};
use access_log::log_access;
pub use error::{ErrorCode, write_error};
pub use process::{ProcessFigures, ProcessStats};
use profile::{ProfileFormat, ProfileSlot, Profiler};
use rate::{RATE_BLOCK, RateBlock, RatePolicy};
pub use request_id::RequestId;
use router::{Match, Router, RouterBuilder};
pub use secret::Secret;

/// The endpoints (docs/api.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET /ping`
    Ping,
    /// `GET /health`
    Health,
    /// `GET /livez`
    Livez,
    /// `GET /readyz`
    Readyz,
    /// `GET /openapi.json`
    OpenApi,
    /// `GET /metrics`
    Metrics,
    /// `GET /api/v1/stats`
    Stats,
    /// `POST /api/v1/compute/fast`
    ComputeFast,
    /// `POST /api/v1/compute/intensive`
    ComputeIntensive,
    /// `POST /echo`
    Echo,
    /// `GET /users/:id`
    User,
    /// `GET /api/v1/sleep?ms=N`
    Sleep,
    /// `GET /api/v1/stream?count=N&interval_ms=M`
    Stream,
    /// `GET /debug/pprof/profile?seconds=N[&format=svg]` (with `PROFILING=true`)
    Profile,
}

impl Endpoint {
    /// Monitoring endpoints are never rate limited.
    fn is_monitoring(self) -> bool {
        matches!(
            self,
            Endpoint::Health
                | Endpoint::OpenApi
                | Endpoint::Livez
                | Endpoint::Readyz
                | Endpoint::Metrics
                | Endpoint::Stats
                | Endpoint::Profile
        )
    }
}

type HealthCheck = Box<dyn Fn() -> bool + Send + Sync>;
/// Builds an [`App`].
pub struct AppBuilder {
    config: Config,
    runtime: &'static str,
    secret: Option<Secret>,
    checks: Vec<(String, HealthCheck)>,
    process: Arc<ProcessFigures>,
    latency_clock: Option<fn() -> Instant>,
    lifecycle: Option<Arc<Lifecycle>>,
    profiler: Option<Arc<dyn Profiler>>,
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

impl AppBuilder {
    /// The runtime's name as reported by `/health` and `/metrics` (`tokio`, `smol`, `std`).
    pub fn runtime(mut self, name: &'static str) -> Self {
        self.runtime = name;
        self
    }

    /// The per-process secret (the runtime passes 32 bytes from the OS; without it a
    /// randomly keyed fallback is used).
    pub fn secret(mut self, secret: Secret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Registers a named health check; `/health` answers 503 while any returns false.
    pub fn health_check(
        mut self,
        name: impl Into<String>,
        check: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        self.checks.push((name.into(), Box::new(check)));
        self
    }

    /// A clock finer than the `now` the runtime passes in (which it reads once per wake-up),
    /// read twice per request for the access log's latency and only while the log is on:
    /// the runtime's monotonic clock (a vDSO read, no system call). Without it the log's
    /// latency is measured with `now`.
    pub fn latency_clock(mut self, clock: fn() -> Instant) -> Self {
        self.latency_clock = Some(clock);
        self
    }

    /// The server's lifecycle, which `/readyz`, `/health` and `/metrics` report (default: a
    /// lifecycle of its own, for an app driven without a runtime kit).
    pub fn lifecycle(mut self, lifecycle: Arc<Lifecycle>) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// The CPU profiler `GET /debug/pprof/profile` uses with `PROFILING=true` (the runtime
    /// kit's; without one the endpoint answers 501).
    pub fn profiler(mut self, profiler: Arc<dyn Profiler>) -> Self {
        self.profiler = Some(profiler);
        self
    }

    /// Where `/metrics` reads process figures; the runtime samples into it off the I/O path.
    pub fn process_figures(mut self, figures: Arc<ProcessFigures>) -> Self {
        self.process = figures;
        self
    }

    /// Freezes the application; `now` is its start time.
    pub fn build(self, now: Now) -> Arc<App> {
        let c = &self.config;
        let secret = self.secret.unwrap_or_else(Secret::fallback);
        let router = RouterBuilder::default()
            .route(Method::Get, "/ping", Endpoint::Ping)
            .route(Method::Post, "/api/v1/compute/fast", Endpoint::ComputeFast)
            .route(
                Method::Post,
                "/api/v1/compute/intensive",
                Endpoint::ComputeIntensive,
            )
            .route(Method::Get, "/health", Endpoint::Health)
            .route(Method::Get, "/livez", Endpoint::Livez)
            .route(Method::Get, "/readyz", Endpoint::Readyz)
            .route(Method::Get, "/openapi.json", Endpoint::OpenApi)
            .route(Method::Get, "/metrics", Endpoint::Metrics)
            .route(Method::Get, "/api/v1/stats", Endpoint::Stats)
            .route(Method::Post, "/echo", Endpoint::Echo)
            .route(Method::Get, "/users/:id", Endpoint::User)
            .route(Method::Get, "/api/v1/sleep", Endpoint::Sleep)
            .route(Method::Get, "/api/v1/stream", Endpoint::Stream);
        let router = if c.profiling {
            router.route(Method::Get, "/debug/pprof/profile", Endpoint::Profile)
        } else {
            router
        }
        .build();
        let mut labels = router.patterns();
        labels.push("unmatched");
        let global = Quota::new(c.rate_limit, c.rate_burst).map(Gcra::new);
        let per_ip = Quota::new(c.rate_limit_per_ip, c.rate_limit_per_ip)
            .map(|q| KeyedGcra::new(q, c.rate_limit_max_keys, secret.hash_keys()));
        let mut policy = Vec::new();
        if let Some(g) = &global {
            policy.push(format!(
                "\"global\";q={};w={}",
                g.quota().burst(),
                g.quota().window_secs()
            ));
        }
        if let Some(k) = &per_ip {
            policy.push(format!(
                "\"per-ip\";q={};w={}",
                k.quota().burst(),
                k.quota().window_secs()
            ));
        }
        Arc::new(App {
            http: c.http(),
            queue: JobQueue::new(c.queue_size, c.job_cost),
            metrics: Metrics::new(labels),
            unmatched_route: router.patterns().len() as u8,
            router,
            // The configuration guarantees RATE_LIMIT > 0 with REDIS_URL.
            fleet: c.fleet.as_ref().map(|f| {
                FleetShare::new(
                    now.mono,
                    c.rate_limit,
                    c.rate_burst,
                    c.rate_limit_per_ip,
                    f.lease_period,
                    f.expected,
                )
            }),
            global,
            needs_client_ip: c.access_log || per_ip.is_some(),
            per_ip,
            rate_lines: (!policy.is_empty()).then(|| {
                let policy = policy.join(", ");
                RatePolicy::ALL.map(|p| {
                    let text = format!(
                        "RateLimit-Policy: {policy}\r\nRateLimit: \"{}\";r=",
                        p.name()
                    );
                    let mut block = Box::new(([0; RATE_BLOCK], text.len()));
                    // Two policies with 20-digit numbers fit; a longer text is a bug.
                    block.0[..text.len()].copy_from_slice(text.as_bytes());
                    block
                })
            }),
            rate_limited: [AtomicU64::new(0), AtomicU64::new(0)],
            lifecycle: self
                .lifecycle
                .unwrap_or_else(|| Lifecycle::for_config(&self.config)),
            started: now,
            runtime: self.runtime,
            secret,
            checks: self.checks,
            process: self.process,
            latency_clock: self.latency_clock,
            profiler: self.profiler,
            rate_window: Mutex::new((now.mono, 0)),
            config: self.config,
        })
    }
}

/// The shared application state (see the module docs).
pub struct App {
    config: Config,
    /// The access log's fine clock ([`AppBuilder::latency_clock`]).
    latency_clock: Option<fn() -> Instant>,
    /// Takes CPU profiles ([`AppBuilder::profiler`]).
    profiler: Option<Arc<dyn Profiler>>,
    http: HttpConfig,
    router: Router<Endpoint>,
    unmatched_route: u8,
    metrics: Metrics,
    queue: JobQueue,
    global: Option<Gcra>,
    /// With `REDIS_URL`: the fleet's share of the global and per-IP limits (instead of
    /// `global`, and dividing `per_ip`).
    fleet: Option<FleetShare>,
    per_ip: Option<KeyedGcra>,
    /// The access log or the per-IP limit needs each request's client address.
    needs_client_ip: bool,
    /// Per [`RatePolicy`]: the `RateLimit-Policy` line and the start of the `RateLimit` line
    /// up to its remaining count, written as one block per response.
    rate_lines: Option<[Box<RateBlock>; 2]>,
    /// 429s by [`RatePolicy`] (only refusals touch these).
    rate_limited: [AtomicU64; 2],
    /// The server's lifecycle, read (never changed) to report readiness and connections.
    lifecycle: Arc<Lifecycle>,
    started: Now,
    runtime: &'static str,
    secret: Secret,
    checks: Vec<(String, HealthCheck)>,
    process: Arc<ProcessFigures>,
    /// (time, total requests) of the last rate sample, for `requests_per_sec`.
    rate_window: Mutex<(Instant, u64)>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("runtime", &self.runtime)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Per-request state the session keeps for the app between `admit`, `call` and `finish`
/// (the app's [`Service::Exchange`](crate::http::Service::Exchange)).
#[derive(Debug)]
pub struct Exchange {
    /// The request's ID.
    pub id: RequestId,
    /// When the head was complete.
    pub started: Instant,
    /// When the request began by the access log's fine clock (`started` without one).
    pub log_started: Instant,
    /// The method.
    pub method: Method,
    endpoint: Option<Endpoint>,
    route: u8,
    param: (u32, u32),
    client_ip: Option<IpAddr>,
    verdict: Option<(Verdict, RatePolicy)>,
    open: bool,
    deferred: Deferred,
}

/// A reply the app gives later: the state of `/api/v1/compute/intensive`, `/api/v1/sleep` and
/// `/api/v1/stream` between the session's polls.
#[derive(Debug, Default)]
pub(crate) enum Deferred {
    /// Nothing pending.
    #[default]
    None,
    /// A queued job, answered 504 past `deadline` (`REQUEST_TIMEOUT`). Dropping the wait
    /// cancels a job that has not started.
    Job { wait: JobWait, deadline: Instant },
    /// Answer `{"slept_ms": ms}` at `until`.
    Sleep { until: Instant, ms: u64 },
    /// `left` events to go, one every `interval`; `seq` sent so far.
    Stream {
        left: u32,
        seq: u32,
        interval: Duration,
    },
    /// A CPU profile being taken, due at `until`.
    Profile {
        slot: Arc<ProfileSlot>,
        format: ProfileFormat,
        until: Instant,
    },
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            id: RequestId::default(),
            started: Instant::ZERO,
            log_started: Instant::ZERO,
            method: Method::Get,
            endpoint: None,
            route: u8::MAX,
            param: (0, 0),
            client_ip: None,
            verdict: None,
            open: false,
            deferred: Deferred::None,
        }
    }
}

impl Exchange {
    /// Starts a new request in place: every field reset but the ID, which the caller sets
    /// next (resetting it would zero 128 bytes per request for nothing).
    fn begin(&mut self, started: Instant, method: Method) {
        self.started = started;
        self.log_started = started;
        self.method = method;
        self.endpoint = None;
        self.route = u8::MAX;
        self.param = (0, 0);
        self.client_ip = None;
        self.verdict = None;
        self.open = true;
        if !matches!(self.deferred, Deferred::None) {
            self.deferred = Deferred::None;
        }
    }
}

impl App {
    /// A session for a new connection from `peer` (see [`Session::new`]).
    pub fn session(self: &Arc<Self>, peer: SocketAddr, now: Now) -> Session<App> {
        Session::new(self.clone(), peer, now)
    }

    /// A connection from `peer`: its slot in the app's lifecycle and its session, behind
    /// TLS when the lifecycle has a TLS configuration (what a runtime drives).
    pub fn connection(self: &Arc<Self>, peer: SocketAddr, now: Now) -> crate::Connection {
        crate::tls::Connection::new(self.clone(), &self.lifecycle, peer, now)
    }

    /// Builds the app the runtime kit hosts, from what the kit provides.
    pub fn from_setup(setup: Setup) -> Arc<App> {
        let mut builder = App::builder(setup.config);
        if let Some(profiler) = setup.profiler {
            builder = builder.profiler(profiler);
        }
        builder
            .runtime(setup.runtime)
            .secret(Secret::new(setup.secret))
            .process_figures(setup.process)
            .latency_clock(setup.clock)
            .lifecycle(setup.lifecycle)
            .build(setup.now)
    }

    /// The metrics' totals with the lifecycle's connection counts.
    pub fn totals(&self) -> Totals {
        let mut t = self.metrics.totals();
        let (accepted, refused) = self.lifecycle.connections_total();
        t.active_connections = self.lifecycle.connections() as i64;
        t.connections_total = accepted + refused;
        t.connections_refused = refused;
        t
    }

    /// The server's lifecycle this app reports.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// A builder for `config`.
    pub fn builder(config: Config) -> AppBuilder {
        AppBuilder {
            config,
            runtime: "embedded",
            secret: None,
            checks: Vec::new(),
            process: Arc::default(),
            latency_clock: None,
            lifecycle: None,
            profiler: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The HTTP limits.
    pub fn limits(&self) -> &Limits {
        &self.http.limits
    }

    /// The job queue (workers take from it).
    pub fn queue(&self) -> &JobQueue {
        &self.queue
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The runtime name.
    pub fn runtime(&self) -> &'static str {
        self.runtime
    }

    /// Whether new traffic should go elsewhere: starting (not every worker up), in the
    /// shutdown delay, draining, or a health check failing.
    pub fn is_ready(&self) -> (bool, &'static str) {
        match self.lifecycle.readiness() {
            (true, _) if self.checks.iter().any(|(_, check)| !check()) => {
                (false, "a health check fails")
            }
            readiness => readiness,
        }
    }

    /// The fleet's share of the limits, with `REDIS_URL` (the runtime kit renews its lease).
    pub fn fleet(&self) -> Option<&FleetShare> {
        self.fleet.as_ref()
    }

    /// 429s so far: (global limit, per-IP limit).
    pub fn rate_limited(&self) -> (u64, u64) {
        (
            self.rate_limited[RatePolicy::Global as usize].load(Ordering::Relaxed),
            self.rate_limited[RatePolicy::PerIp as usize].load(Ordering::Relaxed),
        )
    }

    /// Whether a drain has begun.
    fn is_draining(&self) -> bool {
        self.lifecycle.is_draining()
    }

    /// Reads the access log's fine clock at the start of a request (only while it logs).
    #[inline(always)]
    fn start_log_clock(&self, ex: &mut Exchange) {
        if let (true, Some(clock)) = (self.config.access_log, self.latency_clock) {
            ex.log_started = clock();
        }
    }

    /// Starts a request whose head could not be parsed or was refused by the HTTP layer.
    pub(crate) fn begin_unparsed(&self, now: Now, ex: &mut Exchange, peer: SocketAddr) {
        ex.begin(now.mono, Method::Get);
        self.start_log_clock(ex);
        ex.id.set_generated(&self.secret);
        ex.route = self.unmatched_route;
        ex.client_ip = Some(peer.ip());
        self.metrics.request_started();
    }

    /// Routes a complete head and applies auth and rate limits. True: read the body and
    /// dispatch; false: `res` holds the refusal (404, 405, 401, 429).
    pub(crate) fn admit(
        &self,
        now: Now,
        head: &Head<'_>,
        peer: SocketAddr,
        ex: &mut Exchange,
        res: &mut Response,
    ) -> bool {
        ex.begin(now.mono, head.method);
        self.start_log_clock(ex);
        if !head
            .header("x-request-id")
            .is_some_and(|v| ex.id.set_from_client(v))
        {
            ex.id.set_generated(&self.secret);
        }
        self.metrics.request_started();
        let path = head.path();
        let (endpoint, route, param) = match self.router.lookup(head.method, path) {
            Match::Found {
                route,
                endpoint,
                param,
            } => (endpoint, route, param),
            Match::MethodNotAllowed { route, allow } => {
                ex.route = route;
                res.header("Allow", allow.as_bytes());
                self.error(
                    now,
                    ex,
                    res,
                    ErrorCode::MethodNotAllowed,
                    "method not allowed for this route",
                );
                return false;
            }
            Match::NotFound => {
                ex.route = self.unmatched_route;
                self.error(now, ex, res, ErrorCode::NotFound, "no route for this path");
                return false;
            }
        };
        ex.route = route;
        ex.endpoint = Some(endpoint);
        if let Some(p) = param {
            let base = path.as_ptr() as usize;
            let start = (p.as_ptr() as usize - base) as u32;
            ex.param = (start, start + p.len() as u32);
        }
        if self.needs_client_ip {
            ex.client_ip = Some(self.client_ip(head, peer));
        }
        if !endpoint.is_monitoring() && !self.check_rate(now, ex, res) {
            return false;
        }
        if let Some(token) = &self.config.api_token {
            if (path.starts_with(b"/api/") || endpoint == Endpoint::Profile)
                && !bearer_matches(head.header("authorization"), token.expose().as_bytes())
            {
                res.header("WWW-Authenticate", b"Bearer");
                self.error(
                    now,
                    ex,
                    res,
                    ErrorCode::Unauthorized,
                    "missing or invalid bearer token",
                );
                return false;
            }
        }
        true
    }

    /// Fills `res` with an error envelope for this request (its common headers are added
    /// when it is encoded, like every response's).
    pub(crate) fn error(
        &self,
        now: Now,
        ex: &Exchange,
        res: &mut Response,
        code: ErrorCode,
        message: &str,
    ) {
        write_error(res, code, message, ex.id.as_str(), now.unix_secs());
    }

    /// The header lines every response of a request carries, written into the output as
    /// the response is encoded: `X-Request-ID`, and under a limit `RateLimit-Policy` and
    /// `RateLimit` (precomputed blocks and numbers, no per-header work).
    pub(crate) fn write_common_lines(&self, ex: &Exchange, out: &mut Vec<u8>) {
        ex.id.write_header_line(out);
        if let (Some(lines), Some((v, policy))) = (&self.rate_lines, ex.verdict) {
            put_block(out, &lines[policy as usize]);
            put_decimal(out, v.remaining);
            match v.reset_secs {
                // The reset and the line's end in one store (a window of seconds, mostly).
                n @ 0..10 => {
                    out.extend_from_slice(&[b';', b't', b'=', b'0' + n as u8, b'\r', b'\n'])
                }
                n => {
                    out.extend_from_slice(b";t=");
                    put_decimal(out, n);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }

    /// Records a finished request: metrics and the access log line.
    /// Inlined into the session's response path; the access log line is written out of line.
    #[inline(always)]
    pub(crate) fn finish(
        &self,
        now: Now,
        ex: &mut Exchange,
        head: Option<&Head<'_>>,
        status: Status,
        bytes_sent: u64,
    ) {
        if !matches!(ex.deferred, Deferred::None) {
            ex.deferred = Deferred::None;
        }
        if !ex.open {
            return;
        }
        ex.open = false;
        let latency_ns = now.mono.as_nanos().saturating_sub(ex.started.as_nanos());
        self.metrics.request_finished(RequestRecord {
            method: method_index(ex.method),
            route: ex.route,
            status: status.code(),
            latency_us: latency_ns / 1_000,
        });
        if self.config.access_log {
            // The access log's latency from the fine clock when the runtime gave one (the
            // `now` of a fast request is often the one it started with: 0.000 ms).
            let latency_ns = match self.latency_clock {
                Some(clock) => clock().as_nanos().saturating_sub(ex.log_started.as_nanos()),
                None => latency_ns,
            };
            log_access(ex, head, status, latency_ns, bytes_sent);
        }
    }
}

/// Metric label order of methods (index = `method_index`).
pub(crate) const METHOD_NAMES: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "_OTHER",
];

fn method_index(m: Method) -> u8 {
    match m {
        Method::Get => 0,
        Method::Head => 1,
        Method::Post => 2,
        Method::Put => 3,
        Method::Delete => 4,
        Method::Patch => 5,
        Method::Options => 6,
        _ => 7,
    }
}

/// `Authorization: Bearer <token>` compared in constant time (for a given token length).
fn bearer_matches(header: Option<&[u8]>, token: &[u8]) -> bool {
    let Some(h) = header else { return false };
    let h = h.trim_ascii();
    if h.len() < 7 || !h[..7].eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    // Constant time in the bytes compared (the length is not secret: subtle answers a length
    // mismatch at once).
    subtle::ConstantTimeEq::ct_eq(h[7..].trim_ascii(), token).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_check() {
        assert!(bearer_matches(Some(b"Bearer s3cret"), b"s3cret"));
        assert!(bearer_matches(Some(b"bearer  s3cret "), b"s3cret"));
        assert!(!bearer_matches(Some(b"Bearer s3cre"), b"s3cret"));
        assert!(!bearer_matches(Some(b"Bearer s3cret2"), b"s3cret"));
        assert!(!bearer_matches(Some(b"Basic s3cret"), b"s3cret"));
        assert!(!bearer_matches(None, b"s3cret"));
    }

    fn app(env: &[(&str, &str)]) -> Arc<App> {
        let c = Config::from_sources(env.iter().copied(), 1).unwrap();
        App::builder(c).build(Now::default())
    }

    fn head(raw: &'static str) -> Head<'static> {
        let mut h = crate::http::ParsedHead::default();
        h.parse(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        Box::leak(Box::new(h)).view(raw.as_bytes())
    }

    #[test]
    fn forwarded_for_takes_the_rightmost_untrusted_hop() {
        let peer: SocketAddr = "10.0.0.5:1000".parse().unwrap();
        let h = head(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6, 1.2.3.4\r\nX-Forwarded-For: 10.0.0.9\r\n\r\n",
        );
        let off = app(&[]);
        assert_eq!(
            off.client_ip(&h, peer),
            peer.ip(),
            "TRUST_PROXY off: the peer"
        );
        let on = app(&[("TRUST_PROXY", "true"), ("TRUSTED_PROXIES", "10.0.0.0/8")]);
        assert_eq!(on.client_ip(&h, peer), "1.2.3.4".parse::<IpAddr>().unwrap());
        let untrusted_peer: SocketAddr = "7.7.7.7:1".parse().unwrap();
        assert_eq!(
            on.client_ip(&h, untrusted_peer),
            untrusted_peer.ip(),
            "a non-proxy peer's header is ignored"
        );
        let no_list = app(&[("TRUST_PROXY", "true"), ("TRUSTED_PROXIES", "10.0.0.5/32")]);
        assert_eq!(
            no_list.client_ip(&h, peer),
            "10.0.0.9".parse::<IpAddr>().unwrap(),
            "only the peer is trusted"
        );
        let garbage = head("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4, junk\r\n\r\n");
        assert_eq!(no_list.client_ip(&garbage, peer), peer.ip());
        let ported =
            head("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: [2001:db8::1]:443\r\n\r\n");
        assert_eq!(
            no_list.client_ip(&ported, peer),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_connection_limit_and_the_drain_are_the_lifecycles() {
        let a = app(&[("MAX_CONNECTIONS", "2")]);
        let peer: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let (one, two) = (
            a.connection(peer, Now::default()),
            a.connection(peer, Now::default()),
        );
        assert_eq!(a.lifecycle().connections(), 2);
        let refused = a.connection(peer, Now::default());
        assert!(
            refused
                .poll_transmit()
                .is_some_and(|b| b.starts_with(b"HTTP/1.1 503"))
        );
        drop(one);
        a.lifecycle().begin_drain();
        assert_eq!(a.is_ready().1, "starting", "no worker runs here");
        let queued = a.connection(peer, Now::default());
        assert!(
            queued.poll_transmit().is_none(),
            "a connection queued before the drain is served"
        );
        drop((two, queued, refused));
        assert_eq!(a.totals().connections_refused, 1);
        assert_eq!(a.totals().active_connections, 0);
    }
}

//! Configuration: every setting (docs/configuration.md) from environment pairs and flags.
//!
//! Parsing is a pure function of its inputs ([`Config::from_sources`]); it never reads the
//! process environment. Invariants: a flag wins over the variable of the same meaning; every
//! value is validated here, so the rest of the program trusts a `Config`; an invalid value is a
//! [`ConfigError`] naming the variable and the value.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::time::{DURATION_GRAMMAR, format_duration, parse_duration};

/// `ENVIRONMENT`: selects the log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Environment {
    /// Human-readable logs.
    Development,
    /// JSON lines.
    Production,
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`, a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(text: &str) -> Option<IpNet> {
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|&p| p <= max)?,
            None => max,
        };
        Some(IpNet { addr, prefix })
    }

    /// Whether this network holds every address of its family (`0.0.0.0/0`, `::/0`): trusting
    /// it lets any client choose its own `X-Forwarded-For` address.
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A secret value from the configuration: `Debug` prints `<redacted>`, so a config, app or
/// session printed in a log or a panic message never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The secret itself, for the one place that compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The validated configuration of one server process.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// `SERVER_PORT`: the listening address.
    pub listen: SocketAddr,
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// `SHUTDOWN_TIMEOUT`: how long a graceful drain may take.
    pub shutdown_timeout: Duration,
    /// `SHUTDOWN_DELAY`: after SIGTERM, how long `/readyz` answers 503 while everything is
    /// still served, before the drain (time for a load balancer to take the instance out).
    pub shutdown_delay: Duration,
    /// `LOG_LEVEL`: a `tracing` filter directive.
    pub log_level: String,
    /// `ACCESS_LOG`: one line per request.
    pub access_log: bool,
    /// `PROFILING`: serve CPU profiles on demand (`GET /debug/pprof/profile`).
    pub profiling: bool,
    /// `HTTP2`: HTTP/2 with prior knowledge on the plain port, ALPN `h2` over TLS.
    pub http2: bool,
    /// `MAX_CONCURRENT_STREAMS`: HTTP/2 streams open at once per connection.
    pub max_concurrent_streams: u32,
    /// `H2_INITIAL_WINDOW`: the flow-control window HTTP/2 peers may send into, per stream.
    pub h2_initial_window: u32,
    /// `MAX_HEADER_BYTES`: request line plus headers, past it 431.
    pub max_header_bytes: usize,
    /// `MAX_HEADERS`: number of header fields, past it 431.
    pub max_headers: usize,
    /// `MAX_URI_BYTES`: request-target length, past it 414.
    pub max_uri_bytes: usize,
    /// `MAX_BODY_BYTES`: decoded body length, past it 413.
    pub max_body_bytes: usize,
    /// `MAX_CONNECTIONS`: open connections, past it 503 and close.
    pub max_connections: usize,
    /// `HEADER_TIMEOUT`: a request head must arrive within it (408 and close).
    pub header_timeout: Duration,
    /// `IDLE_TIMEOUT`: an idle keep-alive connection is closed after it.
    pub idle_timeout: Duration,
    /// `WRITE_TIMEOUT`: a response that makes no progress for this long aborts the connection.
    pub write_timeout: Duration,
    /// `REQUEST_TIMEOUT`: a queued job not finished within it is a 504.
    pub request_timeout: Duration,
    /// `RATE_LIMIT`: global requests per second, 0 = off.
    pub rate_limit: u64,
    /// `RATE_BURST`: global burst, default `RATE_LIMIT`.
    pub rate_burst: u64,
    /// `RATE_LIMIT_PER_IP`: requests per second per client address, 0 = off.
    pub rate_limit_per_ip: u64,
    /// `RATE_LIMIT_MAX_KEYS`: bound on tracked client addresses.
    pub rate_limit_max_keys: usize,
    /// `TRUST_PROXY`: take the client address from `X-Forwarded-For`.
    pub trust_proxy: bool,
    /// `TRUSTED_PROXIES`: proxy networks skipped in `X-Forwarded-For`.
    pub trusted_proxies: Vec<IpNet>,
    /// `API_TOKEN`: bearer token required on `/api/*` when set (never shown by `Debug`).
    pub api_token: Option<Token>,
    /// `TLS_CERT` and `TLS_KEY`: PEM files of the certificate chain and its private key; when
    /// both are set the listener speaks TLS (the runtime kit reads them).
    pub tls: Option<TlsFiles>,
    /// `QUEUE_SIZE`: places in the job queue.
    pub queue_size: usize,
    /// `WORKER_COUNT`: worker threads for intensive jobs.
    pub worker_count: usize,
    /// `JOB_COST`: rounds of CPU work per intensive job.
    pub job_cost: u64,
    /// `BACKLOG`: the listen backlog.
    pub backlog: u32,
    /// `REDIS_URL` and the other cluster settings: the global and per-IP limits are shared
    /// by every instance of `CLUSTER_NAME` (see `crate::fleet`); `None` without `REDIS_URL`.
    pub fleet: Option<FleetConfig>,
    /// `REUSE_PORT`: bind with `SO_REUSEPORT`, so several processes share the port and the
    /// kernel spreads new connections over them (one can drain while the others serve).
    pub reuse_port: bool,
    /// `LOG_BUFFER_LINES`: lines the non-blocking log writer holds before it drops.
    pub log_buffer_lines: usize,
    /// `IO_THREADS`: threads serving connections (tokio, smol).
    pub io_threads: usize,
    /// `RUNTIME_LAYOUT`: how the async runtimes spread connections over their threads.
    pub layout: Layout,
    /// `URING_BUFFERS`: receive buffers (4 KiB each) per io_uring ring (weir-uring).
    pub uring_buffers: u16,
}

/// Where and how the fleet's limit is shared.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetConfig {
    /// `REDIS_URL` (it may hold a password: `Debug` never shows it).
    pub redis_url: Token,
    /// `CLUSTER_NAME`: the Redis keys' prefix.
    pub cluster: String,
    /// `CLUSTER_SIZE`: instances expected before Redis has answered.
    pub expected: u64,
    /// `LEASE_PERIOD`: the renewal period.
    pub lease_period: Duration,
}

/// The PEM files TLS is served with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `TLS_CERT`: the certificate chain, leaf first.
    pub cert: String,
    /// `TLS_KEY`: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: String,
}

/// `RUNTIME_LAYOUT`: executors of the async runtimes. Exhaustive on purpose: a new layout
/// must be handled by every runtime, never silently run as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One single-threaded executor per I/O thread, all accepting on the shared listener.
    PerCore,
    /// One work-stealing executor over all I/O threads (tokio multi-thread, smol shared).
    Shared,
}

/// One setting: its variable, its flag, its default and its help line. The table drives
/// parsing here and the command line in the runtime kit, so both always agree.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Setting {
    /// The environment variable, which also names the setting in errors.
    pub env: &'static str,
    /// The long flag, without its `--`.
    pub flag: &'static str,
    /// The default as text; empty when it is computed (see the help line).
    pub default: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// The allowed integer range, inclusive, for settings that are counts or sizes.
    pub range: Option<(u64, u64)>,
    /// The allowed span, inclusive, for durations.
    pub span: Option<(Duration, Duration)>,
    /// A boolean: on the command line `--flag` alone means true and `--no-flag` false.
    pub switch: bool,
}

impl Setting {
    const fn new(
        env: &'static str,
        flag: &'static str,
        default: &'static str,
        help: &'static str,
    ) -> Setting {
        Setting {
            env,
            flag,
            default,
            help,
            range: None,
            span: None,
            switch: false,
        }
    }

    /// A duration between `min_ms` and `max_ms` milliseconds, inclusive.
    const fn lasting(self, min_ms: u64, max_ms: u64) -> Setting {
        Setting {
            span: Some((Duration::from_millis(min_ms), Duration::from_millis(max_ms))),
            ..self
        }
    }

    const fn within(self, min: u64, max: u64) -> Setting {
        Setting {
            range: Some((min, max)),
            ..self
        }
    }

    const fn switch(self) -> Setting {
        Setting {
            switch: true,
            ..self
        }
    }
}

/// Every setting, in the order `--help` lists them.
pub const SETTINGS: &[Setting] = &[
    Setting::new("SERVER_PORT", "port", ":8080", "listen address: 8080, :8080, 127.0.0.1:8080, [::1]:8080 (port 0 picks a free port)"),
    Setting::new("ENVIRONMENT", "environment", "development", "development (human logs) or production (JSON logs)"),
    Setting::new("SHUTDOWN_TIMEOUT", "shutdown-timeout", "30s", "graceful drain limit (0s: close at once)").lasting(0, 3600000),
    Setting::new("SHUTDOWN_DELAY", "shutdown-delay", "0s", "after SIGTERM, report not ready (/readyz 503) for this long while still serving, then drain").lasting(0, 3600000),
    Setting::new("LOG_LEVEL", "log-level", "info", "tracing filter: error, warn, info, debug, trace or directives"),
    Setting::new("ACCESS_LOG", "access-log", "true", "one log line per request").switch(),
    Setting::new("PROFILING", "profiling", "false", "serve CPU profiles at GET /debug/pprof/profile?seconds=N[&format=svg] (behind API_TOKEN when set; needs the `profiling` build feature)").switch(),
    Setting::new("MAX_HEADER_BYTES", "max-header-bytes", "16384", "request line + headers, past it 431").within(256, 1 << 24),
    Setting::new("MAX_HEADERS", "max-headers", "64", "header fields per request, past it 431").within(1, 1024),
    Setting::new("MAX_URI_BYTES", "max-uri-bytes", "8192", "request-target length, past it 414").within(16, 1 << 24),
    Setting::new("MAX_BODY_BYTES", "max-body-bytes", "1048576", "request body, past it 413").within(0, 1 << 34),
    Setting::new("MAX_CONNECTIONS", "max-connections", "100000", "open connections, past it 503 + close").within(1, 1 << 30),
    Setting::new("HTTP2", "http2", "true", "HTTP/2: with prior knowledge on the plain port, ALPN h2 over TLS").switch(),
    Setting::new("MAX_CONCURRENT_STREAMS", "max-concurrent-streams", "100", "HTTP/2 streams open at once per connection (past it REFUSED_STREAM)").within(1, 10_000),
    Setting::new("H2_INITIAL_WINDOW", "h2-initial-window", "65535", "HTTP/2 flow-control window for request bodies, per stream and per connection (bytes)").within(65_535, 16_777_216),
    Setting::new("HEADER_TIMEOUT", "header-timeout", "10s", "time to receive a request head, and the most a body may stall (408)").lasting(100, 3600000),
    Setting::new("IDLE_TIMEOUT", "idle-timeout", "60s", "idle keep-alive connection lifetime").lasting(100, 86400000),
    Setting::new("WRITE_TIMEOUT", "write-timeout", "15s", "a response write without progress").lasting(100, 3600000),
    Setting::new("REQUEST_TIMEOUT", "request-timeout", "30s", "queued job deadline (504)").lasting(1, 3600000),
    Setting::new("RATE_LIMIT", "rate-limit", "100000", "global requests/s, 0 = off"),
    Setting::new("RATE_BURST", "rate-burst", "", "global burst (default: RATE_LIMIT)"),
    Setting::new("RATE_LIMIT_PER_IP", "rate-limit-per-ip", "0", "requests/s per client IP (burst equal), 0 = off"),
    Setting::new("RATE_LIMIT_MAX_KEYS", "rate-limit-max-keys", "100000", "client IPs tracked at most").within(1, 1 << 26),
    Setting::new("TRUST_PROXY", "trust-proxy", "false", "client IP from X-Forwarded-For (requires TRUSTED_PROXIES)").switch(),
    Setting::new("TRUSTED_PROXIES", "trusted-proxies", "", "comma-separated CIDRs of proxies skipped in X-Forwarded-For"),
    Setting::new("API_TOKEN", "api-token", "", "bearer token required on /api/* (empty = none)"),
    Setting::new("QUEUE_SIZE", "queue-size", "10000", "job queue places").within(1, 1 << 24),
    Setting::new("WORKER_COUNT", "workers", "", "worker threads (default: 2 x cores)").within(1, 4096),
    Setting::new("JOB_COST", "job-cost", "50000", "rounds of CPU work per intensive job"),
    Setting::new("BACKLOG", "backlog", "4096", "listen backlog").within(1, 1 << 20),
    Setting::new("REDIS_URL", "redis-url", "", "redis:// or rediss:// URL (password and database in it): share RATE_LIMIT and RATE_LIMIT_PER_IP with every instance of CLUSTER_NAME"),
    Setting::new("CLUSTER_NAME", "cluster-name", "weir", "instances with the same name (and REDIS_URL) share one limit"),
    Setting::new("CLUSTER_SIZE", "cluster-size", "1", "instances expected before Redis has answered: the fallback share is the limit divided by it").within(1, 4096),
    Setting::new("LEASE_PERIOD", "lease-period", "100ms", "how often an instance renews its lease of the shared limit (one Redis round trip)").lasting(10, 10_000),
    Setting::new("REUSE_PORT", "reuse-port", "false", "SO_REUSEPORT: several weir processes share the port (restarts without refusing connections)").switch(),
    Setting::new("IO_THREADS", "io-threads", "", "threads serving connections in tokio, smol and uring (default: cores; std uses one per connection)").within(1, 1024),
    Setting::new("RUNTIME_LAYOUT", "runtime-layout", "per-core", "per-core (one single-threaded executor per I/O thread) or shared (one work-stealing pool)"),
    Setting::new("TLS_CERT", "tls-cert", "", "PEM certificate chain; with TLS_KEY the listener speaks TLS 1.2/1.3 (SIGHUP reloads both)"),
    Setting::new("TLS_KEY", "tls-key", "", "PEM private key of TLS_CERT (PKCS#8, RSA or EC)"),
    Setting::new("URING_BUFFERS", "uring-buffers", "512", "weir-uring: 4 KiB receive buffers per ring, a power of two up to 32768 (a burst of more simultaneous receives waits a turn)"),
    Setting::new("LOG_BUFFER_LINES", "log-buffer-lines", "65536", "log lines buffered before dropping").within(16, 1 << 24),
];

/// Why configuration failed: the setting (by its environment variable), the rejected text and
/// what was expected. The runtime kit, which knows whether the text came from a flag or a
/// variable, names what the user actually wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The environment variable of the setting.
    pub name: &'static str,
    /// The rejected text.
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.name, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// The setting whose variable is `env`, if any.
pub fn setting(env: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.env == env)
}

impl Default for Config {
    fn default() -> Self {
        Config::from_sources(std::iter::empty::<(String, String)>(), 2)
            .expect("invariant: the built-in defaults are valid")
    }
}

impl Config {
    /// The limits and timeouts the settings give every connection's session.
    pub fn http(&self) -> crate::http::HttpConfig {
        crate::http::HttpConfig {
            limits: crate::http::Limits {
                max_header_bytes: self.max_header_bytes,
                max_headers: self.max_headers,
                max_uri_bytes: self.max_uri_bytes,
                max_body_bytes: self.max_body_bytes,
            },
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            drain_grace: crate::http::session::drain_grace(self.shutdown_timeout),
            http2: self.http2.then_some(crate::h2::connection::H2Config {
                max_streams: self.max_concurrent_streams,
                initial_window: self.h2_initial_window,
            }),
        }
    }

    /// Builds the configuration from `(variable, value)` pairs — the process environment,
    /// with the command line's flags already turned into their variables by the caller.
    /// Later pairs win over earlier ones. `cores` is the machine's parallelism, for the
    /// defaults of `WORKER_COUNT` and `IO_THREADS`. Names that are not settings are ignored.
    pub fn from_sources<K, V>(
        pairs: impl IntoIterator<Item = (K, V)>,
        cores: usize,
    ) -> Result<Config, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut values: Vec<Option<String>> = vec![None; SETTINGS.len()];
        for (k, v) in pairs {
            if let Some(i) = SETTINGS.iter().position(|s| s.env == k.as_ref()) {
                values[i] = Some(v.as_ref().to_owned());
            }
        }
        let mut src = Source { values };
        let rate_limit = src.u64("RATE_LIMIT")?;
        let mut cfg = Config {
            listen: src.parse(
                "SERVER_PORT",
                "a port or address like :8080 or 127.0.0.1:8080",
                parse_listen,
            )?,
            environment: src.parse("ENVIRONMENT", "development or production", |v| match v {
                "development" | "dev" => Some(Environment::Development),
                "production" | "prod" => Some(Environment::Production),
                _ => None,
            })?,
            shutdown_timeout: src.duration("SHUTDOWN_TIMEOUT")?,
            shutdown_delay: src.duration("SHUTDOWN_DELAY")?,
            log_level: src.parse("LOG_LEVEL", "a tracing filter", |v| {
                (!v.trim().is_empty()).then(|| v.trim().to_owned())
            })?,
            access_log: src.bool("ACCESS_LOG")?,
            profiling: src.bool("PROFILING")?,
            http2: src.bool("HTTP2")?,
            max_concurrent_streams: src.size("MAX_CONCURRENT_STREAMS")? as u32,
            h2_initial_window: src.size("H2_INITIAL_WINDOW")? as u32,
            max_header_bytes: src.size("MAX_HEADER_BYTES")?,
            max_headers: src.size("MAX_HEADERS")?,
            max_uri_bytes: src.size("MAX_URI_BYTES")?,
            max_body_bytes: src.size("MAX_BODY_BYTES")?,
            max_connections: src.size("MAX_CONNECTIONS")?,
            header_timeout: src.duration("HEADER_TIMEOUT")?,
            idle_timeout: src.duration("IDLE_TIMEOUT")?,
            write_timeout: src.duration("WRITE_TIMEOUT")?,
            request_timeout: src.duration("REQUEST_TIMEOUT")?,
            rate_limit,
            rate_burst: match src.raw("RATE_BURST") {
                None => rate_limit,
                Some(_) => src.u64("RATE_BURST")?,
            },
            rate_limit_per_ip: src.u64("RATE_LIMIT_PER_IP")?,
            rate_limit_max_keys: src.size("RATE_LIMIT_MAX_KEYS")?,
            trust_proxy: src.bool("TRUST_PROXY")?,
            trusted_proxies: src.parse(
                "TRUSTED_PROXIES",
                "comma-separated CIDRs like 10.0.0.0/8",
                |v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(IpNet::parse)
                        .collect()
                },
            )?,
            tls: None,
            api_token: src
                .raw("API_TOKEN")
                .filter(|t| !t.is_empty())
                .map(|t| Token(t.to_owned())),
            queue_size: src.size("QUEUE_SIZE")?,
            worker_count: match src.raw("WORKER_COUNT") {
                None => (2 * cores).max(1),
                Some(_) => src.size("WORKER_COUNT")?,
            },
            job_cost: src.u64("JOB_COST")?,
            backlog: src.size("BACKLOG")? as u32,
            reuse_port: src.bool("REUSE_PORT")?,
            fleet: None,
            log_buffer_lines: src.size("LOG_BUFFER_LINES")?,
            io_threads: match src.raw("IO_THREADS") {
                None => cores.max(1),
                Some(_) => src.size("IO_THREADS")?,
            },
            layout: src.parse("RUNTIME_LAYOUT", "per-core or shared", |v| match v {
                "per-core" => Some(Layout::PerCore),
                "shared" => Some(Layout::Shared),
                _ => None,
            })?,
            uring_buffers: src.parse("URING_BUFFERS", "a power of two from 1 to 32768", |v| {
                v.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|n| n.is_power_of_two() && *n <= 1 << 15)
            })?,
        };
        cfg.tls = match (
            src.raw("TLS_CERT").filter(|v| !v.is_empty()),
            src.raw("TLS_KEY").filter(|v| !v.is_empty()),
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.to_owned(),
                key: key.to_owned(),
            }),
            (Some(_), None) => {
                return Err(ConfigError {
                    name: "TLS_KEY",
                    value: String::new(),
                    expected: "a private key file to go with TLS_CERT (both or neither)".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    name: "TLS_CERT",
                    value: String::new(),
                    expected: "a certificate file to go with TLS_KEY (both or neither)".into(),
                });
            }
        };
        // Checked whether or not REDIS_URL is set: a typo is an error either way.
        let lease_period = src.duration("LEASE_PERIOD")?;
        let cluster = src.parse("CLUSTER_NAME", "a name of letters, digits, - _ . :", |v| {
            let v = v.trim();
            (!v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
            .then(|| v.to_owned())
        })?;
        let expected = src.size("CLUSTER_SIZE")? as u64;
        if let Some(url) = src.raw("REDIS_URL").filter(|v| !v.trim().is_empty()) {
            let url = url.trim().to_owned();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError {
                    name: "REDIS_URL",
                    value: "<redacted>".into(),
                    expected: "a redis:// or rediss:// URL".into(),
                });
            }
            if cfg.rate_limit == 0 {
                return Err(ConfigError {
                    name: "REDIS_URL",
                    value: "<redacted>".into(),
                    expected: "RATE_LIMIT above 0 to share (REDIS_URL shares the global limit)"
                        .into(),
                });
            }
            cfg.fleet = Some(FleetConfig {
                redis_url: Token(url),
                cluster,
                expected,
                lease_period,
            });
        }
        if cfg.trust_proxy && cfg.trusted_proxies.is_empty() {
            // Believing every peer's X-Forwarded-For lets any client choose its own rate-limit
            // key (and crowd real clients out of the per-IP table).
            return Err(ConfigError {
                name: "TRUST_PROXY",
                value: "true".into(),
                expected: "TRUSTED_PROXIES to be set too (the networks of your proxies, like \
                           10.0.0.0/8): without it any client could forge X-Forwarded-For"
                    .into(),
            });
        }
        if cfg.rate_limit > 0 && cfg.rate_burst == 0 {
            return Err(ConfigError {
                name: "RATE_BURST",
                value: "0".into(),
                expected: "at least 1 while RATE_LIMIT is on".into(),
            });
        }
        Ok(cfg)
    }

    /// The effective configuration as `key=value` pairs for the start-up log (token hidden).
    pub fn summary(&self) -> String {
        format!(
            "listen={} environment={:?} workers={} queue_size={} job_cost={} rate_limit={} rate_burst={} \
             rate_limit_per_ip={} rate_limit_max_keys={} trust_proxy={} max_connections={} \
             max_header_bytes={} max_headers={} max_uri_bytes={} max_body_bytes={} header_timeout={} \
             idle_timeout={} write_timeout={} request_timeout={} shutdown_timeout={} shutdown_delay={} \
             access_log={} profiling={} http2={} api_token={} tls={} fleet={} backlog={} reuse_port={} io_threads={} layout={:?} uring_buffers={}",
            self.listen,
            self.environment,
            self.worker_count,
            self.queue_size,
            self.job_cost,
            self.rate_limit,
            self.rate_burst,
            self.rate_limit_per_ip,
            self.rate_limit_max_keys,
            self.trust_proxy,
            self.max_connections,
            self.max_header_bytes,
            self.max_headers,
            self.max_uri_bytes,
            self.max_body_bytes,
            format_duration(self.header_timeout),
            format_duration(self.idle_timeout),
            format_duration(self.write_timeout),
            format_duration(self.request_timeout),
            format_duration(self.shutdown_timeout),
            format_duration(self.shutdown_delay),
            self.access_log,
            self.profiling,
            self.http2,
            if self.api_token.is_some() {
                "set"
            } else {
                "unset"
            },
            match &self.tls {
                Some(t) => format!("cert:{},key:{}", t.cert, t.key),
                None => "off".to_owned(),
            },
            match &self.fleet {
                Some(f) => format!(
                    "redis:{}:cluster={}:size={}:lease={:?}",
                    redis_host(f.redis_url.expose()),
                    f.cluster,
                    f.expected,
                    f.lease_period
                ),
                None => "off".to_owned(),
            },
            self.backlog,
            self.reuse_port,
            self.io_threads,
            self.layout,
            self.uring_buffers,
        )
    }
}

struct Source {
    values: Vec<Option<String>>,
}

impl Source {
    fn setting(name: &str) -> usize {
        SETTINGS
            .iter()
            .position(|s| s.env == name)
            .expect("invariant: every parsed name is in SETTINGS")
    }

    fn raw(&self, name: &'static str) -> Option<&str> {
        self.values[Self::setting(name)].as_deref()
    }

    fn text(&self, name: &'static str) -> &str {
        self.raw(name)
            .unwrap_or(SETTINGS[Self::setting(name)].default)
    }

    fn parse<T>(
        &mut self,
        name: &'static str,
        expected: &str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        let v = self.text(name);
        f(v).ok_or_else(|| ConfigError {
            name,
            value: v.to_owned(),
            expected: expected.to_owned(),
        })
    }

    fn u64(&mut self, name: &'static str) -> Result<u64, ConfigError> {
        self.parse(name, "a non-negative integer", |v| v.trim().parse().ok())
    }

    /// A count or size within the range the setting's table entry gives.
    fn size(&mut self, name: &'static str) -> Result<usize, ConfigError> {
        let (min, max) = SETTINGS[Self::setting(name)]
            .range
            .expect("invariant: a size setting has its range in SETTINGS");
        self.parse(name, &format!("an integer from {min} to {max}"), |v| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .and_then(|n| usize::try_from(n).ok())
        })
    }

    fn bool(&mut self, name: &'static str) -> Result<bool, ConfigError> {
        self.parse(name, "true or false", |v| {
            match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            }
        })
    }

    /// A duration within the span the setting's table entry gives.
    fn duration(&mut self, name: &'static str) -> Result<Duration, ConfigError> {
        let (min, max) = SETTINGS[Self::setting(name)]
            .span
            .expect("invariant: a duration setting has its span in SETTINGS");
        let expected = format!(
            "{DURATION_GRAMMAR}, from {} to {}",
            format_duration(min),
            format_duration(max)
        );
        self.parse(name, &expected, |v| {
            parse_duration(v).filter(|d| (min..=max).contains(d))
        })
    }
}

/// The host and port of a Redis URL, without user, password or database (for logs).
pub fn redis_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

fn parse_listen(v: &str) -> Option<SocketAddr> {
    let v = v.trim();
    if let Ok(port) = v.trim_start_matches(':').parse::<u16>() {
        if !v.contains('.') {
            return Some(SocketAddr::from(([0, 0, 0, 0], port)));
        }
    }
    v.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(env.iter().copied(), 4)
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.max_header_bytes, 16 * 1024);
        assert_eq!(c.max_headers, 64);
        assert_eq!(c.max_uri_bytes, 8 * 1024);
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.max_connections, 100_000);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.write_timeout, Duration::from_secs(15));
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!((c.rate_limit, c.rate_burst), (100_000, 100_000));
        assert_eq!(c.rate_limit_per_ip, 0);
        assert_eq!(c.rate_limit_max_keys, 100_000);
        assert_eq!(
            (c.queue_size, c.worker_count, c.job_cost),
            (10_000, 8, 50_000)
        );
        assert!(c.access_log && !c.trust_proxy && c.api_token.is_none());
        assert!(!c.reuse_port);
        let secret = cfg(&[("API_TOKEN", "hunter2-s3cret")]).unwrap();
        assert_eq!(
            secret.api_token.as_ref().map(Token::expose),
            Some("hunter2-s3cret")
        );
        assert!(
            !format!("{secret:?}").contains("hunter2"),
            "Debug redacts API_TOKEN"
        );
        assert!(
            !secret.summary().contains("hunter2"),
            "the start-up line too"
        );
        let err = cfg(&[("TRUST_PROXY", "true")]).unwrap_err().to_string();
        assert!(
            err.contains("TRUST_PROXY") && err.contains("TRUSTED_PROXIES"),
            "TRUST_PROXY alone is refused: {err}"
        );
        assert!(cfg(&[("TRUST_PROXY", "true"), ("TRUSTED_PROXIES", "10.0.0.0/8")]).is_ok());
        assert_eq!(c.environment, Environment::Development);
    }

    #[test]
    fn every_duration_is_checked_at_zero_at_its_maximum_and_past_it() {
        let mut durations = 0;
        for st in SETTINGS {
            let Some((min, max)) = st.span else { continue };
            durations += 1;
            let at = |d: Duration| cfg(&[(st.env, &format_duration(d))]);
            assert!(at(min).is_ok() && at(max).is_ok(), "{}", st.env);
            let zero = at(Duration::ZERO);
            assert_eq!(zero.is_ok(), min.is_zero(), "{}=0s", st.env);
            for past in [
                max + Duration::from_millis(1),
                Duration::from_secs(u64::MAX / 3600 * 3600),
            ] {
                let err = at(past).unwrap_err();
                assert_eq!(err.name, st.env);
                assert!(err.expected.contains(&format_duration(max)), "{err}");
            }
            let err = cfg(&[(st.env, "18446744073709551615s")]).unwrap_err();
            assert_eq!(err.name, st.env, "the overflow of the review is refused");
            assert!(
                cfg(&[(st.env, "30")]).is_err(),
                "{}: a unit is required",
                st.env
            );
        }
        assert_eq!(durations, 7, "every duration setting has its span");
        assert!(
            cfg(&[("HEADER_TIMEOUT", "0s")]).is_err(),
            "a zero header timeout made every body a 408"
        );
    }

    #[test]
    fn every_range_in_the_table_is_enforced_at_both_ends() {
        for st in SETTINGS {
            let Some((min, max)) = st.range else { continue };
            for ok in [min, max] {
                assert!(cfg(&[(st.env, &ok.to_string())]).is_ok(), "{}={ok}", st.env);
            }
            let above = (max + 1).to_string();
            let err = cfg(&[(st.env, &above)]).unwrap_err();
            assert_eq!((err.name, err.value.as_str()), (st.env, above.as_str()));
            assert!(err.expected.contains(&max.to_string()), "{err}");
            if min > 0 {
                assert!(
                    cfg(&[(st.env, &(min - 1).to_string())]).is_err(),
                    "{}",
                    st.env
                );
            }
        }
    }

    #[test]
    fn the_fleet_settings_are_checked_and_the_password_never_shown() {
        assert!(cfg(&[]).unwrap().fleet.is_none());
        let c = cfg(&[
            ("REDIS_URL", "redis://:s3cret@10.0.0.5:6380/2"),
            ("CLUSTER_NAME", "api-eu"),
            ("CLUSTER_SIZE", "3"),
        ])
        .unwrap();
        let f = c.fleet.as_ref().unwrap();
        assert_eq!((f.cluster.as_str(), f.expected), ("api-eu", 3));
        assert_eq!(f.lease_period, Duration::from_millis(100));
        assert!(!format!("{c:?}").contains("s3cret") && !c.summary().contains("s3cret"));
        assert!(
            c.summary().contains("redis:10.0.0.5:6380:cluster=api-eu"),
            "{}",
            c.summary()
        );
        for (env, name) in [
            (&[("REDIS_URL", "http://x")][..], "REDIS_URL"),
            (
                &[("REDIS_URL", "redis://x"), ("RATE_LIMIT", "0")][..],
                "REDIS_URL",
            ),
            (
                &[("REDIS_URL", "redis://x"), ("LEASE_PERIOD", "1ms")][..],
                "LEASE_PERIOD",
            ),
            (
                &[("REDIS_URL", "redis://x"), ("CLUSTER_NAME", "a b")][..],
                "CLUSTER_NAME",
            ),
            (&[("CLUSTER_NAME", "")][..], "CLUSTER_NAME"),
        ] {
            assert_eq!(cfg(env).unwrap_err().name, name, "{env:?}");
        }
        assert!(
            !cfg(&[("REDIS_URL", "http://:pw@x")])
                .unwrap_err()
                .to_string()
                .contains("pw"),
            "an invalid URL is not echoed either"
        );
    }

    #[test]
    fn listen_address_forms() {
        for (v, want) in [
            ("8080", "0.0.0.0:8080"),
            (":9000", "0.0.0.0:9000"),
            ("127.0.0.1:81", "127.0.0.1:81"),
            ("[::1]:8080", "[::1]:8080"),
            ("0", "0.0.0.0:0"),
        ] {
            assert_eq!(
                cfg(&[("SERVER_PORT", v)]).unwrap().listen,
                want.parse().unwrap(),
                "{v}"
            );
        }
    }

    #[test]
    fn rate_burst_defaults_to_rate_limit() {
        let c = cfg(&[("RATE_LIMIT", "10")]).unwrap();
        assert_eq!(c.rate_burst, 10);
        let c = cfg(&[("RATE_LIMIT", "10"), ("RATE_BURST", "3")]).unwrap();
        assert_eq!(c.rate_burst, 3);
        assert!(cfg(&[("RATE_LIMIT", "0")]).unwrap().rate_limit == 0);
    }

    #[test]
    fn invalid_values_name_variable_and_value() {
        for (k, v) in [
            ("SERVER_PORT", "http"),
            ("WORKER_COUNT", "0"),
            ("SHUTDOWN_TIMEOUT", "soon"),
            ("ACCESS_LOG", "maybe"),
            ("ENVIRONMENT", "staging"),
            ("MAX_HEADERS", "-1"),
            ("TRUSTED_PROXIES", "10.0.0.0/40"),
            ("RATE_LIMIT", "1e3"),
        ] {
            let err = cfg(&[(k, v)]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(k) && text.contains(v), "{text}");
        }
    }

    #[test]
    fn cidr_matching() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(IpNet::parse("1.2.3.4/33").is_none());
    }
}

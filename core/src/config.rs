//! Configuration: every setting (docs/configuration.md) from environment pairs and flags.
//!
//! Parsing is a pure function of its inputs ([`Config::from_sources`]); it never reads the
//! process environment. Invariants: a flag wins over the variable of the same meaning; every
//! value is validated here, so the rest of the program trusts a `Config`; an invalid value is a
//! [`ConfigError`] naming the variable and the value.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::time::parse_duration;

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
    /// `LOG_BUFFER_LINES`: lines the non-blocking log writer holds before it drops.
    pub log_buffer_lines: usize,
    /// `IO_THREADS`: threads serving connections (tokio, smol).
    pub io_threads: usize,
    /// `RUNTIME_LAYOUT`: how the async runtimes spread connections over their threads.
    pub layout: Layout,
    /// `URING_BUFFERS`: receive buffers (4 KiB each) per io_uring ring (weir-uring).
    pub uring_buffers: u16,
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

/// One setting: its variable, flag, default and help line. The table drives parsing and `--help`.
struct Setting {
    env: &'static str,
    flag: &'static str,
    default: &'static str,
    help: &'static str,
}

const SETTINGS: &[Setting] = &[
    Setting {
        env: "SERVER_PORT",
        flag: "port",
        default: ":8080",
        help: "listen address: 8080, :8080, 127.0.0.1:8080, [::1]:8080 (port 0 picks a free port)",
    },
    Setting {
        env: "ENVIRONMENT",
        flag: "environment",
        default: "development",
        help: "development (human logs) or production (JSON logs)",
    },
    Setting {
        env: "SHUTDOWN_TIMEOUT",
        flag: "shutdown-timeout",
        default: "30s",
        help: "graceful drain limit",
    },
    Setting {
        env: "SHUTDOWN_DELAY",
        flag: "shutdown-delay",
        default: "0s",
        help: "after SIGTERM, report not ready (/readyz 503) for this long while still serving, then drain",
    },
    Setting {
        env: "LOG_LEVEL",
        flag: "log-level",
        default: "info",
        help: "tracing filter: error, warn, info, debug, trace or directives",
    },
    Setting {
        env: "ACCESS_LOG",
        flag: "access-log",
        default: "true",
        help: "one log line per request",
    },
    Setting {
        env: "MAX_HEADER_BYTES",
        flag: "max-header-bytes",
        default: "16384",
        help: "request line + headers, past it 431",
    },
    Setting {
        env: "MAX_HEADERS",
        flag: "max-headers",
        default: "64",
        help: "header fields per request, past it 431",
    },
    Setting {
        env: "MAX_URI_BYTES",
        flag: "max-uri-bytes",
        default: "8192",
        help: "request-target length, past it 414",
    },
    Setting {
        env: "MAX_BODY_BYTES",
        flag: "max-body-bytes",
        default: "1048576",
        help: "request body, past it 413",
    },
    Setting {
        env: "MAX_CONNECTIONS",
        flag: "max-connections",
        default: "100000",
        help: "open connections, past it 503 + close",
    },
    Setting {
        env: "HEADER_TIMEOUT",
        flag: "header-timeout",
        default: "10s",
        help: "time to receive a request head (408)",
    },
    Setting {
        env: "IDLE_TIMEOUT",
        flag: "idle-timeout",
        default: "60s",
        help: "idle keep-alive connection lifetime",
    },
    Setting {
        env: "WRITE_TIMEOUT",
        flag: "write-timeout",
        default: "15s",
        help: "a response write without progress",
    },
    Setting {
        env: "REQUEST_TIMEOUT",
        flag: "request-timeout",
        default: "30s",
        help: "queued job deadline (504)",
    },
    Setting {
        env: "RATE_LIMIT",
        flag: "rate-limit",
        default: "100000",
        help: "global requests/s, 0 = off",
    },
    Setting {
        env: "RATE_BURST",
        flag: "rate-burst",
        default: "",
        help: "global burst (default: RATE_LIMIT)",
    },
    Setting {
        env: "RATE_LIMIT_PER_IP",
        flag: "rate-limit-per-ip",
        default: "0",
        help: "requests/s per client IP (burst equal), 0 = off",
    },
    Setting {
        env: "RATE_LIMIT_MAX_KEYS",
        flag: "rate-limit-max-keys",
        default: "100000",
        help: "client IPs tracked at most",
    },
    Setting {
        env: "TRUST_PROXY",
        flag: "trust-proxy",
        default: "false",
        help: "client IP from X-Forwarded-For (requires TRUSTED_PROXIES)",
    },
    Setting {
        env: "TRUSTED_PROXIES",
        flag: "trusted-proxies",
        default: "",
        help: "comma-separated CIDRs of proxies skipped in X-Forwarded-For",
    },
    Setting {
        env: "API_TOKEN",
        flag: "api-token",
        default: "",
        help: "bearer token required on /api/* (empty = none)",
    },
    Setting {
        env: "QUEUE_SIZE",
        flag: "queue-size",
        default: "10000",
        help: "job queue places",
    },
    Setting {
        env: "WORKER_COUNT",
        flag: "workers",
        default: "",
        help: "worker threads (default: 2 x cores)",
    },
    Setting {
        env: "JOB_COST",
        flag: "job-cost",
        default: "50000",
        help: "rounds of CPU work per intensive job",
    },
    Setting {
        env: "BACKLOG",
        flag: "backlog",
        default: "4096",
        help: "listen backlog",
    },
    Setting {
        env: "IO_THREADS",
        flag: "io-threads",
        default: "",
        help: "threads serving connections in tokio, smol and uring (default: cores; std uses one per connection)",
    },
    Setting {
        env: "RUNTIME_LAYOUT",
        flag: "runtime-layout",
        default: "per-core",
        help: "per-core (one single-threaded executor per I/O thread) or shared (one work-stealing pool)",
    },
    Setting {
        env: "TLS_CERT",
        flag: "tls-cert",
        default: "",
        help: "PEM certificate chain; with TLS_KEY the listener speaks TLS 1.2/1.3 (SIGHUP reloads both)",
    },
    Setting {
        env: "TLS_KEY",
        flag: "tls-key",
        default: "",
        help: "PEM private key of TLS_CERT (PKCS#8, RSA or EC)",
    },
    Setting {
        env: "URING_BUFFERS",
        flag: "uring-buffers",
        default: "512",
        help: "weir-uring: 4 KiB receive buffers per ring, a power of two up to 32768 (a burst of more simultaneous receives waits a turn)",
    },
    Setting {
        env: "LOG_BUFFER_LINES",
        flag: "log-buffer-lines",
        default: "65536",
        help: "log lines buffered before dropping",
    },
];

/// Why configuration failed. Each variant names the variable (or flag) and the value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting holds a value it cannot take.
    Invalid {
        /// The environment variable of the setting.
        name: &'static str,
        /// The rejected text.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A command-line argument that names no setting.
    UnknownFlag(String),
    /// A flag given without its value.
    MissingValue(String),
    /// `--help` was asked for; the caller prints [`help_text`] and exits 0.
    HelpRequested,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Invalid {
                name,
                value,
                expected,
            } => {
                write!(f, "invalid {name}={value:?}: expected {expected}")
            }
            ConfigError::UnknownFlag(flag) => write!(f, "unknown argument {flag:?} (see --help)"),
            ConfigError::MissingValue(flag) => write!(f, "{flag} needs a value (see --help)"),
            ConfigError::HelpRequested => f.write_str("help requested"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The `--help` text for binary `bin`, listing every setting with its variable and default.
pub fn help_text(bin: &str) -> String {
    let mut s = format!(
        "{bin} {}: weir HTTP/1.1 API server\n\nUSAGE: {bin} [--flag value | --flag=value]...\n\n\
         Every flag has an environment variable of the same meaning; the flag wins.\n\nOPTIONS:\n",
        env!("CARGO_PKG_VERSION")
    );
    for st in SETTINGS {
        let default = if st.default.is_empty() {
            "-"
        } else {
            st.default
        };
        s.push_str(&format!(
            "  --{:<22} {:<20} {} [default: {}]\n",
            st.flag, st.env, st.help, default
        ));
    }
    s.push_str("  --help                                        print this text\n");
    s
}

impl Default for Config {
    fn default() -> Self {
        Config::from_sources(
            std::iter::empty::<(String, String)>(),
            std::iter::empty::<String>(),
            2,
        )
        .expect("invariant: the built-in defaults are valid")
    }
}

impl Config {
    /// Builds the configuration from environment pairs and command-line arguments (without
    /// the program name). `cores` is the machine's parallelism, for the `WORKER_COUNT`
    /// default. Unknown environment variables are ignored; unknown flags are errors.
    pub fn from_sources<K, V, A>(
        env: impl IntoIterator<Item = (K, V)>,
        args: impl IntoIterator<Item = A>,
        cores: usize,
    ) -> Result<Config, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
        A: AsRef<str>,
    {
        let mut values: Vec<Option<String>> = vec![None; SETTINGS.len()];
        for (k, v) in env {
            if let Some(i) = SETTINGS.iter().position(|s| s.env == k.as_ref()) {
                values[i] = Some(v.as_ref().to_owned());
            }
        }
        let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            if arg == "--help" || arg == "-h" {
                return Err(ConfigError::HelpRequested);
            }
            let Some(body) = arg.strip_prefix("--") else {
                return Err(ConfigError::UnknownFlag(arg.clone()));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let idx = SETTINGS
                .iter()
                .position(|s| s.flag == name)
                .ok_or_else(|| ConfigError::UnknownFlag(arg.clone()))?;
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| ConfigError::MissingValue(arg.clone()))?
                }
            };
            values[idx] = Some(value);
            i += 1;
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
            max_header_bytes: src.size("MAX_HEADER_BYTES", 256, 1 << 24)?,
            max_headers: src.size("MAX_HEADERS", 1, 1024)?,
            max_uri_bytes: src.size("MAX_URI_BYTES", 16, 1 << 24)?,
            max_body_bytes: src.size("MAX_BODY_BYTES", 0, 1 << 34)?,
            max_connections: src.size("MAX_CONNECTIONS", 1, 1 << 30)?,
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
            rate_limit_max_keys: src.size("RATE_LIMIT_MAX_KEYS", 1, 1 << 26)?,
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
            queue_size: src.size("QUEUE_SIZE", 1, 1 << 24)?,
            worker_count: match src.raw("WORKER_COUNT") {
                None => (2 * cores).max(1),
                Some(_) => src.size("WORKER_COUNT", 1, 4096)?,
            },
            job_cost: src.u64("JOB_COST")?,
            backlog: src.size("BACKLOG", 1, 1 << 20)? as u32,
            log_buffer_lines: src.size("LOG_BUFFER_LINES", 16, 1 << 24)?,
            io_threads: match src.raw("IO_THREADS") {
                None => cores.max(1),
                Some(_) => src.size("IO_THREADS", 1, 1024)?,
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
                return Err(ConfigError::Invalid {
                    name: "TLS_KEY",
                    value: String::new(),
                    expected: "a private key file to go with TLS_CERT (both or neither)",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "TLS_CERT",
                    value: String::new(),
                    expected: "a certificate file to go with TLS_KEY (both or neither)",
                });
            }
        };
        if cfg.trust_proxy && cfg.trusted_proxies.is_empty() {
            // Believing every peer's X-Forwarded-For lets any client choose its own rate-limit
            // key (and crowd real clients out of the per-IP table).
            return Err(ConfigError::Invalid {
                name: "TRUST_PROXY",
                value: "true".into(),
                expected: "TRUSTED_PROXIES to be set too (the networks of your proxies, like \
                           10.0.0.0/8): without it any client could forge X-Forwarded-For",
            });
        }
        if cfg.rate_limit > 0 && cfg.rate_burst == 0 {
            return Err(ConfigError::Invalid {
                name: "RATE_BURST",
                value: "0".into(),
                expected: "at least 1 while RATE_LIMIT is on",
            });
        }
        Ok(cfg)
    }

    /// The effective configuration as `key=value` pairs for the start-up log (token hidden).
    pub fn summary(&self) -> String {
        format!(
            "listen={} environment={:?} workers={} queue_size={} job_cost={} rate_limit={} rate_burst={} \
             rate_limit_per_ip={} rate_limit_max_keys={} trust_proxy={} max_connections={} \
             max_header_bytes={} max_headers={} max_uri_bytes={} max_body_bytes={} header_timeout={:?} \
             idle_timeout={:?} write_timeout={:?} request_timeout={:?} shutdown_timeout={:?} shutdown_delay={:?} \
             access_log={} api_token={} tls={} backlog={} io_threads={} layout={:?} uring_buffers={}",
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
            self.header_timeout,
            self.idle_timeout,
            self.write_timeout,
            self.request_timeout,
            self.shutdown_timeout,
            self.shutdown_delay,
            self.access_log,
            if self.api_token.is_some() {
                "set"
            } else {
                "unset"
            },
            match &self.tls {
                Some(t) => format!("cert:{},key:{}", t.cert, t.key),
                None => "off".to_owned(),
            },
            self.backlog,
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
        expected: &'static str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        let v = self.text(name);
        f(v).ok_or_else(|| ConfigError::Invalid {
            name,
            value: v.to_owned(),
            expected,
        })
    }

    fn u64(&mut self, name: &'static str) -> Result<u64, ConfigError> {
        self.parse(name, "a non-negative integer", |v| v.trim().parse().ok())
    }

    fn size(&mut self, name: &'static str, min: usize, max: usize) -> Result<usize, ConfigError> {
        self.parse(name, "an integer in its allowed range (see --help)", |v| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (min..=max).contains(n))
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

    fn duration(&mut self, name: &'static str) -> Result<Duration, ConfigError> {
        self.parse(name, "a duration like 500ms, 30s or 2m", parse_duration)
    }
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

    fn cfg(env: &[(&str, &str)], args: &[&str]) -> Result<Config, ConfigError> {
        Config::from_sources(env.iter().copied(), args.iter().copied(), 4)
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = cfg(&[], &[]).unwrap();
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
        let secret = cfg(&[("API_TOKEN", "hunter2-s3cret")], &[]).unwrap();
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
        let err = cfg(&[("TRUST_PROXY", "true")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TRUST_PROXY") && err.contains("TRUSTED_PROXIES"),
            "TRUST_PROXY alone is refused: {err}"
        );
        assert!(
            cfg(
                &[("TRUST_PROXY", "true"), ("TRUSTED_PROXIES", "10.0.0.0/8")],
                &[]
            )
            .is_ok()
        );
        assert_eq!(c.environment, Environment::Development);
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
                cfg(&[("SERVER_PORT", v)], &[]).unwrap().listen,
                want.parse().unwrap(),
                "{v}"
            );
        }
    }

    #[test]
    fn flags_win_over_environment() {
        let c = cfg(
            &[("SERVER_PORT", "1"), ("WORKER_COUNT", "3")],
            &["--port", "2", "--workers=5"],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.worker_count, 5);
    }

    #[test]
    fn rate_burst_defaults_to_rate_limit() {
        let c = cfg(&[("RATE_LIMIT", "10")], &[]).unwrap();
        assert_eq!(c.rate_burst, 10);
        let c = cfg(&[("RATE_LIMIT", "10"), ("RATE_BURST", "3")], &[]).unwrap();
        assert_eq!(c.rate_burst, 3);
        assert!(cfg(&[("RATE_LIMIT", "0")], &[]).unwrap().rate_limit == 0);
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
            let err = cfg(&[(k, v)], &[]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(k) && text.contains(v), "{text}");
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert_eq!(
            cfg(&[], &["--nope", "1"]).unwrap_err(),
            ConfigError::UnknownFlag("--nope".into())
        );
        assert_eq!(
            cfg(&[], &["--port"]).unwrap_err(),
            ConfigError::MissingValue("--port".into())
        );
        assert_eq!(
            cfg(&[], &["--help"]).unwrap_err(),
            ConfigError::HelpRequested
        );
        assert!(matches!(
            cfg(&[], &["stray"]).unwrap_err(),
            ConfigError::UnknownFlag(_)
        ));
    }

    #[test]
    fn help_lists_every_setting_with_default() {
        let h = help_text("weir-tokio");
        for s in SETTINGS {
            assert!(
                h.contains(s.env) && h.contains(&format!("--{}", s.flag)),
                "{}",
                s.env
            );
        }
        assert!(h.contains("[default: 30s]"));
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

//! Command-line arguments of `weir-load`.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The two scenarios of the Go load client, plus both in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 1,000,000 `POST /api/v1/compute/fast` over 500 connections.
    Fast,
    /// 100,000 `POST /api/v1/compute/intensive` over 500 connections.
    Intensive,
    /// `fast` then `intensive`.
    Seed,
}

/// weir-load: HTTP/1.1 load generator with HDR latency percentiles.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "weir-load",
    version,
    about = "weir-load: an HTTP/1.1 load generator (closed loop, or a constant rate with coordinated-omission correction) with HDR latency percentiles"
)]
pub struct Args {
    /// Target URL, e.g. http://127.0.0.1:8080/ping or https://localhost:8443/ping (with
    /// --scenario: the server's base URL).
    pub url: String,
    /// Connections to keep open.
    #[arg(short = 'c', long, default_value_t = 50)]
    pub connections: usize,
    /// Threads (each runs its share of the connections); default: available cores.
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Total requests (exact); conflicts with --duration.
    #[arg(short = 'n', long, conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Run for this long (e.g. 10s, 2m); default 10s when -n is not given.
    #[arg(short = 'z', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Constant total request rate per second, latency measured from the intended send time
    /// (coordinated-omission correction, as wrk2 does).
    #[arg(long)]
    pub rate: Option<f64>,
    /// HTTP method (default GET, or POST when a body is given).
    #[arg(short = 'm', long)]
    pub method: Option<String>,
    /// Request body.
    #[arg(short = 'd', long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body from a file.
    #[arg(short = 'D', long = "body-file")]
    pub body_file: Option<std::path::PathBuf>,
    /// The body's Content-Type (when no -H gives one).
    #[arg(short = 'T', long, default_value = "application/json")]
    pub content_type: String,
    /// Extra header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Run this long before measuring (requests then are not counted).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// Per-request timeout.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Progress line interval (0s: none).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub report_interval: Duration,
    /// A predefined scenario (sets method, path, body, and -c/-n unless given).
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,
    /// https: trust the CA certificates in this PEM file (default: the system's bundle).
    #[arg(long)]
    pub cacert: Option<std::path::PathBuf>,
    /// https: skip certificate verification (testing only).
    #[arg(long)]
    pub insecure: bool,
    /// A new connection for every request (`Connection: close`); over https this measures
    /// handshakes per second.
    #[arg(long)]
    pub no_keepalive: bool,
    /// Latency percentiles to report (comma-separated, each above 0 and at most 100).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,90,95,99,99.9",
        value_parser = parse_percentile
    )]
    pub percentiles: Vec<f64>,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 when failing requests / requests is above this fraction (failing:
    /// no response, or 5xx; with `--fail-on 4xx` also 4xx such as 429).
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,
    /// Which answers count against --max-error-rate besides transport errors: 5xx (default)
    /// or 4xx (4xx and 5xx).
    #[arg(long, value_enum, default_value = "5xx")]
    pub fail_on: FailOn,
}

/// Which statuses fail a run (`--fail-on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// 5xx answers (and transport errors).
    #[value(name = "5xx")]
    ServerErrors,
    /// 4xx and 5xx answers (and transport errors).
    #[value(name = "4xx")]
    ClientErrors,
}

/// A percentile: a number above 0 and at most 100.
fn parse_percentile(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|p| *p > 0.0 && *p <= 100.0)
        .ok_or_else(|| format!("invalid percentile {s:?} (a number above 0, at most 100)"))
}

/// `500ms`, `10s`, `2m`, `1h`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (try 500ms, 10s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A parsed `http(s)://[user[:password]@]host[:port]/path?query` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://`: speak TLS.
    pub tls: bool,
    /// `host:port` to connect to.
    pub authority: String,
    /// Value for the `Host` header.
    pub host: String,
    /// Path and query.
    pub path: String,
    /// `Basic …` from the URL's user and password, if it has them.
    pub authorization: Option<String>,
}

impl Target {
    /// Parses an `http://` or `https://` URL (with the `url` crate: IPv6 literals, default
    /// ports, percent-encoded user info).
    pub fn parse(text: &str) -> Result<Target, String> {
        use base64::Engine as _;
        let url = url::Url::parse(text).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(format!(
                    "unsupported URL {text:?}: http:// or https:// expected"
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("URL {text:?} has no host"))?;
        let port = url
            .port_or_known_default()
            .expect("invariant: http and https have default ports");
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let authorization = (!url.username().is_empty() || url.password().is_some()).then(|| {
            let pair = format!(
                "{}:{}",
                decode(url.username()),
                url.password().map(decode).unwrap_or_default()
            );
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Ok(Target {
            tls,
            authority: format!("{host}:{port}"),
            host: match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            },
            path,
            authorization,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:8080/ping?x=1").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/ping?x=1")
        );
        let t = Target::parse("https://localhost/a").unwrap();
        assert!(t.tls && t.authority == "localhost:443" && t.path == "/a");
        assert!(Target::parse("ftp://x/").is_err());
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("localhost:80", "/")
        );
        let t = Target::parse("http://[::1]:81/a").unwrap();
        assert_eq!(t.authority, "[::1]:81");
        assert!(Target::parse("https://x").is_ok_and(|t| t.tls && t.authority == "x:443"));
        let t = Target::parse("http://us%40er:p%3Ass@example.test:8080/a").unwrap();
        assert_eq!(t.host, "example.test:8080");
        // base64("us@er:p:ss")
        assert_eq!(t.authorization.as_deref(), Some("Basic dXNAZXI6cDpzcw=="));
        assert_eq!(Target::parse("http://x/").unwrap().authorization, None);
        assert!(Target::parse("http://").is_err());
        assert!(Target::parse("not a url").is_err());
        assert!(Target::parse("ftp://x").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5x").is_err());
    }
}

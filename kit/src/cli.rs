//! The command line, one clap definition for every runtime, built from the core's table of
//! settings (`weir_core::config::SETTINGS`) so flags, variables, defaults, ranges and `--help`
//! can never disagree with what the core validates.
//!
//! Invariants: a flag wins over its environment variable; a boolean is a real flag
//! (`--trust-proxy`, `--trust-proxy=false`, `--no-trust-proxy`) and never takes the next word
//! as its value; every error names what the user actually wrote — the flag if it came from the
//! command line, the variable if it came from the environment — and exits 2, before any
//! socket is bound; `--help` and `--version` exit 0. The values themselves are validated by
//! the core (`Config::from_sources`), never here.

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use weir_core::config::{Config, ConfigError, SETTINGS, Setting};
use weir_core::time::format_duration;

/// The command of binary `bin`, every setting a flag with its variable, default and range.
pub fn command(bin: &'static str) -> Command {
    let mut cmd = Command::new(bin)
        .version(env!("CARGO_PKG_VERSION"))
        .about("weir: an HTTP/1.1 API server")
        .after_help(
            "Every flag has an environment variable of the same meaning; the flag wins.\n\
             Durations take a unit (ms, s, m or h): 500ms, 30s, 2m. LOG_LEVEL, when not given, comes from RUST_LOG.",
        )
        .max_term_width(100)
        // A flag given twice takes its last value: defaults a program passes first
        // (`load_with`) give way to what its user writes after them.
        .args_override_self(true);
    cmd = cmd.arg(
        Arg::new("health-check")
            .long("health-check")
            .action(ArgAction::SetTrue)
            .help_heading("Operations")
            .help(
                "probe the server this configuration describes instead of starting one: GET /livez \
                 on SERVER_PORT (a TCP connect when TLS is on); exit 0 when it answers 200, else 1 \
                 (a container health check that needs no shell or curl)",
            ),
    );
    for s in SETTINGS {
        let mut arg = Arg::new(s.env)
            .long(s.flag)
            .env(s.env)
            .hide_env_values(true)
            .help(help_line(s))
            .help_heading(heading(s.env))
            .action(ArgAction::Set);
        if s.switch {
            let negation = format!("no-{}", s.flag);
            arg = arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .value_name("BOOL")
                .overrides_with(negation.clone());
            cmd = cmd.arg(arg).arg(
                Arg::new(negation.clone())
                    .long(negation)
                    .action(ArgAction::SetTrue)
                    .help(format!("the same as --{}=false", s.flag))
                    .help_heading(heading(s.env))
                    .overrides_with(s.env),
            );
        } else {
            cmd = cmd.arg(arg);
        }
    }
    cmd
}

/// The `--help` section of the setting `env`.
fn heading(env: &str) -> &'static str {
    match env {
        "SERVER_PORT"
        | "BACKLOG"
        | "REUSE_PORT"
        | "IO_THREADS"
        | "RUNTIME_LAYOUT"
        | "URING_BUFFERS"
        | "MAX_CONNECTIONS"
        | "HTTP2"
        | "MAX_CONCURRENT_STREAMS"
        | "H2_INITIAL_WINDOW" => "Network",
        "MAX_HEADER_BYTES" | "MAX_HEADERS" | "MAX_URI_BYTES" | "MAX_BODY_BYTES" => "Limits",
        "HEADER_TIMEOUT" | "IDLE_TIMEOUT" | "WRITE_TIMEOUT" | "REQUEST_TIMEOUT"
        | "SHUTDOWN_TIMEOUT" | "SHUTDOWN_DELAY" => "Timeouts",
        "RATE_LIMIT"
        | "RATE_BURST"
        | "RATE_LIMIT_PER_IP"
        | "RATE_LIMIT_MAX_KEYS"
        | "TRUST_PROXY"
        | "TRUSTED_PROXIES"
        | "API_TOKEN" => "Rate limits and access",
        "TLS_CERT" | "TLS_KEY" => "TLS",
        "REDIS_URL" | "CLUSTER_NAME" | "CLUSTER_SIZE" | "LEASE_PERIOD" => "Fleet",
        "QUEUE_SIZE" | "WORKER_COUNT" | "JOB_COST" => "Jobs",
        "PROFILING" => "Operations",
        _ => "Logging",
    }
}

fn help_line(s: &Setting) -> String {
    let mut line = s.help.to_owned();
    if let Some((min, max)) = s.range {
        line.push_str(&format!(" [range: {min}..={max}]"));
    }
    if let Some((min, max)) = s.span {
        line.push_str(&format!(
            " [range: {}..={}]",
            format_duration(min),
            format_duration(max)
        ));
    }
    if !s.default.is_empty() {
        line.push_str(&format!(" [default: {}]", s.default));
    }
    line
}

/// Where a setting's value came from, to name it in an error as the user wrote it.
fn written_as(matches: &ArgMatches, s: &Setting, value: &str) -> String {
    let negation = format!("no-{}", s.flag);
    if s.switch && matches.get_flag(&negation) {
        return format!("--{negation}");
    }
    match matches.value_source(s.env) {
        Some(ValueSource::CommandLine) => format!("--{}={value:?}", s.flag),
        Some(ValueSource::EnvVariable) => format!("{}={value:?}", s.env),
        // Not given at all (a setting missing its partner): name both spellings.
        _ => format!("--{} / {}", s.flag, s.env),
    }
}

/// The `(variable, value)` pairs the user gave, by flag or variable (clap already applied
/// "the flag wins").
fn given(matches: &ArgMatches) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    for s in SETTINGS {
        if s.switch && matches.get_flag(&format!("no-{}", s.flag)) {
            pairs.push((s.env, "false".to_owned()));
        } else if let Some(v) = matches.get_one::<String>(s.env) {
            pairs.push((s.env, v.clone()));
        }
    }
    pairs
}

/// A configuration error as the user should read it: what they wrote and what was expected.
pub fn describe(matches: &ArgMatches, e: &ConfigError) -> String {
    let s = weir_core::config::setting(e.name)
        .expect("invariant: a configuration error names a setting of the table");
    let written = written_as(matches, s, &e.value);
    format!("invalid {written}: expected {}", e.expected)
}

/// Builds the configuration from `args` (without the program name) and the process
/// environment. `Err` carries clap's own error (help, version, an unknown flag) or a line
/// naming what was wrong; [`load`] prints either and exits.
pub fn parse<I, T>(bin: &'static str, args: I, cores: usize) -> Result<Config, Failure>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command(bin)
        .try_get_matches_from(std::iter::once(bin.into()).chain(args.into_iter().map(Into::into)))
        .map_err(Failure::Clap)?;
    let mut config = Config::from_sources(given(&matches), cores)
        .map_err(|e| Failure::Invalid(describe(&matches, &e)))?;
    // `RUST_LOG` is honoured when `LOG_LEVEL` is not given; either must be a valid filter
    // (a typo would otherwise silently log at `info`).
    let mut source = format!("LOG_LEVEL={:?}", config.log_level);
    if matches.value_source("LOG_LEVEL") == Some(ValueSource::CommandLine) {
        source = format!("--log-level={:?}", config.log_level);
    } else if matches.value_source("LOG_LEVEL").is_none() {
        if let Ok(rust_log) = std::env::var("RUST_LOG") {
            source = format!("RUST_LOG={rust_log:?}");
            config.log_level = rust_log;
        }
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log_level) {
        return Err(Failure::Invalid(format!(
            "invalid {source}: expected a tracing filter like info or weir=debug,warn ({e})"
        )));
    }
    Ok(config)
}

/// Why [`parse`] gave no configuration.
#[derive(Debug)]
pub enum Failure {
    /// clap's own outcome: `--help`, `--version` (exit 0) or a malformed command line (exit 2).
    Clap(clap::Error),
    /// A value the core refused, described as the user wrote it.
    Invalid(String),
}

/// Reads the configuration from the process's arguments and environment; on `--help` or
/// `--version` prints and exits 0, on an error prints it and exits 2.
pub fn load(bin: &'static str) -> Config {
    load_with(bin, &[])
}

/// [`load`] with `defaults` read before the process's own arguments (so those win): a
/// program's own defaults, e.g. `["--server-port", "127.0.0.1:0"]`.
pub fn load_with(bin: &'static str, defaults: &[&str]) -> Config {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let args = defaults
        .iter()
        .map(std::ffi::OsString::from)
        .chain(std::env::args_os().skip(1));
    match parse(bin, args, cores) {
        Ok(config) if std::env::args_os().any(|a| a == "--health-check") => {
            std::process::exit(if is_healthy(&config) { 0 } else { 1 })
        }
        Ok(config) => config,
        Err(Failure::Clap(e)) => e.exit(),
        Err(Failure::Invalid(line)) => {
            eprintln!("{bin}: {line}");
            std::process::exit(2);
        }
    }
}

/// `--health-check`: whether the server `config` describes answers `GET /livez` with 200
/// within two seconds (over TLS: whether it accepts a connection).
fn is_healthy(config: &Config) -> bool {
    use std::io::{Read, Write};
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = std::time::Duration::from_secs(2);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    if config.tls.is_some() {
        return true;
    }
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    if s.write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, Failure> {
        parse("weir-test", args.iter().copied(), 4)
    }

    fn invalid(args: &[&str]) -> String {
        match config(args) {
            Err(Failure::Invalid(line)) => line,
            other => panic!("{args:?}: expected a refused value, got {other:?}"),
        }
    }

    #[test]
    fn the_command_is_well_formed() {
        command("weir-test").debug_assert();
    }

    #[test]
    fn help_groups_the_settings_and_shows_duration_ranges() {
        let help = command("weir-test").render_help().to_string();
        for heading in [
            "Network:",
            "Limits:",
            "Timeouts:",
            "Rate limits and access:",
            "TLS:",
            "Fleet:",
            "Jobs:",
            "Logging:",
        ] {
            assert!(help.contains(heading), "{heading} in --help");
        }
        assert!(
            help.contains("[range: 100ms..=1h]"),
            "HEADER_TIMEOUT's range: {help}"
        );
        assert!(
            help.contains("[default: 0s]"),
            "SHUTDOWN_DELAY in the duration grammar"
        );
    }

    #[test]
    fn flags_set_their_settings() {
        let c = config(&["--port", "127.0.0.1:2", "--workers=5", "--max-headers", "7"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:2".parse().unwrap());
        assert_eq!((c.worker_count, c.max_headers), (5, 7));
    }

    #[test]
    fn booleans_are_real_flags_and_never_take_the_next_word() {
        let c = config(&[
            "--trust-proxy",
            "--trusted-proxies",
            "10.0.0.0/8",
            "--port",
            "9",
        ])
        .unwrap();
        assert!(c.trust_proxy);
        assert_eq!(c.listen.port(), 9, "--port was not eaten by --trust-proxy");
        assert!(!config(&["--no-access-log"]).unwrap().access_log);
        assert!(!config(&["--access-log=false"]).unwrap().access_log);
        assert!(config(&["--access-log"]).unwrap().access_log);
        // The last of a flag and its negation wins.
        assert!(
            config(&["--no-access-log", "--access-log"])
                .unwrap()
                .access_log
        );
        assert!(
            !config(&["--access-log", "--no-access-log"])
                .unwrap()
                .access_log
        );
        // A boolean followed by a word is an error, not a value.
        assert!(matches!(
            config(&["--access-log", "false"]),
            Err(Failure::Clap(_))
        ));
    }

    #[test]
    fn errors_name_the_flag_the_user_wrote() {
        let line = invalid(&["--max-headers=0"]);
        assert!(
            line.contains("--max-headers=\"0\"") && line.contains("from 1 to 1024"),
            "{line}"
        );
        assert!(!line.contains("MAX_HEADERS"), "{line}");
        let line = invalid(&["--access-log=maybe"]);
        assert!(
            line.contains("--access-log=\"maybe\"") && line.contains("true or false"),
            "{line}"
        );
        let line = invalid(&["--trust-proxy"]);
        assert!(
            line.contains("--trust-proxy") && line.contains("TRUSTED_PROXIES"),
            "{line}"
        );
        let line = invalid(&["--log-level", "weir=loud"]);
        assert!(line.contains("--log-level=\"weir=loud\""), "{line}");
    }

    #[test]
    fn help_and_version_and_unknown_flags_are_clap_outcomes() {
        use clap::error::ErrorKind;
        let kind = |args: &[&str]| match config(args) {
            Err(Failure::Clap(e)) => e.kind(),
            other => panic!("{args:?}: {other:?}"),
        };
        assert_eq!(kind(&["--help"]), ErrorKind::DisplayHelp);
        assert_eq!(kind(&["-h"]), ErrorKind::DisplayHelp);
        assert_eq!(kind(&["--version"]), ErrorKind::DisplayVersion);
        assert_eq!(kind(&["-V"]), ErrorKind::DisplayVersion);
        assert_eq!(kind(&["--nope", "1"]), ErrorKind::UnknownArgument);
        assert_eq!(kind(&["stray"]), ErrorKind::UnknownArgument);
        assert_eq!(kind(&["--port"]), ErrorKind::InvalidValue);
    }

    #[test]
    fn help_shows_every_flag_with_its_variable_default_and_range() {
        let help = command("weir-test").render_long_help().to_string();
        for s in SETTINGS {
            assert!(help.contains(&format!("--{}", s.flag)), "{}", s.flag);
            assert!(help.contains(&format!("[env: {}", s.env)), "{}", s.env);
            if !s.default.is_empty() {
                assert!(
                    help.contains(&format!("[default: {}]", s.default)),
                    "{}",
                    s.env
                );
            }
            if let Some((min, max)) = s.range {
                assert!(
                    help.contains(&format!("[range: {min}..={max}]")),
                    "{}",
                    s.env
                );
            }
            if s.switch {
                assert!(help.contains(&format!("--no-{}", s.flag)), "{}", s.env);
            }
        }
        assert!(help.contains("--version"));
    }
}

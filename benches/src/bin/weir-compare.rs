//! `weir-compare`: the runtimes and a reference server side by side on this machine.
//!
//! `weir-compare [points]` — one point per server and scenario (closed loop) and the RSS per
//! idle connection: `compare.md`, `compare.svg`. `weir-compare curves` — latency against
//! offered load, a connection sweep and overload: `curves.json`, `curves.md`, SVG charts and a
//! self-contained `index.html`. Both build the release binaries, pin each server to
//! `--server-cpu` and weir-load to `--client-cpu`, and write into `--out` (default: a fresh
//! folder under `target/weir-compare/`, so tracked results change only when asked).

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use weir_bench::compare::{Bench, curves, points};

/// The runtimes and a reference server side by side on this machine.
#[derive(Parser, Debug)]
#[command(
    name = "weir-compare",
    version,
    about = "The runtimes and a reference server side by side on this machine: points (the default) or curves"
)]
struct Cli {
    #[command(subcommand)]
    study: Option<Study>,
    /// Servers to measure, comma-separated (those that do not start, like weir-uring without
    /// io_uring, are reported and left out).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "weir-tokio,weir-smol,weir-std,weir-uring,hyper-ref,nginx"
    )]
    servers: Vec<Server>,
    /// Measured seconds per run, after one second of warm-up [default: 5 for points, 2 per
    /// step for curves].
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: Option<u64>,
    /// Keep-alive connections of the load (points; the latency curves).
    #[arg(short = 'c', long, global = true, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    connections: u64,
    /// The core every server is pinned to.
    #[arg(long, global = true, default_value_t = 0)]
    server_cpu: usize,
    /// The core weir-load is pinned to.
    #[arg(long, global = true, default_value_t = 1)]
    client_cpu: usize,
    /// Where to write the results [default: target/weir-compare/<date-time>/].
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Points: the scenarios, comma-separated.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "ping,fast,intensive,sleep"
    )]
    scenarios: Vec<Scenario>,
    /// Points: idle keep-alive connections for the RSS figure (0: skip it).
    #[arg(long, global = true, default_value_t = 5000)]
    idle: usize,
}

#[derive(Subcommand, Debug)]
enum Study {
    /// One point per server and scenario, and the RSS per idle connection (the default).
    Points,
    /// Latency against offered load (10 %–120 % of each server's maximum), a connection sweep
    /// (10 to 10,000) and overload (2x on compute/intensive).
    Curves {
        /// Endpoints of the latency curves, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "ping,fast,intensive")]
        endpoints: Vec<Scenario>,
        /// The connection sweep's constant rate on /ping, requests/s.
        #[arg(long, default_value_t = 5000.0)]
        sweep_rate: f64,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Server {
    #[value(name = "weir-tokio")]
    WeirTokio,
    #[value(name = "weir-smol")]
    WeirSmol,
    #[value(name = "weir-std")]
    WeirStd,
    #[value(name = "weir-uring")]
    WeirUring,
    #[value(name = "hyper-ref")]
    HyperRef,
    /// The system's nginx (`/ping` only; left out when not installed).
    #[value(name = "nginx")]
    Nginx,
}

impl Server {
    fn binary(self) -> &'static str {
        match self {
            Server::WeirTokio => "weir-tokio",
            Server::WeirSmol => "weir-smol",
            Server::WeirStd => "weir-std",
            Server::WeirUring => "weir-uring",
            Server::HyperRef => "hyper-ref",
            Server::Nginx => "nginx",
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// GET /ping
    Ping,
    /// POST /api/v1/compute/fast
    Fast,
    /// POST /api/v1/compute/intensive
    Intensive,
    /// GET /api/v1/sleep?ms=100 over 1,000 connections (points only)
    Sleep,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("weir-compare: {msg}");
    std::process::exit(2);
}

fn main() {
    let cli = Cli::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        fail(format!(
            "this machine has {cores} core: the server and the load generator need one each, \
             or the figures would measure them fighting for it; refusing"
        ));
    }
    for (name, cpu) in [
        ("--server-cpu", cli.server_cpu),
        ("--client-cpu", cli.client_cpu),
    ] {
        if cpu >= cores {
            fail(format!(
                "{name} {cpu}: this machine has cores 0 to {}",
                cores - 1
            ));
        }
    }
    if cli.server_cpu == cli.client_cpu {
        fail("--server-cpu and --client-cpu must differ");
    }
    weir_kit::process::raise_fd_limit();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf();
    let out = cli.out.clone().unwrap_or_else(|| {
        let stamp = std::process::Command::new("date")
            .arg("-u")
            .arg("+%Y%m%d-%H%M%S")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|_| std::process::id().to_string());
        root.join("target/weir-compare").join(stamp)
    });
    let bench = Bench {
        root,
        server_cpu: cli.server_cpu,
        client_cpu: cli.client_cpu,
    };
    eprintln!("building the release binaries…");
    bench.build().unwrap_or_else(|e| fail(e));
    let servers: Vec<&str> = cli.servers.iter().map(|s| s.binary()).collect();
    let connections = cli.connections as usize;
    match cli.study.unwrap_or(Study::Points) {
        Study::Points => {
            let (scenarios, idle) = (&cli.scenarios, cli.idle);
            let picked: Vec<usize> = scenarios.iter().map(|s| *s as usize).collect();
            let md = points::run(
                &bench,
                &servers,
                &picked,
                connections,
                cli.seconds.unwrap_or(5),
                idle,
                &out,
            )
            .unwrap_or_else(|e| fail(e));
            println!("{md}");
        }
        Study::Curves {
            endpoints,
            sweep_rate,
        } => {
            if endpoints.contains(&Scenario::Sleep) {
                fail("--endpoints: sleep has no latency curve (its latency is its sleep)");
            }
            let picked: Vec<usize> = endpoints.iter().map(|s| *s as usize).collect();
            let study = curves::Study::run(
                &bench,
                &servers,
                &picked,
                cli.seconds.unwrap_or(2),
                connections,
                sweep_rate,
            );
            let charts = study.write(&out).unwrap_or_else(|e| fail(e));
            eprintln!("wrote {} charts", charts.len());
        }
    }
    eprintln!("results in {}", out.display());
}

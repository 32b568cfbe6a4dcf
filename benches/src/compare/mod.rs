//! The comparison of servers, shared by both of `weir-compare`'s studies: build the release
//! binaries, start a server pinned to one core, drive it with weir-load pinned to another,
//! read its CPU time and memory the way the servers read their own (`weir_kit::process`),
//! and describe the machine a result came from.
//!
//! Invariants: every server is started the same way (one I/O thread, one worker, access log
//! off, the rate limit above any load so it is on but never refuses); a server is killed when
//! its [`Running`] is dropped; nothing here writes outside the output folder it is given.

pub mod curves;
pub mod points;
pub mod svg;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The servers that can be compared, by binary name (`nginx`: the system's, on `/ping` only).
pub const SERVERS: [&str; 6] = [
    "weir-tokio",
    "weir-smol",
    "weir-std",
    "weir-uring",
    "hyper-ref",
    "nginx",
];

/// Whether `server` serves the endpoint at `path`: the reference servers answer `/ping`,
/// hyper-ref `compute/fast` too; weir serves everything.
pub fn serves(server: &str, path: &str) -> bool {
    match server {
        "hyper-ref" => path == "/ping" || path == "/api/v1/compute/fast",
        "nginx" => path == "/ping",
        _ => true,
    }
}

/// Where the binaries are and which cores to use.
#[derive(Debug, Clone)]
pub struct Bench {
    /// The workspace root.
    pub root: PathBuf,
    /// The core the server is pinned to.
    pub server_cpu: usize,
    /// The core weir-load is pinned to.
    pub client_cpu: usize,
}

/// A started server, killed on drop.
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// Its listening address.
    pub addr: SocketAddr,
    /// A scratch folder of the server's own (nginx's configuration), removed on drop.
    scratch: Option<PathBuf>,
}

impl Running {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (CPU seconds, RSS bytes) of the server now.
    pub fn cpu_and_rss(&self) -> (f64, u64) {
        let (cpu, rss, _) = weir_kit::process::cpu_rss_start(Some(self.pid()));
        (cpu, rss)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One weir-load run.
#[derive(Debug, Clone)]
pub struct LoadSpec<'a> {
    /// Path (and query) on the server.
    pub path: &'a str,
    /// A JSON body to POST, if any.
    pub body: Option<&'a str>,
    /// Keep-alive connections.
    pub connections: usize,
    /// Measured seconds (after a one-second warm-up).
    pub seconds: u64,
    /// A constant offered rate (requests/s) instead of a closed loop.
    pub rate: Option<f64>,
}

/// What one run measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Measured {
    /// Completed requests per second.
    pub rps: f64,
    /// Answers below 400 per second.
    pub goodput: f64,
    /// Latency percentiles of answered requests, µs (from the intended send time at a
    /// constant rate).
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// p99 of the answers below 400 only, µs (the same as `p99_us` when all succeeded).
    pub ok_p99_us: u64,
    /// Requests measured.
    pub requests: u64,
    /// How late weir-load sent at the median and the 99th percentile, µs (at a constant
    /// rate): small when the load generator kept its schedule; large when it (or the
    /// server, holding its connections) fell behind.
    pub late_p50_us: u64,
    /// 99th percentile of the same.
    pub late_p99_us: u64,
    /// Transport errors and answers of 400 and above.
    pub errors: u64,
    /// 503 answers.
    pub status_503: u64,
    /// Server CPU per completed request, µs (the warm-up included in both).
    pub cpu_us_per_req: f64,
}

impl Bench {
    /// Builds the release binaries of the servers and weir-load.
    pub fn build(&self) -> Result<(), String> {
        let ok = Command::new(env!("CARGO"))
            .current_dir(&self.root)
            .args(["build", "--release", "-q"])
            .args(["-p", "weir-tokio", "-p", "weir-smol", "-p", "weir-std"])
            .args(["-p", "weir-uring", "-p", "weir-bench"])
            .status()
            .map_err(|e| format!("cargo build: {e}"))?;
        ok.success()
            .then_some(())
            .ok_or_else(|| "cargo build failed".to_owned())
    }

    /// The path of a release binary.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("target/release").join(name)
    }

    /// Starts `server` pinned to the server core; `None` (with the reason on stderr) when it
    /// does not start, as weir-uring where io_uring is unavailable.
    pub fn start(&self, server: &str) -> Option<Running> {
        self.start_with(server, &[])
    }

    /// [`Bench::start`] with settings of its own (weir's environment variables).
    pub fn start_with(&self, server: &str, env: &[(&str, &str)]) -> Option<Running> {
        if server == "nginx" {
            return self.start_nginx();
        }
        let bin = self.bin(server);
        let mut child = Command::new("taskset")
            .args(["-c", &self.server_cpu.to_string()])
            .arg(&bin)
            .env("SERVER_PORT", "127.0.0.1:0")
            .env("ACCESS_LOG", "false")
            // Limiter, metrics and request IDs stay on; the limit sits above any load here.
            .env("RATE_LIMIT", "100000000")
            .env("IO_THREADS", "1")
            .env("WORKER_COUNT", "1")
            .env("HYPER_FLAVOR", "current")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| eprintln!("weir-compare: cannot start {}: {e}", bin.display()))
            .ok()?;
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take()?).read_line(&mut line);
        let Some(addr) = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
        else {
            let mut why = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut why);
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("weir-compare: {server} did not start: {}", why.trim());
            return None;
        };
        Some(Running {
            child,
            addr,
            scratch: None,
        })
    }

    /// nginx with one worker process (no master) answering `GET /ping` with `pong`, pinned
    /// like the others; `None` when nginx is not installed.
    fn start_nginx(&self) -> Option<Running> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("weir-compare-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let d = dir.display();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; worker_rlimit_nofile 20000;\n\
             pid {d}/nginx.pid; error_log {d}/error.log crit;\n\
             events {{ worker_connections 20000; }}\n\
             http {{ access_log off; keepalive_requests 100000000; keepalive_timeout 60s;\n\
             client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
             server {{ listen 127.0.0.1:{port} backlog=4096; location = /ping {{ default_type text/plain; return 200 \"pong\"; }} }} }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).ok()?;
        let child = Command::new("taskset")
            .args(["-c", &self.server_cpu.to_string()])
            .args(["nginx", "-p"])
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let running = Running {
            child,
            addr,
            scratch: Some(dir),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Some(running);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        eprintln!("weir-compare: nginx did not start (is it installed?); left out");
        None
    }

    /// Runs weir-load against `server` and measures it.
    pub fn load(&self, server: &Running, spec: &LoadSpec<'_>) -> Measured {
        let (cpu0, _) = server.cpu_and_rss();
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &self.client_cpu.to_string()])
            .arg(self.bin("weir-load"))
            .args(["-t", "1", "-c", &spec.connections.to_string()])
            .args(["-z", &format!("{}s", spec.seconds), "--warmup", "1s"])
            .args(["--json", "--max-error-rate", "1", "--timeout", "5s"]);
        if let Some(rate) = spec.rate {
            cmd.args(["--rate", &format!("{rate:.0}")]);
        }
        if let Some(b) = spec.body {
            cmd.args(["-d", b]);
        }
        let out = cmd
            .arg(format!("http://{}{}", server.addr, spec.path))
            .output();
        let (cpu1, _) = server.cpu_and_rss();
        let r: serde_json::Value = out
            .ok()
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or(serde_json::Value::Null);
        let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
        let rps = num(&r["requests_per_sec"]);
        let requests = r["requests"].as_u64().unwrap_or(0);
        let successes = r["successes"].as_u64().unwrap_or(0);
        let secs = num(&r["duration_s"]).max(1e-9);
        Measured {
            rps,
            goodput: successes as f64 / secs,
            p50_us: r["latency_us"]["p50"].as_u64().unwrap_or(0),
            p99_us: r["latency_us"]["p99"].as_u64().unwrap_or(0),
            p999_us: r["latency_us"]["p999"].as_u64().unwrap_or(0),
            ok_p99_us: r["success_latency_us"]["p99"].as_u64().unwrap_or(0),
            late_p50_us: r["pacing_late_us"]["p50"].as_u64().unwrap_or(0),
            late_p99_us: r["pacing_late_us"]["p99"].as_u64().unwrap_or(0),
            requests,
            errors: r["failures"].as_u64().unwrap_or(0),
            status_503: r["status_counts"]["503"].as_u64().unwrap_or(0),
            // The CPU includes the 1 s warm-up; rps × (secs + 1) approximates its requests.
            cpu_us_per_req: (cpu1 - cpu0) * 1e6 / (rps * (spec.seconds as f64 + 1.0)).max(1.0),
        }
    }
}

/// The machine, the commit and the date, written beside every result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Cores available.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// The repository's commit (with `-dirty` when the tree has changes).
    pub commit: String,
    /// UTC date and time of the run.
    pub date: String,
}

impl Machine {
    /// Describes this machine and the checkout at `root`.
    pub fn describe(root: &Path) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
        let git = |args: &[&str]| {
            Command::new("git")
                .current_dir(root)
                .args(args)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        let mut commit = git(&["rev-parse", "--short", "HEAD"]);
        if !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() {
            commit.push_str("-dirty");
        }
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            memory_gib,
            commit,
            date,
        }
    }

    /// One line for charts and reports.
    pub fn line(&self) -> String {
        format!(
            "{} ({} cores, {} GiB), Linux {}, commit {}, {}",
            self.cpu, self.cores, self.memory_gib, self.kernel, self.commit, self.date
        )
    }
}

//! Black-box helpers: start a runtime binary on port 0, talk raw HTTP/1.1 to it.
#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 right now (for a process that must be told its port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Hang guard for every read: a test fails instead of waiting forever.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

pub const RUNTIMES: [&str; 4] = ["tokio", "smol", "std", "uring"];

/// The binary of runtime `rt`, built from the current tree: the first call in a test process
/// runs `cargo build` for the four runtimes in this profile (a no-op when `cargo test
/// --workspace` already built them), so a black-box run never tests a stale binary.
pub fn binary(rt: &str) -> PathBuf {
    let rt = rt.trim_end_matches("+tls");
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("test exe path");
        let dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target/<profile>")
            .to_path_buf();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "-q",
            "-p",
            "weir-tokio",
            "-p",
            "weir-smol",
            "-p",
            "weir-std",
            "-p",
            "weir-uring",
            // As `cargo test` builds them (benches' dev-dependency on weir-kit).
            "--features",
            "weir-kit/profiling",
        ]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build");
        assert!(status.success(), "building the runtimes");
        dir
    });
    dir.join(format!("weir-{rt}"))
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub rt: &'static str,
    /// Clients speak TLS to it (`rt` ends in `+tls`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A certificate and key for `localhost` and 127.0.0.1, made at test time, written as PEM.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: Arc<rustls::ClientConfig>,
    /// The certificate itself, for clients built by hand.
    pub root: rustls::pki_types::CertificateDer<'static>,
}

impl TestCert {
    /// A fresh pair in its own directory named `tag`.
    pub fn new(tag: &str) -> TestCert {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("rcgen");
        let dir = std::env::temp_dir().join(format!("weir-test-cert-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, pair.cert.pem()).unwrap();
        std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
        TestCert {
            cert,
            key,
            client: client_config(pair.cert.der().clone()),
            root: pair.cert.der().clone(),
        }
    }

    /// The one pair the `+tls` runtimes of this test process serve with.
    pub fn shared() -> &'static TestCert {
        static CERT: std::sync::OnceLock<TestCert> = std::sync::OnceLock::new();
        CERT.get_or_init(|| TestCert::new("shared"))
    }

    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("TLS_CERT", self.cert.display().to_string()),
            ("TLS_KEY", self.key.display().to_string()),
        ]
    }
}

/// A client configuration trusting `root` only, offering ALPN `http/1.1`.
pub fn client_config(
    root: rustls::pki_types::CertificateDer<'static>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("a root certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A client's byte stream: plain TCP or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

impl Server {
    pub fn start(rt: &'static str, env: &[(&str, &str)]) -> Server {
        Self::start_with(rt, env, Stdio::null())
    }

    pub fn start_with(rt: &'static str, env: &[(&str, &str)], stderr: Stdio) -> Server {
        Self::spawn(rt, Command::new(binary(rt)), env, stderr)
    }

    /// Starts the server under a hard and soft `RLIMIT_NOFILE` of `limit`.
    pub fn start_with_fd_limit(
        rt: &'static str,
        limit: u32,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(format!(
            "ulimit -n {limit} && exec {}",
            binary(rt).display()
        ));
        Self::spawn(rt, cmd, env, stderr)
    }

    fn spawn(rt: &'static str, mut cmd: Command, env: &[(&str, &str)], stderr: Stdio) -> Server {
        let tls = rt.ends_with("+tls").then(|| {
            let cert = TestCert::shared();
            for (k, v) in cert.env() {
                cmd.env(k, v);
            }
            cert.client.clone()
        });
        let tls_env: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        cmd.env_clear()
            .envs(tls_env)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SERVER_PORT", "127.0.0.1:0")
            .env("ACCESS_LOG", "false")
            .env("WORKER_COUNT", "2")
            .env("IO_THREADS", "2")
            .env("SHUTDOWN_TIMEOUT", "20s")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("first stdout line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {line:?}"));
        Server {
            child,
            addr: addr.parse().unwrap(),
            rt,
            tls,
        }
    }

    pub fn connect(&self) -> Conn {
        self.wrap(TcpStream::connect(self.addr).expect("connect"))
    }

    /// A connection whose source address is `src` (any of 127.0.0.0/8 on Linux loopback),
    /// so tests can be two clients on one machine.
    pub fn connect_from(&self, src: std::net::IpAddr) -> Conn {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        sock.bind(&SocketAddr::new(src, 0).into())
            .expect("bind the source address");
        sock.connect(&self.addr.into()).expect("connect");
        self.wrap(sock.into())
    }

    fn wrap(&self, s: TcpStream) -> Conn {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        let s = match &self.tls {
            None => Stream::Plain(s),
            Some(config) => {
                let name = "localhost".try_into().unwrap();
                let conn = rustls::ClientConnection::new(config.clone(), name).expect("TLS client");
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, s)))
            }
        };
        Conn { s, buf: Vec::new() }
    }

    /// One request on a fresh connection.
    pub fn request(&self, raw: &str) -> Resp {
        let mut s = self.connect();
        s.write_all(raw.as_bytes()).unwrap();
        read_response(&mut s, raw.starts_with("HEAD")).expect("a response")
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request(&get(path))
    }

    pub fn metrics(&self) -> serde_json::Value {
        self.get("/metrics").json()
    }

    /// Polls `/metrics` until `pred` holds (fails after the hang guard).
    pub fn wait_metrics(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let m = self.metrics();
            if pred(&m) {
                return m;
            }
            assert!(
                start.elapsed() < IO_TIMEOUT,
                "{}: timed out waiting for {what}: {m}",
                self.rt
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit (hang guard) and returns its status code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(
                start.elapsed() < IO_TIMEOUT,
                "{}: server did not exit",
                self.rt
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client connection that keeps bytes read past one response for the next.
pub struct Conn {
    pub s: Stream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    /// Reads more bytes into the buffer; 0 at EOF. A read interrupted by a signal is retried
    /// (as `read_exact` does): with a receive timeout set, Linux never restarts it, and it was
    /// seen to fail with `EINTR` on a busy CI machine.
    fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 8192];
        let n = loop {
            match self.s.read(&mut tmp) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.expect("read (hang guard)"),
            }
        };
        self.buf.extend_from_slice(&tmp[..n]);
        n
    }

    /// Exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "closed early");
        }
        self.buf.drain(..n).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (Content-Length, chunked, or until close). `None` if the connection
/// closed before a response began. Interim 100 responses are skipped.
pub fn read_response(c: &mut Conn, head_only: bool) -> Option<Resp> {
    let (status, headers) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        if let Ok(httparse::Status::Complete(n)) = r.parse(&c.buf) {
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let code = r.code.unwrap();
            c.buf.drain(..n);
            if code == 100 {
                continue;
            }
            break (code, headers);
        }
        if c.fill() == 0 {
            assert!(
                c.buf.is_empty(),
                "connection closed mid-head: {:?}",
                String::from_utf8_lossy(&c.buf)
            );
            return None;
        }
    };
    let get = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let body = if head_only {
        Vec::new()
    } else if let Some(len) = get("content-length") {
        c.read_exact(len.parse().unwrap())
    } else if get("transfer-encoding").is_some() {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(p) = c.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                assert!(c.fill() > 0, "closed mid-chunk");
            };
            let line = c.read_exact(line_end + 2);
            let size =
                usize::from_str_radix(std::str::from_utf8(&line[..line_end]).unwrap(), 16).unwrap();
            let data = c.read_exact(size + 2);
            if size == 0 {
                break;
            }
            body.extend_from_slice(&data[..size]);
        }
        body
    } else {
        while c.fill() > 0 {}
        std::mem::take(&mut c.buf)
    };
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// True when the server closed the connection (EOF or reset) within the hang guard.
pub fn closed_by_server(c: &mut Conn) -> bool {
    let mut tmp = [0u8; 1024];
    loop {
        match c.s.read(&mut tmp) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            // TLS: the server closed the socket without close_notify (an abort).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return true,
            Err(_) => return false,
        }
    }
}

pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

pub fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Why weir-uring cannot run here (its own one-line reason, from starting it once), or
/// `None` when it serves.
pub fn uring_unavailable() -> Option<String> {
    static WHY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    WHY.get_or_init(|| {
        let mut child = Command::new(binary("uring"))
            .env_clear()
            .env("SERVER_PORT", "127.0.0.1:0")
            .env("ACCESS_LOG", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir-uring");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        if line.starts_with("listening on ") {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let status = child.wait().expect("weir-uring exits");
        Some(format!("{status}: {}", err.trim()))
    })
    .clone()
}

/// Runs `f(rt)`, except for weir-uring where io_uring is unavailable: then says why on
/// stderr (never silently) and passes.
pub fn run_on(rt: &'static str, f: fn(&'static str)) {
    if rt.starts_with("uring") {
        if let Some(why) = uring_unavailable() {
            eprintln!("SKIPPED on weir-uring: {why}");
            return;
        }
    }
    f(rt)
}

/// Expands to one `#[test]` per runtime calling `$body(rt)` (with the attributes given before
/// the name); weir-uring's are ignored where the kernel gives no io_uring (decided at build
/// time, so the summary says so).
#[macro_export]
macro_rules! for_each_runtime {
    ($($(#[$attr:meta])* $name:ident => $f:path;)*) => {
        mod tokio_rt { $( $(#[$attr])* #[test] fn $name() { $f("tokio") } )* }
        mod smol_rt { $( $(#[$attr])* #[test] fn $name() { $f("smol") } )* }
        mod std_rt { $( $(#[$attr])* #[test] fn $name() { $f("std") } )* }
        mod uring_rt { $(
            $(#[$attr])*
            #[test]
            #[cfg_attr(missing_uring, ignore = "io_uring is not available on this kernel")]
            fn $name() { $crate::common::run_on("uring", $f) }
        )* }
    };
}

/// Retries `f` every 50 ms until it holds or the hang guard passes.
pub fn retry(mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < IO_TIMEOUT {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (tests that hold many
/// connections).
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Expands to one `#[test]` per runtime calling `$body(rt)` with TLS (`rt` is `tokio+tls`, …).
#[macro_export]
macro_rules! for_each_runtime_over_tls {
    ($($(#[$attr:meta])* $name:ident => $f:path;)*) => {
        mod tokio_tls { $( $(#[$attr])* #[test] fn $name() { $f("tokio+tls") } )* }
        mod smol_tls { $( $(#[$attr])* #[test] fn $name() { $f("smol+tls") } )* }
        mod std_tls { $( $(#[$attr])* #[test] fn $name() { $f("std+tls") } )* }
        mod uring_tls { $(
            $(#[$attr])*
            #[test]
            #[cfg_attr(missing_uring, ignore = "io_uring is not available on this kernel")]
            fn $name() { $crate::common::run_on("uring+tls", $f) }
        )* }
    };
}

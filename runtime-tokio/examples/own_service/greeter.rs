//! A service of your own, served by weir: the same file for the `own_service` example of
//! every runtime (each example only names its runtime's `run`).
//!
//! `Greeter` routes with weir's public router — `GET /hello/:name` greets, `POST /count`
//! counts the body's characters, `GET /slow` answers after 200 ms — and gets from the kit
//! what weir's own application gets: settings and `--help`, logging, signals, the drain,
//! `/livez` and `/readyz`, TLS and its reload, `REUSE_PORT`, the descriptor clamp.
//!
//! [`main`] starts it on a free loopback port and checks it as a client would: every answer,
//! the probes, a 404 and a 405; then it keeps eight connections busy, sends itself SIGTERM
//! and checks that every request sent was answered in full (the last one on each connection
//! with `Connection: close`) and that the server exits 0 once drained.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use weir_core::Now;
use weir_core::app::router::{Match, Router, RouterBuilder};
use weir_core::http::{Head, HttpConfig, Method, Reply, ReplyPoll, Response, Service, Status};
use weir_core::server::{Hosted, NoWait, Setup, WithProbes};
use weir_core::time::Instant;
use weir_kit::Server;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Hello,
    Count,
    Slow,
}

/// The service: a router, the connections' limits and timeouts from the settings, and a
/// count of what it answered.
pub struct Greeter {
    http: HttpConfig,
    router: Router<Route>,
    answered: AtomicU64,
}

/// Per request: where the router sent it, and when a slow answer is due.
#[derive(Debug, Default)]
pub struct Exchange {
    route: Option<Route>,
    due: Option<Instant>,
}

impl Greeter {
    /// The service for the kit's settings.
    pub fn new(setup: &Setup) -> Greeter {
        Greeter {
            http: setup.config.http(),
            router: RouterBuilder::default()
                .route(Method::Get, "/hello/:name", Route::Hello)
                .route(Method::Post, "/count", Route::Count)
                .route(Method::Get, "/slow", Route::Slow)
                .build(),
            answered: AtomicU64::new(0),
        }
    }
}

impl Service for Greeter {
    type Exchange = Exchange;
    type Wait = NoWait;

    fn http_config(&self) -> &HttpConfig {
        &self.http
    }

    /// Routes before the body is read: 404 and 405 (with `Allow`) cost no body.
    fn admit(
        &self,
        _: Now,
        head: &Head<'_>,
        _: SocketAddr,
        ex: &mut Exchange,
        res: &mut Response,
    ) -> bool {
        match self.router.lookup(head.method, head.path()) {
            Match::Found { endpoint, .. } => {
                ex.route = Some(endpoint);
                return true;
            }
            Match::MethodNotAllowed { allow, .. } => {
                res.set_status(Status::METHOD_NOT_ALLOWED);
                res.header("Allow", allow.as_bytes());
            }
            Match::NotFound => res.set_status(Status::NOT_FOUND),
        }
        false
    }

    fn call(
        &self,
        now: Now,
        head: &Head<'_>,
        body: &[u8],
        ex: &mut Exchange,
        res: &mut Response,
    ) -> Reply<NoWait> {
        res.header("Content-Type", b"text/plain; charset=utf-8");
        let out = res.body_mut();
        match ex.route {
            Some(Route::Hello) => {
                let name = head.path().strip_prefix(b"/hello/").unwrap_or_default();
                out.extend_from_slice(b"hello, ");
                out.extend_from_slice(name);
                out.push(b'\n');
            }
            Some(Route::Count) => {
                let chars = String::from_utf8_lossy(body).chars().count();
                out.extend_from_slice(format!("{chars} characters\n").as_bytes());
            }
            Some(Route::Slow) | None => {
                let due = now.mono.saturating_add(Duration::from_millis(200));
                ex.due = Some(due);
                return Reply::Later {
                    deadline: Some(due),
                    wait: None,
                };
            }
        }
        Reply::Now
    }

    /// The slow answer, when it is due — or at once when the server drains.
    fn poll_reply(
        &self,
        now: Now,
        ex: &mut Exchange,
        res: &mut Response,
        draining: bool,
    ) -> ReplyPoll {
        match ex.due {
            Some(due) if now.mono < due && !draining => ReplyPoll::Pending {
                deadline: Some(due),
            },
            _ => {
                res.header("Content-Type", b"text/plain; charset=utf-8");
                res.body_mut().extend_from_slice(b"slept\n");
                ReplyPoll::Ready
            }
        }
    }

    fn finish(&self, _: Now, ex: &mut Exchange, _: Option<&Head<'_>>, _: Status, _: u64) {
        *ex = Exchange::default();
        self.answered.fetch_add(1, Ordering::Relaxed);
    }
}

/// No jobs, no fleet: the kit's defaults.
impl Hosted for Greeter {
    fn final_statistics(&self) {
        let answered = self.answered.load(Ordering::Relaxed);
        tracing::info!(answered, "greeter: final statistics");
    }
}

/// Starts the service with `run` (a runtime's), checks it as a client, drains it with
/// SIGTERM under load, and exits 0 when everything was answered and the server exited 0.
pub fn main(runtime: &'static str, run: fn(Server<WithProbes<Greeter>>) -> i32) {
    // A free loopback port and a quiet log unless the command line says otherwise.
    let config = weir_kit::cli::load_with(
        "own_service",
        &[
            "--port",
            "127.0.0.1:0",
            "--access-log=false",
            "--shutdown-timeout",
            "10s",
        ],
    );
    let server = weir_kit::serve::start_with(
        "own_service",
        runtime,
        config,
        weir_kit::serve::with_probes(Greeter::new),
    );
    let addr = server.local_addr().expect("a bound listener");
    let client = std::thread::spawn(move || check(addr));
    let status = run(server);
    let checked = client
        .join()
        .map_err(|_| "the client panicked".to_string())
        .and_then(|r| r);
    match (status, checked) {
        (0, Ok(summary)) => {
            println!("own_service on {runtime}: {summary}; the server exited 0");
            std::process::exit(0)
        }
        (status, Ok(_)) => fail(&format!("the server exited {status}")),
        (_, Err(e)) => fail(&e),
    }
}

fn fail(why: &str) -> ! {
    eprintln!("own_service: FAILED: {why}");
    std::process::exit(1)
}

/// One request on `conn`, its response read whole: (status, headers, body).
fn exchange(
    conn: &mut BufReader<TcpStream>,
    request: &[u8],
) -> Result<(u16, String, String), String> {
    conn.get_mut()
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = conn
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("the connection closed mid-response after {head:?}"));
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("no status in {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().parse().ok())
        .ok_or(format!("no Content-Length in {head:?}"))?;
    let mut body = vec![0; length];
    conn.read_exact(&mut body)
        .map_err(|e| format!("body: {e}"))?;
    Ok((status, head, String::from_utf8_lossy(&body).into_owned()))
}

fn connect(addr: SocketAddr) -> Result<BufReader<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    Ok(BufReader::new(tcp))
}

/// The client: the answers, then SIGTERM under load; a summary, or what went wrong.
fn check(addr: SocketAddr) -> Result<String, String> {
    let mut c = connect(addr)?;
    let expect = |got: (u16, String, String), status: u16, body: &str| -> Result<(), String> {
        if got.0 == status && got.2.starts_with(body) {
            Ok(())
        } else {
            Err(format!(
                "expected {status} {body:?}, got {} {:?}",
                got.0, got.2
            ))
        }
    };
    expect(
        exchange(&mut c, b"GET /hello/weir HTTP/1.1\r\nHost: x\r\n\r\n")?,
        200,
        "hello, weir\n",
    )?;
    expect(
        exchange(
            &mut c,
            "POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nhéllo".as_bytes(),
        )?,
        200,
        "5 characters\n",
    )?;
    expect(
        exchange(&mut c, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")?,
        200,
        "slept\n",
    )?;
    expect(
        exchange(&mut c, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")?,
        200,
        "alive\n",
    )?;
    expect(
        exchange(&mut c, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")?,
        200,
        "ready\n",
    )?;
    expect(
        exchange(&mut c, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")?,
        404,
        "",
    )?;
    let refused = exchange(&mut c, b"DELETE /count HTTP/1.1\r\nHost: x\r\n\r\n")?;
    if refused.0 != 405 || !refused.1.to_ascii_lowercase().contains("allow: post") {
        return Err(format!(
            "expected 405 with Allow: POST, got {:?}",
            refused.1
        ));
    }

    // Load: eight connections, each a request at a time (every other one slow), until the
    // drain closes it. Every request sent must be answered in full.
    let (answered, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let loaders: Vec<_> = (0..8)
        .map(|i| {
            let (answered, stop) = (answered.clone(), stop.clone());
            std::thread::spawn(move || -> Result<bool, String> {
                let mut c = connect(addr)?;
                for n in 0u64.. {
                    let request: &[u8] = if (n + i) % 2 == 0 {
                        b"GET /hello/load HTTP/1.1\r\nHost: x\r\n\r\n"
                    } else {
                        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
                    };
                    let (status, head, _) = exchange(&mut c, request)?;
                    if status != 200 {
                        return Err(format!("a request under load got {status}"));
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                    if head.to_ascii_lowercase().contains("connection: close") {
                        return Ok(true);
                    }
                    if stop.load(Ordering::Relaxed) && n > 10_000_000 {
                        return Ok(false);
                    }
                }
                Ok(false)
            })
        })
        .collect();
    while answered.load(Ordering::Relaxed) < 200 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = answered.load(Ordering::Relaxed);
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM)
        .map_err(|e| format!("SIGTERM: {e}"))?;
    let mut closed = 0;
    for l in loaders {
        if l.join().map_err(|_| "a load thread panicked")?? {
            closed += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    if closed != 8 {
        return Err(format!(
            "{closed} of 8 connections ended with Connection: close"
        ));
    }
    let total = answered.load(Ordering::Relaxed);
    Ok(format!(
        "every answer right; {total} requests answered under load ({} after SIGTERM), each of the 8 connections closed in order by the drain",
        total - before
    ))
}

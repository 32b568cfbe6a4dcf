//! The load engine: threads × connections, each connection one request at a time.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tls::Stream;

/// Everything a run needs, resolved from the arguments.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// The encoded request, sent as is on every connection.
    pub request: Vec<u8>,
    /// Whether the request is `HEAD` (responses carry no body).
    pub head_only: bool,
    /// Connections.
    pub connections: usize,
    /// Threads.
    pub threads: usize,
    /// Exact number of requests, if given.
    pub total: Option<u64>,
    /// Measured duration, if given.
    pub duration: Option<Duration>,
    /// Constant total rate, if given.
    pub rate: Option<f64>,
    /// Unmeasured time before the run.
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// `https://`: the TLS client.
    pub tls: Option<super::tls::Tls>,
    /// False: a new connection for every request (`--no-keepalive`).
    pub keepalive: bool,
}

/// Why a request failed without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The connection could not be opened.
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The peer closed or reset the connection mid-request.
    Reset,
    /// The bytes received are not an HTTP/1.1 response.
    BadResponse,
    /// Another socket error.
    Other,
}

impl ErrorKind {
    /// The kind's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::Other => "other",
        }
    }
}

/// What one thread measured.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency of responses, µs.
    pub latency: Histogram<u64>,
    /// Latency of responses below 400, µs.
    pub latency_ok: Histogram<u64>,
    /// Responses per status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Failures without a response, by kind and reason (the OS's words).
    pub errors: BTreeMap<(ErrorKind, String), u64>,
    /// Requests still waiting for a response when a `-z` run ended.
    pub in_flight_at_end: u64,
    /// Response bytes read.
    pub bytes: u64,
    /// TLS handshakes (connect to the end of the handshake), µs.
    pub handshakes: Histogram<u64>,
    /// With `--rate`: how late each request left against its intended time, µs: the pacing's
    /// own error while the connection is free, or the wait for a slow answer before it.
    pub pacing_late: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
            latency_ok: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            in_flight_at_end: 0,
            bytes: 0,
            handshakes: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
            pacing_late: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }

    /// Adds another tally into this one.
    pub fn merge(&mut self, other: &Tally) {
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.latency_ok
            .add(&other.latency_ok)
            .expect("same histogram bounds");
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.in_flight_at_end += other.in_flight_at_end;
        self.bytes += other.bytes;
        self.pacing_late
            .add(&other.pacing_late)
            .expect("same histogram bounds");
        self.handshakes
            .add(&other.handshakes)
            .expect("same histogram bounds");
    }
}

/// Live counters for the progress line (relaxed; one writer thread each).
#[derive(Debug, Default)]
pub struct Live {
    /// Requests answered or failed (measured ones).
    pub done: AtomicU64,
    /// Failed requests (non-2xx/3xx or no response).
    pub failed: AtomicU64,
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// Merged measurements.
    pub tally: Tally,
    /// Measured wall time.
    pub elapsed: Duration,
}

struct Shared {
    plan: Plan,
    stop: AtomicBool,
    measure_from: Instant,
    live: Vec<Live>,
}

/// Runs `plan`, calling `progress(done, failed, elapsed)` every `interval` from this thread.
pub fn run(
    plan: Plan,
    interval: Option<Duration>,
    mut progress: impl FnMut(u64, u64, Duration),
) -> Outcome {
    let threads = plan.threads.clamp(1, plan.connections.max(1));
    let start = Instant::now();
    let shared = Arc::new(Shared {
        measure_from: start + plan.warmup,
        stop: AtomicBool::new(false),
        live: (0..threads).map(|_| Live::default()).collect(),
        plan,
    });
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("weir-load-{t}"))
                .spawn(move || thread_main(&shared, t, threads))
                .expect("start a load thread")
        })
        .collect();
    let end = shared.plan.duration.map(|d| shared.measure_from + d);
    let sum = |s: &Shared| {
        s.live.iter().fold((0, 0), |(d, f), l| {
            (
                d + l.done.load(Ordering::Relaxed),
                f + l.failed.load(Ordering::Relaxed),
            )
        })
    };
    let tick = interval
        .unwrap_or(Duration::from_millis(50))
        .min(Duration::from_millis(50));
    let mut next_report = Instant::now() + interval.unwrap_or(Duration::MAX / 4);
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(tick);
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            shared.stop.store(true, Ordering::Release);
        }
        if let Some(every) = interval.filter(|_| now >= next_report) {
            let (d, f) = sum(&shared);
            progress(d, f, now.saturating_duration_since(shared.measure_from));
            next_report += every;
        }
    }
    let elapsed = match end {
        Some(e) => e
            .saturating_duration_since(shared.measure_from)
            .min(Instant::now().saturating_duration_since(shared.measure_from)),
        None => Instant::now().saturating_duration_since(shared.measure_from),
    };
    let mut tally = Tally::new();
    for h in handles {
        tally.merge(&h.join().expect("load thread"));
    }
    Outcome { tally, elapsed }
}

fn thread_main(shared: &Arc<Shared>, t: usize, threads: usize) -> Tally {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let tally = Rc::new(RefCell::new(Tally::new()));
    let plan = &shared.plan;
    let conns: Vec<usize> = (0..plan.connections).filter(|c| c % threads == t).collect();
    let running = Rc::new(std::cell::Cell::new(conns.len()));
    for &c in &conns {
        let quota = plan.total.map(|n| {
            n / plan.connections as u64 + u64::from((c as u64) < n % plan.connections as u64)
        });
        let (shared, tally, running) = (shared.clone(), tally.clone(), running.clone());
        local.spawn_local(async move {
            connection(&shared, t, c, quota, &tally).await;
            running.set(running.get() - 1);
        });
    }
    if plan.rate.is_some() {
        // At a constant rate the thread never sleeps: a sleeping thread wakes tens of
        // microseconds late for a response (more in a VM), which would be counted as the
        // server's latency. It busy-polls its I/O instead (its own core: pin it apart).
        local.spawn_local(async move {
            while running.get() > 0 {
                tokio::task::yield_now().await;
            }
        });
    }
    rt.block_on(local);
    Rc::try_unwrap(tally)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| rc.borrow().clone())
}

/// Reads and parses responses on one connection, reusing its buffer.
struct Reader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// One parsed response.
struct Response {
    status: u16,
    close: bool,
    bytes: usize,
}

enum Failure {
    Io(ErrorKind, String),
    Stopped,
}

impl Reader {
    fn compact(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
    }

    async fn more(&mut self, s: &mut Stream) -> Result<(), Failure> {
        self.compact();
        match s.read(&mut self.buf[self.end..]).await {
            Ok(0) => Err(Failure::Io(
                ErrorKind::Reset,
                "connection closed by server".into(),
            )),
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            Err(e) => Err(io_failure(&e)),
        }
    }

    async fn response(&mut self, s: &mut Stream, head_only: bool) -> Result<Response, Failure> {
        loop {
            let (status, close, head_len, framing) = {
                let mut hs = [httparse::EMPTY_HEADER; 32];
                let mut r = httparse::Response::new(&mut hs);
                match r.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(n)) => {
                        let mut len = None;
                        let mut chunked = false;
                        let mut close = r.version == Some(0);
                        for h in r.headers.iter() {
                            if h.name.eq_ignore_ascii_case("content-length") {
                                len = std::str::from_utf8(h.value)
                                    .ok()
                                    .and_then(|v| v.trim().parse::<usize>().ok());
                                if len.is_none() {
                                    return Err(Failure::Io(
                                        ErrorKind::BadResponse,
                                        "invalid Content-Length".into(),
                                    ));
                                }
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                chunked = true;
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                close = h.value.eq_ignore_ascii_case(b"close");
                            }
                        }
                        let status = r.code.unwrap_or(0);
                        let framing = if head_only
                            || status == 204
                            || status == 304
                            || (100..200).contains(&status)
                        {
                            Some(0)
                        } else if chunked {
                            None
                        } else {
                            Some(len.unwrap_or(usize::MAX))
                        };
                        (status, close, n, framing)
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.end - self.start > 64 * 1024 {
                            return Err(Failure::Io(
                                ErrorKind::BadResponse,
                                "response head over 64 KiB".into(),
                            ));
                        }
                        self.more(s).await?;
                        continue;
                    }
                    Err(e) => {
                        return Err(Failure::Io(
                            ErrorKind::BadResponse,
                            format!("unparsable response: {e}"),
                        ));
                    }
                }
            };
            self.start += head_len;
            if (100..200).contains(&status) {
                continue;
            }
            let body = match framing {
                Some(usize::MAX) => {
                    return Err(Failure::Io(
                        ErrorKind::BadResponse,
                        "response without length".into(),
                    ));
                }
                Some(len) => {
                    while self.end - self.start < len {
                        self.more(s).await?;
                    }
                    self.start += len;
                    len
                }
                None => self.skip_chunked(s).await?,
            };
            return Ok(Response {
                status,
                close,
                bytes: head_len + body,
            });
        }
    }

    async fn skip_chunked(&mut self, s: &mut Stream) -> Result<usize, Failure> {
        let mut total = 0;
        loop {
            let line_end = loop {
                if let Some(p) = self.buf[self.start..self.end]
                    .windows(2)
                    .position(|w| w == b"\r\n")
                {
                    break p;
                }
                self.more(s).await?;
            };
            let line = &self.buf[self.start..self.start + line_end];
            let size_text = line.split(|&b| b == b';').next().unwrap_or(b"");
            let size = std::str::from_utf8(size_text)
                .ok()
                .and_then(|t| usize::from_str_radix(t.trim(), 16).ok())
                .ok_or_else(|| Failure::Io(ErrorKind::BadResponse, "invalid chunk size".into()))?;
            self.start += line_end + 2;
            if size == 0 {
                // Trailers end with an empty line.
                loop {
                    if let Some(p) = self.buf[self.start..self.end]
                        .windows(2)
                        .position(|w| w == b"\r\n")
                    {
                        self.start += p + 2;
                        if p == 0 {
                            return Ok(total);
                        }
                    } else {
                        self.more(s).await?;
                    }
                }
            }
            while self.end - self.start < size + 2 {
                self.more(s).await?;
            }
            self.start += size + 2;
            total += size;
        }
    }
}

fn io_failure(e: &std::io::Error) -> Failure {
    use std::io::ErrorKind as K;
    let kind = match e.kind() {
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            ErrorKind::Reset
        }
        K::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    };
    Failure::Io(kind, e.to_string())
}

/// Opens a connection: TCP, and the TLS handshake for `https://`.
/// How long before a paced send the wait stops trusting tokio's timer (a millisecond wheel,
/// which fires up to a millisecond late) and polls the clock instead.
const PACING_SPIN: Duration = Duration::from_micros(1500);

/// Waits until `at` to within a few microseconds: the timer for all but the last
/// [`PACING_SPIN`], then yields to this thread's other connections (and its I/O driver)
/// until the clock says so. A late timer would otherwise count as the server's latency.
async fn pace_until(at: Instant) {
    if let Some(coarse) = at.checked_sub(PACING_SPIN) {
        if coarse > Instant::now() {
            tokio::time::sleep_until(coarse.into()).await;
        }
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

async fn open(plan: &Plan) -> std::io::Result<Stream> {
    let tcp = TcpStream::connect(plan.addr).await?;
    let _ = tcp.set_nodelay(true);
    match &plan.tls {
        None => Ok(Stream::Plain(tcp)),
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let s = connector.connect(tls.name.clone(), tcp).await?;
            Ok(Stream::Tls(Box::new(s)))
        }
    }
}

async fn connection(
    shared: &Shared,
    t: usize,
    c: usize,
    quota: Option<u64>,
    tally: &RefCell<Tally>,
) {
    let plan = &shared.plan;
    let live = &shared.live[t];
    let interval = plan
        .rate
        .map(|r| Duration::from_secs_f64(plan.connections as f64 / r));
    // Stagger the connections' schedules across one interval.
    let mut intended = Instant::now()
        + interval.map_or(Duration::ZERO, |iv| {
            iv.mul_f64(c as f64 / plan.connections as f64)
        });
    let mut stream: Option<Stream> = None;
    let mut reader = Reader {
        buf: vec![0; 16 * 1024],
        start: 0,
        end: 0,
    };
    let mut measured = 0u64;
    let mut stop_poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        if shared.stop.load(Ordering::Acquire) || quota.is_some_and(|q| measured >= q) {
            return;
        }
        let send_at = match interval {
            Some(iv) => {
                let at = intended;
                intended += iv;
                pace_until(at).await;
                if at >= shared.measure_from {
                    let late = at.elapsed().as_micros().max(1) as u64;
                    let _ = tally
                        .borrow_mut()
                        .pacing_late
                        .record(late.min(3_600_000_000));
                }
                at
            }
            None => Instant::now(),
        };
        let measuring = send_at >= shared.measure_from;
        let fail = |kind: ErrorKind, why: String| {
            if measuring {
                *tally.borrow_mut().errors.entry((kind, why)).or_default() += 1;
                live.done.fetch_add(1, Ordering::Relaxed);
                live.failed.fetch_add(1, Ordering::Relaxed);
            }
        };
        if stream.is_none() {
            let started = Instant::now();
            match tokio::time::timeout(plan.timeout, open(plan)).await {
                Ok(Ok(s)) => {
                    if measuring && plan.tls.is_some() {
                        let us = started.elapsed().as_micros().max(1) as u64;
                        let _ = tally.borrow_mut().handshakes.record(us.min(3_600_000_000));
                    }
                    reader.start = 0;
                    reader.end = 0;
                    stream = Some(s);
                }
                Ok(Err(e)) => {
                    fail(ErrorKind::Connect, e.to_string());
                    measured += u64::from(measuring);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => {
                    fail(ErrorKind::Connect, "connect timed out".into());
                    measured += u64::from(measuring);
                    continue;
                }
            }
        }
        let s = stream.as_mut().expect("connected above");
        let exchange = async {
            s.write_all(&plan.request)
                .await
                .map_err(|e| io_failure(&e))?;
            reader.response(s, plan.head_only).await
        };
        let timed = plan.duration.is_some();
        let stopped = async {
            loop {
                stop_poll.tick().await;
                if shared.stop.load(Ordering::Acquire) {
                    return;
                }
            }
        };
        let result = tokio::select! {
            r = tokio::time::timeout(plan.timeout, exchange) => r.unwrap_or_else(|_| Err(Failure::Io(ErrorKind::Timeout, format!("no response within {:?}", plan.timeout)))),
            () = stopped, if timed => Err(Failure::Stopped),
        };
        match result {
            Ok(resp) => {
                if measuring {
                    let us = send_at.elapsed().as_micros().max(1) as u64;
                    let mut t = tally.borrow_mut();
                    let _ = t.latency.record(us.min(3_600_000_000));
                    if resp.status < 400 {
                        let _ = t.latency_ok.record(us.min(3_600_000_000));
                    }
                    *t.statuses.entry(resp.status).or_default() += 1;
                    t.bytes += resp.bytes as u64;
                    live.done.fetch_add(1, Ordering::Relaxed);
                    if resp.status >= 400 {
                        live.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if resp.close || !plan.keepalive {
                    stream = None;
                }
            }
            Err(Failure::Stopped) => {
                if measuring {
                    tally.borrow_mut().in_flight_at_end += 1;
                }
                return;
            }
            Err(Failure::Io(kind, why)) => {
                fail(kind, why);
                stream = None;
            }
        }
        measured += u64::from(measuring);
    }
}

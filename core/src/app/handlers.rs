//! The endpoints (docs/api.md). Each fills the session's reusable [`Response`]; the hot ones
//! (`/ping`, `compute/fast`) write their bodies without allocating.

use std::time::Duration;

use serde::Deserialize;

use super::json::{write_f64, write_int, write_str, write_utf8};
use super::profile::{PROFILE_GRACE, PROFILE_SECONDS, ProfileFormat};
use super::{App, Deferred, Endpoint, ErrorCode, Exchange};
use crate::http::response::{put_decimal, put_u64};
use crate::http::{Head, Reply, Response, Status};
use crate::jobs::{JobDone, JobWatch};
use crate::time::Now;

/// The largest |number| whose square fits in an i64.
pub const MAX_NUMBER: i64 = 3_037_000_499;
/// The longest `/api/v1/sleep`.
pub const MAX_SLEEP_MS: u64 = 60_000;
/// The most events one `/api/v1/stream` sends.
pub const MAX_STREAM_EVENTS: u32 = 100_000;
/// The longest interval between stream events.
pub const MAX_STREAM_INTERVAL_MS: u64 = 60_000;
/// The shortest interval between stream events: `interval_ms=0` is served at this pace, so a
/// stream is paced by a timer rather than by how fast the peer reads.
pub const MIN_STREAM_INTERVAL_MS: u64 = 1;

#[derive(Deserialize)]
struct ComputeRequest {
    /// A JSON number with no fractional part: `42`, or `42.0` (JSON Schema's `integer`).
    number: serde_json::Number,
}

thread_local! {
    /// The last Unix second this thread wrote, and its ten digits.
    static SECONDS: std::cell::Cell<(u64, [u8; 10])> = const { std::cell::Cell::new((0, [0; 10])) };
}

/// Appends `secs` in decimal; a ten-digit second (2001 to 2286) is formatted once a second
/// per thread and then copied, like the `Date` header.
fn write_unix_secs(out: &mut Vec<u8>, secs: u64) {
    if !(1_000_000_000..10_000_000_000).contains(&secs) {
        put_u64(out, secs);
        return;
    }
    let (cached, mut digits) = SECONDS.get();
    if cached != secs {
        let mut n = secs;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        SECONDS.set((secs, digits));
    }
    out.extend_from_slice(&digits);
}

/// The body as nearly every client sends it — `{"number": <integer>}` with JSON whitespace
/// anywhere between the tokens, an optional `-` and 1–10 digits without a leading zero, within
/// [`MAX_NUMBER`] — read without a parser; `None` for anything else, which serde_json then
/// decides (with its error messages). Measured: the fast path saves about 600 instructions a
/// `compute/fast` request (BENCHMARKS.md, "The hot path"); on the bodies it takes it gives
/// exactly what the serde path gives (`core/tests/props.rs` compares the two).
pub(crate) fn plain_number_body(body: &[u8]) -> Option<i64> {
    fn skip_ws(b: &[u8], mut at: usize) -> usize {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(at) {
            at += 1;
        }
        at
    }
    // `{"number":` as nearly every client starts is one comparison; other spacing is skipped.
    let mut at = if body.starts_with(b"{\"number\":") {
        10
    } else {
        let mut at = skip_ws(body, 0);
        if body.get(at) != Some(&b'{') {
            return None;
        }
        at = skip_ws(body, at + 1);
        if !body[at..].starts_with(b"\"number\"") {
            return None;
        }
        at = skip_ws(body, at + 8);
        if body.get(at) != Some(&b':') {
            return None;
        }
        at + 1
    };
    at = skip_ws(body, at);
    let negative = body.get(at) == Some(&b'-');
    at += usize::from(negative);
    let first = at;
    let mut n = 0i64;
    while let Some(&d) = body.get(at).filter(|d| d.is_ascii_digit()) {
        // Few enough digits that the value cannot overflow.
        if at - first == 10 {
            return None;
        }
        n = n * 10 + i64::from(d - b'0');
        at += 1;
    }
    // At least one digit, and no leading zero (JSON).
    if at == first || (at - first > 1 && body[first] == b'0') {
        return None;
    }
    at = skip_ws(body, at);
    if body.get(at) != Some(&b'}') || skip_ws(body, at + 1) != body.len() || n > MAX_NUMBER {
        return None;
    }
    Some(if negative { -n } else { n })
}

/// The `compute` body through serde_json: every body the fast path does not take.
fn serde_number_body(body: &[u8]) -> Result<i64, String> {
    // serde would also accept `[42]` for a one-field struct; the contract is an object.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err("invalid request body: expected a JSON object {\"number\": <integer>}".into());
    }
    // serde_json skips the strings of fields it ignores without checking their UTF-8;
    // JSON text is UTF-8 (RFC 8259 §8.1), so the whole body is checked first.
    let body = std::str::from_utf8(body)
        .map_err(|_| String::from("invalid request body: not valid UTF-8"))?;
    let req: ComputeRequest = serde_json::from_str(body)
        .map_err(|e| format!("invalid request body: {e}; expected {{\"number\": <integer>}}"))?;
    let out_of_range = || format!("number out of range: |number| must be at most {MAX_NUMBER}");
    let number = match (req.number.as_i64(), req.number.as_f64()) {
        (Some(n), _) => n,
        (None, Some(f)) if f.fract() == 0.0 => {
            if f.abs() > MAX_NUMBER as f64 {
                return Err(out_of_range());
            }
            f as i64
        }
        _ => {
            return Err(format!(
                "invalid request body: number {} is not an integer; expected {{\"number\": <integer>}}",
                req.number
            ));
        }
    };
    if number.unsigned_abs() > MAX_NUMBER as u64 {
        return Err(out_of_range());
    }
    Ok(number)
}

/// Exposition formats of `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Prometheus,
    OpenMetrics,
}

impl App {
    /// Runs the endpoint of an admitted request whose body is complete.
    pub(crate) fn answer(
        &self,
        now: Now,
        head: &Head<'_>,
        body: &[u8],
        ex: &mut Exchange,
        res: &mut Response,
    ) -> Reply<JobWatch> {
        let endpoint = ex
            .endpoint
            .expect("invariant: an answer follows a successful admit");
        match endpoint {
            Endpoint::Ping => {
                res.header_line(b"Content-Type: text/plain; charset=utf-8\r\n");
                res.body_mut().extend_from_slice(b"pong");
            }
            // The plain body is read inline (no `Result<_, String>` to pass back).
            Endpoint::ComputeFast => match plain_number_body(body) {
                Some(n) => self.compute_response(now, ex, res, 0, n.wrapping_mul(n)),
                None => match self.parse_number(body) {
                    Ok(n) => self.compute_response(now, ex, res, 0, n.wrapping_mul(n)),
                    Err(msg) => self.error(now, ex, res, ErrorCode::InvalidRequest, &msg),
                },
            },
            other => return self.answer_more(now, head, body, ex, res, other),
        }
        Reply::Now
    }

    /// The other endpoints, out of line: the two above keep a small stack frame (about six
    /// instructions a request, measured).
    #[inline(never)]
    fn answer_more(
        &self,
        now: Now,
        head: &Head<'_>,
        body: &[u8],
        ex: &mut Exchange,
        res: &mut Response,
        endpoint: Endpoint,
    ) -> Reply<JobWatch> {
        match endpoint {
            Endpoint::Ping | Endpoint::ComputeFast => {
                return self.answer(now, head, body, ex, res);
            }
            Endpoint::ComputeIntensive => match self.parse_number(body) {
                Ok(n) => {
                    let deadline = now.mono.saturating_add(self.config.request_timeout);
                    match self.queue.submit(now.mono, n, deadline) {
                        Ok(wait) => {
                            let watch = wait.watcher();
                            ex.deferred = Deferred::Job { wait, deadline };
                            return Reply::Later {
                                deadline: Some(deadline),
                                wait: Some(watch),
                            };
                        }
                        Err(_) => {
                            res.header("Retry-After", b"1");
                            self.error(
                                now,
                                ex,
                                res,
                                ErrorCode::ServiceOverloaded,
                                "job queue is full",
                            );
                        }
                    }
                }
                Err(msg) => self.error(now, ex, res, ErrorCode::InvalidRequest, &msg),
            },
            Endpoint::Echo => {
                let ct = head
                    .header("content-type")
                    .unwrap_or(b"application/octet-stream");
                res.header("Content-Type", ct);
                res.body_mut().extend_from_slice(body);
            }
            Endpoint::User => {
                let id = &head.path()[ex.param.0 as usize..ex.param.1 as usize];
                res.header_line(b"Content-Type: application/json\r\n");
                let b = res.body_mut();
                b.extend_from_slice(b"{\"id\":");
                // The grammar checked the target is UTF-8; the escaper handles the rest.
                write_utf8(b, id);
                b.push(b'}');
            }
            Endpoint::Health => self.health(now, res),
            Endpoint::OpenApi => {
                // docs/openapi.yaml is written in JSON syntax; its leading comment lines go.
                const SPEC: &str = include_str!("../../../docs/openapi.yaml");
                let json = SPEC.find('{').map_or(SPEC, |at| &SPEC[at..]);
                res.header_line(b"Content-Type: application/json\r\n");
                res.body_mut().extend_from_slice(json.as_bytes());
            }
            Endpoint::Livez => {
                // Answering at all is the proof of life: an I/O thread and the core run.
                res.header_line(b"Content-Type: application/json\r\n");
                res.header("Cache-Control", b"no-store");
                res.body_mut().extend_from_slice(b"{\"status\":\"alive\"}");
            }
            Endpoint::Readyz => {
                let (ready, why) = self.is_ready();
                res.set_status(if ready {
                    Status::OK
                } else {
                    Status::SERVICE_UNAVAILABLE
                });
                res.header_line(b"Content-Type: application/json\r\n");
                res.header("Cache-Control", b"no-store");
                let b = res.body_mut();
                b.extend_from_slice(b"{\"ready\":");
                b.extend_from_slice(if ready { b"true" } else { b"false" });
                b.extend_from_slice(b",\"status\":");
                write_str(b, why);
                if let Some(f) = &self.fleet {
                    // Ready either way: the fallback share still serves; say which it is.
                    b.extend_from_slice(if f.is_shared(now.mono) {
                        b",\"rate_limit\":\"shared\""
                    } else {
                        b",\"rate_limit\":\"local-fallback\""
                    });
                }
                b.push(b'}');
            }
            Endpoint::Metrics | Endpoint::Stats => match negotiate(head) {
                Some(format) => self.metrics_response(now, format, res),
                None => self.error(
                    now,
                    ex,
                    res,
                    ErrorCode::InvalidRequest,
                    "query parameter format must be json, prometheus or openmetrics",
                ),
            },
            Endpoint::Sleep => match query_u64(head.query(), "ms") {
                Ok(Some(ms)) if ms <= MAX_SLEEP_MS => {
                    let until = now.mono.saturating_add(Duration::from_millis(ms));
                    ex.deferred = Deferred::Sleep { until, ms };
                    return Reply::Later {
                        deadline: Some(until),
                        wait: None,
                    };
                }
                Ok(None) => self.error(
                    now,
                    ex,
                    res,
                    ErrorCode::InvalidRequest,
                    "query parameter ms is required",
                ),
                _ => self.error(
                    now,
                    ex,
                    res,
                    ErrorCode::InvalidRequest,
                    "ms must be an integer from 0 to 60000",
                ),
            },
            Endpoint::Stream => {
                let count = query_u64(head.query(), "count").map(|c| c.unwrap_or(10));
                let interval = query_u64(head.query(), "interval_ms").map(|i| i.unwrap_or(1000));
                match (count, interval) {
                    (Ok(count), Ok(ms))
                        if count <= u64::from(MAX_STREAM_EVENTS)
                            && ms <= MAX_STREAM_INTERVAL_MS =>
                    {
                        res.header("Content-Type", b"text/event-stream");
                        res.header("Cache-Control", b"no-cache");
                        let interval = Duration::from_millis(ms.max(MIN_STREAM_INTERVAL_MS));
                        ex.deferred = Deferred::Stream {
                            left: count as u32,
                            seq: 0,
                            interval,
                        };
                        return Reply::Stream {
                            first: (count > 0).then(|| now.mono.saturating_add(interval)),
                        };
                    }
                    _ => self.error(
                        now,
                        ex,
                        res,
                        ErrorCode::InvalidRequest,
                        "count must be 0..=100000 and interval_ms 0..=60000",
                    ),
                }
            }
            Endpoint::Profile => return self.start_profile(now, head, ex, res),
        }
        Reply::Now
    }

    /// The number of a `compute` body: the plain form at once, anything else through serde.
    fn parse_number(&self, body: &[u8]) -> Result<i64, String> {
        plain_number_body(body).map_or_else(|| serde_number_body(body), Ok)
    }

    fn compute_response(
        &self,
        now: Now,
        ex: &Exchange,
        res: &mut Response,
        job_id: u64,
        result: i64,
    ) {
        res.header_line(b"Content-Type: application/json\r\n");
        let b = res.body_mut();
        b.extend_from_slice(b"{\"request_id\":");
        ex.id.write_json(b);
        b.extend_from_slice(b",\"job_id\":");
        put_decimal(b, job_id);
        b.extend_from_slice(b",\"result\":");
        if result < 0 {
            b.push(b'-');
        }
        put_decimal(b, result.unsigned_abs());
        b.extend_from_slice(b",\"latency_us\":");
        let latency_ns = now.mono.as_nanos().saturating_sub(ex.started.as_nanos());
        put_decimal(b, latency_ns / 1_000);
        b.extend_from_slice(b",\"timestamp\":");
        write_unix_secs(b, now.unix_secs());
        b.push(b'}');
    }

    /// The response to a job's outcome.
    pub(crate) fn job_response(&self, now: Now, ex: &Exchange, done: JobDone, res: &mut Response) {
        res.clear();
        match done {
            JobDone::Completed { id, result, .. } => {
                self.compute_response(now, ex, res, id, result)
            }
            JobDone::TimedOut => self.error(
                now,
                ex,
                res,
                ErrorCode::Timeout,
                "job did not finish within REQUEST_TIMEOUT",
            ),
            JobDone::Failed => self.error(now, ex, res, ErrorCode::ProcessingError, "job failed"),
        }
    }

    /// The response to `/api/v1/sleep` once its time has come.
    /// `GET /debug/pprof/profile?seconds=N[&format=pprof|svg]`: starts a CPU profile and
    /// answers when it ends (see `profile`).
    fn start_profile(
        &self,
        now: Now,
        head: &Head<'_>,
        ex: &mut Exchange,
        res: &mut Response,
    ) -> Reply<JobWatch> {
        let (least, most, default) = PROFILE_SECONDS;
        let seconds = match query_u64(head.query(), "seconds") {
            Ok(s) => s.unwrap_or(default),
            Err(()) => most + 1,
        };
        let format = match query_str(head.query(), "format") {
            Ok(None | Some(b"pprof" | b"proto")) => Some(ProfileFormat::Pprof),
            Ok(Some(b"svg")) => Some(ProfileFormat::Svg),
            _ => None,
        };
        let (Some(format), true) = (format, (least..=most).contains(&seconds)) else {
            let message = "seconds must be an integer from 1 to 60 and format pprof or svg";
            self.error(now, ex, res, ErrorCode::InvalidRequest, message);
            return Reply::Now;
        };
        let Some(profiler) = &self.profiler else {
            let message = "this server was built without CPU profiling (the `profiling` feature)";
            self.error(now, ex, res, ErrorCode::NotImplemented, message);
            return Reply::Now;
        };
        let duration = Duration::from_secs(seconds);
        let Some(slot) = profiler.start(duration, format) else {
            res.header_num("Retry-After", seconds);
            let message = "a profile is already being taken";
            self.error(now, ex, res, ErrorCode::ServiceOverloaded, message);
            return Reply::Now;
        };
        let until = now.mono.saturating_add(duration);
        ex.deferred = Deferred::Profile {
            slot,
            format,
            until,
        };
        Reply::Later {
            deadline: Some(until),
            wait: None,
        }
    }

    /// The profile's answer once its slot is filled: the profile, or a 500 with the
    /// profiler's reason; `None` while it is not (polled until `PROFILE_GRACE` past its
    /// end, then a 500).
    pub(crate) fn profile_response(
        &self,
        now: Now,
        ex: &mut Exchange,
        res: &mut Response,
    ) -> Option<()> {
        let Deferred::Profile {
            slot,
            format,
            until,
        } = &ex.deferred
        else {
            return Some(());
        };
        let (format, until) = (*format, *until);
        let result = match slot.take() {
            Some(result) => result,
            None if now.mono < until.saturating_add(PROFILE_GRACE) => return None,
            None => Err("the profiler did not finish in time".to_owned()),
        };
        ex.deferred = Deferred::None;
        res.clear();
        match result {
            Ok(bytes) => {
                res.header("Content-Type", format.content_type());
                res.header("Cache-Control", b"no-store");
                res.body_mut().extend_from_slice(&bytes);
            }
            Err(why) => self.error(now, ex, res, ErrorCode::InternalError, &why),
        }
        Some(())
    }

    pub(crate) fn sleep_response(&self, ms: u64, res: &mut Response) {
        res.clear();
        res.header_line(b"Content-Type: application/json\r\n");
        let b = res.body_mut();
        b.extend_from_slice(b"{\"slept_ms\":");
        write_int(b, ms);
        b.push(b'}');
    }

    /// Appends server-sent event number `seq` (from 1) to `out`.
    pub(crate) fn stream_event(&self, now: Now, ex: &Exchange, seq: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(b"id: ");
        write_int(out, seq);
        out.extend_from_slice(b"\nevent: tick\ndata: {\"seq\":");
        write_int(out, seq);
        out.extend_from_slice(b",\"request_id\":");
        ex.id.write_json(out);
        out.extend_from_slice(b",\"timestamp\":");
        write_int(out, now.unix_secs());
        out.extend_from_slice(b"}\n\n");
    }

    fn health(&self, now: Now, res: &mut Response) {
        let (workers, wanted) = self.lifecycle.workers();
        let pool_ok = workers >= wanted;
        let mut healthy = pool_ok;
        res.header_line(b"Content-Type: application/json\r\n");
        res.header("Cache-Control", b"no-store");
        let mut statuses: Vec<(&str, &str)> =
            vec![("worker_pool", if pool_ok { "healthy" } else { "unhealthy" })];
        for (name, check) in &self.checks {
            let ok = check();
            healthy &= ok;
            statuses.push((name, if ok { "healthy" } else { "unhealthy" }));
        }
        if self.is_draining() {
            healthy = false;
            statuses.push(("server", "draining"));
        }
        res.set_status(if healthy {
            Status::OK
        } else {
            Status::SERVICE_UNAVAILABLE
        });
        let b = res.body_mut();
        b.extend_from_slice(b"{\"status\":{");
        for (i, (name, state)) in statuses.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            write_str(b, name);
            b.push(b':');
            write_str(b, state);
        }
        b.extend_from_slice(b"},\"timestamp\":");
        write_int(b, now.unix_secs());
        b.extend_from_slice(b",\"version\":\"");
        b.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        b.extend_from_slice(b"\",\"runtime\":");
        write_str(b, self.runtime);
        b.extend_from_slice(b",\"uptime_seconds\":");
        write_f64(b, now.mono.since(self.started.mono).as_secs_f64());
        b.push(b'}');
    }

    fn metrics_response(&self, now: Now, format: Format, res: &mut Response) {
        let process = self.process.load();
        match format {
            Format::Json => {
                res.header_line(b"Content-Type: application/json\r\n");
                let body = self.metrics_json(now, &process);
                res.body_mut().extend_from_slice(body.as_bytes());
            }
            Format::Prometheus | Format::OpenMetrics => {
                let om = format == Format::OpenMetrics;
                res.header(
                    "Content-Type",
                    if om {
                        b"application/openmetrics-text; version=1.0.0; charset=utf-8"
                    } else {
                        b"text/plain; version=0.0.4; charset=utf-8"
                    },
                );
                let body = self.metrics_text(now, &process, om);
                res.body_mut().extend_from_slice(body.as_bytes());
            }
        }
    }
}

/// Picks the exposition format: `?format=prometheus|openmetrics|json`, else the `Accept`
/// media range with the highest q among JSON, Prometheus text and OpenMetrics (ties go to
/// the earlier one; `*/*` and a missing header mean JSON). `None`: a `format` it does not know.
fn negotiate(head: &Head<'_>) -> Option<Format> {
    if let Ok(Some(f)) = query_str(head.query(), "format") {
        return match f {
            b"prometheus" | b"text" => Some(Format::Prometheus),
            b"openmetrics" => Some(Format::OpenMetrics),
            b"json" => Some(Format::Json),
            _ => None,
        };
    }
    let Some(accept) = head
        .header("accept")
        .and_then(|a| std::str::from_utf8(a).ok())
    else {
        return Some(Format::Json);
    };
    let mut best: Option<(f32, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
        }
        let format = match media.as_str() {
            "application/openmetrics-text" => Format::OpenMetrics,
            "text/plain" => Format::Prometheus,
            "application/json" | "application/*" | "*/*" => Format::Json,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, format));
        }
    }
    Some(best.map_or(Format::Json, |(_, f)| f))
}

fn query_str<'q>(query: Option<&'q [u8]>, key: &str) -> Result<Option<&'q [u8]>, ()> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split(|&b| b == b'&') {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        if k == key.as_bytes() {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// An unsigned integer query parameter: `Ok(None)` when absent, `Err` when not a number.
fn query_u64(query: Option<&[u8]>, key: &str) -> Result<Option<u64>, ()> {
    match query_str(query, key)? {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit) => Ok(Some(
            v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
        )),
        Some(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Limits, ParsedHead};
    use proptest::prelude::*;

    #[test]
    fn unix_seconds_are_written_in_decimal_whether_cached_or_not() {
        for secs in [
            0,
            999_999_999,
            1_000_000_000,
            1_796_247_838,
            1_796_247_838,
            1_796_247_839,
            9_999_999_999,
            10_000_000_000,
            u64::MAX,
        ] {
            let mut out = b"t:".to_vec();
            write_unix_secs(&mut out, secs);
            assert_eq!(out, format!("t:{secs}").as_bytes());
        }
    }

    #[test]
    fn the_plain_number_body_is_read_without_serde() {
        for (body, want) in [
            (&b"{\"number\": 42}"[..], Some(42)),
            (b"{\"number\":-7}", Some(-7)),
            (b" \r\n{ \"number\"\t:\n0 } \n", Some(0)),
            (b"{\"number\": -0}", Some(0)),
            (b"{\"number\": 3037000499}", Some(MAX_NUMBER)),
            (b"{\"number\": 3037000500}", None),
            (b"{\"number\": 042}", None),
            (b"{\"number\": 4.0}", None),
            (b"{\"number\": 4e2}", None),
            (b"{\"number\": 4, \"x\": 1}", None),
            (b"{\"number\": 4}}", None),
            (b"{\"numbers\": 4}", None),
            (b"{\"number\": -}", None),
            (b"{\"number\": 99999999999999999999}", None),
            (b"[42]", None),
            (b"", None),
        ] {
            assert_eq!(
                plain_number_body(body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    proptest! {
        /// Wherever the fast path answers, serde_json answers the same.
        #[test]
        fn the_fast_path_agrees_with_serde(
            pre in "[ \t\r\n]{0,2}",
            mid in "[ \t\r\n]{0,2}",
            sign in "-?",
            digits in "[0-9]{1,12}",
            tail in "(\\.0|e1|,\"x\":1|)",
            post in "[ \t\r\n}]{0,2}",
        ) {
            let body = format!("{pre}{{{mid}\"number\"{mid}:{mid}{sign}{digits}{tail}{mid}}}{post}");
            let serde = serde_number_body(body.as_bytes());
            if let Some(n) = plain_number_body(body.as_bytes()) {
                prop_assert_eq!(Ok(n), serde, "{}", body);
            }
        }
    }

    fn parsed(raw: &str) -> ParsedHead {
        let mut h = ParsedHead::default();
        h.parse(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        h
    }

    #[test]
    fn negotiation_follows_accept_and_query() {
        let prom3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        let cases = [
            (format!("GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: {prom3}\r\n\r\n"), Format::OpenMetrics),
            ("GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: text/plain;version=0.0.4;q=0.9,*/*;q=0.1\r\n\r\n".into(), Format::Prometheus),
            ("GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n".into(), Format::Json),
            ("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n".into(), Format::Json),
            ("GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: text/html,*/*;q=0.8\r\n\r\n".into(), Format::Json),
            ("GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: application/json, text/plain\r\n\r\n".into(), Format::Json),
            ("GET /metrics?format=prometheus HTTP/1.1\r\nHost: a\r\n\r\n".into(), Format::Prometheus),
            ("GET /metrics?x=1&format=openmetrics HTTP/1.1\r\nHost: a\r\n\r\n".into(), Format::OpenMetrics),
        ];
        for (raw, want) in cases {
            let h = parsed(&raw);
            assert_eq!(negotiate(&h.view(raw.as_bytes())), Some(want), "{raw}");
        }
        let raw = "GET /metrics?format=AAA HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            negotiate(&parsed(raw).view(raw.as_bytes())),
            None,
            "an unknown format"
        );
    }

    #[test]
    fn query_parsing() {
        assert_eq!(query_u64(Some(b"ms=10&x=2"), "ms"), Ok(Some(10)));
        assert_eq!(query_u64(Some(b"x=2"), "ms"), Ok(None));
        assert_eq!(query_u64(None, "ms"), Ok(None));
        assert_eq!(query_u64(Some(b"ms=-1"), "ms"), Err(()));
        assert_eq!(query_u64(Some(b"ms="), "ms"), Err(()));
        assert_eq!(query_u64(Some(b"ms=99999999999999999999"), "ms"), Err(()));
        assert_eq!(query_u64(Some(b"ms=18446744073709551616"), "ms"), Err(()));
        assert_eq!(
            query_u64(Some(b"ms=9999999999999999999"), "ms"),
            Ok(Some(9_999_999_999_999_999_999))
        );
    }
}

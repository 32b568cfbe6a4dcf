//! `tracing` set-up: JSON lines in production, human-readable in development, handed to a
//! background writer thread so logging never blocks an I/O thread.
//!
//! Invariants:
//! - a logged event costs no heap allocation once warm: `tracing-subscriber` formats into
//!   its per-thread buffer (through [`LogLines`], which writes fields as it visits them), and the line is copied into a shared batch whose capacity is reused;
//! - the batch holds at most `LOG_BUFFER_LINES` lines; a line that does not fit is dropped
//!   and counted (`dropped`), never waited for;
//! - the writer thread swaps the batch for its spare one at least every [`FLUSH_EVERY`] (or
//!   at once when the batch is half full) and writes it with one `write` to stderr;
//! - dropping the [`LogGuard`] writes out everything logged before it.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use weir_core::config::{Config, Environment};

/// The longest a logged line waits in the batch before the writer thread takes it.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

static SINK: OnceLock<Arc<Sink>> = OnceLock::new();

/// Keeps the log writer alive; dropping it writes out what is buffered.
#[derive(Debug)]
pub struct LogGuard(Option<JoinHandle<()>>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let (Some(thread), Some(sink)) = (self.0.take(), SINK.get()) {
            sink.lock().closing = true;
            sink.wake.notify_one();
            let _ = thread.join();
        }
    }
}

/// Installs the global subscriber (logs go to stderr; stdout carries only the address line).
pub fn init(config: &Config) -> LogGuard {
    let sink = Arc::new(Sink {
        batch: Mutex::new(Batch {
            bytes: Vec::with_capacity(64 * 1024),
            lines: 0,
            closing: false,
        }),
        wake: Condvar::new(),
        max_lines: config.log_buffer_lines.max(1),
        dropped: AtomicU64::new(0),
        logged: AtomicU64::new(0),
    });
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(SinkWriter(sink.clone()))
        .with_target(true)
        .with_ansi(ansi);
    let installed = match config.environment {
        Environment::Production => builder.event_format(LogLines::JSON).try_init(),
        _ => builder.event_format(LogLines::TEXT).try_init(),
    };
    if installed.is_err() || SINK.set(sink.clone()).is_err() {
        // A subscriber already exists (tests); keep it.
        return LogGuard(None);
    }
    let thread = std::thread::Builder::new()
        .name("weir-log".into())
        .spawn(move || sink.run())
        .expect("spawning the log writer thread");
    LogGuard(Some(thread))
}

/// Lines dropped because the batch was full.
pub fn dropped() -> u64 {
    SINK.get().map_or(0, |s| s.dropped.load(Ordering::Relaxed))
}

/// Lines taken for writing since start.
pub fn logged() -> u64 {
    SINK.get().map_or(0, |s| s.logged.load(Ordering::Relaxed))
}

/// Best effort before an abrupt exit: wakes the writer and gives it a moment to write out
/// what is batched.
pub fn flush() {
    if let Some(sink) = SINK.get() {
        sink.wake.notify_one();
        for _ in 0..10 {
            if sink.lock().lines == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The lines logged since the writer last took them.
#[derive(Debug)]
struct Batch {
    bytes: Vec<u8>,
    lines: usize,
    closing: bool,
}

#[derive(Debug)]
struct Sink {
    batch: Mutex<Batch>,
    wake: Condvar,
    max_lines: usize,
    dropped: AtomicU64,
    logged: AtomicU64,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Batch> {
        // A panic while holding the lock leaves a batch that is still just bytes.
        self.batch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one formatted line (or several, for a multi-line event) or drops it when full.
    fn push(&self, line: &[u8]) {
        let mut b = self.lock();
        if b.lines >= self.max_lines {
            drop(b);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        b.bytes.extend_from_slice(line);
        b.lines += 1;
        self.logged.fetch_add(1, Ordering::Relaxed);
        let wake = b.lines == self.max_lines / 2;
        drop(b);
        if wake {
            self.wake.notify_one();
        }
    }

    /// The writer thread: takes the batch (swapping in its spare buffer, so neither is ever
    /// reallocated once grown) and writes it to stderr.
    fn run(&self) {
        let mut spare = Vec::with_capacity(64 * 1024);
        loop {
            let closing = {
                let mut b = self.lock();
                if b.lines == 0 && !b.closing {
                    b = self
                        .wake
                        .wait_timeout(b, FLUSH_EVERY)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                std::mem::swap(&mut b.bytes, &mut spare);
                b.lines = 0;
                b.closing
            };
            if !spare.is_empty() {
                // Nowhere to report a failing stderr: the lines are lost, as with any logger.
                let _ = std::io::stderr().write_all(&spare);
                spare.clear();
            }
            if closing && self.lock().lines == 0 {
                return;
            }
        }
    }
}

/// The `MakeWriter` of the subscriber: every event's formatted text goes to the sink.
struct SinkWriter(Arc<Sink>);

impl<'a> MakeWriter<'a> for SinkWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter(&self.0)
    }
}

/// Writes one event's text into the sink (the fmt layer writes each event with one call).
struct LineWriter<'a>(&'a Sink);

impl std::io::Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// weir's log line formats, written as `tracing` visits the fields — no map, no intermediate
/// strings, no formatting machinery for numbers:
/// - [`LogLines::JSON`] (production): one flat JSON object per event: `timestamp`, `level`,
///   `target`, then the event's fields (`message` among them);
/// - [`LogLines::TEXT`] (development): `timestamp LEVEL target: message key=value …`, at half
///   the cost of `tracing-subscriber`'s own compact format.
#[derive(Clone, Copy, Debug)]
pub struct LogLines {
    text: bool,
}

impl LogLines {
    /// JSON lines.
    pub const JSON: LogLines = LogLines { text: false };
    /// Text lines for people.
    pub const TEXT: LogLines = LogLines { text: true };
}

impl<S, N> FormatEvent<S, N> for LogLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The line is built in this thread's own string with direct pushes, then handed over
        // in one write: `Writer` is a `dyn fmt::Write`, a virtual call per piece otherwise.
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                self.format_line(&mut line, event)?;
                w.write_str(&line)
            }
            // Formatting an event logged while formatting one (not done by weir).
            Err(_) => {
                let mut line = String::new();
                self.format_line(&mut line, event)?;
                w.write_str(&line)
            }
        })
    }
}

thread_local! {
    /// The line being formatted on this thread (its capacity is reused).
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl LogLines {
    fn format_line(&self, w: &mut String, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let stamp = weir_core::time::rfc3339_millis(now_ms);
        let stamp = std::str::from_utf8(&stamp).map_err(|_| fmt::Error)?;
        let level = meta.level().as_str();
        if self.text {
            w.push_str(stamp);
            w.push_str(&"      "[..6 - level.len()]);
            w.push_str(level);
            w.push(' ');
            w.push_str(meta.target());
            w.push(':');
        } else {
            w.push_str("{\"timestamp\":\"");
            w.push_str(stamp);
            w.push_str("\",\"level\":\"");
            w.push_str(level);
            w.push_str("\",\"target\":");
            json_string(w, meta.target())?;
        }
        let mut fields = LineFields {
            w,
            text: self.text,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        w.push_str(if self.text { "\n" } else { "}\n" });
        Ok(())
    }
}

/// Writes an event's fields as JSON members (`,"key":value`) or as text (` key=value`, the
/// message bare).
struct LineFields<'a> {
    w: &'a mut String,
    text: bool,
    result: fmt::Result,
}

impl LineFields<'_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        // Field names are Rust identifiers: nothing to escape.
        match (self.text, field.name()) {
            (true, "message") => self.w.push(' '),
            (true, name) => {
                self.w.push(' ');
                self.w.push_str(name);
                self.w.push('=');
            }
            (false, name) => {
                self.w.push_str(",\"");
                self.w.push_str(name);
                self.w.push_str("\":");
            }
        }
        Ok(())
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut String) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.w));
        }
    }
}

impl Visit for LineFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.text && field.name() == "message" {
            self.put(field, |w| w.write_str(value));
        } else {
            self.put(field, |w| json_string(w, value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity. Values that fit are written with three decimals by
        // integer arithmetic (the float formatter costs a thousand instructions a field).
        let text = self.text;
        self.put(field, |w| {
            if !value.is_finite() {
                w.write_str(if text { "NaN" } else { "null" })
            } else if value.abs() < 1e12 {
                let thousandths = (value.abs() * 1000.0).round() as u64;
                if value < 0.0 && thousandths > 0 {
                    w.write_str("-")?;
                }
                w.write_str(itoa::Buffer::new().format(thousandths / 1000))?;
                let frac = (thousandths % 1000) as u32;
                w.push('.');
                for digit in [frac / 100, frac / 10 % 10, frac % 10] {
                    w.push(char::from_digit(digit, 10).unwrap_or('0'));
                }
                Ok(())
            } else {
                write!(w, "{value}")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.text {
            // Displayed values (`%`) and the message come through here unquoted, as
            // `tracing`'s own text formats print them.
            self.put(field, |w| write!(w, "{value:?}"));
            return;
        }
        self.put(field, |w| {
            w.write_str("\"")?;
            write!(Escaped(w), "{value:?}")?;
            w.write_str("\"")
        });
    }
}

fn json_string(w: &mut String, s: &str) -> fmt::Result {
    w.write_str("\"")?;
    Escaped(w).write_str(s)?;
    w.write_str("\"")
}

/// Whether `bytes` hold a control character, `"` or `\\` (what a JSON string escapes),
/// eight bytes at a time.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero, or below `n`: the classic bit tricks (exact for ASCII bytes,
    // and a byte >= 0x80 never sets them).
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let has = |x: u64, b: u8| below(x ^ (ONES * u64::from(b)), 1);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        if below(x, 0x20) | has(x, b'"') | has(x, b'\\') != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Escapes what JSON requires inside a string (RFC 8259 §7) on its way to the writer.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !needs_escape(s.as_bytes()) {
            return self.0.write_str(s); // nothing to escape: the usual case
        }
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let esc = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if esc.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(esc)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::{LogLines, needs_escape};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_escape_check_finds_every_byte_json_escapes() {
        for b in 0..=255u8 {
            for at in [0, 5, 7, 8, 13, 15, 16] {
                let mut bytes = vec![b'a'; 17];
                bytes[at] = b;
                let want = b < 0x20 || b == b'"' || b == b'\\';
                assert_eq!(needs_escape(&bytes), want, "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn json_lines_are_json_with_every_field() {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .event_format(LogLines::JSON)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "weir::access",
                request_id = "a\"b\\c\u{1}",
                status = 200u16,
                delta = -3i64,
                ok = true,
                latency_ms = 1.5f64,
                tiny = 0.0004f64,
                negative = -2.25f64,
                huge = 1e300f64,
                nan = f64::NAN,
                client_ip = %"127.0.0.1",
                "served"
            );
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["target"], "weir::access");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "served");
        assert_eq!(v["request_id"], "a\"b\\c\u{1}");
        assert_eq!(v["status"], 200);
        assert_eq!(v["delta"], -3);
        assert_eq!(v["ok"], true);
        assert_eq!(v["latency_ms"], 1.5);
        assert_eq!(v["tiny"], 0.0);
        assert_eq!(v["negative"], -2.25);
        assert_eq!(v["huge"], 1e300);
        assert!(v["nan"].is_null());
        assert_eq!(v["client_ip"], "127.0.0.1");
        let stamp = v["timestamp"].as_str().unwrap();
        assert_eq!((stamp.len(), &stamp[4..5], &stamp[23..]), (24, "-", "Z"));
    }

    #[test]
    fn text_lines_read_like_the_compact_format() {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .event_format(LogLines::TEXT)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                configured = 100_000u64,
                effective = 32u64,
                "MAX_CONNECTIONS clamped"
            );
            tracing::info!(target: "weir::access", path = "/ping", client_ip = %"10.0.0.1", latency_ms = 0.25f64);
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with(
            "  WARN weir_kit::logging::tests: MAX_CONNECTIONS clamped configured=100000 effective=32"
        ), "{text}");
        assert!(
            lines[1].ends_with(
                "  INFO weir::access: path=\"/ping\" client_ip=10.0.0.1 latency_ms=0.250"
            ),
            "{text}"
        );
        assert_eq!(&lines[0][23..24], "Z");
    }
}

//! Time as a value: the core never reads a clock, every input carries a [`Now`].
//!
//! Invariants: [`Instant`] is nanoseconds on one monotonic clock chosen by the runtime (the
//! runtime kit uses nanoseconds since process start); a session's `now` never goes backwards
//! (a step back is clamped, see `Session`); wall-clock time is only used for `Date`, JSON
//! timestamps and logs, never for deadlines.

use std::time::Duration;

/// A point on the runtime's monotonic clock, in nanoseconds. Tests build any value they like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant(0);

    /// An instant `nanos` nanoseconds after the clock's origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the clock's origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Instant {
        // In u64, without `as_nanos`'s u128 (a deadline is set on every request).
        let nanos = d
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()));
        Instant(self.0.saturating_add(nanos))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// The current time as a runtime passes it in: monotonic for deadlines, wall for display.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time, for deadlines and latencies.
    pub mono: Instant,
    /// Wall-clock milliseconds since the Unix epoch, for `Date`, timestamps and logs.
    pub wall_ms: u64,
}

impl Now {
    /// A `Now` from its two parts.
    pub const fn new(mono: Instant, wall_ms: u64) -> Self {
        Now { mono, wall_ms }
    }

    /// Wall-clock seconds since the Unix epoch.
    pub const fn unix_secs(self) -> u64 {
        self.wall_ms / 1000
    }

    /// This time moved forward by `d` on both clocks (test and driver helper).
    pub fn advanced(self, d: Duration) -> Now {
        Now {
            mono: self.mono.saturating_add(d),
            wall_ms: self.wall_ms + u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2),
        }
    }
}

/// Formats an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) for `unix_secs`.
pub fn http_date(unix_secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[0..3].copy_from_slice(DAYS[(days % 7) as usize]);
    put2(&mut out[5..7], day as u64);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    let y = year.clamp(0, 9999) as u64;
    put2(&mut out[12..14], y / 100);
    put2(&mut out[14..16], y % 100);
    put2(&mut out[17..19], secs_of_day / 3600);
    put2(&mut out[20..22], secs_of_day / 60 % 60);
    put2(&mut out[23..25], secs_of_day % 60);
    out
}

/// Formats an RFC 3339 UTC timestamp with milliseconds (`2026-12-02T14:30:00.123Z`) for
/// `unix_ms`: the time field of JSON log lines, rendered without allocating.
pub fn rfc3339_millis(unix_ms: u64) -> [u8; 24] {
    let secs = unix_ms / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let secs_of_day = secs % 86_400;
    let mut out = *b"1970-01-01T00:00:00.000Z";
    let y = year.clamp(0, 9999) as u64;
    put2(&mut out[0..2], y / 100);
    put2(&mut out[2..4], y % 100);
    put2(&mut out[5..7], u64::from(month));
    put2(&mut out[8..10], u64::from(day));
    put2(&mut out[11..13], secs_of_day / 3600);
    put2(&mut out[14..16], secs_of_day / 60 % 60);
    put2(&mut out[17..19], secs_of_day % 60);
    let ms = unix_ms % 1000;
    out[20] = b'0' + (ms / 100) as u8;
    put2(&mut out[21..23], ms % 100);
    out
}

fn put2(dst: &mut [u8], v: u64) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The one duration grammar of every setting, flag, log line and error: an integer and a
/// unit, `ms`, `s`, `m` or `h` (`500ms`, `30s`, `2m`, `1h`). The unit is required: a bare
/// `30` is refused rather than guessed.
pub const DURATION_GRAMMAR: &str = "an integer with a unit: ms, s, m or h (500ms, 30s, 2m)";

/// Parses a duration in [`DURATION_GRAMMAR`]; `None` for anything else (or an overflow).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    Some(d)
}

/// Writes `d` in [`DURATION_GRAMMAR`], in the largest unit that says it exactly (`0s`,
/// `500ms`, `30s`, `2m`, `1h`); what is finer than a millisecond is written in `ms`,
/// rounded down (no setting takes less).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    match ms {
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_duration_grammar_read_and_written() {
        for (text, d) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Some(d), "{text}");
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(format_duration(Duration::from_millis(90_000)), "90s");
        for bad in [
            "30",
            "",
            "s",
            "1.5s",
            "500us",
            "-1s",
            "2 m",
            "1d",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration("18446744073709551615h"), None, "overflow");
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(
            &rfc3339_millis(784_111_777_042),
            b"1994-11-06T08:49:37.042Z"
        );
        assert_eq!(&rfc3339_millis(0), b"1970-01-01T00:00:00.000Z");
        assert_eq!(
            &rfc3339_millis(951_782_400_999),
            b"2000-02-29T00:00:00.999Z"
        );
    }

    #[test]
    fn http_date_matches_rfc_example() {
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(1_951_171_200), b"Fri, 31 Oct 2031 00:00:00 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_nanos(10);
        assert_eq!(t.since(Instant::from_nanos(20)), Duration::ZERO);
        assert_eq!(
            Instant::from_nanos(u64::MAX)
                .saturating_add(Duration::from_secs(1))
                .as_nanos(),
            u64::MAX
        );
    }
}

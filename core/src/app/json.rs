//! Allocation-free JSON writing for response bodies (values are numbers and short strings).

/// Appends `s` as a JSON string literal, escaping what RFC 8259 requires.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_utf8(out, s.as_bytes());
}

/// [`write_str`] for bytes the caller knows are UTF-8 (request IDs, which are ASCII).
pub fn write_utf8(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends an integer.
pub fn write_int<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

/// Appends a finite float with up to 3 decimals (non-finite values become 0), formatted
/// straight into `out` (no allocation beyond `out`'s own growth).
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    struct Into<'a>(&'a mut Vec<u8>);
    impl std::fmt::Write for Into<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.extend_from_slice(s.as_bytes());
            Ok(())
        }
    }
    let v = if v.is_finite() { v } else { 0.0 };
    let rounded = (v * 1000.0).round() / 1000.0;
    let start = out.len();
    let _ = std::fmt::Write::write_fmt(&mut Into(out), format_args!("{rounded}"));
    if !out[start..].iter().any(|&b| b == b'.' || b == b'e') {
        out.extend_from_slice(b".0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        write_int(&mut out, -42i64);
        out.push(b' ');
        write_f64(&mut out, 99.1234);
        out.push(b' ');
        write_f64(&mut out, 3.0);
        out.push(b' ');
        write_f64(&mut out, f64::NAN);
        assert_eq!(out, b"-42 99.123 3.0 0.0");
    }
}

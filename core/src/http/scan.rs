//! Byte-level work of the hot path: how many leading bytes of a slice belong to a class
//! (token, request-target, field value), case-insensitive name equality, and hex digits. On
//! x86_64 the scans look at 16 bytes per step with SSE2, which every x86_64 CPU has (no
//! run-time detection); elsewhere, a byte at a time through the same tables.
//!
//! This is the core's only `unsafe`: the four calls into the `#[target_feature(enable =
//! "sse2")]` functions below, sound because SSE2 is part of the x86_64 baseline (the
//! compiler itself assumes it for every x86_64 target). The intrinsics take no pointers: a
//! block is loaded from two `u64`s read safely from a `&[u8; 16]` and stored the same way.
//!
//! Invariants: every scan returns exactly the length of the longest prefix whose bytes are
//! all in the class (the tests compare each against its table on every byte value at every
//! position); [`eq_ignore_case`] is `<[u8]>::eq_ignore_ascii_case` on every byte pair;
//! [`hex16`] is two lowercase digits per byte.

/// A byte class as a table: ASCII letters and digits plus the bytes of `extra`.
pub(crate) const fn alnum_and(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// `tchar` (RFC 9110 §5.6.2): what a method and a field name are made of.
pub(crate) static TCHAR: [bool; 256] = alnum_and(b"!#$%&'*+-.^_`|~");

/// Visible ASCII (0x21–0x7E): a request-target's bytes (bytes above 0x7F are the caller's
/// slow path).
pub(crate) fn is_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// `field-vchar / SP / HTAB`: a field value's bytes.
pub(crate) fn is_field_byte(b: u8) -> bool {
    b >= 0x20 && b != 0x7f || b == b'\t'
}

pub(crate) use simd::hex16;

/// Leading `tchar` bytes.
pub(crate) fn token_len(bytes: &[u8]) -> usize {
    let tchar = |b: u8| TCHAR[b as usize];
    scan(bytes, simd::not_tchar, tchar, tchar)
}

/// Leading visible-ASCII bytes, and where the first `?` among them is (a request-target's
/// query), in the same pass.
#[inline(always)]
pub(crate) fn target_len(bytes: &[u8]) -> (usize, Option<usize>) {
    let mut question = None;
    let mut at = 0;
    while let Some(block) = bytes.get(at..at + 16) {
        let mut f = simd::not_vchar_or_question(block.try_into().expect("16 bytes"));
        while f != 0 {
            let i = at + f.trailing_zeros() as usize;
            if bytes[i] != b'?' {
                return (i, question);
            }
            question = question.or(Some(i));
            f &= f - 1;
        }
        at += 16;
    }
    while at < bytes.len() && is_vchar(bytes[at]) {
        if bytes[at] == b'?' && question.is_none() {
            question = Some(at);
        }
        at += 1;
    }
    (at, question)
}

/// Leading field-value bytes (tabs included).
pub(crate) fn field_len(bytes: &[u8]) -> usize {
    // The flagged bytes are the controls and DEL: of them only HTAB is a field byte.
    scan(bytes, simd::not_field_byte, |b| b == b'\t', is_field_byte)
}

/// ASCII case-insensitive equality (what `<[u8]>::eq_ignore_ascii_case` computes), eight
/// bytes at a time: field names are compared on every request, and the standard one goes a
/// byte at a time (about ten instructions a byte).
#[inline]
pub(crate) fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y));
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("eight bytes"));
    let mut at = 0;
    while at + 8 <= n {
        if lower8(word(a, at)) != lower8(word(b, at)) {
            return false;
        }
        at += 8;
    }
    // The tail as the last eight bytes (overlapping what was compared already).
    at == n || lower8(word(a, n - 8)) == lower8(word(b, n - 8))
}

/// Whether `token` (a method or field name: `tchar`s only, as the grammar admits them) is
/// `lower` in any case, where `lower` is lowercase letters, digits and `-`. Setting bit 5
/// of a byte maps an uppercase letter to its lowercase and leaves a lowercase letter, a digit
/// or `-` as it is; the only other bytes it maps onto them are control characters, which no
/// token has. So a token is compared a word at a time with one OR per word, the words of
/// `lower` being constants once this is inlined.
#[inline(always)]
pub(crate) fn token_is(token: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower.iter().all(|&b| b | 0x20 == b && b != b' '));
    debug_assert!(token.iter().all(|&b| TCHAR[b as usize]));
    let n = lower.len();
    if token.len() != n {
        return false;
    }
    let w4 = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4"));
    let w8 = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    const SET4: u32 = 0x2020_2020;
    const SET8: u64 = 0x2020_2020_2020_2020;
    match n {
        0..4 => token.iter().zip(lower).all(|(&t, &l)| t | 0x20 == l),
        4..8 => w4(token, 0) | SET4 == w4(lower, 0) && w4(token, n - 4) | SET4 == w4(lower, n - 4),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if w8(token, at) | SET8 != w8(lower, at) {
                    return false;
                }
                at += 8;
            }
            // The last eight bytes (overlapping what was compared already).
            w8(token, n - 8) | SET8 == w8(lower, n - 8)
        }
    }
}

/// Eight bytes with `A`–`Z` made lowercase and every other byte unchanged.
#[inline]
fn lower8(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = x & !HIGH;
    // The high bit of each byte: its low seven bits are >= 'A', then > 'Z'.
    let from_a = low7 + ONES * u64::from(0x80 - b'A');
    let past_z = low7 + ONES * u64::from(0x80 - b'Z' - 1);
    let upper = from_a & !past_z & !x & HIGH;
    x | (upper >> 2)
}

/// Sixteen bytes at a time while `flags` (a bit per byte that may be outside the class) is
/// zero, jumping to the first flagged byte otherwise; a flagged byte that `step_over` accepts
/// after all (a tab in a value, a `_` in a name) is stepped over. The tail goes byte by byte
/// through `member`, the class itself. `step_over` need only be right on flagged bytes, so it
/// can be cheaper than `member` (a value's is one comparison, not three).
#[inline(always)]
fn scan(
    bytes: &[u8],
    flags: fn(&[u8; 16]) -> u32,
    step_over: impl Fn(u8) -> bool,
    member: impl Fn(u8) -> bool,
) -> usize {
    let mut at = 0;
    while let Some(block) = bytes.get(at..at + 16) {
        let f = flags(block.try_into().expect("16 bytes"));
        if f == 0 {
            at += 16;
            continue;
        }
        at += f.trailing_zeros() as usize;
        if !step_over(bytes[at]) {
            return at;
        }
        at += 1;
    }
    while at < bytes.len() && member(bytes[at]) {
        at += 1;
    }
    at
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cvtsi128_si64,
        _mm_max_epu8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8,
        _mm_srli_epi16, _mm_sub_epi8, _mm_unpackhi_epi8, _mm_unpackhi_epi64, _mm_unpacklo_epi8,
    };

    #[target_feature(enable = "sse2")]
    fn load(block: &[u8; 16]) -> __m128i {
        let (lo, hi) = block.split_at(8);
        let lo = i64::from_le_bytes(lo.try_into().expect("8 bytes"));
        let hi = i64::from_le_bytes(hi.try_into().expect("8 bytes"));
        _mm_set_epi64x(hi, lo)
    }

    #[target_feature(enable = "sse2")]
    fn splat(b: u8) -> __m128i {
        _mm_set1_epi8(b as i8)
    }

    /// Bytes `<= hi` (unsigned).
    #[target_feature(enable = "sse2")]
    fn at_most(x: __m128i, hi: u8) -> __m128i {
        _mm_cmpeq_epi8(_mm_max_epu8(x, splat(hi)), splat(hi))
    }

    /// Bytes `>= lo` (unsigned).
    #[target_feature(enable = "sse2")]
    fn at_least(x: __m128i, lo: u8) -> __m128i {
        _mm_cmpeq_epi8(_mm_min_epu8(x, splat(lo)), splat(lo))
    }

    /// Bytes in `lo..=hi`.
    #[target_feature(enable = "sse2")]
    fn within(x: __m128i, lo: u8, hi: u8) -> __m128i {
        at_most(_mm_sub_epi8(x, splat(lo)), hi - lo)
    }

    #[target_feature(enable = "sse2")]
    fn eq(x: __m128i, b: u8) -> __m128i {
        _mm_cmpeq_epi8(x, splat(b))
    }

    #[target_feature(enable = "sse2")]
    fn bits(m: __m128i) -> u32 {
        _mm_movemask_epi8(m) as u32
    }

    /// The 32 lowercase hex digits of 16 bytes, in order (request IDs).
    pub(crate) fn hex16(bytes: &[u8; 16]) -> [u8; 32] {
        // SAFETY: SSE2 is in the x86_64 baseline (see the module docs).
        unsafe { hex16_sse2(bytes) }
    }

    #[target_feature(enable = "sse2")]
    fn hex16_sse2(bytes: &[u8; 16]) -> [u8; 32] {
        let x = load(bytes);
        let low = splat(0x0f);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(x), low);
        let lo = _mm_and_si128(x, low);
        // Each byte's high nibble, then its low one: '0' + n, and 39 more for a–f.
        let ascii = |n: __m128i| {
            let letters = _mm_and_si128(_mm_cmpgt_epi8(n, splat(9)), splat(39));
            _mm_add_epi8(_mm_add_epi8(n, splat(b'0')), letters)
        };
        let first = ascii(_mm_unpacklo_epi8(hi, lo));
        let second = ascii(_mm_unpackhi_epi8(hi, lo));
        let mut out = [0u8; 32];
        let (a, b) = out.split_at_mut(16);
        store(first, a.try_into().expect("16 bytes"));
        store(second, b.try_into().expect("16 bytes"));
        out
    }

    #[target_feature(enable = "sse2")]
    fn store(x: __m128i, out: &mut [u8; 16]) {
        let lo = _mm_cvtsi128_si64(x);
        let hi = _mm_cvtsi128_si64(_mm_unpackhi_epi64(x, x));
        out[..8].copy_from_slice(&lo.to_le_bytes());
        out[8..].copy_from_slice(&hi.to_le_bytes());
    }

    /// Controls, SP, DEL and above (not in a target taken as it is), and `?`.
    pub(super) fn not_vchar_or_question(block: &[u8; 16]) -> u32 {
        // SAFETY: SSE2 is in the x86_64 baseline (see the module docs).
        unsafe { not_vchar_or_question_sse2(block) }
    }

    #[target_feature(enable = "sse2")]
    fn not_vchar_or_question_sse2(block: &[u8; 16]) -> u32 {
        let x = load(block);
        let outside = _mm_or_si128(at_most(x, 0x20), at_least(x, 0x7f));
        bits(_mm_or_si128(outside, eq(x, b'?')))
    }

    /// Controls (HTAB included: the caller keeps it) and DEL.
    pub(super) fn not_field_byte(block: &[u8; 16]) -> u32 {
        // SAFETY: SSE2 is in the x86_64 baseline (see the module docs).
        unsafe { not_field_byte_sse2(block) }
    }

    #[target_feature(enable = "sse2")]
    fn not_field_byte_sse2(block: &[u8; 16]) -> u32 {
        let x = load(block);
        bits(_mm_or_si128(at_most(x, 0x1f), eq(x, 0x7f)))
    }

    /// Everything but letters, digits and `-` — what field names and methods are nearly
    /// always made of. The other `tchar` bytes are flagged too and stepped over by the
    /// caller's table check, so the flags stay cheap (four comparisons a block).
    pub(super) fn not_tchar(block: &[u8; 16]) -> u32 {
        // SAFETY: SSE2 is in the x86_64 baseline (see the module docs).
        unsafe { not_tchar_sse2(block) }
    }

    #[target_feature(enable = "sse2")]
    fn not_tchar_sse2(block: &[u8; 16]) -> u32 {
        let x = load(block);
        let letter = within(_mm_or_si128(x, splat(0x20)), b'a', b'z');
        let digit = within(x, b'0', b'9');
        let common = _mm_or_si128(_mm_or_si128(letter, digit), eq(x, b'-'));
        bits(common) ^ 0xffff
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    /// A bit per byte outside the class, from the tables (portable fallback).
    fn flags(block: &[u8; 16], keep: impl Fn(u8) -> bool) -> u32 {
        block
            .iter()
            .enumerate()
            .fold(0, |f, (i, &b)| if keep(b) { f } else { f | 1 << i })
    }

    pub(super) fn not_vchar_or_question(block: &[u8; 16]) -> u32 {
        flags(block, |b| super::is_vchar(b) && b != b'?')
    }

    pub(crate) fn hex16(bytes: &[u8; 16]) -> [u8; 32] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, &b) in bytes.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        out
    }

    pub(super) fn not_field_byte(block: &[u8; 16]) -> u32 {
        flags(block, |b| b >= 0x20 && b != 0x7f)
    }

    pub(super) fn not_tchar(block: &[u8; 16]) -> u32 {
        flags(block, |b| b.is_ascii_alphanumeric() || b == b'-')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_scan_finds_its_first_question_mark() {
        for len in 0..40 {
            for q in [None, Some(0), Some(3), Some(15), Some(16), Some(31)] {
                let mut t = vec![b'a'; len];
                if let Some(q) = q.filter(|&q| q < len) {
                    t[q] = b'?';
                    t[len - 1] = b'?';
                }
                t.extend_from_slice(b" HTTP/1.1");
                let want_q = t[..len].iter().position(|&b| b == b'?');
                assert_eq!(target_len(&t), (len, want_q), "{len} {q:?}");
            }
        }
        assert_eq!(target_len(b"/a\x01b?"), (2, None));
        assert_eq!(target_len(b"/a?b\x7f"), (4, Some(2)));
    }

    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        let mut bytes = [0u8; 16];
        for start in (0..=255u8).step_by(16) {
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = start.wrapping_add(i as u8 * 17);
            }
            let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex16(&bytes), want.as_bytes());
        }
    }

    #[test]
    fn a_token_is_its_lowercase_name_in_any_case_and_nothing_else() {
        let names: [&[u8]; 7] = [
            b"te",
            b"host",
            b"expect",
            b"x-request-id",
            b"content-length",
            b"transfer-encoding",
            b"a0-b1-c2-d3-e4-f5-g6-h7",
        ];
        for lower in names {
            for at in 0..lower.len() {
                for b in 0..=255u8 {
                    if !TCHAR[b as usize] {
                        continue;
                    }
                    let mut token = lower.to_vec();
                    token[at] = b;
                    assert_eq!(
                        token_is(&token, lower),
                        token.eq_ignore_ascii_case(lower),
                        "{:?} against {:?}",
                        String::from_utf8_lossy(&token),
                        String::from_utf8_lossy(lower)
                    );
                }
            }
            let upper = lower.to_ascii_uppercase();
            assert!(token_is(&upper, lower));
            assert!(!token_is(&lower[1..], lower));
            let mut longer = lower.to_vec();
            longer.push(b'a');
            assert!(!token_is(&longer, lower));
        }
    }

    #[test]
    fn case_insensitive_equality_is_the_standard_ones() {
        let names: [&[u8]; 6] = [
            b"Content-Length",
            b"host",
            b"X-Request-ID",
            b"a",
            b"",
            b"@[`{",
        ];
        for a in names {
            for b in names {
                assert_eq!(eq_ignore_case(a, b), a.eq_ignore_ascii_case(b));
            }
        }
        // Every byte pair at every position of a 17-byte name (two words and a tail).
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                for at in [0, 7, 8, 16] {
                    let mut a = *b"content-length-xy";
                    let mut b = *b"CONTENT-LENGTH-XY";
                    a[at] = x;
                    b[at] = y;
                    assert_eq!(
                        eq_ignore_case(&a, &b),
                        a.eq_ignore_ascii_case(&b),
                        "{x} {y} at {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_byte_at_every_position_matches_its_table() {
        type Class = (fn(&[u8]) -> usize, fn(u8) -> bool);
        let classes: [Class; 3] = [
            (token_len, |b| TCHAR[b as usize]),
            (|b| target_len(b).0, is_vchar),
            (field_len, is_field_byte),
        ];
        let filler = b'a';
        for (len, member) in classes {
            for b in 0..=255u8 {
                for at in 0..40 {
                    let mut bytes = vec![filler; 40];
                    bytes[at] = b;
                    let want = if member(b) { 40 } else { at };
                    assert_eq!(len(&bytes), want, "byte {b:#x} at {at}");
                    // And a stop right after it, at every alignment.
                    if at + 1 < 40 {
                        bytes[at + 1] = 0;
                        let want = if member(b) { at + 1 } else { at };
                        assert_eq!(len(&bytes), want, "byte {b:#x} at {at}, NUL after");
                    }
                }
            }
        }
    }
}

//! Byte-class scans for the head grammar: how many leading bytes of a slice belong to a
//! class (token, request-target, field value). On x86_64 they look at 16 bytes per step with
//! SSE2, which every x86_64 CPU has (no run-time detection); elsewhere, a byte at a time
//! through the same tables.
//!
//! This is the core's only `unsafe`: the three calls into the `#[target_feature(enable =
//! "sse2")]` functions below, sound because SSE2 is part of the x86_64 baseline (the
//! compiler itself assumes it for every x86_64 target). The intrinsics take no pointers: a
//! block is loaded from two `u64`s read safely from a `&[u8; 16]`.
//!
//! Invariant: every function returns exactly the length of the longest prefix whose bytes
//! are all in the class (the tests compare each against its table on every byte value at
//! every position).

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

/// Leading `tchar` bytes.
pub(crate) fn token_len(bytes: &[u8]) -> usize {
    scan(bytes, simd::not_tchar, |b| TCHAR[b as usize])
}

/// Leading visible-ASCII bytes.
pub(crate) fn vchar_len(bytes: &[u8]) -> usize {
    scan(bytes, simd::not_vchar, is_vchar)
}

/// Leading field-value bytes (tabs included).
pub(crate) fn field_len(bytes: &[u8]) -> usize {
    scan(bytes, simd::not_field_byte, is_field_byte)
}

/// Sixteen bytes at a time while `flags` (a bit per byte that may be outside the class) is
/// zero, jumping to the first flagged byte otherwise; a flagged byte that `keep` accepts
/// after all (a tab in a value, a `_` in a name) is stepped over. The tail goes byte by
/// byte.
#[inline(always)]
fn scan(bytes: &[u8], flags: fn(&[u8; 16]) -> u32, keep: impl Fn(u8) -> bool) -> usize {
    let mut at = 0;
    while let Some(block) = bytes.get(at..at + 16) {
        let f = flags(block.try_into().expect("16 bytes"));
        if f == 0 {
            at += 16;
            continue;
        }
        at += f.trailing_zeros() as usize;
        if !keep(bytes[at]) {
            return at;
        }
        at += 1;
    }
    while at < bytes.len() && keep(bytes[at]) {
        at += 1;
    }
    at
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_max_epu8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set_epi64x, _mm_set1_epi8, _mm_sub_epi8,
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

    /// Controls, SP, DEL and above: not in a target taken as it is.
    pub(super) fn not_vchar(block: &[u8; 16]) -> u32 {
        // SAFETY: SSE2 is in the x86_64 baseline (see the module docs).
        unsafe { not_vchar_sse2(block) }
    }

    #[target_feature(enable = "sse2")]
    fn not_vchar_sse2(block: &[u8; 16]) -> u32 {
        let x = load(block);
        bits(_mm_or_si128(at_most(x, 0x20), at_least(x, 0x7f)))
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

    pub(super) fn not_vchar(block: &[u8; 16]) -> u32 {
        flags(block, super::is_vchar)
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
    fn every_byte_at_every_position_matches_its_table() {
        type Class = (fn(&[u8]) -> usize, fn(u8) -> bool);
        let classes: [Class; 3] = [
            (token_len, |b| TCHAR[b as usize]),
            (vchar_len, is_vchar),
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

//! Request body decoders: `Content-Length` and `chunked`, as resumable state machines.
//!
//! Invariants: a decoder consumes input in any split and produces the same body; it never
//! buffers beyond what it appends to the caller's output, so memory is bounded by
//! `MAX_BODY_BYTES` (413 past it) plus fixed per-line limits; a malformed chunk stream is a
//! [`BodyError`] and the connection is closed (after it, framing cannot be trusted).

use super::response::Status;

/// Most chunk-extension bytes weir skips in one body, over all its chunk lines (hyper's bound
/// too). A cap per line is not enough: `1;<4 KiB>\r\nA\r\n` repeated would make the server
/// parse 4 GB of extensions to reach 1 MiB of body.
pub const MAX_CHUNK_EXT_BYTES: usize = 16 * 1024;

/// Why a body failed to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyError {
    /// Malformed chunked framing (400).
    Malformed(&'static str),
    /// The decoded body passed `MAX_BODY_BYTES` (413).
    TooLarge,
    /// The trailer section passed `MAX_HEADER_BYTES` (431).
    TrailersTooLarge,
}

impl BodyError {
    /// The status this error is answered with.
    pub fn status(self) -> Status {
        match self {
            BodyError::Malformed(_) => Status::BAD_REQUEST,
            BodyError::TooLarge => Status::PAYLOAD_TOO_LARGE,
            BodyError::TrailersTooLarge => Status::HEADERS_TOO_LARGE,
        }
    }

    /// A human message for the error envelope.
    pub fn message(self) -> &'static str {
        match self {
            BodyError::Malformed(why) => why,
            BodyError::TooLarge => "request body too large",
            BodyError::TrailersTooLarge => "chunked trailer section too large",
        }
    }
}

/// Where a chunked decoder is (after hyper's `ChunkedState`, with the data it needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunked {
    /// Reading hex digits of a chunk size; `digits` seen so far.
    Size { size: u64, digits: u8 },
    /// Whitespace after the size, before `;` or CR.
    SizeWs { size: u64 },
    /// Skipping a chunk extension until CR.
    Ext { size: u64 },
    /// Expecting the LF that ends the size line.
    SizeLf { size: u64 },
    /// Chunk data, `left` bytes to go.
    Data { left: u64 },
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Expecting LF after a trailer line's CR.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// A body decoder for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyDecoder {
    kind: Kind,
    max_body: u64,
    max_trailer: usize,
    trailer_bytes: usize,
    ext_bytes: usize,
    decoded: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Length { left: u64 },
    Chunked(Chunked),
}

/// What one call to [`BodyDecoder::decode`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes consumed.
    pub consumed: usize,
    /// The body is complete.
    pub done: bool,
}

impl BodyDecoder {
    /// A decoder for exactly `len` bytes (the caller has checked `len` against the limit).
    pub fn length(len: u64) -> Self {
        BodyDecoder {
            kind: Kind::Length { left: len },
            max_body: len,
            max_trailer: 0,
            trailer_bytes: 0,
            ext_bytes: 0,
            decoded: 0,
        }
    }

    /// A chunked decoder bounded by `max_body` decoded bytes and `max_trailer` trailer bytes.
    pub fn chunked(max_body: usize, max_trailer: usize) -> Self {
        BodyDecoder {
            kind: Kind::Chunked(Chunked::Size { size: 0, digits: 0 }),
            max_body: max_body as u64,
            max_trailer,
            trailer_bytes: 0,
            ext_bytes: 0,
            decoded: 0,
        }
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        matches!(
            self.kind,
            Kind::Length { left: 0 } | Kind::Chunked(Chunked::Done)
        )
    }

    /// Decodes from `input`, appending body bytes to `out` (or dropping them when `out` is
    /// `None`, for a body that is read only to keep the connection usable).
    pub fn decode(
        &mut self,
        input: &[u8],
        out: Option<&mut Vec<u8>>,
    ) -> Result<Progress, BodyError> {
        match &mut self.kind {
            Kind::Length { left } => {
                let n = (*left).min(input.len() as u64) as usize;
                if let Some(out) = out {
                    out.extend_from_slice(&input[..n]);
                }
                *left -= n as u64;
                self.decoded += n as u64;
                Ok(Progress {
                    consumed: n,
                    done: *left == 0,
                })
            }
            Kind::Chunked(st) => {
                let mut st = *st;
                let r = self.decode_chunked(&mut st, input, out);
                self.kind = Kind::Chunked(st);
                r
            }
        }
    }

    fn decode_chunked(
        &mut self,
        state: &mut Chunked,
        input: &[u8],
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<Progress, BodyError> {
        {
            {
                let mut i = 0;
                while i < input.len() && *state != Chunked::Done {
                    if let Chunked::Data { left } = state {
                        let n = (*left).min((input.len() - i) as u64) as usize;
                        if let Some(out) = out.as_deref_mut() {
                            out.extend_from_slice(&input[i..i + n]);
                        }
                        *left -= n as u64;
                        i += n;
                        if *left == 0 {
                            *state = Chunked::DataCr;
                        }
                        continue;
                    }
                    let b = input[i];
                    i += 1;
                    *state = match *state {
                        Chunked::Size { size, digits } => match b {
                            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                                if digits >= 16 {
                                    return Err(BodyError::Malformed("chunk size overflows"));
                                }
                                let v = (b as char)
                                    .to_digit(16)
                                    .expect("invariant: matched a hex digit")
                                    as u64;
                                Chunked::Size {
                                    size: size << 4 | v,
                                    digits: digits + 1,
                                }
                            }
                            _ if digits == 0 => {
                                return Err(BodyError::Malformed("invalid chunk size"));
                            }
                            b' ' | b'\t' => Chunked::SizeWs { size },
                            b';' => Chunked::Ext { size },
                            b'\r' => Chunked::SizeLf { size },
                            _ => return Err(BodyError::Malformed("invalid chunk size")),
                        },
                        Chunked::SizeWs { size } => match b {
                            b' ' | b'\t' => Chunked::SizeWs { size },
                            b';' => Chunked::Ext { size },
                            b'\r' => Chunked::SizeLf { size },
                            _ => return Err(BodyError::Malformed("invalid chunk size line")),
                        },
                        Chunked::Ext { size } => match b {
                            b'\r' => Chunked::SizeLf { size },
                            b'\n' | 0..=8 | 10..=31 | 127 => {
                                return Err(BodyError::Malformed(
                                    "invalid byte in chunk extension",
                                ));
                            }
                            _ if self.ext_bytes >= MAX_CHUNK_EXT_BYTES => {
                                return Err(BodyError::Malformed(
                                    "chunk extensions exceed 16 KiB in one body",
                                ));
                            }
                            _ => {
                                self.ext_bytes += 1;
                                Chunked::Ext { size }
                            }
                        },
                        Chunked::SizeLf { size } => {
                            if b != b'\n' {
                                return Err(BodyError::Malformed("missing LF after chunk size"));
                            }
                            if size == 0 {
                                Chunked::TrailerStart
                            } else {
                                self.decoded = self.decoded.saturating_add(size);
                                if self.decoded > self.max_body {
                                    return Err(BodyError::TooLarge);
                                }
                                Chunked::Data { left: size }
                            }
                        }
                        Chunked::Data { .. } => unreachable!("handled above"),
                        Chunked::DataCr => match b {
                            b'\r' => Chunked::DataLf,
                            _ => return Err(BodyError::Malformed("missing CRLF after chunk data")),
                        },
                        Chunked::DataLf => match b {
                            b'\n' => Chunked::Size { size: 0, digits: 0 },
                            _ => return Err(BodyError::Malformed("missing CRLF after chunk data")),
                        },
                        Chunked::TrailerStart => match b {
                            b'\r' => Chunked::EndLf,
                            b' ' | b'\t' => {
                                return Err(BodyError::Malformed("obs-fold in trailer"));
                            }
                            _ => self.trailer_byte(b)?,
                        },
                        Chunked::Trailer => match b {
                            b'\r' => Chunked::TrailerLf,
                            _ => self.trailer_byte(b)?,
                        },
                        Chunked::TrailerLf | Chunked::EndLf if b != b'\n' => {
                            return Err(BodyError::Malformed("missing LF in trailer section"));
                        }
                        Chunked::TrailerLf => Chunked::TrailerStart,
                        Chunked::EndLf => Chunked::Done,
                        Chunked::Done => Chunked::Done,
                    };
                }
                Ok(Progress {
                    consumed: i,
                    done: *state == Chunked::Done,
                })
            }
        }
    }

    fn trailer_byte(&mut self, b: u8) -> Result<Chunked, BodyError> {
        if b == b'\n' || (b < 32 && b != b'\t') || b == 127 {
            return Err(BodyError::Malformed("invalid byte in trailer"));
        }
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.max_trailer {
            return Err(BodyError::TrailersTooLarge);
        }
        Ok(Chunked::Trailer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<u8>, BodyError> {
        let mut d = BodyDecoder::chunked(1 << 20, 1024);
        let mut out = Vec::new();
        let p = d.decode(input, Some(&mut out))?;
        assert!(p.done, "incomplete: {:?}", d);
        assert_eq!(p.consumed, input.len());
        Ok(out)
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        assert_eq!(
            decode_all(b"5;name=val\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-T: 1\r\n\r\n").unwrap(),
            b"hello world"
        );
        assert_eq!(
            decode_all(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap(),
            b"0123456789"
        );
        assert_eq!(decode_all(b"0\r\n\r\n").unwrap(), b"");
    }

    #[test]
    fn chunked_resumes_byte_by_byte() {
        let input = b"3\r\nabc\r\n2;e=1\r\nde\r\n0\r\nT: v\r\n\r\n";
        let mut d = BodyDecoder::chunked(100, 100);
        let mut out = Vec::new();
        for (i, b) in input.iter().enumerate() {
            let p = d.decode(std::slice::from_ref(b), Some(&mut out)).unwrap();
            assert_eq!(p.consumed, 1);
            assert_eq!(p.done, i == input.len() - 1);
        }
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn chunked_stops_at_the_end_of_the_body() {
        let mut d = BodyDecoder::chunked(100, 100);
        let p = d
            .decode(b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1", None)
            .unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: 11,
                done: true
            }
        );
    }

    #[test]
    fn chunk_size_overflow_is_rejected() {
        assert_eq!(
            decode_all(b"10000000000000000\r\n"),
            Err(BodyError::Malformed("chunk size overflows"))
        );
        assert_eq!(
            BodyDecoder::chunked(10, 10).decode(b"ffffffffffffffff\r\n", None),
            Err(BodyError::TooLarge)
        );
    }

    #[test]
    fn invalid_chunk_sizes_are_rejected() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"0x5\r\n",
            b" 5\r\n",
            b"5 x\r\n",
            b"5\n",
        ] {
            let r = BodyDecoder::chunked(100, 100).decode(bad, None);
            assert!(
                matches!(r, Err(BodyError::Malformed(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn missing_crlf_after_data_is_rejected() {
        let r = BodyDecoder::chunked(100, 100).decode(b"3\r\nabcX\r\n", None);
        assert_eq!(
            r,
            Err(BodyError::Malformed("missing CRLF after chunk data"))
        );
        let r = BodyDecoder::chunked(100, 100).decode(b"3\r\nabc\rX", None);
        assert!(r.is_err());
    }

    #[test]
    fn body_limit_is_413() {
        let r = BodyDecoder::chunked(4, 100).decode(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", None);
        assert_eq!(r.unwrap_err().status().code(), 413);
    }

    #[test]
    fn trailer_limit_and_bad_trailers() {
        let r = BodyDecoder::chunked(4, 4).decode(b"0\r\nLong-Trailer: x\r\n\r\n", None);
        assert_eq!(r.unwrap_err().status().code(), 431);
        let r = BodyDecoder::chunked(4, 100).decode(b"0\r\nA: b\0\r\n\r\n", None);
        assert!(matches!(r, Err(BodyError::Malformed(_))));
    }

    #[test]
    fn extension_length_is_bounded() {
        let mut input = b"1;".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_CHUNK_EXT_BYTES + 1));
        let r = BodyDecoder::chunked(100, 100).decode(&input, None);
        assert_eq!(
            r,
            Err(BodyError::Malformed(
                "chunk extensions exceed 16 KiB in one body"
            ))
        );
    }

    #[test]
    fn extensions_are_capped_per_body_not_per_line() {
        // 1 KiB of extension per one-byte chunk: fine line by line, refused once the body's
        // extensions pass 16 KiB (after 16 chunks, long before a 1 MiB body).
        let chunk = format!("1;{}\r\nA\r\n", "e".repeat(1023));
        let mut d = BodyDecoder::chunked(1 << 20, 1024);
        let mut out = Vec::new();
        let mut refused_at = None;
        for i in 0..1024 {
            match d.decode(chunk.as_bytes(), Some(&mut out)) {
                Ok(p) => assert_eq!(p.consumed, chunk.len()),
                Err(e) => {
                    assert_eq!(e.status().code(), 400);
                    refused_at = Some(i);
                    break;
                }
            }
        }
        assert_eq!(
            refused_at,
            Some(16),
            "16 KiB of extensions per body, then 400"
        );
        assert_eq!(out.len(), 16);
    }

    #[test]
    fn content_length_takes_exactly_its_bytes() {
        let mut d = BodyDecoder::length(5);
        let mut out = Vec::new();
        assert_eq!(
            d.decode(b"he", Some(&mut out)).unwrap(),
            Progress {
                consumed: 2,
                done: false
            }
        );
        assert_eq!(
            d.decode(b"lloEXTRA", Some(&mut out)).unwrap(),
            Progress {
                consumed: 3,
                done: true
            }
        );
        assert_eq!(out, b"hello");
        assert!(d.is_done());
    }
}

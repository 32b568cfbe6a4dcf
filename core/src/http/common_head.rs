//! The common request head in one lean pass: the request line's parts and each field's name
//! and value are found with the 16-byte scans of [`super::scan`] and checked with a few byte
//! comparisons — no error to build, no partial state, no whitespace loops. This is the hot
//! path's parser; [`super::grammar`] stays the definition of the syntax.
//!
//! What it handles is what nearly every client sends: no empty lines before the request line;
//! a request-target of visible ASCII; exactly one SP after each field's colon and no
//! whitespace before its CRLF; the whole head in the input; at most `max_fields` fields.
//! Anything else — including every error — is `None`, and the caller asks the grammar, which
//! has the last word and the error messages. (Measured: this pass, not the scans, is what the
//! grammar's bookkeeping cost; a variant that classified every byte into bit masks first was
//! slower on long heads, `BENCHMARKS.md`.)
//!
//! Invariants: `parse` returns `Some` only for a head [`super::grammar::parse_head`] accepts,
//! with the same request line, length and fields (a differential test holds it to that on
//! the grammar's own generated heads); it never reads past `input`.

use super::grammar::{Field, RequestLine, http1_minor, known_method};
use super::scan::{field_len, target_len, token_len};

/// The head at the start of `input`, when it is a common one (see the module docs): its
/// request line and length, its fields pushed to `fields`. `None` leaves `fields` in any
/// state: the caller then parses with the grammar, which clears it.
#[inline(always)]
pub(crate) fn parse(
    input: &[u8],
    fields: &mut Vec<Field>,
    max_fields: usize,
) -> Option<(RequestLine, usize)> {
    fields.clear();
    let (m, known) = match known_method(input) {
        Some((m, method)) => (m, Some(method)),
        None => match token_len(input) {
            m if m > 0 && input.get(m) == Some(&b' ') => (m, None),
            _ => return None,
        },
    };
    let t0 = m + 1;
    let (len, question) = target_len(&input[t0..]);
    let t = t0 + len;
    if len == 0 || input.get(t) != Some(&b' ') {
        return None;
    }
    let version = input.get(t + 1..t + 11)?;
    let minor = http1_minor(version)?;
    if version[8..] != *b"\r\n" {
        return None;
    }
    let off = |at: usize| at as u32;
    let mut at = t + 11;
    loop {
        let line = input.get(at..at + 2)?;
        if line == b"\r\n" {
            break;
        }
        let colon = at + token_len(&input[at..]);
        if colon == at || input.get(colon) != Some(&b':') || input.get(colon + 1) != Some(&b' ') {
            return None;
        }
        let v = colon + 2;
        let end = v + field_len(input.get(v..)?);
        let ows = |b: u8| b == b' ' || b == b'\t';
        if end > v && (ows(input[v]) || ows(input[end - 1])) {
            return None;
        }
        if input.get(end + 1) != Some(&b'\n') || input[end] != b'\r' || fields.len() == max_fields {
            return None;
        }
        fields.push(Field {
            name: (off(at), off(colon)),
            value: (off(v), off(end)),
        });
        at = end + 2;
    }
    let line = RequestLine {
        method: (0, off(m)),
        known,
        target: (off(t0), off(t)),
        question: question.map(|q| off(t0 + q)),
        minor,
    };
    Some((line, at + 2))
}

#[cfg(test)]
mod tests {
    use super::super::grammar::{self, tests::head_bytes};
    use super::*;

    type Parsed = (RequestLine, usize, Vec<Field>);

    fn common(raw: &[u8], max: usize) -> Option<Parsed> {
        let mut fields = Vec::new();
        parse(raw, &mut fields, max).map(|(line, n)| (line, n, fields))
    }

    fn by_grammar(raw: &[u8], max: usize) -> Option<Parsed> {
        let mut fields = Vec::new();
        let found = grammar::parse_head(raw, &mut fields, max).ok().flatten();
        found.map(|(line, n)| (line, n, fields))
    }

    #[test]
    fn what_clients_send_takes_the_common_path() {
        let heads: [&[u8]; 6] = [
            b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /api/v1/compute/fast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"number\": 42}",
            b"GET /users?page=2&q=a?b HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
            b"DELETE /users/7 HTTP/1.0\r\nX-Empty: \r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n",
            b"M-SEARCH * HTTP/1.1\r\nX_Y: tab\tinside, caf\xc3\xa9\r\n\r\n",
            // A browser-like head longer than one 64-byte word.
            b"GET /a/fairly/long/path/to/something HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\nAccept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nCookie: a=1; b=2\r\nUpgrade-Insecure-Requests: 1\r\nCache-Control: max-age=0\r\n\r\n",
        ];
        for raw in heads {
            let got = common(raw, 64);
            assert!(got.is_some(), "{}", String::from_utf8_lossy(raw));
            assert_eq!(got, by_grammar(raw, 64), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn what_it_does_not_handle_is_left_to_the_grammar() {
        for raw in [
            &b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"M(SEARCH * HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:  x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x \r\n\r\n",
            b"GET / HTTP/1.1\r\nX(Y: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\ty\t\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"GET / HTTP/1.1\r\nHost: x\n\r\n",
            b"GET / HTTP/1.1\nHost: x\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            b"GET",
        ] {
            assert_eq!(common(raw, 64), None, "{}", String::from_utf8_lossy(raw));
        }
        let two = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(common(two, 1), None);
        assert!(common(two, 2).is_some());
    }

    #[test]
    fn every_prefix_and_every_alignment_agrees_with_the_grammar() {
        let raw = b"GET /long/enough/for/words?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: a fairly long value with spaces\r\nX-Pad: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n\r\n";
        for n in 0..raw.len() {
            assert_eq!(common(&raw[..n], 64), None, "prefix {n}");
        }
        for pad in 0..80 {
            // Shifted by a longer path: every line ends at every offset of a 16-byte block.
            let mut shifted = b"GET /".to_vec();
            shifted.extend(std::iter::repeat_n(b'p', pad));
            shifted.extend_from_slice(&raw[5..]);
            let got = common(&shifted, 64);
            assert!(got.is_some(), "pad {pad}");
            assert_eq!(got, by_grammar(&shifted, 64), "pad {pad}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 20_000, ..Default::default() })]

        /// On the grammar's own generated heads (valid, edited, truncated), the common path
        /// accepts only what the grammar accepts, with the same parts.
        #[test]
        fn accepts_only_what_the_grammar_accepts_with_the_same_parts(raw in head_bytes()) {
            if let Some(got) = common(&raw, 4) {
                proptest::prop_assert_eq!(Some(got), by_grammar(&raw, 4));
            }
            proptest::prop_assert!(grammar::common_path_agrees(&raw, 4));
        }
    }
}

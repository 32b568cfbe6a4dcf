//! Properties of the HTTP engine: splitting, chunked round-trips, pipelines in order.

mod common;

use common::*;
use proptest::prelude::*;

/// A valid request and what its response must show.
#[derive(Debug, Clone)]
struct Req {
    raw: Vec<u8>,
    status: u16,
    body: Vec<u8>,
    head_only: bool,
}

fn chunked(body: &[u8], sizes: &[usize], ext: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i)
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        out.extend_from_slice(format!("{n:x}").as_bytes());
        if ext {
            out.extend_from_slice(b";name=\"v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\n");
    if ext {
        out.extend_from_slice(b"X-Checksum: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn request(id: usize) -> impl Strategy<Value = Req> {
    let rid = format!("X-Request-ID: r-{id}\r\n");
    prop_oneof![
        Just(()).prop_map({
            let rid = rid.clone();
            move |_| Req { raw: format!("GET /ping HTTP/1.1\r\nHost: h\r\n{rid}\r\n").into_bytes(), status: 200, body: b"pong".to_vec(), head_only: false }
        }),
        Just(()).prop_map({
            let rid = rid.clone();
            move |_| Req { raw: format!("HEAD /ping HTTP/1.1\r\nHost: h\r\n{rid}\r\n").into_bytes(), status: 200, body: vec![], head_only: true }
        }),
        "[a-z0-9]{1,12}".prop_map({
            let rid = rid.clone();
            move |u| Req {
                raw: format!("GET /users/{u} HTTP/1.1\r\nHost: h\r\n{rid}\r\n").into_bytes(),
                status: 200,
                body: format!("{{\"id\":\"{u}\"}}").into_bytes(),
                head_only: false,
            }
        }),
        (proptest::collection::vec(any::<u8>(), 0..300), proptest::collection::vec(1usize..64, 0..8), any::<bool>(), any::<bool>()).prop_map({
            let rid = rid.clone();
            move |(body, sizes, use_chunked, ext)| {
                let mut raw = format!("POST /echo HTTP/1.1\r\nHost: h\r\n{rid}Content-Type: application/octet-stream\r\n").into_bytes();
                if use_chunked {
                    raw.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    raw.extend(chunked(&body, &sizes, ext));
                } else {
                    raw.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                    raw.extend_from_slice(&body);
                }
                Req { raw, status: 200, body, head_only: false }
            }
        }),
        (-3_037_000_499i64..=3_037_000_499).prop_map(move |n| {
            let body = format!("{{\"number\": {n}}}");
            Req {
                raw: format!("POST /api/v1/compute/fast HTTP/1.1\r\nHost: h\r\n{rid}Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes(),
                status: 200,
                body: vec![],
                head_only: false,
            }
        }),
    ]
}

fn run(bytes: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
    let mut d = Driver::with(&[("RATE_LIMIT", "0")]);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut last = 0;
    for c in cuts.into_iter().chain([bytes.len()]) {
        let n = d.send(&bytes[last..c]);
        assert_eq!(n, c - last, "a valid pipeline is always taken whole");
        last = c;
    }
    (d.out, d.closed.is_some())
}

/// A request head whose lines end with CRLF or a bare LF at random, with empty values,
/// trailing whitespace and leading empty lines: the cases where httparse's view of a line end
/// differs from a byte scan's.
fn line_endings() -> impl Strategy<Value = Vec<u8>> {
    let eol = prop_oneof![Just(&b"\r\n"[..]), Just(&b"\n"[..])];
    let value = prop_oneof![
        Just(""),
        Just("v"),
        Just("a b"),
        Just("x \t"),
        Just(" \t"),
        Just("  y  ")
    ];
    (
        proptest::collection::vec(eol.clone(), 0..3),
        eol.clone(),
        proptest::collection::vec((value, eol.clone()), 0..5),
        eol,
    )
        .prop_map(|(lead, line_end, fields, last)| {
            let mut raw: Vec<u8> = lead.concat();
            raw.extend_from_slice(b"GET /p HTTP/1.1");
            raw.extend_from_slice(line_end);
            raw.extend_from_slice(b"Host: h");
            raw.extend_from_slice(b"\r\n");
            for (i, (v, end)) in fields.iter().enumerate() {
                raw.extend_from_slice(format!("X-{i}:{v}").as_bytes());
                raw.extend_from_slice(end);
            }
            raw.extend_from_slice(last);
            raw
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The parser's bare-LF check (at the line ends httparse reports) agrees with a scan of
    /// every byte: a head is refused for a bare LF exactly when one is in it.
    #[test]
    fn bare_lf_is_found_where_a_scan_finds_it(raw in line_endings()) {
        let mut head = weir_core::http::ParsedHead::default();
        let limits = weir_core::http::Limits::default();
        let bare = weir_core::http::has_bare_lf(&raw);
        match head.parse(&raw, &limits) {
            Ok(Some(n)) => {
                prop_assert_eq!(n, raw.len());
                prop_assert!(!bare, "accepted a head with a bare LF: {:?}", String::from_utf8_lossy(&raw));
            }
            Err(e) => prop_assert!(bare && e.message().contains("bare LF"), "refused {:?}: {:?}", String::from_utf8_lossy(&raw), e),
            Ok(None) => prop_assert!(false, "complete head seen as partial"),
        }
    }

    /// Any valid request, split at arbitrary byte boundaries, gives the same response bytes.
    #[test]
    fn splitting_does_not_change_the_response(req in request(1), cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let (whole, _) = run(&req.raw, &[]);
        let (split, closed) = run(&req.raw, &cuts);
        prop_assert_eq!(&whole, &split);
        prop_assert!(!closed);
        let rs = parse_responses(&whole, req.head_only);
        prop_assert_eq!(rs.len(), 1);
        prop_assert_eq!(rs[0].status, req.status);
        if !req.body.is_empty() {
            prop_assert_eq!(&rs[0].body, &req.body);
        }
    }

    /// Chunked bodies round-trip through `/echo` whatever the chunk sizes and extensions.
    #[test]
    fn chunked_bodies_round_trip(body in proptest::collection::vec(any::<u8>(), 1..2000), sizes in proptest::collection::vec(1usize..700, 0..10), ext in any::<bool>(), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let mut raw = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend(chunked(&body, &sizes, ext));
        let (out, _) = run(&raw, &cuts);
        let rs = parse_responses(&out, false);
        prop_assert_eq!(&rs[0].body, &body);
    }

    /// Random pipelines of valid requests give responses in order.
    #[test]
    fn pipelines_are_answered_in_order(reqs in (1usize..10).prop_flat_map(|n| (0..n).map(request).collect::<Vec<_>>()), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let all: Vec<u8> = reqs.iter().flat_map(|r| r.raw.clone()).collect();
        let (out, _) = run(&all, &cuts);
        // Parse response by response, knowing which were HEAD.
        let mut rest = &out[..];
        for (i, r) in reqs.iter().enumerate() {
            let one = parse_responses_prefix(&mut rest, r.head_only);
            prop_assert_eq!(one.status, r.status);
            let want_id = format!("r-{i}");
            prop_assert_eq!(one.header("x-request-id"), Some(want_id.as_str()));
            if !r.body.is_empty() {
                prop_assert_eq!(&one.body, &r.body);
            }
        }
        prop_assert!(rest.is_empty());
    }
}

/// Parses one response from the front of `buf`.
fn parse_responses_prefix(buf: &mut &[u8], head_only: bool) -> Resp {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut hs);
    let httparse::Status::Complete(n) = r.parse(buf).unwrap() else {
        panic!("partial")
    };
    let len: usize = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
        .unwrap_or(0);
    let take = if head_only { n } else { n + len };
    let one = parse_responses(&buf[..take], head_only).pop().unwrap();
    *buf = &buf[take..];
    one
}

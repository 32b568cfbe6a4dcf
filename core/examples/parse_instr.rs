//! weir's whole head parse beside httparse alone on the same bytes, for callgrind: the
//! criterion pair (`parse/…` in `benches/core.rs`) in instructions, which do not drift
//! between runs as timings do here. `benches/scripts/parse-instr-per-head.sh` counts
//! `weir_parse` and `httparse_parse` and divides by `N`.
//!
//! usage: parse_instr browser|post N
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::mem::MaybeUninit;

use weir_core::http::{Limits, ParsedHead};

include!("../benches/data/heads.rs");

#[inline(never)]
fn weir_parse(head: &mut ParsedHead, raw: &[u8], limits: &Limits, n: usize) -> usize {
    let mut total = 0;
    for _ in 0..n {
        total += head.parse(black_box(raw), limits).unwrap().unwrap();
    }
    total
}

#[inline(never)]
fn httparse_parse(raw: &[u8], n: usize) -> usize {
    let mut total = 0;
    for _ in 0..n {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 64];
        let mut req = httparse::Request::new(&mut []);
        let status = httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, black_box(raw), &mut slots)
            .unwrap();
        total += status.unwrap() + req.headers.len();
    }
    total
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "browser".into());
    let n: usize = args
        .next()
        .map_or(10_000, |a| a.parse().expect("N is a number"));
    let raw = match kind.as_str() {
        "browser" => BROWSER_GET,
        "post" => POST_JSON,
        other => panic!("unknown kind {other}: browser or post"),
    };
    let limits = Limits::default();
    let mut head = ParsedHead::default();
    let a = weir_parse(&mut head, raw, &limits, n);
    let b = httparse_parse(raw, n);
    println!("{kind}: {a} {b}");
}

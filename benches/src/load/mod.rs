//! `weir-load`: a keep-alive HTTP/1.1 load generator with an HDR latency histogram,
//! constant-rate mode with coordinated-omission correction, and a report per status and
//! error kind.
//!
//! Shape: `-t` OS threads, each with a current-thread tokio runtime driving its share of the
//! `-c` connections; each connection sends one request at a time (like wrk), reusing one
//! pre-encoded request and one read buffer; responses are parsed with httparse. Threads keep
//! their own histogram and counters (no shared lock on the hot path) and publish progress
//! through relaxed atomics; the main thread merges at the end.

pub mod args;
pub mod client;
pub mod report;
pub mod tls;

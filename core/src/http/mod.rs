//! HTTP/1.1 wire format: request heads, bodies, responses, the per-connection session, and the
//! [`Service`] seam it serves through. Nothing here knows the application.

pub mod body;
mod common_head;
pub mod grammar;
pub mod request;
pub mod response;
pub(crate) mod scan;
pub mod service;
pub mod session;
pub mod target;

pub use request::{
    Head, HeadError, HeadScanner, Limits, Method, ParsedHead, Scan, Version, has_bare_lf,
};
pub use response::{Response, Status};
pub use service::{Chunk, HttpConfig, Reply, ReplyPoll, Service};
pub use session::{CloseReason, Effect, IoFailure, Session};

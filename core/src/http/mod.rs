//! HTTP/1.1 wire format: request heads, bodies, responses, and the per-connection session.

pub mod body;
pub mod request;
pub mod response;
pub mod session;
pub mod target;

pub use request::{Head, HeadError, HeadScanner, Limits, Method, Scan, Version};
pub use response::{Response, Status};
pub use session::{CloseReason, Effect, IoFailure, Session};

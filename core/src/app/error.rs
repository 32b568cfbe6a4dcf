//! Error codes and the JSON error envelope (docs/api.md):
//! `{"request_id":"…","error":"<human message>","code":"<CODE>","timestamp":<unix s>}`.

use super::json;
use crate::http::{Response, Status};

/// Every error code weir answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: bad JSON, bad `number`, malformed HTTP.
    InvalidRequest,
    /// 401: missing or wrong bearer token.
    Unauthorized,
    /// 404: no route.
    NotFound,
    /// 405: the route takes other methods.
    MethodNotAllowed,
    /// 408: the head did not arrive within `HEADER_TIMEOUT`.
    RequestTimeout,
    /// 413: body above `MAX_BODY_BYTES`.
    PayloadTooLarge,
    /// 414: target above `MAX_URI_BYTES`.
    UriTooLong,
    /// 417: an unsupported `Expect`.
    ExpectationFailed,
    /// 429: rate limited.
    RateLimitExceeded,
    /// 431: head above `MAX_HEADER_BYTES` or `MAX_HEADERS`.
    HeadersTooLarge,
    /// 500: a bug.
    InternalError,
    /// 500: a job failed.
    ProcessingError,
    /// 501: an unsupported transfer coding.
    NotImplemented,
    /// 503: queue full, connection limit, or draining.
    ServiceOverloaded,
    /// 504: a job not finished within `REQUEST_TIMEOUT`.
    Timeout,
    /// 505: HTTP version other than 1.0/1.1.
    VersionNotSupported,
}

impl ErrorCode {
    /// The code's text.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UriTooLong => "URI_TOO_LONG",
            ErrorCode::ExpectationFailed => "EXPECTATION_FAILED",
            ErrorCode::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            ErrorCode::HeadersTooLarge => "HEADERS_TOO_LARGE",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::ProcessingError => "PROCESSING_ERROR",
            ErrorCode::NotImplemented => "NOT_IMPLEMENTED",
            ErrorCode::ServiceOverloaded => "SERVICE_OVERLOADED",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::VersionNotSupported => "VERSION_NOT_SUPPORTED",
        }
    }

    /// The status the code is sent with.
    pub fn status(self) -> Status {
        match self {
            ErrorCode::InvalidRequest => Status::BAD_REQUEST,
            ErrorCode::Unauthorized => Status::UNAUTHORIZED,
            ErrorCode::NotFound => Status::NOT_FOUND,
            ErrorCode::MethodNotAllowed => Status::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => Status::REQUEST_TIMEOUT,
            ErrorCode::PayloadTooLarge => Status::PAYLOAD_TOO_LARGE,
            ErrorCode::UriTooLong => Status::URI_TOO_LONG,
            ErrorCode::ExpectationFailed => Status::EXPECTATION_FAILED,
            ErrorCode::RateLimitExceeded => Status::TOO_MANY_REQUESTS,
            ErrorCode::HeadersTooLarge => Status::HEADERS_TOO_LARGE,
            ErrorCode::InternalError | ErrorCode::ProcessingError => Status::INTERNAL_ERROR,
            ErrorCode::NotImplemented => Status::NOT_IMPLEMENTED,
            ErrorCode::ServiceOverloaded => Status::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout => Status::GATEWAY_TIMEOUT,
            ErrorCode::VersionNotSupported => Status::VERSION_NOT_SUPPORTED,
        }
    }

    /// The code for a protocol-level status decided by the HTTP layer.
    pub fn for_status(status: Status) -> ErrorCode {
        match status.code() {
            401 => ErrorCode::Unauthorized,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            408 => ErrorCode::RequestTimeout,
            413 => ErrorCode::PayloadTooLarge,
            414 => ErrorCode::UriTooLong,
            417 => ErrorCode::ExpectationFailed,
            429 => ErrorCode::RateLimitExceeded,
            431 => ErrorCode::HeadersTooLarge,
            501 => ErrorCode::NotImplemented,
            503 => ErrorCode::ServiceOverloaded,
            504 => ErrorCode::Timeout,
            505 => ErrorCode::VersionNotSupported,
            500 => ErrorCode::InternalError,
            _ => ErrorCode::InvalidRequest,
        }
    }
}

/// Most bytes of a message an error envelope carries: messages may quote the client's input
/// (a JSON parse error names the bad value), and a client must not get its 200 KB back.
pub const MAX_ERROR_MESSAGE: usize = 200;

/// `message` cut to at most [`MAX_ERROR_MESSAGE`] bytes at a character boundary, and whether
/// it was cut.
fn capped(message: &str) -> (&str, bool) {
    if message.len() <= MAX_ERROR_MESSAGE {
        return (message, false);
    }
    let mut end = MAX_ERROR_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    (&message[..end], true)
}

/// Fills `res` with the error envelope (status, `Content-Type`, body); a message longer than
/// [`MAX_ERROR_MESSAGE`] is cut and ends in `…`.
pub fn write_error(
    res: &mut Response,
    code: ErrorCode,
    message: &str,
    request_id: &str,
    unix_secs: u64,
) {
    res.set_status(code.status());
    res.header_line(b"Content-Type: application/json\r\n");
    let body = res.body_mut();
    body.clear();
    body.extend_from_slice(b"{\"request_id\":");
    json::write_str(body, request_id);
    body.extend_from_slice(b",\"error\":");
    match capped(message) {
        (m, false) => json::write_str(body, m),
        (m, true) => {
            json::write_str(body, m);
            body.pop();
            body.extend_from_slice("…\"".as_bytes());
        }
    }
    body.extend_from_slice(b",\"code\":\"");
    body.extend_from_slice(code.as_str().as_bytes());
    body.extend_from_slice(b"\",\"timestamp\":");
    json::write_int(body, unix_secs);
    body.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape() {
        let mut res = Response::default();
        write_error(
            &mut res,
            ErrorCode::RateLimitExceeded,
            "slow \"down\"",
            "id-1",
            1_700_000_000,
        );
        assert_eq!(res.status().code(), 429);
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v["request_id"], "id-1");
        assert_eq!(v["error"], "slow \"down\"");
        assert_eq!(v["code"], "RATE_LIMIT_EXCEEDED");
        assert_eq!(v["timestamp"], 1_700_000_000u64);
        assert_eq!(v.as_object().unwrap().len(), 4);
    }

    #[test]
    fn every_code_has_its_status() {
        let table = [
            (ErrorCode::InvalidRequest, 400, "INVALID_REQUEST"),
            (ErrorCode::Unauthorized, 401, "UNAUTHORIZED"),
            (ErrorCode::NotFound, 404, "NOT_FOUND"),
            (ErrorCode::MethodNotAllowed, 405, "METHOD_NOT_ALLOWED"),
            (ErrorCode::RequestTimeout, 408, "REQUEST_TIMEOUT"),
            (ErrorCode::PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
            (ErrorCode::UriTooLong, 414, "URI_TOO_LONG"),
            (ErrorCode::HeadersTooLarge, 431, "HEADERS_TOO_LARGE"),
            (ErrorCode::RateLimitExceeded, 429, "RATE_LIMIT_EXCEEDED"),
            (ErrorCode::ServiceOverloaded, 503, "SERVICE_OVERLOADED"),
            (ErrorCode::Timeout, 504, "TIMEOUT"),
            (ErrorCode::InternalError, 500, "INTERNAL_ERROR"),
            (ErrorCode::ProcessingError, 500, "PROCESSING_ERROR"),
            (ErrorCode::VersionNotSupported, 505, "VERSION_NOT_SUPPORTED"),
        ];
        for (code, status, text) in table {
            assert_eq!((code.status().code(), code.as_str()), (status, text));
            if code != ErrorCode::ProcessingError {
                assert_eq!(ErrorCode::for_status(code.status()), code);
            }
        }
    }
}

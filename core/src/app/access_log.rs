//! The access log: one line per finished request (nginx's combined fields — method, path,
//! query, protocol, status, bytes sent, latency, client address, user agent — with the
//! request ID), written field by field through `tracing` with nothing allocated.

use std::net::IpAddr;

use super::Exchange;
use crate::http::{Head, Status};

/// The access log line of a finished request.
#[inline(never)]
pub(super) fn log_access(
    ex: &Exchange,
    head: Option<&Head<'_>>,
    status: Status,
    latency_ns: u64,
    bytes_sent: u64,
) {
    // The target is UTF-8 (the grammar checked it); a header value may not be.
    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap_or("-")
    }
    let path = head.map_or("-", |h| text(h.path()));
    let query = head.and_then(|h| h.query()).map_or("", text);
    let protocol = match head.map(|h| h.version) {
        Some(crate::http::Version::Http10) => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let user_agent = head.and_then(|h| h.header("user-agent")).map_or("-", text);
    tracing::info!(
        target: "weir::access",
        request_id = ex.id.as_str(),
        method = ex.method.as_str(),
        path,
        query,
        protocol,
        status = status.code(),
        bytes_sent,
        latency_ms = latency_ns as f64 / 1e6,
        client_ip = ClientIp::new(ex.client_ip).as_str(),
        user_agent,
    );
}

/// The client address in the access log as text, `-` when unknown: rendered on the stack
/// (no `String` per request) and logged as a string field, which skips the formatting
/// machinery a `Display` value goes through.
struct ClientIp {
    text: [u8; 45],
    len: usize,
}

impl ClientIp {
    fn new(ip: Option<IpAddr>) -> ClientIp {
        let mut c = ClientIp {
            text: [0; 45],
            len: 0,
        };
        match ip {
            // IPv4 digit by digit (the standard `Display` costs about ten times as much).
            Some(IpAddr::V4(ip)) => {
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        c.push(b'.');
                    }
                    if octet >= 100 {
                        c.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        c.push(b'0' + octet / 10 % 10);
                    }
                    c.push(b'0' + octet % 10);
                }
            }
            // IPv6 is rarer: the standard formatting (at most 45 bytes), into the buffer.
            Some(ip) => {
                let mut rest = &mut c.text[..];
                let _ = std::io::Write::write_fmt(&mut rest, format_args!("{ip}"));
                c.len = 45 - rest.len();
            }
            None => c.push(b'-'),
        }
        c
    }

    fn push(&mut self, b: u8) {
        self.text[self.len] = b;
        self.len += 1;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..self.len]).unwrap_or("-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_print_as_the_standard_library_prints_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.22.133.9",
            "::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ClientIp::new(Some(ip)).as_str(), ip.to_string());
        }
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        assert_eq!(ClientIp::new(Some(longest)).as_str(), longest.to_string());
        assert_eq!(ClientIp::new(None).as_str(), "-");
    }
}

//! Who the client is: the peer's address, or with `TRUST_PROXY` the right-most
//! `X-Forwarded-For` entry not in `TRUSTED_PROXIES` (the left-most entries are the client's
//! own words, so never trusted past an untrusted hop).

use std::net::{IpAddr, SocketAddr};

use super::App;
use crate::http::Head;

impl App {
    /// The client address: the peer, or with `TRUST_PROXY` the right-most `X-Forwarded-For`
    /// entry not in `TRUSTED_PROXIES` (the left-most entries are client-controlled).
    pub(super) fn client_ip(&self, head: &Head<'_>, peer: SocketAddr) -> IpAddr {
        let c = &self.config;
        let peer_ip = peer.ip();
        if !c.trust_proxy {
            return peer_ip;
        }
        let trusted = |ip: IpAddr| c.trusted_proxies.iter().any(|n| n.contains(ip));
        if !c.trusted_proxies.is_empty() && !trusted(peer_ip) {
            // The peer is not one of our proxies: its header is the client's own words.
            return peer_ip;
        }
        let mut rightmost_untrusted: Option<Option<IpAddr>> = None;
        let mut leftmost: Option<IpAddr> = None;
        for value in head.headers("x-forwarded-for") {
            for entry in value.split(|&b| b == b',') {
                let ip = parse_forwarded_ip(entry.trim_ascii());
                if leftmost.is_none() {
                    leftmost = ip;
                }
                match ip {
                    Some(ip) if trusted(ip) => {}
                    other => rightmost_untrusted = Some(other),
                }
            }
        }
        match rightmost_untrusted {
            Some(Some(ip)) => ip,
            // The nearest untrusted hop is unreadable: do not guess past it.
            Some(None) => peer_ip,
            None => leftmost.unwrap_or(peer_ip),
        }
    }
}

fn parse_forwarded_ip(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?;
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

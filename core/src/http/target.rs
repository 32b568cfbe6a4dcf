//! The authority of a request: the `Host` field's grammar and absolute-form targets.
//!
//! Invariants: [`valid_host`] accepts exactly `uri-host [ ":" port ]` of RFC 3986 (what RFC 9112
//! §3.2 requires of `Host`; an empty value is allowed there); [`split_absolute`] accepts only
//! `http`/`https` absolute-form targets with a non-empty, valid authority and no userinfo
//! (RFC 9110 §4.2.4), and returns the origin-form part the router sees.

/// Whether `value` is `uri-host [ ":" port ]`, with `uri-host = IP-literal / IPv4address /
/// reg-name` (RFC 3986 §3.2.2). IPv4 addresses are reg-names syntactically.
pub fn valid_host(value: &[u8]) -> bool {
    // The common case in one pass: reg-name bytes, then maybe `:` and digits.
    let name_end = value
        .iter()
        .position(|&b| !REG_NAME[b as usize])
        .unwrap_or(value.len());
    match value.get(name_end) {
        None => return true,
        Some(b':') if value[name_end + 1..].iter().all(u8::is_ascii_digit) => return true,
        _ => {}
    }
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        if !valid_ip_literal(&rest[..close]) {
            return false;
        }
        match &rest[close + 1..] {
            [] => return true,
            [b':', port @ ..] => (&[][..], port),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value, &[][..]),
        }
    };
    valid_reg_name(host) && port.iter().all(u8::is_ascii_digit)
}

/// Bytes a reg-name takes as they are: unreserved and sub-delims (RFC 3986 §3.2.2).
const REG_NAME: [bool; 256] = super::scan::alnum_and(b"-._~!$&'()*+,;=");

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`.
fn valid_reg_name(name: &[u8]) -> bool {
    if name.iter().all(|&b| REG_NAME[b as usize]) {
        return true; // the common case: one table lookup a byte
    }
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if b == b'%' {
            if i + 2 >= name.len()
                || !(name[i + 1].is_ascii_hexdigit() && name[i + 2].is_ascii_hexdigit())
            {
                return false;
            }
            i += 3;
            continue;
        }
        if !REG_NAME[b as usize] {
            return false;
        }
        i += 1;
    }
    true
}

/// `IP-literal` between the brackets: an IPv6 address or `IPvFuture`.
fn valid_ip_literal(inner: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inner {
        // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        return dot > 0
            && rest[..dot].iter().all(u8::is_ascii_hexdigit)
            && rest.len() > dot + 1
            && rest[dot + 1..]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b));
    }
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Why an absolute-form target was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbsoluteError {
    /// Not `http` or `https`, an empty or malformed authority, or userinfo.
    Malformed,
}

/// For an absolute-form target (`http://host[:port]/path?query`): the authority and the rest
/// (`/path?query`, or empty or `?query` when the path is empty: the caller puts a `/` first). `None` for any other form (origin-form,
/// `*`, authority-form), which the router handles as it is.
pub fn split_absolute(target: &str) -> Option<Result<(&str, &str), AbsoluteError>> {
    if target.starts_with('/') {
        return None; // origin-form, the common case: no search
    }
    let colon = target.find("://")?;
    let scheme = &target[..colon];
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Some(Err(AbsoluteError::Malformed));
    }
    let rest = &target[colon + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_end = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |i| i + 1)
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    if authority.contains('@') || host_end == 0 || !valid_host(authority.as_bytes()) {
        return Some(Err(AbsoluteError::Malformed));
    }
    Some(Ok((authority, &rest[end..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_grammar() {
        for ok in [
            "",
            "a",
            "example.com",
            "example.com:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[v1.fe]",
            "a-b_c~d",
            "x%20y",
            "a:",
            "sub!$&'()*+,;=",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok:?} is valid");
        }
        for bad in [
            "a b", "a/b", "a@b", "a:80:90", "a:x", "[::1", "[::g]", "[::1]x", "[::1]:8a", "a%2",
            "a%zz", "a?b", "a#b", "\"a\"", "[v.x]", "é",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?} is invalid");
        }
    }

    #[test]
    fn absolute_form() {
        assert_eq!(split_absolute("/ping"), None);
        assert_eq!(split_absolute("*"), None);
        assert_eq!(split_absolute("http://a/ping"), Some(Ok(("a", "/ping"))));
        assert_eq!(
            split_absolute("HTTP://a:80/p?x=1"),
            Some(Ok(("a:80", "/p?x=1")))
        );
        assert_eq!(split_absolute("https://[::1]"), Some(Ok(("[::1]", ""))));
        assert_eq!(split_absolute("http://a?x"), Some(Ok(("a", "?x"))));
        for bad in [
            "http:///p",
            "http://u@a/p",
            "ftp://a/p",
            "http://a b/p",
            "http://:80/p",
        ] {
            assert_eq!(
                split_absolute(bad),
                Some(Err(AbsoluteError::Malformed)),
                "{bad}"
            );
        }
    }
}

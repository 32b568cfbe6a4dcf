//! The router: method + path → endpoint, with `:param` segments, 404, and 405 with `Allow`.
//!
//! Invariants: built once at start-up and then read-only; a lookup allocates nothing (it walks
//! the path's segments against each route's); `HEAD` is served by a `GET` route; the `Allow`
//! text of each route is computed at build time.

use crate::http::Method;

#[derive(Debug)]
struct Route<E> {
    pattern: &'static str,
    /// The pattern split at its `:param` segment: `("/users/", Some("/posts"))` for
    /// `/users/:id/posts`, `("/ping", None)` for a static route.
    prefix: &'static str,
    suffix: Option<&'static str>,
    methods: Vec<(Method, E)>,
    /// The endpoint of each method (indexed by `Method as usize`), `HEAD` falling back to
    /// `GET`: a lookup is one load.
    by_method: [Option<E>; METHODS],
    allow: String,
}

/// How many [`Method`]s there are (`Other` is the last).
const METHODS: usize = Method::Other as usize + 1;

/// The result of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'p, E> {
    /// A route and method matched.
    Found {
        /// The route's index (stable: the order of [`RouterBuilder::route`] calls).
        route: u8,
        /// The endpoint registered for the method.
        endpoint: E,
        /// The value of the route's `:param` segment, if it has one.
        param: Option<&'p [u8]>,
    },
    /// The path matched a route that does not take this method.
    MethodNotAllowed {
        /// The route's index.
        route: u8,
        /// The `Allow` header value.
        allow: &'p str,
    },
    /// No route has this path.
    NotFound,
}

/// Builds a [`Router`].
#[derive(Debug)]
pub struct RouterBuilder<E> {
    routes: Vec<Route<E>>,
}

impl<E: Copy> Default for RouterBuilder<E> {
    fn default() -> Self {
        RouterBuilder { routes: Vec::new() }
    }
}

impl<E: Copy> RouterBuilder<E> {
    /// Registers `endpoint` for `method` on `pattern` (`/users/:id`). The same pattern may be
    /// registered for several methods.
    pub fn route(mut self, method: Method, pattern: &'static str, endpoint: E) -> Self {
        assert!(
            pattern.starts_with('/'),
            "route pattern must start with '/': {pattern}"
        );
        assert!(
            pattern.matches("/:").count() <= 1,
            "one :param per route: {pattern}"
        );
        let (prefix, suffix) = match pattern.find("/:") {
            Some(at) => {
                let rest = &pattern[at + 2..];
                (
                    &pattern[..at + 1],
                    Some(rest.find('/').map_or("", |slash| &rest[slash..])),
                )
            }
            None => (pattern, None),
        };
        match self.routes.iter_mut().find(|r| r.pattern == pattern) {
            Some(r) => r.methods.push((method, endpoint)),
            None => {
                assert!(
                    self.routes.len() < 255,
                    "at most 255 routes (route ids are u8)"
                );
                self.routes.push(Route {
                    pattern,
                    prefix,
                    suffix,
                    methods: vec![(method, endpoint)],
                    by_method: [None; METHODS],
                    allow: String::new(),
                })
            }
        }
        self
    }

    /// Freezes the table.
    pub fn build(mut self) -> Router<E> {
        for r in &mut self.routes {
            let mut names: Vec<&str> = Vec::new();
            for (m, _) in &r.methods {
                names.push(m.as_str());
                if *m == Method::Get {
                    names.push("HEAD");
                }
            }
            names.sort_unstable();
            names.dedup();
            r.allow = names.join(", ");
            for &(m, e) in &r.methods {
                // The first registration of a method wins, as it always has.
                r.by_method[m as usize].get_or_insert(e);
            }
            let get = r.by_method[Method::Get as usize];
            r.by_method[Method::Head as usize] = r.by_method[Method::Head as usize].or(get);
        }
        Router {
            routes: self.routes,
        }
    }
}

/// The frozen routing table.
#[derive(Debug)]
pub struct Router<E> {
    routes: Vec<Route<E>>,
}

impl<E: Copy> Router<E> {
    /// Route patterns, indexed by route id (metric labels).
    pub fn patterns(&self) -> Vec<&'static str> {
        self.routes.iter().map(|r| r.pattern).collect()
    }

    /// Looks `method` and `path` up (bytes: the target is matched as sent, not decoded).
    pub fn lookup<'p>(&'p self, method: Method, path: &'p [u8]) -> Match<'p, E> {
        for (i, r) in self.routes.iter().enumerate() {
            let Some(param) = match_route(r.prefix, r.suffix, path) else {
                continue;
            };
            return match r.by_method[method as usize] {
                Some(endpoint) => Match::Found {
                    route: i as u8,
                    endpoint,
                    param,
                },
                None => Match::MethodNotAllowed {
                    route: i as u8,
                    allow: &r.allow,
                },
            };
        }
        Match::NotFound
    }
}

/// Matches `path` against a split pattern; `Some(param)` on a match (byte comparisons only).
fn match_route<'p>(prefix: &str, suffix: Option<&str>, path: &'p [u8]) -> Option<Option<&'p [u8]>> {
    let Some(suffix) = suffix else {
        return short_eq(path, prefix.as_bytes()).then_some(None);
    };
    let (p, pre) = (path, prefix.as_bytes());
    if p.len() <= pre.len() || p[..pre.len()] != *pre {
        return None;
    }
    let rest = &p[pre.len()..];
    let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    if end == 0 || rest[end..] != *suffix.as_bytes() {
        return None;
    }
    Some(Some(&path[pre.len()..pre.len() + end]))
}

/// `a == b`, with a path of up to 32 bytes (the usual route) compared a word at a time, the
/// last word overlapping, rather than through a `memcmp` call.
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w4 = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4"));
    let w8 = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    match n {
        0..4 => a == b,
        4..8 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        8..=32 => {
            let mut at = 0;
            while at + 8 < n {
                if w8(a, at) != w8(b, at) {
                    return false;
                }
                at += 8;
            }
            w8(a, n - 8) == w8(b, n - 8)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<u32> {
        RouterBuilder::default()
            .route(Method::Get, "/ping", 1)
            .route(Method::Get, "/users/:id", 2)
            .route(Method::Post, "/echo", 3)
            .route(Method::Post, "/api/v1/compute/fast", 4)
            .route(Method::Delete, "/users/:id", 5)
            .route(Method::Get, "/users/:id/posts", 6)
            .build()
    }

    #[test]
    fn short_paths_are_equal_exactly_when_they_are() {
        let base = b"/api/v1/compute/fast/and/more/and/more";
        for n in 0..base.len() {
            let a = &base[..n];
            assert!(short_eq(a, a));
            assert!(!short_eq(a, &base[..n + 1]));
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 1;
                assert!(!short_eq(a, &b), "{n} bytes, differing at {at}");
            }
        }
    }

    #[test]
    fn static_and_param_routes() {
        let r = router();
        assert_eq!(
            r.lookup(Method::Get, b"/ping"),
            Match::Found {
                route: 0,
                endpoint: 1,
                param: None
            }
        );
        assert_eq!(
            r.lookup(Method::Get, b"/users/42"),
            Match::Found {
                route: 1,
                endpoint: 2,
                param: Some(&b"42"[..])
            }
        );
        assert_eq!(
            r.lookup(Method::Delete, b"/users/x"),
            Match::Found {
                route: 1,
                endpoint: 5,
                param: Some(&b"x"[..])
            }
        );
        assert_eq!(
            r.lookup(Method::Post, b"/api/v1/compute/fast"),
            Match::Found {
                route: 3,
                endpoint: 4,
                param: None
            }
        );
        assert_eq!(
            r.lookup(Method::Get, b"/users/9/posts"),
            Match::Found {
                route: 4,
                endpoint: 6,
                param: Some(&b"9"[..])
            }
        );
        assert_eq!(r.lookup(Method::Get, b"/users/9/post"), Match::NotFound);
    }

    #[test]
    fn head_is_served_by_get() {
        assert_eq!(
            router().lookup(Method::Head, b"/ping"),
            Match::Found {
                route: 0,
                endpoint: 1,
                param: None
            }
        );
    }

    #[test]
    fn not_found_and_method_not_allowed() {
        let r = router();
        for p in [
            "/",
            "/pin",
            "/ping/",
            "/users",
            "/users/",
            "/users/1/2",
            "ping",
            "",
        ] {
            assert_eq!(r.lookup(Method::Get, p.as_bytes()), Match::NotFound, "{p}");
        }
        assert_eq!(
            r.lookup(Method::Post, b"/ping"),
            Match::MethodNotAllowed {
                route: 0,
                allow: "GET, HEAD"
            }
        );
        assert_eq!(
            r.lookup(Method::Get, b"/echo"),
            Match::MethodNotAllowed {
                route: 2,
                allow: "POST"
            }
        );
        assert_eq!(
            r.lookup(Method::Put, b"/users/1"),
            Match::MethodNotAllowed {
                route: 1,
                allow: "DELETE, GET, HEAD"
            }
        );
    }

    #[test]
    fn patterns_are_labels() {
        assert_eq!(
            router().patterns(),
            vec![
                "/ping",
                "/users/:id",
                "/echo",
                "/api/v1/compute/fast",
                "/users/:id/posts"
            ]
        );
    }
}

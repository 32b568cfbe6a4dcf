//! The HTTP API (docs/api.md) through a session: endpoints, error codes, limits, metrics.

mod common;

use std::time::Duration;

use common::*;
use weir_core::ProcessStats;

#[test]
fn compute_fast_squares_the_number() {
    let mut d = Driver::with(&[]);
    let r = d.request(&post("/api/v1/compute/fast", "{\"number\": 42}"));
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        (v["job_id"].as_u64(), v["result"].as_i64()),
        (Some(0), Some(1764))
    );
    assert_eq!(v["request_id"].as_str(), r.header("x-request-id"));
    assert_eq!(v["timestamp"].as_u64(), Some(WALL0_MS / 1000));
    assert!(v["latency_us"].is_u64());
    let r = d.request(&post("/api/v1/compute/fast", "{\"number\": -3037000499}"));
    assert_eq!(
        r.json()["result"].as_i64(),
        Some(3037000499i64 * 3037000499)
    );
}

#[test]
fn compute_rejects_bad_bodies_with_400() {
    let mut d = Driver::with(&[]);
    for body in [
        "",
        "{",
        "{}",
        "{\"number\": \"42\"}",
        "{\"number\": 4.5}",
        "{\"number\": null}",
        "[42]",
        "{\"number\": 3037000500}",
        "{\"number\": -3037000500}",
        "{\"number\": 99999999999999999999}",
        "{\"number\": 3037000500.0}",
        "{\"number\": 1e300}",
    ] {
        for path in ["/api/v1/compute/fast", "/api/v1/compute/intensive"] {
            let r = d.request(&post(path, body));
            assert_eq!(
                (r.status, r.json()["code"].as_str()),
                (400, Some("INVALID_REQUEST")),
                "{path} {body:?}"
            );
        }
    }
}

/// JSON Schema's `integer` (and so the OpenAPI description) includes `-315.0`: an integral
/// number written with a fraction is the integer.
#[test]
fn compute_takes_integral_numbers_written_with_a_fraction() {
    let mut d = Driver::with(&[]);
    let r = d.request(&post("/api/v1/compute/fast", "{\"number\": -315.0}"));
    assert_eq!((r.status, r.json()["result"].as_i64()), (200, Some(99225)));
}

#[test]
fn compute_intensive_runs_on_the_queue_with_increasing_ids() {
    let mut d = Driver::with(&[("JOB_COST", "100")]);
    let mut ids = Vec::new();
    for n in [2, 3] {
        d.send(post("/api/v1/compute/intensive", &format!("{{\"number\":{n}}}")).as_bytes());
        assert_eq!(d.run_jobs(), 1);
        let v = d.one().json();
        assert_eq!(v["result"].as_i64(), Some(n * n));
        ids.push(v["job_id"].as_u64().unwrap());
    }
    assert!(ids[0] > 0 && ids[1] > ids[0]);
}

#[test]
fn full_queue_is_503_with_retry_after_then_recovers() {
    let a = app(&[("QUEUE_SIZE", "1")]);
    let mut first = Driver::new(a.clone());
    first.send(post("/api/v1/compute/intensive", "{\"number\":1}").as_bytes());
    let mut second = Driver::new(a.clone());
    let r = second.request(&post("/api/v1/compute/intensive", "{\"number\":1}"));
    assert_eq!(
        (r.status, r.json()["code"].as_str(), r.header("retry-after")),
        (503, Some("SERVICE_OVERLOADED"), Some("1"))
    );
    first.run_jobs();
    assert_eq!(first.one().status, 200);
    second.send(post("/api/v1/compute/intensive", "{\"number\":1}").as_bytes());
    second.run_jobs();
    assert_eq!(second.one().status, 200);
}

#[test]
fn echo_returns_body_and_content_type() {
    let mut d = Driver::with(&[]);
    let r = d.request("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\nContent-Length: 3\r\n\r\n\x01\x02\x03");
    assert_eq!(
        (r.status, r.header("content-type"), r.body.as_slice()),
        (200, Some("image/png"), &b"\x01\x02\x03"[..])
    );
}

#[test]
fn users_path_parameter() {
    let mut d = Driver::with(&[]);
    assert_eq!(
        d.request(&get("/users/abc-123")).json(),
        serde_json::json!({"id": "abc-123"})
    );
    assert_eq!(
        d.request(&get("/users/a%22b")).json(),
        serde_json::json!({"id": "a%22b"})
    );
}

#[test]
fn not_found_and_method_not_allowed() {
    let mut d = Driver::with(&[]);
    let r = d.request(&get("/nope"));
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let r = d.request(&post("/ping", ""));
    assert_eq!(
        (r.status, r.json()["code"].as_str(), r.header("allow")),
        (405, Some("METHOD_NOT_ALLOWED"), Some("GET, HEAD"))
    );
    let r = d.request(&get("/api/v1/compute/fast"));
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
}

#[test]
fn request_ids_are_kept_or_generated() {
    let mut d = Driver::with(&[]);
    let r = d.request("GET /nope HTTP/1.1\r\nHost: t\r\nX-Request-ID: trace-77\r\n\r\n");
    assert_eq!(
        (r.header("x-request-id"), r.json()["request_id"].as_str()),
        (Some("trace-77"), Some("trace-77"))
    );
    let long = "x".repeat(129);
    let r = d.request(&format!(
        "GET /ping HTTP/1.1\r\nHost: t\r\nX-Request-ID: {long}\r\n\r\n"
    ));
    let id = r.header("x-request-id").unwrap();
    assert_eq!(id.len(), 36, "an invalid id is replaced by a UUID");
    let a = d
        .request(&get("/ping"))
        .header("x-request-id")
        .unwrap()
        .to_owned();
    let b = d
        .request(&get("/ping"))
        .header("x-request-id")
        .unwrap()
        .to_owned();
    assert_ne!(a, b);
}

#[test]
fn api_token_guards_api_routes_only() {
    let mut d = Driver::with(&[("API_TOKEN", "s3cret")]);
    let r = d.request(&post("/api/v1/compute/fast", "{\"number\":1}"));
    assert_eq!(
        (
            r.status,
            r.json()["code"].as_str(),
            r.header("www-authenticate")
        ),
        (401, Some("UNAUTHORIZED"), Some("Bearer"))
    );
    let r = d.request("POST /api/v1/compute/fast HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer wrong\r\nContent-Length: 12\r\n\r\n{\"number\":1}");
    assert_eq!(r.status, 401);
    let r = d.request("POST /api/v1/compute/fast HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\nContent-Length: 12\r\n\r\n{\"number\":1}");
    assert_eq!(r.status, 200);
    assert_eq!(
        d.request(&get("/ping")).status,
        200,
        "non-/api routes are open"
    );
}

#[test]
fn global_rate_limit_gives_429_with_ietf_headers() {
    let mut d = Driver::with(&[("RATE_LIMIT", "2"), ("RATE_BURST", "2")]);
    let ok = d.request(&get("/ping"));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("ratelimit-policy"), Some("\"global\";q=2;w=1"));
    assert_eq!(ok.header("ratelimit"), Some("\"global\";r=1;t=1"));
    assert_eq!(d.request(&get("/ping")).status, 200);
    let r = d.request(&get("/ping"));
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (429, Some("RATE_LIMIT_EXCEEDED"))
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("ratelimit"), Some("\"global\";r=0;t=1"));
    for path in ["/health", "/metrics", "/api/v1/stats"] {
        assert_ne!(d.request(&get(path)).status, 429, "{path} is never limited");
    }
    d.advance(Duration::from_millis(500));
    assert_eq!(d.request(&get("/ping")).status, 200, "the bucket refills");
    assert_eq!(d.app.metrics().totals().rejected, 1);
    assert_eq!(
        d.app.rate_limited(),
        (1, 0),
        "counted by the policy that refused"
    );
    let prom = d.request(&get("/metrics?format=prometheus")).text();
    assert!(
        prom.contains("weir_rate_limited_total{policy=\"global\"} 1"),
        "{prom}"
    );
    assert!(
        prom.contains("weir_rate_limited_total{policy=\"per_ip\"} 0"),
        "{prom}"
    );
}

#[test]
fn per_ip_limit_uses_forwarded_for_only_when_trusted() {
    let a = app(&[
        ("RATE_LIMIT", "0"),
        ("RATE_LIMIT_PER_IP", "1"),
        ("TRUST_PROXY", "true"),
        ("TRUSTED_PROXIES", "192.0.2.0/24"),
    ]);
    let mut d = Driver::new(a);
    let from = |ip: &str| {
        format!("GET /ping HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6, {ip}\r\n\r\n")
    };
    assert_eq!(d.request(&from("1.1.1.1")).status, 200);
    let r = d.request(&from("1.1.1.1"));
    assert_eq!(
        (r.status, r.header("ratelimit-policy")),
        (429, Some("\"per-ip\";q=1;w=1"))
    );
    assert_eq!(d.app.rate_limited(), (0, 1), "a per-IP refusal");
    assert_eq!(
        d.request(&from("2.2.2.2")).status,
        200,
        "another client has its own bucket"
    );
    let mut untrusting = Driver::with(&[("RATE_LIMIT", "0"), ("RATE_LIMIT_PER_IP", "1")]);
    assert_eq!(untrusting.request(&from("1.1.1.1")).status, 200);
    assert_eq!(
        untrusting.request(&from("3.3.3.3")).status,
        429,
        "without TRUST_PROXY the peer is the key"
    );
}

#[test]
fn health_reports_checks_and_draining() {
    let a = weir_core::App::builder(config(&[]))
        .runtime("test")
        .health_check("database", || false)
        .build(t0());
    a.lifecycle().worker_started();
    let mut d = Driver::new(a.clone());
    let r = d.request(&get("/health"));
    assert_eq!(r.status, 503);
    let v = r.json();
    assert_eq!(v["status"]["worker_pool"], "healthy");
    assert_eq!(v["status"]["database"], "unhealthy");
    assert_eq!(
        (v["runtime"].as_str(), v["version"].as_str()),
        (Some("test"), Some(env!("CARGO_PKG_VERSION")))
    );
    assert!(v["uptime_seconds"].is_f64() && v["timestamp"].is_u64());

    let mut d = Driver::with(&[]);
    let r = d.request(&get("/health"));
    assert_eq!(
        (r.status, r.json()["status"]["worker_pool"].as_str()),
        (200, Some("healthy"))
    );
    d.app.lifecycle().worker_stopped();
    assert_eq!(
        d.request(&get("/health")).status,
        503,
        "no workers: unhealthy"
    );
    d.app.lifecycle().worker_started();
    d.app.lifecycle().begin_drain();
    let r = d.request(&get("/health"));
    assert_eq!(
        (r.status, r.json()["status"]["server"].as_str()),
        (503, Some("draining"))
    );
}

const METRIC_FIELDS: [&str; 21] = [
    "total_requests",
    "success_count",
    "error_count",
    "rejected_count",
    "active_requests",
    "active_connections",
    "success_rate",
    "avg_latency_us",
    "p50_latency_us",
    "p95_latency_us",
    "p99_latency_us",
    "requests_per_sec",
    "queue_depth",
    "worker_count",
    "jobs_completed",
    "jobs_rejected",
    "jobs_cancelled",
    "uptime_seconds",
    "memory_rss_bytes",
    "runtime",
    "timestamp",
];

#[test]
fn metrics_json_has_every_field() {
    // The runtime's sampler publishes figures; a scrape only reads them (no /proc work on
    // the I/O path), and shows a new sample as soon as it is stored.
    let figures = std::sync::Arc::new(weir_core::ProcessFigures::default());
    figures.store(&ProcessStats::new(12_345, 7, 1024, 0.5, 1.7e9, 3));
    let a = weir_core::App::builder(config(&[]))
        .runtime("test")
        .process_figures(figures.clone())
        .build(t0());
    let mut d = Driver::new(a);
    d.request(&get("/ping"));
    d.request(&get("/nope"));
    for path in ["/metrics", "/api/v1/stats"] {
        let r = d.request(&get(path));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        for f in METRIC_FIELDS {
            assert!(!v[f].is_null(), "{path} lacks {f}: {v}");
        }
        assert_eq!(v["memory_rss_bytes"], 12_345);
        assert_eq!(v["runtime"], "test");
        assert_eq!(v["log_lines_dropped"], 3);
        assert_eq!(v["active_connections"], 1);
    }
    figures.store(&ProcessStats::new(54_321, 9, 1024, 0.75, 1.7e9, 4));
    let v = d.request(&get("/metrics")).json();
    assert_eq!(
        (
            v["memory_rss_bytes"].as_u64(),
            v["log_lines_dropped"].as_u64()
        ),
        (Some(54_321), Some(4))
    );
    assert_eq!(
        (
            v["total_requests"].as_u64(),
            v["success_count"].as_u64(),
            v["error_count"].as_u64()
        ),
        (Some(4), Some(3), Some(1))
    );
}

#[test]
fn metrics_content_types_follow_accept() {
    let mut d = Driver::with(&[]);
    d.request(&get("/ping"));
    let prom = d.request("GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: text/plain;version=0.0.4;q=0.3,*/*;q=0.2\r\n\r\n");
    assert_eq!(
        prom.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = prom.text();
    assert!(text.contains("# TYPE http_server_request_duration_seconds histogram"));
    assert!(text.contains("http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_route=\"/ping\",http_response_status_code=\"200\",le=\"0.005\"} 1"));
    assert!(text.contains("process_resident_memory_bytes "));
    // Buckets start at 50 µs, so sub-millisecond requests are visible to histogram_quantile.
    assert!(text.contains("http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_route=\"/ping\",http_response_status_code=\"200\",le=\"0.00005\"} 1"), "{text}");
    // Queue wait and run time are histograms too (aggregatable across instances).
    for name in ["weir_job_queue_wait_seconds", "weir_job_run_seconds"] {
        assert!(text.contains(&format!("# TYPE {name} histogram")), "{text}");
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"0.0001\"}}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"+Inf\"}}")),
            "{text}"
        );
    }
    let om = d.request("GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: application/openmetrics-text;version=1.0.0;q=0.6,text/plain;q=0.3\r\n\r\n");
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(om.text().ends_with("# EOF\n"));
    assert!(
        om.text()
            .contains("# TYPE weir_jobs counter\nweir_jobs_total{outcome=\"completed\"}")
    );
    let q = d.request(&get("/metrics?format=prometheus"));
    assert_eq!(
        q.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
}

/// `GET /openapi.json` serves docs/openapi.yaml (written in JSON syntax) and it describes
/// every route weir serves, and no other.
#[test]
fn openapi_json_describes_every_route() {
    let mut d = Driver::with(&[]);
    let r = d.request(&get("/openapi.json"));
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("application/json"))
    );
    let spec = r.json();
    assert_eq!(spec["openapi"], "3.1.0");
    let mut documented: Vec<String> = spec["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| p.replace("{id}", ":id"))
        .collect();
    documented.sort();
    let mut served = vec![
        "/api/v1/compute/fast",
        "/api/v1/compute/intensive",
        "/api/v1/sleep",
        "/api/v1/stats",
        "/api/v1/stream",
        "/echo",
        "/health",
        "/livez",
        "/metrics",
        "/openapi.json",
        "/ping",
        "/readyz",
        "/users/:id",
    ];
    served.sort();
    assert_eq!(documented, served);
    // Each answers at once here (the deferred ones — jobs, sleeps, streams — have their own
    // tests): none is a 404.
    for path in served.iter().filter(|p| {
        !p.contains("compute/intensive") && !p.contains("sleep") && !p.contains("stream")
    }) {
        let probe = path.replace(":id", "7");
        let method = if path.contains("compute") || *path == "/echo" {
            "POST"
        } else {
            "GET"
        };
        let r = d.request(&format!(
            "{method} {probe} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        ));
        assert_ne!(r.status, 404, "{path} is served");
    }
}

/// The request ID and the rate-limit state are written as each response is encoded: every
/// kind of response carries them, each once.
#[test]
fn every_response_carries_the_common_lines_once() {
    let common = |r: &Resp, limited: bool| {
        let count = |name: &str| {
            r.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .count()
        };
        assert_eq!(count("x-request-id"), 1, "{} {:?}", r.status, r.headers);
        let rate = usize::from(limited);
        assert_eq!(
            count("ratelimit-policy"),
            rate,
            "{} {:?}",
            r.status,
            r.headers
        );
        assert_eq!(count("ratelimit"), rate, "{} {:?}", r.status, r.headers);
    };
    let env = [("RATE_LIMIT", "1"), ("RATE_BURST", "2")];
    let mut d = Driver::with(&env);
    common(&d.request(&get("/ping")), true); // 200
    // Refused by the router, before the limiter: no rate verdict.
    common(&d.request(&get("/nope")), false); // 404
    common(&d.request(&post("/ping", "")), false); // 405
    common(&d.request(&post("/api/v1/compute/fast", "{")), true); // 400 from a handler
    let r = d.request(&get("/ping"));
    assert_eq!(r.status, 429);
    common(&r, true);
    common(&d.request(&get("/health")), false); // monitoring: not limited
    // A protocol error (no rate verdict: the head never parsed).
    let mut d = Driver::with(&env);
    let r = d.request("GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(r.status, 400);
    common(&r, false);
    // A head that never completes: 408.
    let mut d = Driver::with(&env);
    d.send(b"GET /ping HTTP/1.1\r\n");
    d.advance(Duration::from_secs(11));
    let r = d.one();
    assert_eq!(r.status, 408);
    common(&r, false);
    // HEAD: the lines of its GET, no body.
    let mut d = Driver::with(&env);
    d.send(b"HEAD /ping HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = parse_responses(&std::mem::take(&mut d.out), true).remove(0);
    common(&r, true);
    // A refused connection (the connection limit): 503.
    let app = app(&[("MAX_CONNECTIONS", "1")]);
    let _first = Driver::new(app.clone());
    let mut refused = Driver::new(app);
    let r = refused.one();
    assert_eq!(r.status, 503);
    common(&r, false);
}

/// Every operation of the description declares the 405 the server sends for the path's other
/// methods (with `Allow`), and the metrics schema has the `fleet` object the server sends.
#[test]
fn the_description_declares_405_and_the_fleet_figures() {
    let mut d = Driver::with(&[]);
    let spec = d.request(&get("/openapi.json")).json();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert_eq!(
                op["responses"]["405"]["$ref"], "#/components/responses/MethodNotAllowed",
                "{method} {path}"
            );
        }
    }
    let not_allowed = &spec["components"]["responses"]["MethodNotAllowed"];
    assert!(not_allowed["headers"]["Allow"].is_object(), "{not_allowed}");
    let r = d.request("DELETE /ping HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.header("allow").is_some()), (405, true));
    let fleet = &spec["components"]["schemas"]["Metrics"]["properties"]["fleet"];
    assert!(
        fleet["oneOf"][1]["properties"]["redis_errors"].is_object(),
        "{fleet}"
    );
}

//! CPU profiles on demand (`PROFILING=true`, docs/profiling.md): a profile taken under load
//! names weir's own functions, in both formats; one at a time; off by default; behind
//! `API_TOKEN`. The profiler is the kit's, the same for every runtime: weir-tokio here.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Server, post, read_response};

/// Keeps a keep-alive connection busy with `compute/fast` until `stop`.
fn load(srv: &Server, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let mut c = srv.connect();
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            c.write_all(post("/api/v1/compute/fast", "{\"number\": 7}").as_bytes())
                .unwrap();
            assert_eq!(read_response(&mut c, false).unwrap().status, 200);
            n += 1;
        }
        n
    })
}

#[test]
fn a_profile_under_load_names_weirs_functions_in_both_formats_one_at_a_time() {
    let srv = Server::start("tokio", &[("PROFILING", "true"), ("ACCESS_LOG", "false")]);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(&srv, stop.clone());
    // A second profile while one runs is refused at once.
    let mut first = srv.connect();
    first
        .write_all(common::get("/debug/pprof/profile?seconds=2&format=svg").as_bytes())
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let busy = srv.get("/debug/pprof/profile?seconds=1");
    assert_eq!((busy.status, busy.header("retry-after")), (503, Some("1")));
    let svg = read_response(&mut first, false).expect("the flame graph");
    assert_eq!(svg.status, 200);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    let text = svg.text();
    assert!(text.starts_with("<?xml") && text.contains("<svg"), "an SVG");
    assert!(
        text.contains("weir_core::"),
        "the flame graph names weir's functions"
    );
    let pprof = srv.get("/debug/pprof/profile?seconds=1");
    assert_eq!(pprof.status, 200);
    assert_eq!(
        pprof.header("content-type"),
        Some("application/octet-stream")
    );
    // A pprof protobuf keeps function names in its string table, as they are.
    let names = pprof.body.windows(10).any(|w| w == b"weir_core:");
    assert!(names, "the pprof profile names weir's functions");
    stop.store(true, Ordering::Relaxed);
    assert!(loader.join().unwrap() > 0);
    for bad in ["seconds=0", "seconds=61", "seconds=x", "format=png"] {
        let r = srv.get(&format!("/debug/pprof/profile?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
    }
}

#[test]
fn profiling_is_off_unless_asked_for_and_behind_the_api_token() {
    let off = Server::start("tokio", &[("ACCESS_LOG", "false")]);
    assert_eq!(off.get("/debug/pprof/profile?seconds=1").status, 404);
    let env = [
        ("PROFILING", "true"),
        ("API_TOKEN", "s3cret"),
        ("ACCESS_LOG", "false"),
    ];
    let guarded = Server::start("tokio", &env);
    let r = guarded.get("/debug/pprof/profile?seconds=1");
    assert_eq!(r.status, 401);
    let r = guarded.request(
        "GET /debug/pprof/profile?seconds=1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\n\r\n",
    );
    assert_eq!(r.status, 200);
}

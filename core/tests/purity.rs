//! weir-core is sans-IO: no file, socket, thread, blocking wait, clock, signal, environment,
//! printing or exit in its sources, test modules included (tests that need threads live in
//! `core/tests`). This test reads `src/` and fails on any API for those.

use std::path::Path;

/// Patterns that mean I/O, with why each is forbidden.
const FORBIDDEN: &[(&str, &str)] = &[
    ("std::fs", "files"),
    ("File::", "files"),
    ("TcpListener", "sockets"),
    ("TcpStream", "sockets"),
    ("UdpSocket", "sockets"),
    ("UnixStream", "sockets"),
    ("thread::spawn", "threads"),
    ("thread::Builder", "threads"),
    ("thread::sleep", "blocking sleeps"),
    ("thread::park", "blocking waits"),
    ("Condvar", "blocking waits"),
    ("select!", "blocking waits"),
    (".recv()", "blocking waits"),
    ("recv_timeout", "blocking waits"),
    ("wait_timeout", "blocking waits"),
    ("Instant::now", "clocks"),
    ("SystemTime", "clocks"),
    ("std::env", "the process environment"),
    ("std::process", "the process"),
    ("println!", "printing"),
    ("eprintln!", "printing"),
    ("print!(", "printing"),
    ("eprint!(", "printing"),
    ("libc::", "system calls"),
    ("rustix", "system calls"),
    ("signal", "signals"),
    ("std::io::stdin", "terminals"),
    ("std::io::stdout", "terminals"),
    ("std::io::stderr", "terminals"),
];

fn scan(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("core/src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            scan(&path, found);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a source file");
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue; // docs may name what the crate does not do
            }
            for (pattern, what) in FORBIDDEN {
                if line.contains(pattern) {
                    found.push(format!(
                        "{}:{}: `{pattern}` ({what}): {line}",
                        path.display(),
                        n + 1
                    ));
                }
            }
        }
    }
}

#[test]
fn core_sources_use_no_io_api() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    scan(&src, &mut found);
    assert!(found.is_empty(), "I/O in weir-core:\n{}", found.join("\n"));
}

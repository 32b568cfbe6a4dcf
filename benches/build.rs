//! Decides at build time which tests need a tool this machine lacks, so that `cargo test`
//! reports them as *ignored*, with the reason, instead of passing them silently: each missing
//! tool sets a `missing_*` cfg that the tests' `#[cfg_attr(missing_*, ignore = "…")]` reads.
//! Under `CI=true` nothing is ignored: `.ci/run` installs every tool, and a missing one fails.
//! The script runs again when `CI` or `PATH` changes, or when a binary appears in (or leaves)
//! a directory of `PATH`, so installing a tool brings its tests back.

use std::path::PathBuf;

/// (cfg, the tools that must all be found; any of the alternatives separated by `|`).
const TOOLS: &[(&str, &[&str])] = &[
    ("missing_redis", &["redis-server"]),
    ("missing_prometheus", &["prometheus"]),
    ("missing_promtool", &["promtool"]),
    (
        "missing_chromium",
        &["chromium|chromium-browser|google-chrome"],
    ),
    ("missing_strace", &["strace"]),
    ("missing_curl", &["curl"]),
    ("missing_h2load", &["h2load"]),
    ("missing_openssl", &["openssl"]),
    ("missing_script", &["script"]),
];

fn main() {
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| d.is_dir())
        .collect();
    for dir in &dirs {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let found = |name: &str| dirs.iter().any(|d| d.join(name).is_file());
    for (cfg, tools) in TOOLS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let all = tools
            .iter()
            .all(|alternatives| alternatives.split('|').any(found));
        if !all && !ci {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    // io_uring: asked of the kernel (a kernel without it, or `kernel.io_uring_disabled`).
    println!("cargo::rustc-check-cfg=cfg(missing_uring)");
    if !ci && !uring_works() {
        println!("cargo::rustc-cfg=missing_uring");
    }
}

/// Whether `io_uring_setup` gives a ring here.
fn uring_works() -> bool {
    #[repr(C)]
    struct Params([u32; 30]);
    let mut params = Params([0; 30]);
    // SAFETY: io_uring_setup(2) reads and writes only the parameter block passed, which is
    // at least as large as the kernel's `struct io_uring_params` (120 bytes); the ring's
    // descriptor, if any, is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, &mut params as *mut Params) };
    if fd >= 0 {
        // SAFETY: `fd` was just returned by the kernel and is owned here.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    false
}

//! weir on io_uring: weir's application served by the library's [`weir_uring::run`].

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

fn main() {
    let asks_help = std::env::args()
        .skip(1)
        .any(|a| matches!(a.as_str(), "--help" | "-h" | "--version" | "-V"));
    if !asks_help {
        if let Some(why) = weir_uring::unavailable() {
            eprintln!("weir-uring: io_uring is not available: {why}; run weir-tokio instead");
            std::process::exit(1);
        }
    }
    let server = weir_kit::serve::start("weir-uring", "uring", weir_core::App::from_setup);
    std::process::exit(weir_uring::run(server))
}

//! A service of your own on weir-uring, with everything the `weir-uring` binary gets (the
//! service and the checks are weir-tokio's example's, shared):
//! `cargo run --release -p weir-uring --example own_service`

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

#[path = "../../runtime-tokio/examples/own_service/greeter.rs"]
mod greeter;

fn main() {
    if let Some(why) = weir_uring::unavailable() {
        eprintln!("own_service: io_uring is not available: {why}");
        std::process::exit(1);
    }
    greeter::main("uring", weir_uring::run)
}

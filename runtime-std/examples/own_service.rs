//! A service of your own on weir-std, with everything the `weir-std` binary gets (the
//! service and the checks are weir-tokio's example's, shared):
//! `cargo run --release -p weir-std --example own_service`

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

#[path = "../../runtime-tokio/examples/own_service/greeter.rs"]
mod greeter;

fn main() {
    greeter::main("std", weir_std::run)
}

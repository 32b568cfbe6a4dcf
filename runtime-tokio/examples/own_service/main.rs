//! A service of your own on weir-tokio, with everything the `weir-tokio` binary gets
//! (greeter.rs has the service and the checks):
//! `cargo run --release -p weir-tokio --example own_service`

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

mod greeter;

fn main() {
    greeter::main("tokio", weir_tokio::run)
}

//! A service of your own on weir-smol, with everything the `weir-smol` binary gets (the
//! service and the checks are weir-tokio's example's, shared):
//! `cargo run --release -p weir-smol --example own_service`

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

#[path = "../../runtime-tokio/examples/own_service/greeter.rs"]
mod greeter;

fn main() {
    greeter::main("smol", weir_smol::run)
}

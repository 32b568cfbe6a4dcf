//! weir on smol: weir's application served by the library's [`weir_smol::run`].

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

fn main() {
    let server = weir_kit::serve::start("weir-smol", "smol", weir_core::App::from_setup);
    std::process::exit(weir_smol::run(server))
}

//! weir on blocking `std::net`: weir's application served by the library's
//! [`weir_std::run`].

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

fn main() {
    let server = weir_kit::serve::start("weir-std", "std", weir_core::App::from_setup);
    std::process::exit(weir_std::run(server))
}

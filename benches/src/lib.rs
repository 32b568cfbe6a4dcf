//! weir-bench: the `weir-load` load generator, the hyper reference server, the
//! cross-runtime comparison and the black-box tests shared by the three runtimes.

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

pub mod compare;
pub mod load;

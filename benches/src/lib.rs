//! weir-bench: the `weir-load` load generator, the hyper reference server, the
//! cross-runtime comparison and the black-box tests shared by the three runtimes.

pub mod compare;
pub mod load;

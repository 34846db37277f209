//! bench: deterministic load generator and benchmarks.

pub mod fixtures;

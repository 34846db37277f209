//! bench: deterministic load generator and benchmarks (placeholder).

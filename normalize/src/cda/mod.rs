//! CDA R2 writers (placeholder).

//! dmpflow binary (placeholder).
fn main() {}

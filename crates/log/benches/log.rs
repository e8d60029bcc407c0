//! Log store benchmarks (being written).
fn main() {}

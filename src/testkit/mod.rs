//! Support the tests and the benchmarks share (behind the `testkit` feature, which the tests and
//! benches turn on through the crate's dev-dependency on itself; a release build has none of
//! it).

pub mod kafka;

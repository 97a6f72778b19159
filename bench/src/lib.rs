//! The library half of `warren-bench`: `warren-perf`'s load generator, callable from tests with a [`perf::Config`],
//! and `warren-demo`'s traffic ([`demo`]).

pub mod demo;
pub mod perf;

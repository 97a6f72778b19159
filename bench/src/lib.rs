//! The library half of `warren-bench`: `warren-perf`'s load generator, callable from tests with a [`perf::Config`].

pub mod perf;

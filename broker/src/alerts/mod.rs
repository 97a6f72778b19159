//! Alert rules evaluated in the broker (issue 18; the plan is `docs/alerts-design.md`). So far: the rules' shape
//! ([`rule`]) and the state machine that turns one measured value per tick into transitions ([`eval`]). Neither does
//! I/O or reads a clock: the caller passes the value and the time, so both are tested with plain numbers.

pub mod eval;
pub mod rule;

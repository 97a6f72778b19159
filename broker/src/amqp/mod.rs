//! The AMQP 0-9-1 protocol layer: codec (pure), errors and reply codes, the per-connection task, and the
//! per-channel state machine.

pub mod access;
pub mod basic;
pub mod channel;
pub mod codec;
pub mod connection;
pub mod declare;
pub mod error;
pub mod nesting;
pub mod properties;
pub mod stream;
pub mod unacked;

//! STOMP 1.2 (and 1.0/1.1), the first part of issue 16's second protocol: [`codec`], the frame codec. The listener
//! and the session that map STOMP destinations onto exchanges and queues are not written yet.

pub mod codec;

//! Sockets and the bytes that cross them: the listeners, a connection's input
//! buffer and output queue, and `Payload`, bytes handed over without a copy.
//! (TLS and the PROXY protocol will sit here, between the socket and the
//! connection.)

pub(crate) mod input;
pub(crate) mod listen;
pub(crate) mod output;
pub mod payload;

//! Sockets and the bytes that cross them: the listeners (TCP, Unix, handed
//! in), a connection's socket and peer, its input buffer and output queue, and `Payload`, bytes handed over without a copy.
//! A TLS connection's socket reads and writes through its session (`tls/`,
//! the layer below); the PROXY protocol will sit here, between the socket
//! and the connection.

pub(crate) mod input;
pub(crate) mod listen;
pub(crate) mod output;
pub mod payload;
pub(crate) mod peer;
pub(crate) mod stream;
pub(crate) mod systemd;
pub(crate) mod unix_path;

//! Sockets and the bytes that cross them: the listeners (TCP, Unix, handed
//! in), a connection's socket and peer, its input buffer and output queue, and `Payload`, bytes handed over without a copy.
//! The PROXY protocol header a load balancer opens a connection with is read
//! here too (`proxy_protocol`). A TLS connection's socket reads and writes
//! through its session (`tls/`, the layer below).

pub(crate) mod input;
pub(crate) mod listen;
pub(crate) mod output;
pub mod payload;
pub(crate) mod peer;
pub mod proxy_protocol;
pub(crate) mod stream;
pub(crate) mod systemd;
pub(crate) mod unix_path;

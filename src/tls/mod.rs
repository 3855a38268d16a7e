//! TLS with rustls, between a connection's socket and its bytes: how a
//! listener speaks it (`TlsSetup`, built into an `Acceptor` at start and
//! reload), one connection's session driven without blocking on the
//! worker's loop (`session`), the move into kernel TLS after the handshake
//! (`ktls`), and what a handler learns of it (`TlsInfo`).
//!
//! The crypto provider is ring's: it builds with a C compiler alone.

pub(crate) mod acceptor;
mod certs;
pub(crate) mod info;
mod ktls;
pub(crate) mod session;
pub(crate) mod setup;
mod wire;

pub use info::TlsInfo;
pub use setup::{ClientAuth, TlsSetup, TLS_1_2, TLS_1_3};

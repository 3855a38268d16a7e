//! libwarpcore: a multi-core HTTP/1.1 server engine with a C API.
//!
//! One event loop per worker (mio/epoll), each with its own `SO_REUSEPORT`
//! listener, connections and buffers; requests are parsed with httparse and
//! answered through a [`Handler`]. The C API lives in [`ffi`]; the safe core
//! knows nothing about C.

#![deny(missing_docs)]

mod buffer;
pub mod config;
mod conn;
pub mod error;
pub mod ffi;
mod file;
pub mod handler;
pub mod http;
mod output;
pub mod server;
mod sys;
mod timer;
mod worker;

pub use config::Config;
pub use error::{Error, ErrorKind};
pub use file::{FileCacheStats, MountSpec};
pub use handler::{Handler, Request, RespondError, Response};
pub use server::Server;

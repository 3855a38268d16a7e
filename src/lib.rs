//! libwarpcore: a multi-core HTTP/1.1 server engine with a C API.
//!
//! One event loop per worker (mio/epoll), each with its own `SO_REUSEPORT`
//! listener, connections and buffers; requests are parsed with httparse and
//! answered through a [`Handler`]. The C API lives in [`ffi`]; the safe core
//! knows nothing about C.

#![deny(missing_docs)]

mod buffer;
mod coalesce;
pub mod config;
mod conn;
mod deferred;
pub mod error;
pub mod ffi;
mod file;
mod held;
pub mod handler;
pub mod http;
pub mod log;
mod out;
mod payload;
mod quiet_panic;
pub mod server;
mod settings;
mod stats;
mod sys;
mod stream;
mod timer;
mod worker;

pub use config::Config;
pub use deferred::Deferred;
pub use file::{FileCacheStats, MountSpec};
pub use payload::Payload;
pub use error::{Error, ErrorKind};
pub use handler::{Handler, Request, RespondError, Response};
pub use server::{Server, ShutdownReport};
pub use stats::Stats;
pub use log::{AccessLogSink, AccessLogTarget, ErrorLog, Level};

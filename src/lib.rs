//! libwarpcore: a multi-core HTTP/1.1 server engine with a C API.
//!
//! One event loop per worker (mio/epoll), each with its own `SO_REUSEPORT`
//! listener, connections and buffers; requests are parsed with httparse and
//! answered through a [`Handler`]. The C API lives in [`ffi`]; the safe core
//! knows nothing about C.
//!
//! The folders are layers, and each imports only the layers below it:
//!
//! | folder | what it holds |
//! | --- | --- |
//! | `ffi/` | the C API: handles, result codes, the panic boundary |
//! | `server/` | a running server: start, reload, stats, shutdown |
//! | `worker/` | one worker's event loop: accept, poll, coalescing, held answers, the coarse clock, what it shares with the server |
//! | `conn/` | one connection's state machine, its deadline, and the context it reaches its worker through |
//! | `config/` | the settings an embedder gives (`Config`) and the snapshot workers apply (`Settings`) |
//! | `websocket/` | WebSocket (RFC 6455) on an upgraded connection |
//! | `app/` | what an application sees: `Handler`, `Request`, `Response`, `Deferred`, `Upgraded`, answering with a file |
//! | `net/` | sockets and bytes: listeners, a connection's input buffer and output queue, `Payload` |
//! | `observe/` | the error and access logs, the counters |
//! | `tls/` | TLS with rustls: a listener's setup, a connection's session on the worker's loop, kernel TLS |
//! | `http/` | HTTP/1.1 itself: head parsing, chunked decoding, composing, stream framing, date, status |
//! | `file/` | static mounts, fd and file-info caches, ranges, conditionals, MIME types |
//! | `sys/` | thin wrappers over Linux calls (the only `unsafe` outside `ffi/`) |

#![deny(missing_docs)]

mod app;
pub mod config;
mod conn;
pub mod error;
pub mod ffi;
mod file;
pub mod http;
mod net;
mod observe;
pub mod server;
mod sys;
pub mod tls;
pub mod websocket;
mod worker;

// Public paths kept from the flat layout that embedders, tests and fuzz targets use.
pub use app::handler;
pub use app::upgrade;
pub use observe::log;

pub use app::body::{BodyError, BodyStream};
pub use app::deferred::Deferred;
pub use app::handler::{Handler, Request, RespondError, Response};
pub use app::hooks::{ConnHooks, Connection};
pub use app::upgrade::{UpgradeError, UpgradeEvents, UpgradeRequest, Upgraded};
pub use config::Config;
pub use error::{Error, ErrorKind};
pub use file::{FileCacheStats, MountSpec};
pub use net::payload::Payload;
pub use net::peer::Peer;
pub use net::proxy_protocol::{ProxyProtocol, ProxyProtocols};
pub use net::unix_path::UnixPerms;
pub use observe::log::{AccessLogSink, AccessLogTarget, ErrorLog, Level};
pub use observe::stats::Stats;
pub use server::{Server, ShutdownReport};
pub use tls::{ClientAuth, TlsInfo, TlsSetup};

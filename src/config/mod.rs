//! Server settings with their defaults and validation.

pub(crate) mod settings;

use std::sync::Arc;
use std::time::Duration;

use crate::app::handler::Handler;
use crate::app::hooks::ConnHooks;
use crate::error::{Error, ErrorKind};
use crate::file::MountSpec;
use crate::http::head::{HeadLimits, MAX_HEADERS};
use crate::net::listen::ListenSpec;
use crate::net::proxy_protocol::ProxyProtocols;
use crate::net::unix_path::UnixPerms;
use crate::observe::log::{AccessLogTarget, ErrorLog};
use crate::tls::TlsSetup;

/// Where a server listens when its config names no listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Everything a server is started with. Cloning is cheap (the handler is shared).
#[derive(Clone)]
pub struct Config {
    /// The first listener: `HOST:PORT` (port 0 picks a free port), or any
    /// form `listeners` takes; empty for none (then `listeners` alone).
    /// Default `127.0.0.1:8080`.
    pub listen: String,
    /// More listeners after `listen`: `HOST:PORT`, `[V6]:PORT`, `unix:PATH`
    /// (a Unix socket file, made at start, removed at the end), `fd://N` (a
    /// listening socket handed in, which the server then owns and closes).
    /// Default none.
    pub listeners: Vec<String>,
    /// The mode and owner of the Unix socket files the server makes.
    pub unix_perms: UnixPerms,
    /// The listeners that speak TLS, by address (as `listen` or `listeners`
    /// names it), with how (see `add_tls_listener`). Default none.
    pub tls: Vec<(String, TlsSetup)>,
    /// Event loops; 0 means one per available core. Default 0.
    pub workers: usize,
    /// When true, `start` spawns no threads: the embedder calls
    /// `Server::run_worker(i)` once for each worker index. Default false.
    pub external_workers: bool,
    /// Join other processes listening on the same address with `SO_REUSEPORT`
    /// (a pre-fork style process group) instead of refusing a port in use.
    /// Default false.
    pub share_port: bool,
    /// Called for every request on the worker thread that read it.
    pub handler: Option<Arc<dyn Handler>>,
    /// The `Server` header; empty sends none. Default `warpcore`.
    pub server_name: Vec<u8>,
    /// Largest request body accepted, in bytes; more is answered 413 (or,
    /// once the answer began, the connection closes). At most 1 TiB, or
    /// `u64::MAX` for no limit. Default 1 MiB.
    pub max_body_size: u64,
    /// Largest body handed to the handler whole, in `Request::body`; a larger
    /// one that did not arrive with its head streams (`Request::body_follows`,
    /// `Response::body`), through a 64 KiB window. At most 64 MiB. Default 1 MiB.
    pub whole_body_max: usize,
    /// Largest request head (request line and header fields). Default 32 KiB; more → 431.
    pub max_head_size: usize,
    /// Longest request line. Default 8 KiB; more → 414.
    pub max_request_line: usize,
    /// Most header fields in a request, at most 100. Default 100; more → 431.
    pub max_header_count: usize,
    /// Time for a whole request head to arrive from its first byte. Default 30 s.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request. Default 15 s.
    pub idle_timeout: Duration,
    /// Time without progress while a request body is being received. Default 30 s.
    pub body_timeout: Duration,
    /// Time without progress while a response cannot be written. Default 30 s.
    pub write_timeout: Duration,
    /// Time a deferred answer may take to begin (its head: a whole answer or
    /// the start of a stream) after the handler returned; past it the client
    /// gets 503, the connection closes and the handle's calls get `Closed`.
    /// A stream that has begun is bounded by the write timeout instead.
    /// Default 60 s (nginx's `proxy_read_timeout`).
    pub answer_timeout: Duration,
    /// Most connections open at once across the server; at the limit accepting
    /// pauses until one closes. Default 16384.
    pub max_connections: usize,
    /// Where access-log lines go (Apache combined format); None (the default)
    /// logs nothing.
    pub access_log: Option<AccessLogTarget>,
    /// Receives accept failures, listener errors and contained panics. None by default.
    pub error_log: Option<Arc<dyn ErrorLog>>,
    /// Listen backlog per worker socket. Default 1024.
    pub backlog: u32,
    /// Static mounts: requests under a prefix are served from a directory by
    /// the engine, without calling the handler. Default none. A reload
    /// replaces the whole set.
    pub static_mounts: Vec<MountSpec>,
    /// How long an open file stays cached after its last use; 0 disables the
    /// fd cache. Default 10 s.
    pub fd_cache_lifetime: Duration,
    /// How long a path's file information (stat, ETag, Last-Modified) is
    /// trusted without a change being reported; 0 disables the cache. Default 1 s.
    pub file_info_lifetime: Duration,
    /// Whether static mounts serve dotfiles: paths below a mount with a segment
    /// that starts with `.` (`.env`, `.git/config`, `a/.hidden`), percent-encoded
    /// or not. When false, the default, such paths are answered 404, as if
    /// absent, except `/.well-known/…` (RFC 8615: ACME challenges, security.txt)
    /// under a mount at `/`. Handlers' files (`respond_file`) are not affected.
    pub static_dotfiles: bool,
    /// Bytes a streamed response may have queued for its connection before a
    /// later write blocks (on a thread of the application's) or is refused
    /// with `RespondError::WouldBlock` (on a worker thread, which never
    /// waits). Default 1 MiB.
    pub stream_high_water: usize,
    /// How long a busy worker sleeps before polling again, so that one wake-up
    /// gathers many events (see `worker::coalesce`); zero turns it off. A worker naps
    /// only while measuring shows its event rate holds; at light load or with
    /// a few clients waiting on each answer, only during short trials.
    /// Default 50 µs, at most 1000 µs.
    pub coalesce_wait: Duration,
    /// Whether the worker threads, external ones included, run under Linux's
    /// `SCHED_BATCH` policy: a woken batch thread does not preempt the one
    /// running, so when answers come from other threads the worker and the
    /// answering threads hand work over in batches instead of a context
    /// switch each. Only threads under `SCHED_OTHER` are moved, and they go
    /// back to it when their worker ends or a reload turns this off (see
    /// `worker::sched`). Default false.
    pub sched_batch: bool,
    /// Whether a client's FIN ends its pending deferred requests. When a
    /// client half-closes while the answer at the front of its connection is
    /// deferred (not begun, or streaming), and no complete request is left
    /// in its input to handle, the connection lets go of the requests still
    /// pending one to two seconds later (an answer given meanwhile still
    /// goes out) as
    /// for a reset: their close hooks run (`Deferred::on_close`),
    /// their handles get `Closed`, nothing more is written and the
    /// connection closes — nginx's client abort (499), ASGI's
    /// `http.disconnect` at end of stream. When false, the default, a FIN
    /// only means the client sends no more (RFC 9112 §9.6): the answers
    /// still go out, then the connection closes. A request whose body still
    /// streams in, an upgraded connection, and answers complete and being
    /// written are not affected.
    pub client_fin_ends_request: bool,
    /// Which listeners' connections start with a PROXY protocol header
    /// (see `net::proxy_protocol`). Default: none.
    pub proxy_protocol: ProxyProtocols,
    /// Told of each connection as it opens (and may refuse it) and closes
    /// (see `app::hooks`). Default none.
    pub conn_hooks: Option<Arc<dyn ConnHooks>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.to_owned(),
            listeners: Vec::new(),
            unix_perms: UnixPerms::default(),
            tls: Vec::new(),
            workers: 0,
            external_workers: false,
            share_port: false,
            handler: None,
            server_name: b"warpcore".to_vec(),
            max_body_size: 1 << 20,
            whole_body_max: 1 << 20,
            max_head_size: 32 * 1024,
            max_request_line: 8 * 1024,
            max_header_count: MAX_HEADERS,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            answer_timeout: Duration::from_secs(60),
            max_connections: 16384,
            access_log: None,
            error_log: None,
            backlog: 1024,
            static_mounts: Vec::new(),
            fd_cache_lifetime: Duration::from_secs(10),
            file_info_lifetime: Duration::from_secs(1),
            static_dotfiles: false,
            stream_high_water: 1 << 20,
            coalesce_wait: Duration::from_micros(50),
            sched_batch: false,
            client_fin_ends_request: false,
            proxy_protocol: ProxyProtocols::default(),
            conn_hooks: None,
        }
    }
}

impl Config {
    /// Checks every setting and that a handler is set.
    pub fn validate(&self) -> Result<(), Error> {
        if self.handler.is_none() {
            return Err(Error::new(ErrorKind::InvalidArgument, "no handler is set"));
        }
        self.validate_settings()
    }

    /// Checks every setting but the handler; the message names the one at fault.
    pub fn validate_settings(&self) -> Result<(), Error> {
        let invalid = |m: &str| Err(Error::new(ErrorKind::InvalidArgument, m));
        if self.workers > 1024 {
            return invalid("workers must be at most 1024");
        }
        if self.max_header_count == 0 || self.max_header_count > MAX_HEADERS {
            return invalid("max_header_count must be between 1 and 100");
        }
        if self.max_request_line < 16 || self.max_head_size < self.max_request_line {
            return invalid("max_request_line must be at least 16 and at most max_head_size");
        }
        if self.max_head_size > 1 << 20 {
            return invalid("max_head_size must be at most 1 MiB");
        }
        if self.max_body_size > 1 << 40 && self.max_body_size != u64::MAX {
            return invalid("max_body_size must be at most 1 TiB, or u64::MAX for no limit");
        }
        if self.whole_body_max > 64 << 20 {
            return invalid("whole_body_max must be at most 64 MiB");
        }
        if self.server_name.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return invalid("server_name must not contain control characters");
        }
        for (name, t) in [
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_timeout", self.body_timeout),
            ("write_timeout", self.write_timeout),
            ("answer_timeout", self.answer_timeout),
        ] {
            if t < Duration::from_secs(1) || t > Duration::from_secs(86_400) {
                return Err(Error::new(ErrorKind::InvalidArgument, format!("{name} must be between 1 s and 1 day")));
            }
        }
        if self.stream_high_water < 1024 || self.stream_high_water > 1 << 30 {
            return invalid("stream_high_water must be between 1 KiB and 1 GiB");
        }
        if self.max_connections == 0 || self.max_connections > 10_000_000 {
            return invalid("max_connections must be between 1 and 10000000");
        }
        if self.backlog == 0 || self.backlog > 65_535 {
            return invalid("backlog must be between 1 and 65535");
        }
        if self.fd_cache_lifetime > Duration::from_secs(86_400) || self.file_info_lifetime > Duration::from_secs(86_400)
        {
            return invalid("file cache lifetimes must be at most 1 day");
        }
        if self.coalesce_wait > Duration::from_millis(1) {
            return invalid("coalesce_wait must be at most 1000 µs");
        }
        if self.unix_perms.mode.is_some_and(|m| m > 0o7777) {
            return invalid("the Unix socket mode must be at most 0o7777");
        }
        Ok(())
    }

    /// Adds a listener (see `listeners`), checking its form (a host name is
    /// resolved when the server starts). `listen` stays the first listener:
    /// empty it for a server without it.
    pub fn add_listener(&mut self, address: &str) -> Result<(), Error> {
        ListenSpec::parse(address)?;
        self.listeners.push(address.to_owned());
        Ok(())
    }

    /// Adds a listener (as `add_listener`) that speaks TLS as `setup` says;
    /// an address that is a listener already becomes TLS (or has its setup
    /// replaced) instead. True when a listener was added. Certificate files
    /// are read again at every start and reload.
    pub fn add_tls_listener(&mut self, address: &str, setup: TlsSetup) -> Result<bool, Error> {
        setup.validate()?;
        let added = !self.listen_addresses().contains(&address);
        if added {
            self.add_listener(address)?;
        }
        self.tls.retain(|(a, _)| a != address);
        self.tls.push((address.to_owned(), setup));
        Ok(added)
    }

    /// systemd socket activation: adds the listening sockets the service
    /// manager passed to this process (`LISTEN_PID`, `LISTEN_FDS`) as `fd://N`
    /// listeners, removes those variables from the environment (which races
    /// with other threads reading it: call this before starting any), and
    /// returns how many it added; 0 when the variables are not this process's.
    pub fn add_systemd_listeners(&mut self) -> Result<usize, Error> {
        let fds = crate::net::systemd::take_listen_fds()?;
        self.listeners.extend(fds.iter().map(|fd| format!("fd://{fd}")));
        Ok(fds.len())
    }

    /// Every listener's address, in order: `listen` (unless empty), then
    /// `listeners`. With neither, `listen` alone, which then does not parse.
    pub fn listen_addresses(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Some(self.listen.as_str()).filter(|l| !l.is_empty()).into_iter().collect();
        all.extend(self.listeners.iter().map(String::as_str));
        if all.is_empty() {
            all.push(&self.listen);
        }
        all
    }

    /// The worker count with 0 resolved to the number of available cores.
    pub fn resolved_workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }

    pub(crate) fn head_limits(&self) -> HeadLimits {
        HeadLimits {
            max_head_bytes: self.max_head_size,
            max_request_line: self.max_request_line,
            max_header_count: self.max_header_count,
        }
    }
}

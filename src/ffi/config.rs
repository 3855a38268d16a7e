//! `warpcore_config`: the settings a server starts with.

use std::ffi::c_void;
use std::time::Duration;

use super::cast::{try_mut, try_slice, write_out};
use super::handler::{warpcore_answering_cb, warpcore_handler_cb, CHandler};
use super::log::{warpcore_access_log_cb, warpcore_error_log_cb, CAccessLog, CErrorLog};
use super::result::{fail, warpcore_result};
use crate::config::Config;
use crate::observe::log::AccessLogTarget;

symbol_versions!();

/// Server settings, filled in with setters and read by `warpcore_server_start`.
///
/// Owned by the caller: made by `warpcore_config_new`, released by
/// `warpcore_config_free`. Starting a server copies what it needs, so a config
/// may be changed, reused or freed right after. Not thread-safe: do not use one
/// config from two threads at once.
pub struct warpcore_config {
    pub(crate) inner: Config,
    /// `warpcore_config_set_listen` was called: its address stays the first
    /// listener when others are added (else adding one drops the default).
    pub(crate) listen_explicit: bool,
}

/// Makes a config with the defaults (listen `127.0.0.1:8080`, one worker per
/// core, `Server: warpcore`, the limits and timeouts documented on each setter)
/// and writes it to `*out`. It has no handler yet: set one before starting.
#[no_mangle]
pub extern "C" fn warpcore_config_new(out: *mut *mut warpcore_config) -> warpcore_result {
    ffi_boundary!({
        if out.is_null() {
            return fail(warpcore_result::NullArgument, "out is NULL");
        }
        let config = Box::new(warpcore_config { inner: Config::default(), listen_explicit: false });
        write_out(out, Box::into_raw(config));
        warpcore_result::Ok
    })
}

/// Frees a config made by `warpcore_config_new`. NULL is ignored.
#[no_mangle]
pub extern "C" fn warpcore_config_free(config: *mut warpcore_config) {
    let _ = ffi_boundary!({
        if !config.is_null() {
            // SAFETY: a non-NULL config came from `Box::into_raw` in `warpcore_config_new`
            // and the caller gives up its ownership here.
            drop(unsafe { Box::from_raw(config) });
        }
        warpcore_result::Ok
    });
}

/// Applies `change` to a copy, validates it, and keeps it only when valid.
pub(crate) fn update(config: *mut warpcore_config, change: impl FnOnce(&mut Config)) -> warpcore_result {
    let config = ok_or_return!(try_mut(config, "config"));
    let mut candidate = config.inner.clone();
    change(&mut candidate);
    match candidate.validate_settings() {
        Ok(()) => {
            config.inner = candidate;
            warpcore_result::Ok
        }
        Err(e) => e.into(),
    }
}

/// Sets the listen address, `HOST:PORT` (`[::1]:80` for IPv6), `len` bytes at
/// `address` (no NUL needed). Port 0 picks a free port: read it with
/// `warpcore_server_port`. Checked when the server starts (`WARPCORE_RESULT_INVALID_ADDRESS`).
/// It is the server's first listener, before those `warpcore_config_add_listener`
/// adds (which takes the other address forms too); it may be any of those forms.
#[no_mangle]
pub extern "C" fn warpcore_config_set_listen(
    config: *mut warpcore_config,
    address: *const u8,
    len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let bytes = ok_or_return!(try_slice(address, len, "address"));
        let Ok(text) = std::str::from_utf8(bytes) else {
            return fail(warpcore_result::InvalidAddress, "listen address is not UTF-8");
        };
        let text = text.to_owned();
        let r = update(config, |c| c.listen = text);
        if r == warpcore_result::Ok {
            if let Ok(config) = super::cast::try_mut(config, "config") {
                config.listen_explicit = true;
            }
        }
        r
    })
}

/// Sets the number of workers (event loops, each a thread with its own
/// listener). 0, the default, means one per available core. At most 1024.
#[no_mangle]
pub extern "C" fn warpcore_config_set_workers(config: *mut warpcore_config, workers: u32) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.workers = workers as usize) })
}

/// When `external` is true, `warpcore_server_start` starts no threads: the
/// embedder calls `warpcore_server_run_worker` once for each worker index from
/// threads it owns, and handlers run on those threads. Default false.
#[no_mangle]
pub extern "C" fn warpcore_config_set_external_workers(
    config: *mut warpcore_config,
    external: bool,
) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.external_workers = external) })
}

/// When `share` is true, the server joins other processes (of the same user)
/// that listen on the same address with `SO_REUSEPORT`, and the kernel spreads
/// connections over all of them: how several processes serve one port. When
/// false, the default, a port in use is `WARPCORE_RESULT_ADDRESS_IN_USE`.
#[no_mangle]
pub extern "C" fn warpcore_config_set_share_port(config: *mut warpcore_config, share: bool) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.share_port = share) })
}

/// Sets the request handler and the `userdata` passed to it. The handler is
/// called on worker threads, several at once when there are several workers,
/// so it and `userdata` must be thread-safe; `userdata` must stay valid until
/// the server is freed. `handler` must not be NULL.
#[no_mangle]
pub extern "C" fn warpcore_config_set_handler(
    config: *mut warpcore_config,
    handler: warpcore_handler_cb,
    userdata: *mut c_void,
) -> warpcore_result {
    ffi_boundary!({
        let Some(cb) = handler else {
            return fail(warpcore_result::NullArgument, "handler is NULL");
        };
        let adapter = CHandler::new(cb, userdata);
        update(config, |c| c.handler = Some(std::sync::Arc::new(adapter)))
    })
}

/// Sets an answering handler (see `warpcore_answering_cb`) and the `userdata`
/// passed to it, in place of a handler set by `warpcore_config_set_handler`
/// (the last of the two calls wins). Thread-safety and lifetime as for
/// `warpcore_config_set_handler`. `handler` must not be NULL.
#[no_mangle]
pub extern "C" fn warpcore_config_set_answering_handler(
    config: *mut warpcore_config,
    handler: warpcore_answering_cb,
    userdata: *mut c_void,
) -> warpcore_result {
    ffi_boundary!({
        let Some(cb) = handler else {
            return fail(warpcore_result::NullArgument, "handler is NULL");
        };
        let adapter = CHandler::answering(cb, userdata);
        update(config, |c| c.handler = Some(std::sync::Arc::new(adapter)))
    })
}

/// Sets the `Server` header value (`len` bytes, no control characters); an
/// empty name sends no `Server` header. Default `warpcore`.
#[no_mangle]
pub extern "C" fn warpcore_config_set_server_name(
    config: *mut warpcore_config,
    name: *const u8,
    len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let name = match try_slice(name, len, "name") {
            Ok(n) => n.to_vec(),
            Err(e) => return e,
        };
        update(config, |c| c.server_name = name)
    })
}

/// Sets the largest request body accepted, in bytes (default 1 MiB, at most
/// 1 TiB, or `UINT64_MAX` for no limit). A larger body is answered `413` and
/// the connection closed; one that streams and passes the limit after its
/// answer began has its connection closed.
#[no_mangle]
pub extern "C" fn warpcore_config_set_max_body_size(config: *mut warpcore_config, bytes: u64) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.max_body_size = bytes) })
}

/// Sets the largest body handed to the handler whole, in `request->body`
/// (default 1 MiB, at most 64 MiB). A larger body that did not arrive with its
/// head streams instead: the handler is called once the head is in, with
/// `request->body_follows` set, and reads the body with
/// `warpcore_response_body` and `warpcore_body_read` as it arrives.
#[no_mangle]
pub extern "C" fn warpcore_config_set_whole_body_max(config: *mut warpcore_config, bytes: u64) -> warpcore_result {
    ffi_boundary!({
        let Ok(bytes) = usize::try_from(bytes) else {
            return fail(warpcore_result::InvalidArgument, "whole_body_max must be at most 64 MiB");
        };
        update(config, |c| c.whole_body_max = bytes)
    })
}

/// Sets the largest request head, request line and header fields together, in
/// bytes (default 32 KiB, at most 1 MiB). A larger head is answered `431`.
#[no_mangle]
pub extern "C" fn warpcore_config_set_max_head_size(config: *mut warpcore_config, bytes: u32) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.max_head_size = bytes as usize) })
}

/// Sets the longest request line in bytes (default 8 KiB, at least 16, at most
/// the head size). A longer one is answered `414`.
#[no_mangle]
pub extern "C" fn warpcore_config_set_max_request_line(config: *mut warpcore_config, bytes: u32) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.max_request_line = bytes as usize) })
}

/// Sets the most header fields a request may have (1 to 100, default 100).
/// More is answered `431`.
#[no_mangle]
pub extern "C" fn warpcore_config_set_max_header_count(config: *mut warpcore_config, count: u32) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.max_header_count = count as usize) })
}

/// Sets how many bytes a streamed response may have queued for its connection
/// before a later `warpcore_response_write` blocks (on a thread of the
/// application's) or returns `WARPCORE_RESULT_WOULD_BLOCK` (on a worker
/// thread, which never waits) (1 KiB to 1 GiB, default 1 MiB).
#[no_mangle]
pub extern "C" fn warpcore_config_set_stream_high_water(config: *mut warpcore_config, bytes: u64) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.stream_high_water = bytes.min(usize::MAX as u64) as usize) })
}

/// Sets how long a busy worker sleeps before it polls again, in microseconds
/// (0 to 1000, default 50; 0 turns it off). The nap lets the events arriving
/// meanwhile queue up, so that one wake-up of the worker gathers many of them:
/// fewer wake-ups and system calls per request, at the cost of up to one nap
/// of added latency, which the OS timer slack lengthens (50 µs by default)
/// (a network card's interrupt coalescing, in software). A worker naps only
/// while measuring shows that its event rate does not fall for it: at light
/// load, with a few clients that each wait for their answer, or when it is
/// busy all the time, it naps only during short trials (10 ms, at most every
/// 120 ms, backing off to 1.6 s). It does not nap while answers from other
/// threads wait. `coalesce_naps` in `warpcore_stats` counts the naps. Applies
/// on `warpcore_server_reload` too.
#[no_mangle]
pub extern "C" fn warpcore_config_set_coalesce_wait(
    config: *mut warpcore_config,
    microseconds: u32,
) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.coalesce_wait = Duration::from_micros(microseconds.into())) })
}

/// When `on` is true, the worker threads run under Linux's `SCHED_BATCH`
/// scheduling policy; false, the default, leaves them as they are.
///
/// A woken `SCHED_BATCH` thread does not preempt the thread running on its
/// core: it waits until that one blocks or its time slice ends. That helps
/// when answers come from other threads (deferred answers from a thread pool
/// or a managed runtime's scheduler): the worker then reads every ready
/// connection before the answering thread runs, and that thread answers its
/// whole batch before the worker writes, instead of the two preempting each
/// other once per request when they share a core. It does not help a handler
/// that answers inside the call, and it may add latency (up to a time slice)
/// for other work on a loaded machine. Move the answering threads too, with
/// `warpcore_thread_set_sched_batch`.
///
/// It applies to the library's worker threads and to the threads that run
/// `warpcore_server_run_worker` (external workers), from the moment each
/// starts its loop. Only a thread under `SCHED_OTHER` (the default) is moved;
/// one under another policy (real-time, idle, or `SCHED_BATCH` already) is
/// left alone. A moved thread goes back to `SCHED_OTHER` when its worker ends
/// (before `warpcore_server_run_worker` returns) and when
/// `warpcore_server_reload` turns this off: the setting applies on reload
/// too. Threads a worker thread starts while under `SCHED_BATCH` (in a
/// handler) inherit the policy and keep it. Linux only; if the system refuses
/// the change (a seccomp filter, say), the workers run on unchanged and the
/// first failure is reported to the error log as a warning.
#[no_mangle]
pub extern "C" fn warpcore_config_set_sched_batch(config: *mut warpcore_config, on: bool) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.sched_batch = on) })
}

/// Sets whether a client's FIN ends its pending deferred requests (default
/// false).
///
/// When a client half-closes its connection (sends its FIN) while the answer
/// at the front of that connection is deferred — the handler returned
/// without finishing it, and it has not begun, or it is streaming — and no
/// complete request it sent is left to handle, then with this on the
/// connection lets go of the requests still pending a second later (between
/// one and two: deadlines are checked once a second) as if the client had
/// reset it — an answer given within that grace still goes out, as a client
/// that sent its request and half-closed at once (`printf ... | nc -N`)
/// waits for it:
/// their close callbacks run (`warpcore_response_on_close`), every later call
/// on their handles returns `WARPCORE_RESULT_CLOSED`, nothing more is written
/// to the client, and the connection closes. Answers already complete before
/// them (given inside the handler call) are still sent first. This is how
/// nginx takes such a close (a client abort, logged 499) and how ASGI servers
/// tell a long poll or an event stream whose browser tab closed
/// (`http.disconnect`).
///
/// When false, a FIN only means the client sends nothing more (RFC 9112
/// §9.6): its complete requests are still answered, then the connection
/// closes. Either way, a request whose body is still streaming in when the
/// FIN comes has its body reader told the body ended early (the answer still
/// goes out); complete requests that the FIN finds waiting in the input
/// behind the pending one, or part of one that may not be handled ahead of
/// it (a chunked body or one large enough to stream, cut by the FIN), keep
/// the half-close (the pending answer is waited for); and a
/// connection that switched protocols (`warpcore_response_upgrade`) reads the
/// end of its stream as before.
///
/// Thread safety: like every config setter, call it from one thread at a
/// time per config. It applies on `warpcore_server_reload` too (connections
/// follow the new value from their next event).
///
/// Errors: `WARPCORE_RESULT_NULL_ARGUMENT` (`config` is NULL).
#[no_mangle]
pub extern "C" fn warpcore_config_set_client_fin_ends_request(
    config: *mut warpcore_config,
    on: bool,
) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.client_fin_ends_request = on) })
}

/// Sets the most connections open at once across the server (default 16384).
/// At the limit, accepting pauses (new connections wait in the listen backlog)
/// until one closes.
#[no_mangle]
pub extern "C" fn warpcore_config_set_max_connections(
    config: *mut warpcore_config,
    connections: u32,
) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.max_connections = connections as usize) })
}

/// Sets the listen queue of each socket the server binds (`listen(2)`'s
/// backlog: connections the kernel has accepted that the server has not yet
/// taken), 1 to 65535, default 1024; the kernel caps it at
/// `net.core.somaxconn`. A connection that finds the queue full waits for its
/// SYN to be sent again (a client sees a slow connect, not a refusal). It
/// applies to the sockets bound when the server starts and to listeners a
/// reload adds; a reload keeps the sockets it had, with their queues. Sockets
/// the server is handed (`fd://N` listeners, systemd's) keep
/// the queue they were given. `WARPCORE_RESULT_INVALID_ARGUMENT` outside the
/// range. Not thread-safe: a config is used by one thread at a time.
#[no_mangle]
pub extern "C" fn warpcore_config_set_backlog(config: *mut warpcore_config, backlog: u32) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.backlog = backlog) })
}

/// Logs every request in Apache combined format to the file at `path` (`len`
/// bytes), appending; created when missing, opened when the server starts or
/// reloads (a failure to open is reported there), reopened by
/// `warpcore_server_reopen_logs`. Lines are buffered per worker and written at
/// least once a second and at shutdown. An empty path (`len` 0) turns the
/// access log off, the default.
#[no_mangle]
pub extern "C" fn warpcore_config_set_access_log_file(
    config: *mut warpcore_config,
    path: *const u8,
    len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let bytes = ok_or_return!(try_slice(path, len, "path"));
        let target = if bytes.is_empty() {
            None
        } else {
            use std::os::unix::ffi::OsStrExt;
            Some(AccessLogTarget::File(std::ffi::OsStr::from_bytes(bytes).into()))
        };
        update(config, |c| c.access_log = target)
    })
}

/// Logs every request in Apache combined format to `callback` instead of a
/// file (see `warpcore_access_log_cb`); NULL turns the access log off.
/// `userdata` must stay valid until the server is freed.
#[no_mangle]
pub extern "C" fn warpcore_config_set_access_log_callback(
    config: *mut warpcore_config,
    callback: warpcore_access_log_cb,
    userdata: *mut c_void,
) -> warpcore_result {
    ffi_boundary!({
        let target =
            callback.map(|callback| AccessLogTarget::Sink(std::sync::Arc::new(CAccessLog { callback, userdata })));
        update(config, |c| c.access_log = target)
    })
}

/// Sends accept failures, listener errors and contained panics to `callback`
/// (see `warpcore_error_log_cb`); NULL, the default, drops them. The library
/// never prints anything itself. `userdata` must stay valid until the server is freed.
#[no_mangle]
pub extern "C" fn warpcore_config_set_error_log(
    config: *mut warpcore_config,
    callback: warpcore_error_log_cb,
    userdata: *mut c_void,
) -> warpcore_result {
    ffi_boundary!({
        let log = callback.map(|callback| {
            std::sync::Arc::new(CErrorLog { callback, userdata }) as std::sync::Arc<dyn crate::observe::log::ErrorLog>
        });
        update(config, |c| c.error_log = log)
    })
}

/// Which wait a timeout bounds, for `warpcore_config_set_timeout`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum warpcore_timeout {
    /// A whole request head must arrive within this time of its first byte,
    /// however slowly it trickles (default 30 s).
    Header = 0,
    /// A keep-alive connection may wait this long for its next request (default 15 s).
    Idle = 1,
    /// A request body may make no progress for this long (default 30 s).
    Body = 2,
    /// A response may make no progress to a client that does not read for this long (default 30 s).
    Write = 3,
    /// A deferred answer must begin (a whole answer, or a stream's head) this
    /// long after the handler returned, or the client gets `503` and the
    /// connection closes; the handle's later calls get `WARPCORE_RESULT_CLOSED`
    /// (default 60 s). A stream that has begun is bounded by the write timeout.
    Answer = 4,
}

/// Sets one timeout: `which` is a `warpcore_timeout` value, the time is in milliseconds, from 1 s to 1 day; deadlines are checked
/// once a second, so they are kept to within a second. No timeout applies while
/// a handler call is running; a deferred answer is bounded by
/// `WARPCORE_TIMEOUT_ANSWER`.
#[no_mangle]
pub extern "C" fn warpcore_config_set_timeout(
    config: *mut warpcore_config,
    which: u32,
    milliseconds: u64,
) -> warpcore_result {
    ffi_boundary!({
        let d = Duration::from_millis(milliseconds);
        match which {
            x if x == warpcore_timeout::Header as u32 => update(config, |c| c.header_timeout = d),
            x if x == warpcore_timeout::Idle as u32 => update(config, |c| c.idle_timeout = d),
            x if x == warpcore_timeout::Body as u32 => update(config, |c| c.body_timeout = d),
            x if x == warpcore_timeout::Write as u32 => update(config, |c| c.write_timeout = d),
            x if x == warpcore_timeout::Answer as u32 => update(config, |c| c.answer_timeout = d),
            other => fail(warpcore_result::InvalidArgument, format!("unknown timeout kind {other}")),
        }
    })
}

/// Mounts `directory` (`dir_len` bytes, a path) at the URL path prefix
/// `url_prefix` (`prefix_len` bytes, decoded, starting with `/`; `/` mounts
/// everything). Requests whose path is the prefix or lies below it are answered
/// by the library from the files under the directory, without calling the
/// handler: GET and HEAD (others get `405` with `Allow`), `Content-Type` by
/// extension, `Last-Modified`, `ETag`, conditional requests (`304`, `412`),
/// ranges (`206`, `416`, `multipart/byteranges`), `index.html` for a path
/// ending in `/`, a `301` to the slash form for a directory without one,
/// `404` for what is missing. Paths that try to leave the directory (`..`,
/// encoded `/`, `\` or NUL) get `400`; symlinks that lead outside it, devices,
/// fifos and sockets are never served; dotfiles (`.git/`, `.env`) get `404`
/// unless `warpcore_config_set_static_dotfiles` allows them. Call once per
/// mount; the longest matching prefix wins. The directory must exist when the
/// server starts or reloads (`WARPCORE_RESULT_INVALID_ARGUMENT` from
/// `warpcore_server_start` or `warpcore_server_reload` otherwise).
///
/// Files are sent with `sendfile(2)`, which cannot suppress `SIGPIPE`: the
/// first file a worker thread sends blocks `SIGPIPE` on that thread (the signal
/// is thread-directed, so other threads are unaffected).
#[no_mangle]
pub extern "C" fn warpcore_config_add_static(
    config: *mut warpcore_config,
    url_prefix: *const u8,
    prefix_len: usize,
    directory: *const u8,
    dir_len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let prefix = ok_or_return!(try_slice(url_prefix, prefix_len, "url_prefix"));
        let dir = ok_or_return!(try_slice(directory, dir_len, "directory"));
        use std::os::unix::ffi::OsStrExt;
        let spec = match crate::MountSpec::new(prefix, std::ffi::OsStr::from_bytes(dir)) {
            Ok(s) => s,
            Err(e) => return e.into(),
        };
        update(config, |c| c.static_mounts.push(spec))
    })
}

/// Sets how long the file caches keep an entry: an open file descriptor
/// `fd_ms` milliseconds after its last use (default 10 000), a path's file
/// information (stat, ETag, Last-Modified) `info_ms` milliseconds (default
/// 1 000). 0 disables that cache; at most a day. Each worker has its own caches.
/// A file changed on disk is noticed at once either way (through inotify, or
/// by looking the path up on every request where a directory cannot be watched).
#[no_mangle]
pub extern "C" fn warpcore_config_set_file_cache(
    config: *mut warpcore_config,
    fd_ms: u64,
    info_ms: u64,
) -> warpcore_result {
    ffi_boundary!({
        update(config, |c| {
            c.fd_cache_lifetime = Duration::from_millis(fd_ms);
            c.file_info_lifetime = Duration::from_millis(info_ms);
        })
    })
}

/// Sets whether static mounts serve dotfiles: paths below a mount with a
/// segment that starts with `.` (`/.env`, `/.git/config`, `/a/.hidden`),
/// whether sent literally or percent-encoded (`/%2eenv`). When `allow` is
/// false, the default, such requests are answered `404 Not Found` whatever the
/// method and whether or not the file exists, so that nothing about it is
/// revealed; `/.well-known/…` (RFC 8615: ACME challenges, `security.txt`) is
/// still served under a mount at `/`, though not a dotfile below it. True
/// serves them like any other file. Files a handler answers with
/// (`warpcore_respond_file`) are not affected.
#[no_mangle]
pub extern "C" fn warpcore_config_set_static_dotfiles(config: *mut warpcore_config, allow: bool) -> warpcore_result {
    ffi_boundary!({ update(config, |c| c.static_dotfiles = allow) })
}

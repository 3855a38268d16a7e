//! `warpcore_server`: start, run workers, shut down, wait, free.

use std::time::Duration;

use super::cast::{try_ref, write_out};
use super::config::warpcore_config;
use super::result::{fail, warpcore_result};
use super::sized::{sized_len, write_sized};
use crate::app::mailbox::on_worker_thread;
use crate::server::Server;

symbol_versions!();

/// A running server.
///
/// Owned by the caller: made by `warpcore_server_start`, released by
/// `warpcore_server_free`. Every other call on it is thread-safe and may be
/// made from any thread, handlers included (where `warpcore_server_shutdown`
/// only starts the shutdown, and `warpcore_server_wait` and
/// `warpcore_server_free` are refused: a worker thread never waits for the
/// workers).
pub struct warpcore_server {
    pub(crate) inner: Server,
}

/// Binds the listeners (for a TCP address, one `SO_REUSEPORT` socket per
/// worker; a Unix socket or a descriptor handed in is one socket that every
/// worker polls, waking one worker per connection) and starts the workers,
/// or, with external workers, gets them ready for
/// `warpcore_server_run_worker`. On success writes the server to `*out`; the
/// config is not retained. Errors: `WARPCORE_RESULT_INVALID_ARGUMENT` (no
/// handler, a bad setting, a Unix path or descriptor named twice),
/// `WARPCORE_RESULT_INVALID_ADDRESS` (an address that does not parse or
/// resolve, a path that is not a socket, a descriptor that is not a
/// listening socket), `WARPCORE_RESULT_ADDRESS_IN_USE`,
/// `WARPCORE_RESULT_IO_ERROR`; the message names the listener. Nothing is
/// left bound after an error, and descriptors handed in stay open.
#[no_mangle]
pub extern "C" fn warpcore_server_start(
    config: *const warpcore_config,
    out: *mut *mut warpcore_server,
) -> warpcore_result {
    ffi_boundary!({
        let config = ok_or_return!(try_ref(config, "config"));
        if out.is_null() {
            return fail(warpcore_result::NullArgument, "out is NULL");
        }
        match Server::start(&config.inner) {
            Ok(server) => {
                write_out(out, Box::into_raw(Box::new(warpcore_server { inner: server })));
                warpcore_result::Ok
            }
            Err(e) => e.into(),
        }
    })
}

/// The port of the server's first TCP listener (the real one when port 0 was
/// asked for; a TCP socket handed in counts); 0 when it has no TCP listener
/// or `server` is NULL. See `warpcore_server_listener_address` for every listener.
#[no_mangle]
pub extern "C" fn warpcore_server_port(server: *const warpcore_server) -> u16 {
    ffi_boundary_or!(0, { try_ref(server, "server").map_or(0, |s| s.inner.port()) })
}

/// How many workers the server has; 0 when `server` is NULL.
#[no_mangle]
pub extern "C" fn warpcore_server_workers(server: *const warpcore_server) -> u32 {
    ffi_boundary_or!(0, { try_ref(server, "server").map_or(0, |s| s.inner.workers() as u32) })
}

/// Runs worker `index` (0 ≤ index < `warpcore_server_workers`) on the calling
/// thread until the server shuts down; its handlers run on this thread. Only
/// for a server started with `warpcore_config_set_external_workers(config, true)`;
/// call it once per index, each from its own thread, or connections that the
/// kernel hands to a worker nobody runs wait unanswered. Errors:
/// `WARPCORE_RESULT_INVALID_STATE` (index out of range, already running, or the
/// server runs its own threads), `WARPCORE_RESULT_SHUTTING_DOWN`.
#[no_mangle]
pub extern "C" fn warpcore_server_run_worker(server: *const warpcore_server, index: u32) -> warpcore_result {
    ffi_boundary!({
        let server = ok_or_return!(try_ref(server, "server"));
        match server.inner.run_worker(index as usize) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => e.into(),
        }
    })
}

/// Shuts the server down gracefully: stops accepting at once (connections
/// already waiting in its listen queues are taken, not reset) and closes its
/// listeners, gives idle keep-alive connections up to one second (at most
/// the grace) for a request their client may have sent already, lets
/// requests received be answered (with `Connection: close`) for up to
/// `grace_ms` milliseconds, closes what remains, and returns when every
/// worker has stopped. Calling it again, or from several
/// threads, is harmless. `warpcore_server_shutdown_report`
/// then tells how many requests it let finish and how many connections it cut.
///
/// From a worker thread (a handler, a connection hook, an upgrade callback,
/// of this server or another), which must never wait for workers (its own
/// among them), it starts the shutdown and returns at once with
/// `WARPCORE_RESULT_WOULD_BLOCK`; another thread waits for the end with
/// `warpcore_server_wait` or this call.
#[no_mangle]
pub extern "C" fn warpcore_server_shutdown(server: *const warpcore_server, grace_ms: u32) -> warpcore_result {
    ffi_boundary!({
        let server = ok_or_return!(try_ref(server, "server"));
        if on_worker_thread() {
            server.inner.begin_shutdown(Duration::from_millis(grace_ms as u64));
            return fail(
                warpcore_result::WouldBlock,
                "the shutdown began; a worker thread never waits for it to end (warpcore_server_wait from another thread)",
            );
        }
        server.inner.shutdown(Duration::from_millis(grace_ms as u64));
        warpcore_result::Ok
    })
}

/// What a graceful shutdown did, from `warpcore_server_shutdown_report`.
/// Allocated by the caller, with `size` set (`WARPCORE_SHUTDOWN_REPORT_INIT`);
/// later releases may add fields at the end.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct warpcore_shutdown_report {
    /// The size of the struct as the caller's program knows it, set by the
    /// caller before the call: `WARPCORE_SHUTDOWN_REPORT_INIT` or `sizeof(struct warpcore_shutdown_report)`.
    /// The library writes only the fields that end within it (none for a
    /// size below this first version's, which is refused) and sets it to the
    /// number of bytes it wrote.
    pub size: usize,
    /// Requests answered after the shutdown began.
    pub requests_finished: u64,
    /// Connections still open at the deadline, closed without their answer.
    pub connections_cut: u64,
}
growable!(warpcore_shutdown_report, first = connections_cut, fields = [requests_finished, connections_cut]);

/// Writes what `warpcore_server_shutdown` did to `*out` (all zero before a
/// shutdown has finished): the fields that fit in `out->size` bytes, and
/// `out->size` set to the bytes written. Errors:
/// `WARPCORE_RESULT_INVALID_ARGUMENT` when `out->size` is smaller than this
/// first version of the struct (nothing is written).
#[no_mangle]
pub extern "C" fn warpcore_server_shutdown_report(
    server: *const warpcore_server,
    out: *mut warpcore_shutdown_report,
) -> warpcore_result {
    ffi_boundary!({
        let server = ok_or_return!(try_ref(server, "server"));
        let len = ok_or_return!(sized_len(out));
        // Read afresh once the workers stopped: a shutdown a worker thread
        // started stored no report of its own.
        let r = server.inner.report();
        let report = warpcore_shutdown_report {
            size: 0,
            requests_finished: r.requests_finished,
            connections_cut: r.connections_cut,
        };
        write_sized(out, report, len);
        warpcore_result::Ok
    })
}

/// Applies `config` to requests read from now on, atomically: handler and
/// userdata, static mounts and file-cache lifetimes, limits, timeouts, server
/// name, logs, listeners. A listener whose address the new config names
/// again keeps its socket (a TCP address with port 0 keeps the port it got);
/// new addresses are bound before anything changes (an error fails the
/// reload with the start's codes and changes nothing); listeners the config
/// no longer names stop accepting (connections already in their queues are
/// taken) and close, while their connections go on to the end. Mount directories are opened before anything changes (a
/// missing one fails the reload, `WARPCORE_RESULT_INVALID_ARGUMENT`, and the
/// old settings stay); a mount whose path now leads to another directory (a
/// `current -> release-N` symlink, say) serves the new one. Requests in flight finish
/// with what they started with; no connection is dropped. From a thread that
/// is not a worker, returns when every running worker uses the new settings.
/// The worker count cannot change (`WARPCORE_RESULT_INVALID_ARGUMENT` says
/// so); the config is not retained.
/// May be called from a handler (of this server or another), and from several
/// threads at once: reloads take effect one after the other (the last one
/// wins). From a worker thread it never waits: it returns once the settings
/// are published, and each worker takes them before the next connection event
/// it handles (the handler's own worker as soon as the handler returns), so
/// reloads from handlers never deadlock.
#[no_mangle]
pub extern "C" fn warpcore_server_reload(
    server: *const warpcore_server,
    config: *const warpcore_config,
) -> warpcore_result {
    ffi_boundary!({
        let server = ok_or_return!(try_ref(server, "server"));
        let config = ok_or_return!(try_ref(config, "config"));
        match server.inner.reload(&config.inner) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => e.into(),
        }
    })
}

/// Counters summed over every worker, read without stopping them (each is
/// exact; they are not one atomic snapshot). Allocated by the caller, with
/// `size` set (`WARPCORE_STATS_INIT`); later releases may add fields at the end.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct warpcore_stats {
    /// The size of the struct as the caller's program knows it, set by the
    /// caller before the call: `WARPCORE_STATS_INIT` or `sizeof(struct warpcore_stats)`.
    /// The library writes only the fields that end within it (none for a
    /// size below this first version's, which is refused) and sets it to the
    /// number of bytes it wrote.
    pub size: usize,
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Connections closed because a timeout expired (a WebSocket whose peer
    /// left a keepalive ping unanswered included).
    pub connections_timed_out: u64,
    /// Requests read (the library's own error answers included).
    pub requests: u64,
    /// Responses with a 1xx status (final ones; `100 Continue` is not counted).
    pub responses_1xx: u64,
    /// Responses with a 2xx status.
    pub responses_2xx: u64,
    /// Responses with a 3xx status.
    pub responses_3xx: u64,
    /// Responses with a 4xx status.
    pub responses_4xx: u64,
    /// Responses with a 5xx status.
    pub responses_5xx: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Requests refused as malformed or over a limit.
    pub parse_errors: u64,
    /// Static-file descriptor cache hits (small files' bodies sent from
    /// memory count as hits).
    pub fd_cache_hits: u64,
    /// Static-file descriptor cache misses.
    pub fd_cache_misses: u64,
    /// Static-file information cache hits.
    pub info_cache_hits: u64,
    /// Static-file information cache misses.
    pub info_cache_misses: u64,
    /// Naps busy workers took before polling, to gather events (see
    /// `warpcore_config_set_coalesce_wait`).
    pub coalesce_naps: u64,
    /// Connections that switched protocols (`warpcore_response_upgrade`,
    /// `warpcore_websocket_accept`). Added after the first version: an older
    /// library leaves it alone (see `size`).
    pub upgrades: u64,
    /// TLS handshakes completed (added in 0.3, as the two after it).
    pub tls_handshakes: u64,
    /// TLS handshakes that failed: a protocol error, nothing in common
    /// (version, cipher, ALPN), a client certificate refused, a name refused
    /// (`warpcore_tls_set_require_sni_match`). Each is also an error-log
    /// line (`WARPCORE_LOG_INFO`). A handshake cut by the header timeout is
    /// counted here too (without a log line), as well as in
    /// `connections_timed_out`; a client that leaves during its handshake
    /// is not counted.
    pub tls_handshake_failures: u64,
    /// TLS connections whose records the kernel encrypts (kTLS, see
    /// `warpcore_tls_set_ktls`).
    pub tls_kernel: u64,
}
growable!(
    warpcore_stats,
    first = coalesce_naps,
    fields = [
        connections_accepted,
        connections_active,
        connections_timed_out,
        requests,
        responses_1xx,
        responses_2xx,
        responses_3xx,
        responses_4xx,
        responses_5xx,
        bytes_in,
        bytes_out,
        parse_errors,
        fd_cache_hits,
        fd_cache_misses,
        info_cache_hits,
        info_cache_misses,
        coalesce_naps,
        upgrades,
        tls_handshakes,
        tls_handshake_failures,
        tls_kernel,
    ]
);

/// Writes the server's counters to `*out`: the fields that fit in `out->size`
/// bytes, and `out->size` set to the bytes written. Thread-safe. Errors:
/// `WARPCORE_RESULT_INVALID_ARGUMENT` when `out->size` is smaller than this
/// first version of the struct (nothing is written).
#[no_mangle]
pub extern "C" fn warpcore_server_stats(server: *const warpcore_server, out: *mut warpcore_stats) -> warpcore_result {
    ffi_boundary!({
        let server = ok_or_return!(try_ref(server, "server"));
        let len = ok_or_return!(sized_len(out));
        let s = server.inner.stats();
        write_sized(
            out,
            warpcore_stats {
                size: 0,
                connections_accepted: s.connections_accepted,
                connections_active: s.connections_active,
                connections_timed_out: s.connections_timed_out,
                requests: s.requests,
                responses_1xx: s.responses[0],
                responses_2xx: s.responses[1],
                responses_3xx: s.responses[2],
                responses_4xx: s.responses[3],
                responses_5xx: s.responses[4],
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                parse_errors: s.parse_errors,
                fd_cache_hits: s.fd_cache_hits,
                fd_cache_misses: s.fd_cache_misses,
                info_cache_hits: s.info_cache_hits,
                info_cache_misses: s.info_cache_misses,
                coalesce_naps: s.coalesce_naps,
                upgrades: s.upgrades,
                tls_handshakes: s.tls_handshakes,
                tls_handshake_failures: s.tls_handshake_failures,
                tls_kernel: s.tls_kernel,
            },
            len,
        );
        warpcore_result::Ok
    })
}

/// Reopens the access-log file: after moving it away, call this so new lines
/// go to a fresh file at the configured path (log rotation). Thread-safe.
#[no_mangle]
pub extern "C" fn warpcore_server_reopen_logs(server: *const warpcore_server) -> warpcore_result {
    ffi_boundary!({
        let server = ok_or_return!(try_ref(server, "server"));
        match server.inner.reopen_logs() {
            Ok(()) => warpcore_result::Ok,
            Err(e) => e.into(),
        }
    })
}

/// Blocks until every worker has stopped, that is until another thread's
/// `warpcore_server_shutdown` has finished its work. From a worker thread (a
/// handler or a hook, of this server or another: a worker never waits for
/// workers, its own among them) it returns `WARPCORE_RESULT_WOULD_BLOCK` at once.
#[no_mangle]
pub extern "C" fn warpcore_server_wait(server: *const warpcore_server) -> warpcore_result {
    ffi_boundary!({
        let server = ok_or_return!(try_ref(server, "server"));
        if on_worker_thread() {
            return fail(warpcore_result::WouldBlock, "a worker thread never waits for the workers to stop");
        }
        server.inner.wait();
        warpcore_result::Ok
    })
}

/// Frees the server, shutting it down first (with no grace) if that has not
/// happened. NULL is ignored. Must be the last call on `server`: no other thread
/// may be using it. From a worker thread (a handler or a hook, of this server
/// or another: freeing waits for the server's workers), nothing is freed: the
/// call is refused (the thread's last error says so) and the server goes on.
#[no_mangle]
pub extern "C" fn warpcore_server_free(server: *mut warpcore_server) {
    let _ = ffi_boundary!({
        if !server.is_null() && on_worker_thread() {
            return fail(
                warpcore_result::WouldBlock,
                "warpcore_server_free from a worker thread: refused, nothing freed",
            );
        }
        if !server.is_null() {
            // SAFETY: a non-NULL server came from `Box::into_raw` in
            // `warpcore_server_start`; the caller gives up its ownership here.
            drop(unsafe { Box::from_raw(server) });
        }
        warpcore_result::Ok
    });
}

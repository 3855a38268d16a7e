//! `warpcore_server`: start, run workers, shut down, wait, free.

use std::time::Duration;

use super::cast::{try_ref, write_out};
use super::config::warpcore_config;
use super::result::{fail, warpcore_result};
use crate::server::Server;

/// A running server.
///
/// Owned by the caller: made by `warpcore_server_start`, released by
/// `warpcore_server_free`. Every other call on it is thread-safe and may be
/// made from any thread, handlers included (except `warpcore_server_shutdown`
/// and `warpcore_server_wait`, which must not be called from a handler: they
/// wait for the workers).
pub struct warpcore_server {
    pub(crate) inner: Server,
}

/// Binds the listen address (one `SO_REUSEPORT` socket per worker) and starts
/// the workers, or, with external workers, gets them ready for
/// `warpcore_server_run_worker`. On success writes the server to `*out`; the
/// config is not retained. Errors: `WARPCORE_RESULT_INVALID_ARGUMENT` (no
/// handler, a bad setting), `WARPCORE_RESULT_INVALID_ADDRESS`,
/// `WARPCORE_RESULT_ADDRESS_IN_USE`, `WARPCORE_RESULT_IO_ERROR`.
#[no_mangle]
pub extern "C" fn warpcore_server_start(config: *const warpcore_config, out: *mut *mut warpcore_server) -> warpcore_result {
    ffi_boundary!({
        let config = match try_ref(config, "config") {
            Ok(c) => c,
            Err(e) => return e,
        };
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

/// The port the server listens on (the real one when port 0 was asked for);
/// 0 when `server` is NULL.
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
        let server = match try_ref(server, "server") {
            Ok(s) => s,
            Err(e) => return e,
        };
        match server.inner.run_worker(index as usize) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => e.into(),
        }
    })
}

/// Shuts the server down gracefully: stops accepting at once, closes idle
/// keep-alive connections, lets requests already received be answered (with
/// `Connection: close`) for up to `grace_ms` milliseconds, closes what remains,
/// and returns when every worker has stopped. Calling it again, or from several
/// threads, is harmless. Not from a handler.
#[no_mangle]
pub extern "C" fn warpcore_server_shutdown(server: *const warpcore_server, grace_ms: u32) -> warpcore_result {
    ffi_boundary!({
        let server = match try_ref(server, "server") {
            Ok(s) => s,
            Err(e) => return e,
        };
        server.inner.shutdown(Duration::from_millis(grace_ms as u64));
        warpcore_result::Ok
    })
}

/// Blocks until every worker has stopped, that is until another thread's
/// `warpcore_server_shutdown` has finished its work. Not from a handler.
#[no_mangle]
pub extern "C" fn warpcore_server_wait(server: *const warpcore_server) -> warpcore_result {
    ffi_boundary!({
        let server = match try_ref(server, "server") {
            Ok(s) => s,
            Err(e) => return e,
        };
        server.inner.wait();
        warpcore_result::Ok
    })
}

/// Frees the server, shutting it down first (with no grace) if that has not
/// happened. NULL is ignored. Must be the last call on `server`: no other thread
/// may be using it.
#[no_mangle]
pub extern "C" fn warpcore_server_free(server: *mut warpcore_server) {
    let _ = ffi_boundary!({
        if !server.is_null() {
            // SAFETY: a non-NULL server came from `Box::into_raw` in
            // `warpcore_server_start`; the caller gives up its ownership here.
            drop(unsafe { Box::from_raw(server) });
        }
        warpcore_result::Ok
    });
}

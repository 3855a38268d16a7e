//! Connection hooks: callbacks told of each connection as it opens (which
//! may refuse it) and as it closes, adapted once into the core's `ConnHooks`.

use std::ffi::c_void;

use super::config::{update, warpcore_config};
use super::request::warpcore_str;
use super::result::warpcore_result;
use crate::app::hooks::{ConnHooks, Connection};

symbol_versions!();

/// A connection, as the connection hooks see it.
///
/// Borrowed: the struct and the bytes it points to are valid only during the
/// callback. Later releases may add fields at the end (never move one): read
/// it through the library's pointer, never allocate or copy a whole one.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct warpcore_connection_info {
    /// The client's IP address as text (`127.0.0.1`, `::1`), as the socket
    /// gives it (not the address of a PROXY protocol header, which is read
    /// later); `unix:` for a client of a Unix socket.
    pub peer_ip: warpcore_str,
    /// The client's port; 0 for a client of a Unix socket.
    pub peer_port: u16,
    /// The index of the worker that owns the connection (0-based): the
    /// thread both callbacks run on.
    pub worker_index: u32,
    /// The connection's number, unique within its worker: with
    /// `worker_index` it pairs a close with its open.
    pub id: u64,
}

/// Called on the worker thread as a connection is accepted, before any byte
/// of it is read: true keeps it, false closes it at once (nothing is sent).
/// `userdata` is the one given to `warpcore_config_set_connection_hooks`.
pub type warpcore_connection_open_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, connection: *const warpcore_connection_info) -> bool>;

/// Called on the worker thread once a connection the open callback was
/// called for is closed, refused ones included, with the same
/// `warpcore_connection_info` values.
pub type warpcore_connection_close_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, connection: *const warpcore_connection_info)>;

/// Sets the connection hooks, as Warp's `setOnOpen` and `setOnClose`: `on_open`
/// is called as each connection is accepted, before any byte is read, and
/// may refuse it (return false: it is closed at once, nothing sent);
/// `on_close` is called exactly once for every connection `on_open` was
/// called for (refused ones included, as Warp does), when it closes, however
/// it ends (the client left, a timeout, a shutdown's deadline). Either may be
/// NULL (a NULL `on_open` keeps every connection, and `on_close` is then
/// called for every connection); both NULL turns the hooks off, the default.
/// Both get the peer the socket gives (the address a PROXY protocol header
/// carries replaces it for requests only), the worker index and a number that
/// pairs them.
///
/// Threads: both run on the worker thread that owns the connection, several
/// workers at once, so they and `userdata` must be thread-safe; while one
/// runs, its worker serves nobody else: keep them short. They must not
/// unwind (a C++ exception, a `longjmp`) out of the call. As from a
/// handler, `warpcore_server_shutdown` only starts the shutdown and
/// `warpcore_server_wait` and `warpcore_server_free` are refused there (all
/// with `WARPCORE_RESULT_WOULD_BLOCK`: a worker never waits for workers);
/// other server calls are fine. `userdata` must stay valid until the server is freed. A
/// reload may change the hooks: a connection's close goes to the callbacks
/// that saw it open. `warpcore_stats` counts refused connections in
/// `connections_accepted` (and not in `connections_active`).
#[no_mangle]
pub extern "C" fn warpcore_config_set_connection_hooks(
    config: *mut warpcore_config,
    on_open: warpcore_connection_open_cb,
    on_close: warpcore_connection_close_cb,
    userdata: *mut c_void,
) -> warpcore_result {
    ffi_boundary!({
        let hooks: Option<std::sync::Arc<dyn ConnHooks>> = if on_open.is_none() && on_close.is_none() {
            None
        } else {
            Some(std::sync::Arc::new(CHooks { on_open, on_close, userdata }))
        };
        update(config, |c| c.conn_hooks = hooks)
    })
}

struct CHooks {
    on_open: warpcore_connection_open_cb,
    on_close: warpcore_connection_close_cb,
    userdata: *mut c_void,
}

// SAFETY: `warpcore_config_set_connection_hooks` documents that the callbacks
// and their userdata are called from several worker threads at once and must
// be thread-safe; the library only passes the pointer along.
unsafe impl Send for CHooks {}
// SAFETY: as above.
unsafe impl Sync for CHooks {}

fn view(conn: &Connection<'_>) -> warpcore_connection_info {
    warpcore_connection_info {
        peer_ip: warpcore_str::of(conn.peer_ip),
        peer_port: conn.peer.port(),
        worker_index: conn.worker_index as u32,
        id: conn.id,
    }
}

impl ConnHooks for CHooks {
    fn on_open(&self, conn: &Connection<'_>) -> bool {
        let Some(on_open) = self.on_open else { return true };
        let info = view(conn);
        // SAFETY: the callback was given for this signature; `info` and the
        // bytes it points to live until it returns.
        unsafe { on_open(self.userdata, &info) }
    }

    fn on_close(&self, conn: &Connection<'_>) {
        let Some(on_close) = self.on_close else { return };
        let info = view(conn);
        // SAFETY: as in `on_open`.
        unsafe { on_close(self.userdata, &info) }
    }
}

//! `warpcore_upgraded`: a connection that switched protocols (`101`), its
//! bytes both ways, from any thread or from the worker's loop through events.
//!
//! A `warpcore_upgraded *` is a token, as response handles are: a slot's
//! index and generation in the table of `handles.rs`. Freeing it moves the
//! slot to its next generation, so a freed handle is told apart from a live
//! one (`WARPCORE_RESULT_INVALID_ARGUMENT`), never reaches another
//! connection, and is never freed memory.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::cast::{try_slice, try_slice_mut, write_out};
use super::handles::{Table, TokenSlot};
use super::request::warpcore_header;
use super::response::{check_headers, perform, warpcore_release_cb, warpcore_response, CBuffer, Call};
use super::result::{fail, warpcore_result};
use crate::app::upgrade::{UpgradeError, UpgradeEvents, Upgraded};
use crate::net::payload::Payload;

symbol_versions!();

/// A connection that switched protocols: made by `warpcore_response_upgrade`
/// (or `warpcore_websocket_accept`, which speaks WebSocket on one), released
/// by `warpcore_upgraded_free`.
///
/// Owner and lifetime: the caller's until `warpcore_upgraded_free`, which
/// also closes the connection if it is open; the connection may close before
/// (the peer, a timeout, shutdown), and then every call returns
/// `WARPCORE_RESULT_CLOSED` until the handle is freed. It is a token, not an
/// address: a freed handle gets `WARPCORE_RESULT_INVALID_ARGUMENT` from every
/// call, from any thread, forever.
///
/// Threads: every call is thread-safe, and calls may overlap (one thread
/// reading while another writes). Off the library's worker threads a read
/// waits for bytes and a write over the high-water mark waits for the peer
/// to read; on a worker thread (inside any handler or event callback) they
/// never wait and return `WARPCORE_RESULT_WOULD_BLOCK` instead, as they do
/// everywhere once `warpcore_upgraded_set_nonblocking` was called.
pub struct warpcore_upgraded {
    /// Never made: the type of the tokens C holds.
    _token: [u8; 0],
}

/// The events an upgraded connection's callback is told, as bits of its
/// `events` argument.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum warpcore_upgrade_event {
    /// Bytes arrived, the peer half-closed (a read gives 0 bytes), or the
    /// connection failed: read until `WARPCORE_RESULT_WOULD_BLOCK`. Told
    /// once per arrival (edge-triggered): bytes left unread are not told again.
    Readable = 1,
    /// A write refused with `WARPCORE_RESULT_WOULD_BLOCK` may be made again.
    Writable = 2,
    /// The connection is closed. The last call of the callback, made exactly
    /// once; its `userdata` may be released there. The handle still needs
    /// `warpcore_upgraded_free` if it was not freed yet.
    Closed = 4,
    /// The server is shutting down: finish up and close;
    /// `warpcore_upgraded_draining` says how long is left.
    Draining = 8,
    /// No byte either way for half the idle timeout: send the protocol's
    /// ping now. Told again after each quiet half, and only to a connection
    /// that asked (`warpcore_upgraded_set_quiet_notice`).
    Quiet = 16,
}

/// Told what happened to an upgraded connection: `events` is a set of
/// `warpcore_upgrade_event` bits. Runs on the worker thread that owns the
/// connection, inside its event loop: it must not block (the handle's calls
/// never wait there) and must not free the server. `upgraded` is the
/// connection's handle (the callback may run before the call that made it
/// returns, so use this one). `userdata` is the caller's.
pub type warpcore_upgrade_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, upgraded: *mut warpcore_upgraded, events: u32)>;

struct Entry {
    upgraded: Upgraded,
    nonblocking: AtomicBool,
}

static SLOTS: Table<TokenSlot<Entry>> = Table::new(TokenSlot::new);

/// The live connection behind `handle`.
fn resolve(handle: *mut warpcore_upgraded) -> Result<Arc<Entry>, warpcore_result> {
    if handle.is_null() {
        return Err(fail(warpcore_result::NullArgument, "upgraded is NULL"));
    }
    SLOTS.resolve(handle as usize).ok_or_else(|| {
        fail(warpcore_result::InvalidArgument, "upgraded is not a live handle (freed, or never given out)")
    })
}

/// A C callback and its userdata, told the events of one connection whose
/// handle (a `warpcore_upgraded` or `warpcore_websocket` token) it is passed.
pub(crate) struct CEvents<H> {
    pub callback: unsafe extern "C" fn(*mut c_void, *mut H, u32),
    pub userdata: *mut c_void,
    pub handle: usize,
}

impl<H: 'static> CEvents<H> {
    /// The events of `handle` for `callback` (None: nobody is told).
    pub fn attach(
        callback: Option<unsafe extern "C" fn(*mut c_void, *mut H, u32)>,
        userdata: *mut c_void,
        handle: usize,
    ) -> Option<Arc<dyn UpgradeEvents>> {
        callback.map(|callback| Arc::new(CEvents { callback, userdata, handle }) as Arc<dyn UpgradeEvents>)
    }
}

// SAFETY: the caller hands `userdata` over for the connection's life and the
// callback is documented to run on the library's worker threads.
unsafe impl<H> Send for CEvents<H> {}
// SAFETY: as above; the library calls it from one thread at a time (the
// worker that owns the connection).
unsafe impl<H> Sync for CEvents<H> {}

impl<H: 'static> UpgradeEvents for CEvents<H> {
    fn on_events(&self, events: u32) {
        // SAFETY: the callback was given for this signature.
        unsafe { (self.callback)(self.userdata, self.handle as *mut H, events) };
    }
}

fn upgrade_result(e: UpgradeError) -> warpcore_result {
    match e {
        UpgradeError::WouldBlock => fail(
            warpcore_result::WouldBlock,
            "nothing to read, or the write queue is over its high-water mark, and this call may not wait",
        ),
        UpgradeError::Closed => fail(warpcore_result::Closed, "the connection is closed (or its writing side shut)"),
    }
}

/// Makes a handle for the connection `make` upgrades: `make` is given the
/// events to attach and returns the core handle, or the call's error (see
/// `Table::publish` for why a callback that fires first finds its handle).
pub(crate) fn publish(
    callback: warpcore_upgrade_cb,
    userdata: *mut c_void,
    out: *mut *mut warpcore_upgraded,
    make: impl FnOnce(Option<Arc<dyn UpgradeEvents>>) -> Result<Upgraded, warpcore_result>,
) -> warpcore_result {
    let made = SLOTS.publish(|handle| {
        let events = CEvents::<warpcore_upgraded>::attach(callback, userdata, handle);
        make(events).map(|upgraded| Entry { upgraded, nonblocking: AtomicBool::new(false) })
    });
    match made {
        Ok(handle) => {
            write_out(out, handle as *mut warpcore_upgraded);
            warpcore_result::Ok
        }
        Err(e) => e,
    }
}

/// Accepts the request's upgrade: sends `101 Switching Protocols` with
/// `header_count` fields from `headers`, which must name the protocol in an
/// `Upgrade` field (the library adds `Date`, `Server` and
/// `Connection: Upgrade`; `Content-Length` and `Transfer-Encoding` are left
/// out), and writes to `*upgraded` the handle through which the connection's
/// bytes then flow both ways. Bytes the client sent after the request head
/// are the first it reads. Works inside the handler call and on a deferred
/// handle from any thread; it finishes the response (a deferred handle is
/// released). The connection keeps the server's write timeout and gets an
/// idle timeout of 60 s (see `warpcore_upgraded_set_idle_timeout`).
///
/// `callback` (may be NULL) is told the connection's events with `userdata`
/// (see `warpcore_upgrade_cb`); it may be called before this call returns,
/// on the worker's thread, and its last call is `WARPCORE_UPGRADE_EVENT_CLOSED`.
/// When this call fails the callback is never called.
///
/// Errors: `WARPCORE_RESULT_INVALID_STATE` when the request did not ask to
/// switch protocols (HTTP/1.1 with `Connection: upgrade` and an `Upgrade`
/// field, and no body that streams): answer it as usual; `WARPCORE_RESULT_INVALID_HEADER`
/// (no `Upgrade` field among `headers`, or an invalid one: nothing was sent);
/// `WARPCORE_RESULT_CLOSED` (the client is gone; a deferred handle is
/// released); those of any response call (`WARPCORE_RESULT_ALREADY_ANSWERED`,
/// `WARPCORE_RESULT_WOULD_BLOCK`, `WARPCORE_RESULT_NULL_ARGUMENT`,
/// `WARPCORE_RESULT_INVALID_ARGUMENT`). `*upgraded` is written only on success.
#[no_mangle]
pub extern "C" fn warpcore_response_upgrade(
    response: *mut warpcore_response,
    headers: *const warpcore_header,
    header_count: usize,
    callback: warpcore_upgrade_cb,
    userdata: *mut c_void,
    upgraded: *mut *mut warpcore_upgraded,
) -> warpcore_result {
    ffi_boundary!({
        if upgraded.is_null() {
            return fail(warpcore_result::NullArgument, "upgraded is NULL");
        }
        let fields = ok_or_return!(check_headers(headers, header_count));
        publish(callback, userdata, upgraded, |events| {
            let mut out = None;
            match perform(response, Call::Upgrade { headers: fields, events, out: &mut out }) {
                warpcore_result::Ok => out.ok_or(warpcore_result::Panic),
                e => Err(e),
            }
        })
    })
}

/// Takes the connection over with nothing sent, as Warp's `responseRaw`
/// does: the application writes its own answer (say, a `101` its WebSocket
/// library composed) and then speaks the new protocol through the handle
/// written to `*upgraded`. Only for a request that asked to switch protocols,
/// as for `warpcore_response_upgrade`, whose rules (threads, callback,
/// errors, timeouts) apply; the library counts the upgrade but no status.
#[no_mangle]
pub extern "C" fn warpcore_response_take_over(
    response: *mut warpcore_response,
    callback: warpcore_upgrade_cb,
    userdata: *mut c_void,
    upgraded: *mut *mut warpcore_upgraded,
) -> warpcore_result {
    ffi_boundary!({
        if upgraded.is_null() {
            return fail(warpcore_result::NullArgument, "upgraded is NULL");
        }
        publish(callback, userdata, upgraded, |events| {
            let mut out = None;
            match perform(response, Call::TakeOver { events, out: &mut out }) {
                warpcore_result::Ok => out.ok_or(warpcore_result::Panic),
                e => Err(e),
            }
        })
    })
}

/// Reads up to `capacity` bytes that arrived into `buf`, their count into
/// `*len`. `WARPCORE_RESULT_OK` with `*len > 0`: bytes; with `*len == 0`: the
/// peer half-closed and every byte before it was read (writing may go on).
/// Off the worker threads it waits for bytes, unless the handle is
/// non-blocking; on a worker thread it never waits.
///
/// Errors: `WARPCORE_RESULT_WOULD_BLOCK` (nothing yet and the call may not
/// wait); `WARPCORE_RESULT_CLOSED` (the connection is closed and every byte
/// was read); `WARPCORE_RESULT_NULL_ARGUMENT`; `WARPCORE_RESULT_INVALID_ARGUMENT`
/// (a freed handle).
#[no_mangle]
pub extern "C" fn warpcore_upgraded_read(
    upgraded: *mut warpcore_upgraded,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
) -> warpcore_result {
    ffi_boundary!({
        if len.is_null() {
            return fail(warpcore_result::NullArgument, "len is NULL");
        }
        let buf = ok_or_return!(try_slice_mut(buf, capacity, "buf"));
        let entry = ok_or_return!(resolve(upgraded));
        let result = if entry.nonblocking.load(Ordering::Relaxed) {
            entry.upgraded.try_read(buf)
        } else {
            entry.upgraded.read(buf)
        };
        match result {
            Ok(n) => {
                write_out(len, n);
                warpcore_result::Ok
            }
            Err(e) => upgrade_result(e),
        }
    })
}

fn write_payload(upgraded: *mut warpcore_upgraded, payload: Payload) -> warpcore_result {
    let entry = ok_or_return!(resolve(upgraded));
    let result = if entry.nonblocking.load(Ordering::Relaxed) {
        entry.upgraded.try_write(payload)
    } else {
        entry.upgraded.write(payload)
    };
    match result {
        Ok(()) => warpcore_result::Ok,
        Err(e) => upgrade_result(e),
    }
}

/// Sends `len` bytes from `data` to the peer (copied). A write is taken
/// while at most the server's stream high-water mark
/// (`warpcore_config_set_stream_high_water`) is queued; over it, a call off
/// the worker threads waits for the peer to read, and a call on one (or on a
/// non-blocking handle) returns `WARPCORE_RESULT_WOULD_BLOCK` with nothing
/// sent, and the callback is told `WARPCORE_UPGRADE_EVENT_WRITABLE` once a
/// write would be taken.
///
/// Errors: `WARPCORE_RESULT_WOULD_BLOCK` (above); `WARPCORE_RESULT_CLOSED`
/// (closed, or the writing side was shut); `WARPCORE_RESULT_NULL_ARGUMENT`;
/// `WARPCORE_RESULT_INVALID_ARGUMENT` (a freed handle).
#[no_mangle]
pub extern "C" fn warpcore_upgraded_write(
    upgraded: *mut warpcore_upgraded,
    data: *const u8,
    len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let data = ok_or_return!(try_slice(data, len, "data"));
        write_payload(upgraded, Payload::from(data.to_vec()))
    })
}

/// Like `warpcore_upgraded_write`, without copying: the library reads `len`
/// bytes at `data` until it calls `release(release_userdata, data, len)`,
/// exactly once, after they were sent, when the connection is gone, or
/// before returning when this call fails. `release` must not be NULL.
#[no_mangle]
pub extern "C" fn warpcore_upgraded_write_buffer(
    upgraded: *mut warpcore_upgraded,
    data: *const u8,
    len: usize,
    release: warpcore_release_cb,
    release_userdata: *mut c_void,
) -> warpcore_result {
    ffi_boundary!({
        let Some(release) = release else {
            return fail(warpcore_result::NullArgument, "release is NULL");
        };
        let buffer = CBuffer { data, len, release, userdata: release_userdata };
        if data.is_null() && len > 0 {
            return fail(warpcore_result::NullArgument, "data is NULL");
        }
        write_payload(upgraded, Payload::new(Box::new(buffer)))
    })
}

/// Shuts the writing side once every byte written has left (a TCP
/// half-close): the peer reads the end of the stream; reading goes on, and
/// the connection closes once the peer has half-closed too. Later writes
/// return `WARPCORE_RESULT_CLOSED`.
///
/// Errors: `WARPCORE_RESULT_CLOSED` (closed, or shut already);
/// `WARPCORE_RESULT_NULL_ARGUMENT`; `WARPCORE_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_upgraded_shutdown_write(upgraded: *mut warpcore_upgraded) -> warpcore_result {
    ffi_boundary!({
        let entry = ok_or_return!(resolve(upgraded));
        match entry.upgraded.shutdown_write() {
            Ok(()) => warpcore_result::Ok,
            Err(e) => upgrade_result(e),
        }
    })
}

/// Closes the connection once every byte written has left. Calls blocked in
/// a read or a write on other threads return `WARPCORE_RESULT_CLOSED`, and so
/// does every later call; the callback is told `WARPCORE_UPGRADE_EVENT_CLOSED`.
/// The handle still needs `warpcore_upgraded_free`.
///
/// Errors: `WARPCORE_RESULT_CLOSED` (closed already);
/// `WARPCORE_RESULT_NULL_ARGUMENT`; `WARPCORE_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_upgraded_close(upgraded: *mut warpcore_upgraded) -> warpcore_result {
    ffi_boundary!({
        let entry = ok_or_return!(resolve(upgraded));
        match entry.upgraded.close() {
            Ok(()) => warpcore_result::Ok,
            Err(e) => upgrade_result(e),
        }
    })
}

/// Makes every later read and write on the handle return
/// `WARPCORE_RESULT_WOULD_BLOCK` instead of waiting, on any thread (as
/// `O_NONBLOCK` does for a socket), or waiting again off the worker threads.
///
/// Errors: `WARPCORE_RESULT_NULL_ARGUMENT`; `WARPCORE_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_upgraded_set_nonblocking(
    upgraded: *mut warpcore_upgraded,
    nonblocking: bool,
) -> warpcore_result {
    ffi_boundary!({
        let entry = ok_or_return!(resolve(upgraded));
        entry.nonblocking.store(nonblocking, Ordering::Relaxed);
        warpcore_result::Ok
    })
}

/// Sets how long the connection may carry no byte either way before the
/// library closes it, in milliseconds; 0 means never. Deadlines are checked
/// once a second. The default is 60 s.
///
/// Errors: `WARPCORE_RESULT_CLOSED`; `WARPCORE_RESULT_NULL_ARGUMENT`;
/// `WARPCORE_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_upgraded_set_idle_timeout(
    upgraded: *mut warpcore_upgraded,
    milliseconds: u64,
) -> warpcore_result {
    ffi_boundary!({
        let entry = ok_or_return!(resolve(upgraded));
        let idle = (milliseconds > 0).then(|| Duration::from_millis(milliseconds));
        match entry.upgraded.set_idle_timeout(idle) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => upgrade_result(e),
        }
    })
}

/// With `on`, the callback is told `WARPCORE_UPGRADE_EVENT_QUIET` each time
/// the connection has carried no byte either way for half its idle timeout
/// (see `warpcore_upgraded_set_idle_timeout`; deadlines are checked once a
/// second), and the idle timeout no longer closes it: a protocol that keeps
/// its connections alive with pings sends one then, and closes the
/// connection itself (`warpcore_upgraded_close`) when the peer stays silent.
/// Any byte the peer sends, read or not, starts a new quiet half. With `on`
/// false, the default, the idle timeout closes a quiet connection; without
/// an idle timeout (0) nothing is told; a connection upgraded without a
/// callback has nobody to tell, and its idle timeout closes it as before.
/// Any thread.
///
/// Errors: `WARPCORE_RESULT_CLOSED`; `WARPCORE_RESULT_NULL_ARGUMENT`;
/// `WARPCORE_RESULT_INVALID_ARGUMENT` (a freed handle).
#[no_mangle]
pub extern "C" fn warpcore_upgraded_set_quiet_notice(upgraded: *mut warpcore_upgraded, on: bool) -> warpcore_result {
    ffi_boundary!({
        let entry = ok_or_return!(resolve(upgraded));
        match entry.upgraded.set_quiet_notice(on) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => upgrade_result(e),
        }
    })
}

/// Writes to `*milliseconds_left` how long, once the server began to shut
/// down, it waits before it cuts the connection (0 once past), or
/// `UINT64_MAX` while the server runs normally.
///
/// Errors: `WARPCORE_RESULT_NULL_ARGUMENT`; `WARPCORE_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_upgraded_draining(
    upgraded: *mut warpcore_upgraded,
    milliseconds_left: *mut u64,
) -> warpcore_result {
    ffi_boundary!({
        if milliseconds_left.is_null() {
            return fail(warpcore_result::NullArgument, "milliseconds_left is NULL");
        }
        let entry = ok_or_return!(resolve(upgraded));
        let left = entry.upgraded.draining().map_or(u64::MAX, |d| d.as_millis().min(u64::MAX as u128 - 1) as u64);
        write_out(milliseconds_left, left);
        warpcore_result::Ok
    })
}

/// Releases the handle, closing the connection if it is open (after what was
/// written leaves); calls blocked on it in other threads return. From now on
/// the handle is stale: every call with it returns
/// `WARPCORE_RESULT_INVALID_ARGUMENT`, and a second free does nothing. NULL
/// is ignored. The callback still gets its `WARPCORE_UPGRADE_EVENT_CLOSED`
/// if it has not yet.
#[no_mangle]
pub extern "C" fn warpcore_upgraded_free(upgraded: *mut warpcore_upgraded) {
    let _ = ffi_boundary!({
        if upgraded.is_null() {
            return warpcore_result::Ok;
        }
        if let Some(entry) = SLOTS.free(upgraded as usize) {
            // Closed now, whoever still holds it in a call.
            let _ = entry.upgraded.close();
        }
        warpcore_result::Ok
    });
}

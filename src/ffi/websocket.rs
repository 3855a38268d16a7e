//! `warpcore_websocket`: WebSocket (RFC 6455) messages on an upgraded
//! connection, received and sent from any thread or from the worker's loop.
//!
//! Handles are tokens, as `warpcore_upgraded` ones are (see `upgrade.rs`).

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::cast::{try_slice, try_slice_mut, write_out};
use super::handles::{Table, TokenSlot};
use super::request::{warpcore_header, warpcore_str};
use super::response::{check_headers, perform, warpcore_response, Call, CheckedHeaders};
use super::result::{fail, warpcore_result};
use super::upgrade::CEvents;
use crate::websocket::{MessageKind, WebSocket, WsError, WsOptions};

symbol_versions!();

/// A WebSocket: made by `warpcore_websocket_accept`, released by
/// `warpcore_websocket_free`.
///
/// Owner and lifetime: the caller's until `warpcore_websocket_free`, which
/// closes the connection if it is open (with a close frame, 1001). It is a
/// token, not an address: a freed handle gets
/// `WARPCORE_RESULT_INVALID_ARGUMENT` from every call, from any thread.
///
/// Threads: every call is thread-safe and calls may overlap (one thread
/// receiving while another sends). Off the worker threads `recv` waits for a
/// message and `send` waits while the peer does not read; on a worker
/// thread (inside a handler or event callback), or once
/// `warpcore_websocket_set_nonblocking` was called, they return
/// `WARPCORE_RESULT_WOULD_BLOCK` instead and the callback says when to try
/// again.
///
/// Protocol: pings are answered, the closing handshake is completed, and a
/// peer that breaks the protocol (bad framing, unmasked frames, invalid UTF-8
/// in text, a message over the size limit) is sent a close frame with the
/// RFC's code (1002, 1007, 1009) and cut. permessage-deflate is not offered.
pub struct warpcore_websocket {
    /// Never made: the type of the tokens C holds.
    _token: [u8; 0],
}

/// The events a WebSocket's callback is told, as bits of its `events`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum warpcore_websocket_event {
    /// Messages are waiting: call `warpcore_websocket_recv` until
    /// `WARPCORE_RESULT_WOULD_BLOCK` (messages not taken are not told again).
    Message = 1,
    /// A send refused with `WARPCORE_RESULT_WOULD_BLOCK` may be made again.
    Writable = 2,
    /// The connection is closed: the last call of the callback, exactly
    /// once; its `userdata` may be released there. The handle still needs
    /// `warpcore_websocket_free` if it was not freed yet.
    Closed = 4,
    /// The server is shutting down: close soon (`warpcore_websocket_draining`
    /// says by when).
    Draining = 8,
}

/// What a message carries.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum warpcore_websocket_kind {
    /// UTF-8 text (checked on receipt; must be UTF-8 to send).
    Text = 1,
    /// Bytes.
    Binary = 2,
    /// The end, received once, last: two bytes of close code (big-endian;
    /// 1005 when the peer gave none, 1006 when the connection ended without
    /// a close frame, 1002/1007/1009 when the peer broke the protocol) and
    /// the reason in UTF-8.
    Close = 8,
}

/// Told what happened to a WebSocket: `events` is a set of
/// `warpcore_websocket_event` bits. Runs on the worker thread that owns the
/// connection, inside its event loop: it must not block and must not free
/// the server. `websocket` is the handle (the callback may run before
/// `warpcore_websocket_accept` returns, so use this one).
pub type warpcore_websocket_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, websocket: *mut warpcore_websocket, events: u32)>;

struct Entry {
    socket: WebSocket,
    nonblocking: AtomicBool,
}

static SLOTS: Table<TokenSlot<Entry>> = Table::new(TokenSlot::new);

fn resolve(handle: *mut warpcore_websocket) -> Result<Arc<Entry>, warpcore_result> {
    if handle.is_null() {
        return Err(fail(warpcore_result::NullArgument, "websocket is NULL"));
    }
    SLOTS.resolve(handle as usize).ok_or_else(|| {
        fail(warpcore_result::InvalidArgument, "websocket is not a live handle (freed, or never given out)")
    })
}

fn ws_result(e: WsError) -> warpcore_result {
    match e {
        WsError::WouldBlock => fail(
            warpcore_result::WouldBlock,
            "no message waits, or the peer is not reading, and this call may not wait",
        ),
        WsError::Closed => fail(warpcore_result::Closed, "the WebSocket is closed or closing"),
        WsError::Invalid => fail(
            warpcore_result::InvalidArgument,
            "text must be UTF-8; a close code must be 1000-1003, 1007-1014 or 3000-4999 with a reason of at most 123 bytes",
        ),
    }
}

/// Accepts the WebSocket handshake of the request: sends `101` with
/// `Upgrade: websocket`, `Sec-WebSocket-Accept` and `header_count` fields
/// from `headers` (a `Sec-WebSocket-Protocol` the application chose,
/// cookies), and writes the WebSocket's handle to `*websocket`. Messages
/// larger than `max_message` bytes (0: 1 MiB; at least 125, a control
/// frame's size) close the connection with 1009.
/// Works inside the handler call and on a deferred handle from any thread;
/// it finishes the response (a deferred handle is released).
///
/// `callback` (may be NULL) is told the WebSocket's events with `userdata`
/// (see `warpcore_websocket_cb`); it may be called before this call returns,
/// and its last call is `WARPCORE_WEBSOCKET_EVENT_CLOSED`. When this call
/// fails the callback is never called.
///
/// Errors: `WARPCORE_RESULT_INVALID_STATE` when the request is not a
/// WebSocket handshake the library can accept — not a GET with
/// `Connection: upgrade` and `Upgrade: websocket` (answer it as usual),
/// `Sec-WebSocket-Version` not 13 (answer 426 with
/// `Sec-WebSocket-Version: 13`), or a `Sec-WebSocket-Key` that is not 16
/// bytes in base64 (answer 400); the message says which, and the response
/// is untouched. Otherwise those of `warpcore_response_upgrade`.
#[no_mangle]
pub extern "C" fn warpcore_websocket_accept(
    response: *mut warpcore_response,
    headers: *const warpcore_header,
    header_count: usize,
    max_message: u64,
    callback: warpcore_websocket_cb,
    userdata: *mut c_void,
    websocket: *mut *mut warpcore_websocket,
) -> warpcore_result {
    ffi_boundary!({
        if websocket.is_null() {
            return fail(warpcore_result::NullArgument, "websocket is NULL");
        }
        let fields = ok_or_return!(check_headers(headers, header_count));
        let mut checked = None;
        let mut look =
            |request: Option<&crate::app::upgrade::UpgradeRequest>| checked = Some(WebSocket::check(request));
        match perform(response, Call::UpgradeRequest(&mut look)) {
            warpcore_result::Ok => {}
            e => return e,
        }
        let accept = match checked {
            Some(Ok(accept)) => accept,
            Some(Err(e)) => return fail(warpcore_result::InvalidState, e.describe()),
            None => return fail(warpcore_result::Panic, "the handshake was not checked"),
        };
        let options = WsOptions {
            max_message: if max_message == 0 {
                crate::websocket::DEFAULT_MAX_MESSAGE
            } else {
                usize::try_from(max_message).unwrap_or(usize::MAX)
            },
        };
        let made = SLOTS.publish(|handle| {
            let events = CEvents::<warpcore_websocket>::attach(callback, userdata, handle);
            let user: Vec<(&[u8], &[u8])> = fields.pairs().collect();
            let mut error = warpcore_result::Ok;
            let socket = WebSocket::upgrade_with(&accept, &user, events, options, |all, raw| {
                // The handshake's fields and the caller's, as the C call takes them.
                let views: Vec<warpcore_header> = all
                    .iter()
                    .map(|(n, v)| warpcore_header {
                        name: warpcore_str { ptr: n.as_ptr(), len: n.len() },
                        value: warpcore_str { ptr: v.as_ptr(), len: v.len() },
                    })
                    .collect();
                let mut out = None;
                let call = Call::Upgrade { headers: CheckedHeaders::of(&views), events: Some(raw), out: &mut out };
                match perform(response, call) {
                    warpcore_result::Ok => out.ok_or(crate::app::handler::RespondError::Closed),
                    e => {
                        error = e;
                        Err(crate::app::handler::RespondError::Closed)
                    }
                }
            });
            match socket {
                Ok(socket) => Ok(Entry { socket, nonblocking: AtomicBool::new(false) }),
                Err(_) if error != warpcore_result::Ok => Err(error),
                Err(_) => Err(fail(warpcore_result::Closed, "the client has gone away")),
            }
        });
        match made {
            Ok(handle) => {
                write_out(websocket, handle as *mut warpcore_websocket);
                warpcore_result::Ok
            }
            Err(e) => e,
        }
    })
}

/// Receives the next message into `buf`: its length into `*len` and its
/// `warpcore_websocket_kind` into `*kind`. The last message is the
/// `WARPCORE_WEBSOCKET_KIND_CLOSE`; every call after it returns
/// `WARPCORE_RESULT_CLOSED`. Off the worker threads it waits for a message,
/// unless the handle is non-blocking.
///
/// Errors: `WARPCORE_RESULT_BUFFER_TOO_SMALL` (the message is longer than
/// `capacity`: its length was written to `*len` and it stays first in line);
/// `WARPCORE_RESULT_WOULD_BLOCK`; `WARPCORE_RESULT_CLOSED`;
/// `WARPCORE_RESULT_NULL_ARGUMENT`; `WARPCORE_RESULT_INVALID_ARGUMENT` (a
/// freed handle).
#[no_mangle]
pub extern "C" fn warpcore_websocket_recv(
    websocket: *mut warpcore_websocket,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
    kind: *mut u32,
) -> warpcore_result {
    ffi_boundary!({
        if len.is_null() || kind.is_null() {
            return fail(warpcore_result::NullArgument, "len or kind is NULL");
        }
        let buf = ok_or_return!(try_slice_mut(buf, capacity, "buf"));
        let entry = ok_or_return!(resolve(websocket));
        let message = match entry.socket.recv_with(!entry.nonblocking.load(Ordering::Relaxed)) {
            Ok(m) => m,
            Err(e) => return ws_result(e),
        };
        let n = message.data.len();
        if n > buf.len() {
            write_out(len, n);
            entry.socket.unrecv(message);
            return fail(warpcore_result::BufferTooSmall, format!("the message is {n} bytes, the buffer {capacity}"));
        }
        buf[..n].copy_from_slice(&message.data);
        write_out(len, n);
        write_out(kind, message.kind as u32);
        warpcore_result::Ok
    })
}

/// Sends a whole message of `len` bytes from `data` (copied) as
/// `kind`: `WARPCORE_WEBSOCKET_KIND_TEXT` (must be UTF-8) or
/// `WARPCORE_WEBSOCKET_KIND_BINARY`. Off the worker threads it waits while
/// the peer is not reading, unless the handle is non-blocking; otherwise one
/// message may wait past the high-water mark, and the next send returns
/// `WARPCORE_RESULT_WOULD_BLOCK` until `WARPCORE_WEBSOCKET_EVENT_WRITABLE`.
///
/// Errors: `WARPCORE_RESULT_INVALID_ARGUMENT` (another kind, text that is not
/// UTF-8, a freed handle); `WARPCORE_RESULT_WOULD_BLOCK`;
/// `WARPCORE_RESULT_CLOSED` (closed or closing); `WARPCORE_RESULT_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_websocket_send(
    websocket: *mut warpcore_websocket,
    kind: u32,
    data: *const u8,
    len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let data = ok_or_return!(try_slice(data, len, "data"));
        let kind = match kind {
            1 => MessageKind::Text,
            2 => MessageKind::Binary,
            k => return fail(warpcore_result::InvalidArgument, format!("kind {k} is neither TEXT (1) nor BINARY (2)")),
        };
        let entry = ok_or_return!(resolve(websocket));
        let may_wait = !entry.nonblocking.load(Ordering::Relaxed);
        match entry.socket.send_slice(kind, data, may_wait) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => ws_result(e),
        }
    })
}

/// Starts the closing handshake with `code` (1000 normal, 1001 going away,
/// 1003, 1007–1014, or 3000–4999) and a reason of `reason_len` bytes of UTF-8
/// (at most 123): the peer answers, the connection closes, and
/// `warpcore_websocket_recv` then gives the `WARPCORE_WEBSOCKET_KIND_CLOSE`.
/// A peer that does not answer within 5 s is cut. Never waits.
///
/// Errors: `WARPCORE_RESULT_INVALID_ARGUMENT` (a code or reason not allowed,
/// a freed handle); `WARPCORE_RESULT_CLOSED` (closed or closing already);
/// `WARPCORE_RESULT_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_websocket_close(
    websocket: *mut warpcore_websocket,
    code: u16,
    reason: *const u8,
    reason_len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let reason = ok_or_return!(try_slice(reason, reason_len, "reason"));
        let Ok(reason) = std::str::from_utf8(reason) else {
            return fail(warpcore_result::InvalidArgument, "the reason is not UTF-8");
        };
        let entry = ok_or_return!(resolve(websocket));
        match entry.socket.close(code, reason) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => ws_result(e),
        }
    })
}

/// Makes every later receive and send on the handle return
/// `WARPCORE_RESULT_WOULD_BLOCK` instead of waiting, on any thread, or
/// waiting again off the worker threads.
///
/// Errors: `WARPCORE_RESULT_NULL_ARGUMENT`; `WARPCORE_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_websocket_set_nonblocking(
    websocket: *mut warpcore_websocket,
    nonblocking: bool,
) -> warpcore_result {
    ffi_boundary!({
        let entry = ok_or_return!(resolve(websocket));
        entry.nonblocking.store(nonblocking, Ordering::Relaxed);
        warpcore_result::Ok
    })
}

/// Sets the WebSocket's idle timeout in milliseconds; 0 means none (default
/// 60 s). After half of it without a byte either way the library pings the
/// peer; a peer that sends nothing back for another half is sent a close
/// (1011) and cut. A peer that answers stays connected however long it is
/// quiet. With 0, no pings and no cut.
///
/// Errors: `WARPCORE_RESULT_CLOSED`; `WARPCORE_RESULT_NULL_ARGUMENT`;
/// `WARPCORE_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_websocket_set_idle_timeout(
    websocket: *mut warpcore_websocket,
    milliseconds: u64,
) -> warpcore_result {
    ffi_boundary!({
        let entry = ok_or_return!(resolve(websocket));
        let idle = (milliseconds > 0).then(|| std::time::Duration::from_millis(milliseconds));
        match entry.socket.connection().set_idle_timeout(idle) {
            Ok(()) => warpcore_result::Ok,
            Err(_) => fail(warpcore_result::Closed, "the WebSocket is closed"),
        }
    })
}

/// Writes to `*milliseconds_left` how long, once the server began to shut
/// down, it waits before it cuts the connection (0 once past), or
/// `UINT64_MAX` while the server runs normally.
///
/// Errors: `WARPCORE_RESULT_NULL_ARGUMENT`; `WARPCORE_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_websocket_draining(
    websocket: *mut warpcore_websocket,
    milliseconds_left: *mut u64,
) -> warpcore_result {
    ffi_boundary!({
        if milliseconds_left.is_null() {
            return fail(warpcore_result::NullArgument, "milliseconds_left is NULL");
        }
        let entry = ok_or_return!(resolve(websocket));
        let left = entry.socket.draining().map_or(u64::MAX, |d| d.as_millis().min(u64::MAX as u128 - 1) as u64);
        write_out(milliseconds_left, left);
        warpcore_result::Ok
    })
}

/// Releases the handle, closing the connection if it is open (a close frame,
/// 1001, then the connection once what was written left); calls blocked on it
/// in other threads return. From now on every call with the handle returns
/// `WARPCORE_RESULT_INVALID_ARGUMENT`, and a second free does nothing. NULL is
/// ignored. The callback still gets its `WARPCORE_WEBSOCKET_EVENT_CLOSED` if it
/// has not yet.
#[no_mangle]
pub extern "C" fn warpcore_websocket_free(websocket: *mut warpcore_websocket) {
    let _ = ffi_boundary!({
        if !websocket.is_null() {
            if let Some(entry) = SLOTS.free(websocket as usize) {
                // Closed now (waking blocked calls), whoever still holds it in a call.
                entry.socket.terminate();
            }
        }
        warpcore_result::Ok
    });
}

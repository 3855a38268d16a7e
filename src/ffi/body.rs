//! `warpcore_body`: a request body read as it arrives, from the handler call
//! or from any thread after it.

use std::ffi::c_void;

use super::cast::{try_ref, try_slice_mut, write_out};
use super::response::{warpcore_response, with_core_in_call};
use super::result::{fail, warpcore_result};
use crate::app::body::{BodyError, BodyStream};

symbol_versions!();

/// A request body that streams (`warpcore_request.body_follows`): its bytes,
/// read as they arrive through a window of 64 KiB. While the application has
/// not read what the window holds, the library reads nothing more from the
/// connection, so the client is slowed down by TCP instead of filling memory.
///
/// Owned by the caller: made by `warpcore_response_body`, released by
/// `warpcore_body_free` (which may come before or after the answer). It may
/// move between threads and be read from any thread; calls on one body may
/// even overlap (each read takes bytes in turn), but `warpcore_body_free` must
/// not overlap another call on it. Freed before its end, the rest of the body
/// is discarded by the library (up to 256 KiB, past which the connection
/// closes after its answer).
pub struct warpcore_body {
    stream: BodyStream,
}

/// Takes the reader of the request's body when it streams
/// (`request->body_follows`), into `*body`. Only inside the handler call, on
/// its thread; a body not taken by the time the handler returns is discarded.
/// The reader outlives the call and the answer: the handler may answer (or
/// defer) and go on reading, from any thread. A client that sent
/// `Expect: 100-continue` is told to send its body at the first read, or when
/// a streamed answer starts while the reader is held; a complete answer given
/// without reading gets the connection closed after it instead.
///
/// Errors: `WARPCORE_RESULT_INVALID_STATE` when the body arrived whole (it is
/// in `request->body`), there is none, it was taken already, or the call is
/// not made inside the handler call on its thread;
/// `WARPCORE_RESULT_NULL_ARGUMENT`; those of a stale handle
/// (`WARPCORE_RESULT_ALREADY_ANSWERED`, `WARPCORE_RESULT_INVALID_ARGUMENT`).
/// `*body` is written only on success.
#[no_mangle]
pub extern "C" fn warpcore_response_body(
    response: *mut warpcore_response,
    body: *mut *mut warpcore_body,
) -> warpcore_result {
    ffi_boundary!({
        if body.is_null() {
            return fail(warpcore_result::NullArgument, "body is NULL");
        }
        let stream = match with_core_in_call(response, |core| core.body()) {
            Ok(Some(stream)) => stream,
            Ok(None) => {
                return fail(
                    warpcore_result::InvalidState,
                    "the request has no body that streams (it arrived whole in request.body, or was taken already)",
                )
            }
            Err(e) => return e,
        };
        write_out(body, Box::into_raw(Box::new(warpcore_body { stream })));
        warpcore_result::Ok
    })
}

/// Reads up to `capacity` body bytes into `buf`, their count into `*len`.
/// `WARPCORE_RESULT_OK` with `*len > 0`: bytes; with `*len == 0`: the body has
/// ended (and every later read says so). Off the library's worker threads a
/// read waits for bytes; on a worker thread (a handler, yours or another
/// request's) it never waits and returns `WARPCORE_RESULT_WOULD_BLOCK` while
/// nothing has arrived: read again from a thread of your own.
///
/// Errors: `WARPCORE_RESULT_WOULD_BLOCK` (above); `WARPCORE_RESULT_CLOSED` when
/// the body cannot be had whole: the client left or stopped sending past the
/// body timeout, the body passed `max_body_size` (the client was answered 413
/// if the answer had not begun) or its chunked framing was invalid (400), or
/// the connection closed — the message says which; `WARPCORE_RESULT_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_body_read(
    body: *mut warpcore_body,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
) -> warpcore_result {
    ffi_boundary!({
        read_into(
            body,
            buf,
            capacity,
            len,
            BodyStream::read_shared,
            "no body bytes have arrived yet, and a worker thread never waits",
        )
    })
}

/// Checks a read's arguments, reads with `read`, and says how it went as a
/// result code, the count written to `len` on success.
fn read_into(
    body: *mut warpcore_body,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
    read: fn(&BodyStream, &mut [u8]) -> Result<usize, BodyError>,
    would_block: &str,
) -> warpcore_result {
    let body = ok_or_return!(try_ref(body.cast_const(), "body"));
    if len.is_null() {
        return fail(warpcore_result::NullArgument, "len is NULL");
    }
    let buf = ok_or_return!(try_slice_mut(buf, capacity, "buf"));
    match read(&body.stream, buf) {
        Ok(n) => {
            write_out(len, n);
            warpcore_result::Ok
        }
        Err(BodyError::WouldBlock) => fail(warpcore_result::WouldBlock, would_block),
        Err(BodyError::TooLarge) => fail(warpcore_result::Closed, "the body passed max_body_size"),
        Err(BodyError::Invalid) => fail(warpcore_result::Closed, "the body's chunked framing was invalid"),
        Err(BodyError::Closed) => {
            fail(warpcore_result::Closed, "the client left, stopped sending, or the connection closed")
        }
    }
}

/// Like `warpcore_body_read`, but never waits, on any thread:
/// `WARPCORE_RESULT_WOULD_BLOCK` while no byte has arrived. After it returned
/// `WARPCORE_RESULT_WOULD_BLOCK`, the callback set by
/// `warpcore_body_on_readable` runs once, when the body can be read on. So an
/// event loop of the application's reads many bodies without a thread each.
///
/// Errors: as `warpcore_body_read`.
#[no_mangle]
pub extern "C" fn warpcore_body_try_read(
    body: *mut warpcore_body,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
) -> warpcore_result {
    ffi_boundary!({ read_into(body, buf, capacity, len, BodyStream::try_read, "no body bytes have arrived yet") })
}

/// Told that a body may be read on (see `warpcore_body_on_readable`):
/// `userdata` is the caller's.
pub type warpcore_body_ready_cb = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// The caller's readiness callback and its userdata.
struct ReadyCallback {
    callback: unsafe extern "C" fn(*mut c_void),
    userdata: *mut c_void,
}

// SAFETY: the library only passes `userdata` back to the caller's callback,
// which is documented to run on the worker thread; the caller keeps both
// valid until the body is freed (or the callback replaced).
unsafe impl Send for ReadyCallback {}
// SAFETY: as above; the pair is never written after it is made.
unsafe impl Sync for ReadyCallback {}

impl ReadyCallback {
    fn call(&self) {
        // SAFETY: the caller's function for this signature, with its
        // userdata, valid until the body is freed or the callback replaced
        // (both wait for a running call to return).
        unsafe { (self.callback)(self.userdata) }
    }
}

/// Sets the callback that says when a non-blocking read may go on: after a
/// `warpcore_body_try_read` returned `WARPCORE_RESULT_WOULD_BLOCK`,
/// `callback(userdata)` runs once, on the worker thread that serves the
/// connection, as soon as bytes arrived or the body ended or failed (the next
/// read then says which); several `WARPCORE_RESULT_WOULD_BLOCK` before that
/// bring one call. Then read until `WARPCORE_RESULT_WOULD_BLOCK` again. The
/// callback runs inside the worker's event loop: it must not block (it may
/// read the body, or wake a loop of your own, as the ASGI server does). A NULL
/// `callback` removes it; a later call replaces it. Setting (or replacing) it
/// clears a call owed to an earlier `WARPCORE_RESULT_WOULD_BLOCK`: read again
/// after setting it (set it before the first read).
///
/// It never runs once `warpcore_body_free` returned nor after a call that
/// replaced it returned, so `userdata` may be freed then: those calls wait
/// for a callback running on another thread, on a worker thread too. So two
/// callbacks, on two workers, must not free (or replace the callback of)
/// each other's bodies: free a body from its own callback, its own request's
/// handler, or a thread of your own. Like the other calls on a body, it must
/// not overlap `warpcore_body_free`.
///
/// Errors: `WARPCORE_RESULT_NULL_ARGUMENT` (`body` is NULL).
#[no_mangle]
pub extern "C" fn warpcore_body_on_readable(
    body: *mut warpcore_body,
    callback: warpcore_body_ready_cb,
    userdata: *mut c_void,
) -> warpcore_result {
    ffi_boundary!({
        let body = ok_or_return!(try_ref(body.cast_const(), "body"));
        match callback {
            Some(callback) => {
                let ready = ReadyCallback { callback, userdata };
                body.stream.on_readable(move || ready.call());
            }
            None => body.stream.clear_ready_hook(),
        }
        warpcore_result::Ok
    })
}

/// Releases a body reader made by `warpcore_response_body`; what it did not
/// read is discarded. NULL is ignored. Must not overlap another call on it.
/// A callback set by `warpcore_body_on_readable` that runs on another thread
/// has returned when this returns (it waits for it), and never runs again.
#[no_mangle]
pub extern "C" fn warpcore_body_free(body: *mut warpcore_body) {
    let _ = ffi_boundary!({
        if !body.is_null() {
            // SAFETY: made by `Box::into_raw` in `warpcore_response_body`; the
            // caller gives it back once, with no other call on it running.
            drop(unsafe { Box::from_raw(body) });
        }
        warpcore_result::Ok
    });
}

//! `warpcore_response`: the handle a handler answers through.

use std::marker::PhantomData;

use super::cast::{try_array, try_mut, try_slice};
use super::request::warpcore_header;
use super::result::warpcore_result;
use crate::handler::Response;

/// The response to one request.
///
/// Borrowed: the handle belongs to the library and is valid only until the
/// handler it was passed to returns; answer it (exactly once) before then, on
/// the handler's thread. A handler that returns without answering gets a
/// `500` sent for it.
pub struct warpcore_response {
    /// The core response, lifetime erased: valid for the handler call only.
    pub(crate) response: *mut Response<'static>,
    _not_send: PhantomData<*mut ()>,
}

impl warpcore_response {
    pub(crate) fn borrowing(res: &mut Response<'_>) -> warpcore_response {
        warpcore_response { response: (res as *mut Response<'_>).cast(), _not_send: PhantomData }
    }
}

/// Answers the request with `status` (200..=599), `header_count` header fields
/// from `headers`, and `body_len` bytes of `body`. The library adds `Date`,
/// `Server`, `Content-Length` and `Connection`; a `Content-Length`,
/// `Transfer-Encoding` or `Connection` among `headers` is replaced (a
/// `Connection: close` is honoured), a `Date` or `Server` among them is sent
/// instead of the library's. For HEAD requests and statuses 204 and 304 no body
/// is sent. `headers` and `body` are only read during the call.
///
/// Errors: `WARPCORE_RESULT_ALREADY_ANSWERED`, `WARPCORE_RESULT_INVALID_STATUS`,
/// `WARPCORE_RESULT_INVALID_HEADER` (a name that is not a token, a value with
/// CR, LF or NUL; nothing is sent and the request may be answered again),
/// `WARPCORE_RESULT_CLOSED` (the client is gone), `WARPCORE_RESULT_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_respond(
    response: *mut warpcore_response,
    status: u16,
    headers: *const warpcore_header,
    header_count: usize,
    body: *const u8,
    body_len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let handle = match try_mut(response, "response") {
            Ok(h) => h,
            Err(e) => return e,
        };
        let fields = match try_array(headers, header_count, "headers") {
            Ok(f) => f,
            Err(e) => return e,
        };
        let body = match try_slice(body, body_len, "body") {
            Ok(b) => b,
            Err(e) => return e,
        };
        // Check every field's pointers before composing anything.
        for (i, h) in fields.iter().enumerate() {
            if let Err(e) = try_slice(h.name.ptr, h.name.len, &format!("headers[{i}].name")) {
                return e;
            }
            if let Err(e) = try_slice(h.value.ptr, h.value.len, &format!("headers[{i}].value")) {
                return e;
            }
        }
        let pairs = fields.iter().map(|h| {
            (
                try_slice(h.name.ptr, h.name.len, "name").unwrap_or(&[]),
                try_slice(h.value.ptr, h.value.len, "value").unwrap_or(&[]),
            )
        });
        // SAFETY: `handle.response` was set from a live `&mut Response` by the
        // handler adapter and the handle is only valid during that call.
        let core = unsafe { &mut *handle.response };
        match core.respond(status, pairs, body) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => e.into(),
        }
    })
}

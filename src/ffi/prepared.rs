//! `warpcore_prepared`: a complete response (status, header fields, body)
//! checked and rendered once, then sent any number of times by copying it,
//! from a plain handler (`warpcore_respond_prepared`) or as the return value
//! of an answering handler (`warpcore_config_set_answering_handler`), which
//! spares a binding whose foreign calls are dear a second call per request.

use super::cast::{try_ref, try_slice, write_out};
use super::request::warpcore_header;
use super::response::{check_headers, perform, warpcore_response, Call};
use super::result::{fail, warpcore_result};
use std::sync::Arc;

use crate::app::deferred::check_status;
use crate::app::handler::DIRECT_WRITE_MIN;
use crate::app::head::OwnedHead;
use crate::app::prepared::PreparedAnswer;
use crate::http::image::KeepAliveImage;

symbol_versions!();

/// A complete response prepared by `warpcore_prepared_new`.
///
/// Immutable once made: any thread may send it, several at once. Owned by the
/// caller until `warpcore_prepared_free`; a call that sends it copies it
/// before returning (an answering handler's return value: before the library
/// goes on from that handler call), so it may be freed once no call that
/// sends it is running and no handler that may return it is running.
pub struct warpcore_prepared {
    /// Shared, so that a deferred answer hands the worker a reference, not a copy.
    pub(crate) answer: Arc<PreparedAnswer>,
}

/// Checks and renders a response once: `status` (200..=599), `header_count`
/// header fields from `headers` and `body_len` bytes of `body`, all copied, so
/// none of them need outlive the call. Writes the new prepared response to
/// `*out`; free it with `warpcore_prepared_free`. The library's own fields
/// (`Date`, `Server`, `Content-Length`, `Connection`) are added when it is
/// sent, per request, as for `warpcore_respond`, whose rules on fields apply.
///
/// Errors: `WARPCORE_RESULT_NULL_ARGUMENT` (`out`, or a pointer with a
/// non-zero length), `WARPCORE_RESULT_INVALID_STATUS`,
/// `WARPCORE_RESULT_INVALID_HEADER`; `*out` is then left as it was.
#[no_mangle]
pub extern "C" fn warpcore_prepared_new(
    status: u16,
    headers: *const warpcore_header,
    header_count: usize,
    body: *const u8,
    body_len: usize,
    out: *mut *mut warpcore_prepared,
) -> warpcore_result {
    ffi_boundary!({
        if out.is_null() {
            return fail(warpcore_result::NullArgument, "out is NULL");
        }
        let fields = ok_or_return!(check_headers(headers, header_count));
        let body = ok_or_return!(try_slice(body, body_len, "body"));
        if let Err(e) = check_status(status) {
            return e.into();
        }
        let head = match OwnedHead::render(fields.pairs(), body) {
            Ok(head) => head,
            Err(e) => return e.into(),
        };
        let (rendered, fields) = head.fields();
        let image = KeepAliveImage::new(status, rendered, fields, head.body(), DIRECT_WRITE_MIN);
        write_out(out, Box::into_raw(Box::new(warpcore_prepared { answer: PreparedAnswer::new(status, head, image) })));
        warpcore_result::Ok
    })
}

/// Frees a prepared response made by `warpcore_prepared_new`. NULL is ignored.
/// Not while a call that sends it may be running (see `warpcore_prepared`).
#[no_mangle]
pub extern "C" fn warpcore_prepared_free(prepared: *mut warpcore_prepared) {
    ffi_boundary_or!((), {
        if !prepared.is_null() {
            // SAFETY: made by `warpcore_prepared_new` (Box::into_raw) and, per
            // the contract, freed once and no longer in use.
            drop(unsafe { Box::from_raw(prepared) });
        }
    })
}

/// Answers the request with `prepared`, as `warpcore_respond` with its
/// status, fields and body would (the same modes, threads and errors), by
/// copying it: `prepared` may be freed or sent again as soon as this returns.
#[no_mangle]
pub extern "C" fn warpcore_respond_prepared(
    response: *mut warpcore_response,
    prepared: *const warpcore_prepared,
) -> warpcore_result {
    response_boundary!(response, {
        let prepared = ok_or_return!(try_ref(prepared, "prepared"));
        perform(response, Call::Prepared(&prepared.answer))
    })
}

//! The C handlers (plain and answering), adapted once into the core's
//! `Handler` trait.

use std::ffi::c_void;

use super::prepared::warpcore_prepared;
use super::request::{warpcore_request, with_view};
use super::response::{warpcore_response, with_handle};
use super::thread::with_thread;
use crate::app::handler::{Handler, Request, Response};

/// A request handler: called once per request with the `userdata` given to
/// `warpcore_config_set_handler`, a borrowed view of the request, and the
/// response handle to answer through.
///
/// Runs on a worker thread (one the library started, or the embedder's own
/// thread inside `warpcore_server_run_worker`); with several workers it runs on
/// several threads at once. While it runs, its worker serves no other
/// connection: a handler that blocks holds them up.
pub type warpcore_handler_cb = Option<
    unsafe extern "C" fn(userdata: *mut c_void, request: *const warpcore_request, response: *mut warpcore_response),
>;

/// A handler that may answer by returning a prepared response: called as a
/// `warpcore_handler_cb` is (same arguments, threads and rules), it returns
/// either NULL, when it answered or will answer through `response` as a plain
/// handler does, or a prepared response the library sends as if
/// `warpcore_respond_prepared(response, prepared)` were called as the handler
/// returns: one call across the boundary per request instead of two, for
/// bindings whose foreign calls are dear. The prepared response must stay
/// valid until the handler has returned (the library copies it then). A
/// non-NULL return for a request the handler answered or deferred through
/// `response` is ignored (the first answer stands). A non-NULL return that is
/// sent answers the request: `response` is then done, and a call on it from
/// a thread it was handed to returns `WARPCORE_RESULT_ALREADY_ANSWERED` (if
/// made while the handler runs, once it has returned).
pub type warpcore_answering_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        request: *const warpcore_request,
        response: *mut warpcore_response,
    ) -> *const warpcore_prepared,
>;

/// The embedder's callback, of either kind.
#[derive(Clone, Copy)]
enum Callback {
    Plain(unsafe extern "C" fn(*mut c_void, *const warpcore_request, *mut warpcore_response)),
    Answering(
        unsafe extern "C" fn(*mut c_void, *const warpcore_request, *mut warpcore_response) -> *const warpcore_prepared,
    ),
}

pub(crate) struct CHandler {
    callback: Callback,
    userdata: *mut c_void,
}

impl CHandler {
    pub fn new(
        callback: unsafe extern "C" fn(*mut c_void, *const warpcore_request, *mut warpcore_response),
        userdata: *mut c_void,
    ) -> CHandler {
        CHandler { callback: Callback::Plain(callback), userdata }
    }

    pub fn answering(
        callback: unsafe extern "C" fn(
            *mut c_void,
            *const warpcore_request,
            *mut warpcore_response,
        ) -> *const warpcore_prepared,
        userdata: *mut c_void,
    ) -> CHandler {
        CHandler { callback: Callback::Answering(callback), userdata }
    }
}

// SAFETY: `warpcore_config_set_handler` documents that the handler and its
// userdata are called from several worker threads at once and must be
// thread-safe; the library itself only passes the pointer along.
unsafe impl Send for CHandler {}
// SAFETY: as above.
unsafe impl Sync for CHandler {}

impl Handler for CHandler {
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        with_thread(|thread| {
            with_view(&thread.header_views, req, |view| {
                with_handle(&thread.pool, res, |handle| match self.callback {
                    // SAFETY: the callback was given by the embedder for exactly this
                    // signature; `view` lives until it returns, `handle` as documented.
                    Callback::Plain(callback) => {
                        unsafe { callback(self.userdata, view, handle) };
                        None
                    }
                    Callback::Answering(callback) => {
                        // SAFETY: as above.
                        let prepared = unsafe { callback(self.userdata, view, handle) };
                        // SAFETY: a non-NULL return is a live prepared response
                        // until the handler call is over, as documented;
                        // `with_handle` sends it before that.
                        unsafe { prepared.as_ref() }.map(|p| &p.answer)
                    }
                })
            })
        });
    }
}

//! The C handler, adapted once into the core's `Handler` trait.

use std::ffi::c_void;

use super::request::{with_view, warpcore_request};
use super::response::{with_handle, warpcore_response};
use super::thread::with_thread;
use crate::handler::{Handler, Request, Response};

/// A request handler: called once per request with the `userdata` given to
/// `warpcore_config_set_handler`, a borrowed view of the request, and the
/// response handle to answer through.
///
/// Runs on a worker thread (one the library started, or the embedder's own
/// thread inside `warpcore_server_run_worker`); with several workers it runs on
/// several threads at once. While it runs, its worker serves no other
/// connection: a handler that blocks holds them up.
pub type warpcore_handler_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, request: *const warpcore_request, response: *mut warpcore_response)>;

pub(crate) struct CHandler {
    callback: unsafe extern "C" fn(*mut c_void, *const warpcore_request, *mut warpcore_response),
    userdata: *mut c_void,
}

impl CHandler {
    pub fn new(
        callback: unsafe extern "C" fn(*mut c_void, *const warpcore_request, *mut warpcore_response),
        userdata: *mut c_void,
    ) -> CHandler {
        CHandler { callback, userdata }
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
                with_handle(thread, res, |handle| {
                    // SAFETY: the callback was given by the embedder for exactly this
                    // signature; `view` lives until it returns, `handle` as documented.
                    unsafe { (self.callback)(self.userdata, view, handle) };
                })
            })
        });
    }
}

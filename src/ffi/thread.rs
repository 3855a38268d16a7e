//! What the C API keeps per thread, in one thread-local: a library built as a
//! shared object reaches each thread-local through a `__tls_get_addr` call, so
//! a handler call looks this up once and passes it down.

use std::cell::{Cell, RefCell};

use super::request::warpcore_header;
use super::response::warpcore_response;
use crate::handler::Response;

pub(crate) struct FfiThread {
    /// Handles for this thread's requests, reused so that a request answered
    /// in the handler costs no allocation. Boxed: C holds their addresses.
    #[allow(clippy::vec_box)]
    pub pool: RefCell<Vec<Box<warpcore_response>>>,
    /// The handle whose handler call runs on this thread, with its core
    /// response: a call on it takes the fast path, without the lock.
    pub in_call: Cell<(*const warpcore_response, *mut Response<'static>)>,
    /// Header views of the request being handled, reused so that a request
    /// costs no allocation once the thread has seen its largest one.
    pub header_views: RefCell<Vec<warpcore_header>>,
}

impl FfiThread {
    /// A number that tells this thread from every other live thread: the
    /// address of its state (cheaper than `std::thread::current().id()`).
    pub fn marker(&self) -> usize {
        self as *const FfiThread as usize
    }
}

thread_local! {
    static THREAD: FfiThread = const {
        FfiThread {
            pool: RefCell::new(Vec::new()),
            in_call: Cell::new((std::ptr::null(), std::ptr::null_mut())),
            header_views: RefCell::new(Vec::new()),
        }
    };
}

/// Runs `f` with this thread's state.
pub(crate) fn with_thread<R>(f: impl FnOnce(&FfiThread) -> R) -> R {
    THREAD.with(f)
}

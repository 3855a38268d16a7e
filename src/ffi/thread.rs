//! What the C API keeps per thread, in one thread-local: a library built as a
//! shared object reaches each thread-local through a `__tls_get_addr` call, so
//! a handler call looks this up once and passes it down. A respond call finds
//! what it needs in the handle itself, with `current_thread` (in `response`),
//! which costs no lookup.

use std::cell::RefCell;

use super::request::warpcore_header;
use super::response::HandlePool;

pub(crate) struct FfiThread {
    /// Slots for this thread's response handles, reused so that a request
    /// answered in the handler costs no allocation.
    pub pool: HandlePool,
    /// Header views of the request being handled, reused so that a request
    /// costs no allocation once the thread has seen its largest one.
    pub header_views: RefCell<Vec<warpcore_header>>,
}

thread_local! {
    static THREAD: FfiThread = const {
        FfiThread {
            pool: HandlePool::new(),
            header_views: RefCell::new(Vec::new()),
        }
    };
}

/// Runs `f` with this thread's state.
pub(crate) fn with_thread<R>(f: impl FnOnce(&FfiThread) -> R) -> R {
    THREAD.with(f)
}

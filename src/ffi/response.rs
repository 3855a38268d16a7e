//! `warpcore_response`: the handle a handler answers through, inside the call
//! (fast path, no queue, no wakeup) or later from any thread (deferred).

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::cast::{try_array, try_slice, try_slice_named};
use super::request::{warpcore_header, warpcore_str};
use super::result::{fail, warpcore_result};
use super::prepared::warpcore_prepared;
use super::thread::{current_thread, FfiThread};
use crate::app::deferred::Deferred;
use crate::app::handler::{RespondError, Response};
use crate::net::payload::Payload;
use crate::sys::membarrier;

/// Called exactly once when the library is done with a buffer handed to it
/// without a copy (`warpcore_respond_buffer`, `warpcore_response_write_buffer`):
/// after its bytes were sent, when the connection is gone, or right away when
/// the call that passed it fails. `userdata` is the caller's. It may run on any
/// thread (usually the worker's) and must not call back into the library.
pub type warpcore_release_cb = Option<unsafe extern "C" fn(userdata: *mut c_void, data: *const u8, len: usize)>;

// Where a handle is in its life: the low two bits of `warpcore_response::phase`,
// above them the generation, one per handler call the handle served.

/// Inside the handler call: that thread answers through `in_call_core`
/// without the lock; any other thread waits for the call to return.
const IN_CALL: u32 = 0;
/// The call ended answered (a handle with a waiter then leaks; any other goes
/// back to the worker's pool).
const ANSWERED: u32 = 1;
/// The call ended without finishing the answer: `deferred` holds it.
const DEFERRED: u32 = 2;
const PHASE_BITS: u32 = 2;
const PHASE_MASK: u32 = (1 << PHASE_BITS) - 1;

/// The response to one request.
///
/// Inside the handler call, answering is the fast path: the answer joins the
/// worker's output with no queue and no wakeup. A handler may instead return
/// without answering (or in the middle of a stream) and answer later from any
/// thread: the connection keeps its place (later pipelined requests wait), and
/// the calls are thread-safe. A call from another thread made while the handler
/// is still running waits until it returns.
///
/// Lifetime: a handle answered inside the handler call belongs to the library
/// again when the handler returns. A handle the handler returned from without
/// finishing its answer belongs to the caller until the call that finishes it:
/// `warpcore_respond*`, `warpcore_response_end` or `warpcore_response_abort`
/// that succeeds, or any call that
/// returns `WARPCORE_RESULT_CLOSED` or `WARPCORE_RESULT_LENGTH_MISMATCH`. That
/// call releases the handle; do not use it afterwards. A handle never answered
/// keeps its connection open until shutdown's deadline; a call after that
/// returns `WARPCORE_RESULT_CLOSED` (and releases it).
pub struct warpcore_response {
    /// The thread (`current_thread`) inside whose handler call this handle
    /// is, or 0; with `in_call_core`, the lock-free path of a call made by the
    /// handler itself. Only that thread writes its own id here, so no other
    /// thread ever finds its id in it.
    in_call_on: AtomicUsize,
    /// The live core response while `in_call_on` is set; read only by that thread.
    in_call_core: AtomicPtr<Response<'static>>,
    /// The generation (above `PHASE_BITS`) and `IN_CALL`, `ANSWERED` or
    /// `DEFERRED`. The worker ends a call answered inside it with one store,
    /// without the lock: the common case costs no locked instruction (see
    /// `end_answered_call`). The generation tells a waiter that the call it
    /// waited for is over even when the handle already serves a later one.
    phase: AtomicU32,
    /// Set by a thread about to wait for the call to end, so that the worker
    /// knows to wake it (see `wait_for_call_end`); cleared for each call.
    waiting: AtomicBool,
    /// The deferred answer, once `phase` is `DEFERRED`; taken by other threads.
    deferred: Mutex<Option<Deferred>>,
    handed_over: Condvar,
}

// SAFETY: `in_call_core` is only dereferenced on the thread recorded in
// `in_call_on` (the worker, during the handler call); other threads wait on
// the condvar while the phase is `IN_CALL`, until it is `DEFERRED` (with a
// `Deferred`, which is `Send`, behind the mutex) or `ANSWERED`.
unsafe impl Send for warpcore_response {}
// SAFETY: as above; `deferred` is behind the mutex, `phase` and `waiting`
// are atomics.
unsafe impl Sync for warpcore_response {}

/// Runs the C handler with a handle for `res`, sends the prepared response it
/// returned if any (an answering handler's), then either returns the handle to
/// the pool or hands it to the caller as a deferred handle.
pub(crate) fn with_handle<'p>(
    thread: &FfiThread,
    res: &mut Response<'_>,
    call: impl FnOnce(*mut warpcore_response) -> Option<&'p warpcore_prepared>,
) {
    let mut handle = thread.pool.borrow_mut().pop().unwrap_or_else(|| {
        Box::new(warpcore_response {
            in_call_on: AtomicUsize::new(0),
            in_call_core: AtomicPtr::new(std::ptr::null_mut()),
            phase: AtomicU32::new(IN_CALL),
            waiting: AtomicBool::new(false),
            deferred: Mutex::new(None),
            handed_over: Condvar::new(),
        })
    });
    let response: *mut Response<'static> = (res as *mut Response<'_>).cast();
    let me = current_thread();
    // No lock: the handle is ours until `call` hands it out (a thread that
    // misuses an answered one may still look at it: hence atomic stores). A
    // pooled handle was answered in its call, so it holds no deferred answer.
    // The phase is stored last (release): a waiter that sees this call's
    // generation sees `waiting` cleared for it.
    let generation = (handle.phase.load(Ordering::Relaxed) >> PHASE_BITS).wrapping_add(1);
    handle.waiting.store(false, Ordering::Relaxed);
    handle.phase.store(generation << PHASE_BITS | IN_CALL, Ordering::Release);
    *handle.in_call_core.get_mut() = response;
    *handle.in_call_on.get_mut() = me;
    let raw: *mut warpcore_response = &mut *handle;
    let returned = call(raw);
    handle.in_call_on.store(0, Ordering::Relaxed);
    if let Some(prepared) = returned {
        // As if the handler had sent it last: refused when it answered already.
        let _ = res.respond_prepared(prepared.status, &prepared.head, prepared.image.as_ref());
    }

    if res.is_complete() {
        if !handle.end_answered_call(generation) {
            thread.pool.borrow_mut().push(handle);
            return;
        }
        // Another thread tried to answer too: it was woken to learn that the
        // request was answered; the handle stays out of the pool so that its
        // waiter never meets the next request. (A misuse; the handle leaks.)
        let _ = Box::into_raw(handle);
        return;
    }
    let mut deferred = handle.lock();
    let phase = match res.defer() {
        Ok(d) => {
            *deferred = Some(d);
            DEFERRED
        }
        Err(_) => ANSWERED,
    };
    handle.phase.store(generation << PHASE_BITS | phase, Ordering::Release);
    if handle.waiting.load(Ordering::Relaxed) {
        handle.handed_over.notify_all();
    }
    drop(deferred);
    // The caller owns it now; the call that finishes the answer frees it.
    let _ = Box::into_raw(handle);
}

impl warpcore_response {
    fn lock(&self) -> MutexGuard<'_, Option<Deferred>> {
        self.deferred.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends a handler call that answered, on the worker; returns whether
    /// another thread was waiting for it (and wakes it).
    ///
    /// The common case takes no lock: a store, then a look at `waiting`. A
    /// waiter sets `waiting` and then looks at `phase`; the asymmetric fence
    /// between each side's store and load (a compiler fence here, a
    /// `membarrier` on the waiter's side) means at least one of them sees the
    /// other's store. So either the waiter finds the call over, or the worker
    /// finds it waiting, takes the lock (which the waiter holds from its last
    /// look until it sleeps) and wakes it.
    fn end_answered_call(&self, generation: u32) -> bool {
        self.phase.store(generation << PHASE_BITS | ANSWERED, Ordering::Release);
        membarrier::light();
        if !self.waiting.load(Ordering::Relaxed) {
            return false;
        }
        let _locked = self.lock();
        self.handed_over.notify_all();
        true
    }

    /// Waits until a handler call running on another thread has ended;
    /// returns how it ended (`ANSWERED` or `DEFERRED`) with `deferred` locked.
    fn wait_for_call_end(&self) -> (u32, MutexGuard<'_, Option<Deferred>>) {
        let mut guard = self.lock();
        let seen = self.phase.load(Ordering::Acquire);
        if seen & PHASE_MASK != IN_CALL {
            return (seen & PHASE_MASK, guard);
        }
        let mut yields = 0;
        let mut announced = false;
        loop {
            let now = self.phase.load(Ordering::Acquire);
            if now != seen {
                // Over. A later generation means the call ended answered and
                // the handle already serves another (a misuse by the caller).
                let same_call = now >> PHASE_BITS == seen >> PHASE_BITS;
                return (if same_call { now & PHASE_MASK } else { ANSWERED }, guard);
            }
            if yields < 3 {
                // The handler is usually just returning: give it the CPU a few
                // times before announcing a wait, which costs a `membarrier`.
                yields += 1;
                drop(guard);
                std::thread::yield_now();
                guard = self.lock();
            } else if !announced {
                // The other side of `end_answered_call`'s handshake, once,
                // without the lock (the worker's deferred path needs it).
                announced = true;
                drop(guard);
                self.waiting.store(true, Ordering::Relaxed);
                membarrier::heavy();
                guard = self.lock();
            } else {
                // Still this call after the announcement: the worker will see
                // `waiting`, take the lock and wake this thread.
                guard = self.handed_over.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

/// What a response call does, in either mode.
pub(crate) enum Call<'a> {
    File { status: u16, headers: CheckedHeaders<'a>, path: &'a std::path::Path },
    Prepared(&'a super::prepared::warpcore_prepared),
    Respond { status: u16, headers: CheckedHeaders<'a>, body: Body<'a> },
    Start { status: u16, headers: CheckedHeaders<'a>, length: Option<u64> },
    Write(Body<'a>),
    End,
    Abort,
}

pub(crate) enum Body<'a> {
    Borrowed(&'a [u8]),
    Owned(Payload),
}

impl Body<'_> {
    fn into_payload(self) -> Payload {
        match self {
            Body::Borrowed(b) => Payload::from(b.to_vec()),
            Body::Owned(p) => p,
        }
    }
}

/// A caller's buffer; dropping it runs the release callback.
struct CBuffer {
    data: *const u8,
    len: usize,
    release: unsafe extern "C" fn(*mut c_void, *const u8, usize),
    userdata: *mut c_void,
}

// SAFETY: the caller hands the buffer over until release, and the release
// callback is documented to run on any thread.
unsafe impl Send for CBuffer {}

impl AsRef<[u8]> for CBuffer {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the caller promised `len` readable bytes at `data` until release.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for CBuffer {
    fn drop(&mut self) {
        // SAFETY: the callback was given for this signature; it runs exactly once, here.
        unsafe { (self.release)(self.userdata, self.data, self.len) };
    }
}

/// A caller's header array whose every name and value pointer was checked, by
/// `check_headers`, so that reading the fields checks nothing again.
#[derive(Clone, Copy)]
pub(crate) struct CheckedHeaders<'a>(&'a [warpcore_header]);

impl<'a> CheckedHeaders<'a> {
    pub(crate) fn pairs(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone {
        self.0.iter().map(|h| (checked_bytes(h.name), checked_bytes(h.value)))
    }
}

fn checked_bytes<'a>(s: warpcore_str) -> &'a [u8] {
    if s.len == 0 {
        return &[];
    }
    // SAFETY: `check_headers` found `ptr` non-NULL and `len` within isize::MAX;
    // the caller promises `len` readable bytes for the call.
    unsafe { std::slice::from_raw_parts(s.ptr, s.len) }
}

pub(crate) fn check_headers<'a>(headers: *const warpcore_header, count: usize) -> Result<CheckedHeaders<'a>, warpcore_result> {
    let fields = try_array(headers, count, "headers")?;
    // The message naming the field is formatted only on failure: answering
    // allocates nothing.
    for (i, h) in fields.iter().enumerate() {
        try_slice_named(h.name.ptr, h.name.len, || format!("headers[{i}].name"))?;
        try_slice_named(h.value.ptr, h.value.len, || format!("headers[{i}].value"))?;
    }
    Ok(CheckedHeaders(fields))
}

/// Whether a thread has announced that it waits for `handle`'s handler call
/// to end (for tests that need the waiting side in place before the call ends).
#[doc(hidden)]
pub fn waiter_announced(handle: *const warpcore_response) -> bool {
    // SAFETY: as for any call on a handle: non-NULL and not yet released.
    !handle.is_null() && unsafe { &*handle }.waiting.load(Ordering::Acquire)
}

/// Whether `handle` is in the handler call running on this thread (so a call
/// on it takes the lock-free path).
pub(crate) fn in_call_here(handle: *mut warpcore_response) -> bool {
    // SAFETY: a non-NULL handle was passed to a handler and, per its documented
    // lifetime, has not been released.
    !handle.is_null() && unsafe { &*handle }.in_call_on.load(Ordering::Relaxed) == current_thread()
}

/// Runs `call` on the handle in whichever mode it is, freeing a deferred handle
/// whose answer the call finished.
pub(crate) fn perform(handle: *mut warpcore_response, call: Call<'_>) -> warpcore_result {
    if handle.is_null() {
        return fail(warpcore_result::NullArgument, "response is NULL");
    }
    // SAFETY: a non-NULL handle was passed to a handler and, per its documented
    // lifetime, has not been released.
    let h = unsafe { &*handle };
    if h.in_call_on.load(Ordering::Relaxed) == current_thread() {
        // SAFETY: this thread is inside `with_handle`'s handler call for this
        // handle (only this thread stores its own id there), where
        // `in_call_core` is the live core response; other threads wait for
        // the call to end (`wait_for_call_end`).
        let core = unsafe { &mut *h.in_call_core.load(Ordering::Relaxed) };
        return into_result(call_in_handler(core, call));
    }
    // Another thread's handler call may still run (its own calls took the
    // path above): wait for it to end.
    let (phase, mut deferred) = h.wait_for_call_end();
    let (result, finished) = match (phase, &mut *deferred) {
        (DEFERRED, Some(d)) => {
            let r = call_deferred(d, call);
            (r, d.is_finished())
        }
        _ => (Err(RespondError::AlreadyAnswered), false),
    };
    drop(deferred);
    if finished {
        // SAFETY: the handle came from `Box::into_raw` in `with_handle` and this
        // call finished its answer: it is released here, as documented.
        drop(unsafe { Box::from_raw(handle) });
    }
    into_result(result)
}

fn into_result(result: Result<(), RespondError>) -> warpcore_result {
    match result {
        Ok(()) => warpcore_result::Ok,
        Err(e) => e.into(),
    }
}

fn call_in_handler(core: &mut Response<'_>, call: Call<'_>) -> Result<(), RespondError> {
    match call {
        Call::Respond { status, headers, body: Body::Borrowed(b) } => core.respond(status, headers.pairs(), b),
        Call::Respond { status, headers, body: Body::Owned(p) } => core.respond_payload(status, headers.pairs(), p),
        Call::Start { status, headers, length } => core.start(status, headers.pairs(), length),
        Call::Write(Body::Borrowed(b)) => core.write(b),
        Call::Write(Body::Owned(p)) => core.write_payload(p),
        Call::End => core.end(),
        Call::Abort => core.abort(),
        Call::File { status, headers, path } => {
            let pairs: Vec<(&[u8], &[u8])> = headers.pairs().collect();
            core.respond_file(status, &pairs, path)
        }
        Call::Prepared(p) => core.respond_prepared(p.status, &p.head, p.image.as_ref()),
    }
}

fn call_deferred(d: &mut Deferred, call: Call<'_>) -> Result<(), RespondError> {
    match call {
        Call::Respond { status, headers, body: Body::Borrowed(b) } => d.respond_bytes(status, headers.pairs(), b),
        Call::Respond { status, headers, body: Body::Owned(p) } => d.respond(status, headers.pairs(), p),
        Call::Start { status, headers, length } => d.start(status, headers.pairs(), length),
        Call::Write(body) => d.write(body.into_payload()),
        Call::End => d.end(),
        Call::Abort => d.abort(),
        Call::File { status, headers, path } => {
            let pairs: Vec<(&[u8], &[u8])> = headers.pairs().collect();
            d.respond_file(status, &pairs, path)
        }
        Call::Prepared(p) => d.respond_rendered(p.status, &p.head),
    }
}

/// Answers the request with `status` (200..=599), `header_count` header fields
/// from `headers`, and `body_len` bytes of `body`. The library adds `Date`,
/// `Server`, `Content-Length` and `Connection`; a `Content-Length`,
/// `Transfer-Encoding` or `Connection` among `headers` is replaced (a
/// `Connection: close` is honoured), a `Date` or `Server` among them is sent
/// instead of the library's. For HEAD requests and statuses 204 and 304 no body
/// is sent. `headers` and `body` are only read during the call (a deferred
/// answer copies the body; see `warpcore_respond_buffer` to avoid that).
///
/// Errors: `WARPCORE_RESULT_ALREADY_ANSWERED`, `WARPCORE_RESULT_INVALID_STATUS`
/// and `WARPCORE_RESULT_INVALID_HEADER` (a name that is not a token, a value
/// with CR, LF or NUL; nothing was sent and the request may be answered again),
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
    response_boundary!(response, {
        let fields = ok_or_return!(check_headers(headers, header_count));
        let body = ok_or_return!(try_slice(body, body_len, "body"));
        perform(response, Call::Respond { status, headers: fields, body: Body::Borrowed(body) })
    })
}

/// Like `warpcore_respond`, without copying the body: the library reads
/// `body_len` bytes at `body` until it calls `release(release_userdata, body,
/// body_len)`, exactly once, after the bytes are sent, when the connection is
/// gone, or before returning if this call fails. `release` must not be NULL.
#[no_mangle]
pub extern "C" fn warpcore_respond_buffer(
    response: *mut warpcore_response,
    status: u16,
    headers: *const warpcore_header,
    header_count: usize,
    body: *const u8,
    body_len: usize,
    release: warpcore_release_cb,
    release_userdata: *mut c_void,
) -> warpcore_result {
    response_boundary!(response, {
        let Some(release) = release else {
            return fail(warpcore_result::NullArgument, "release is NULL");
        };
        let buffer = CBuffer { data: body, len: body_len, release, userdata: release_userdata };
        if body.is_null() && body_len > 0 {
            return fail(warpcore_result::NullArgument, "body is NULL");
        }
        let fields = ok_or_return!(check_headers(headers, header_count));
        let payload = Payload::new(Box::new(buffer));
        perform(response, Call::Respond { status, headers: fields, body: Body::Owned(payload) })
    })
}

/// Starts a streamed response: the status and header fields now, the body with
/// `warpcore_response_write` calls, then `warpcore_response_end`. With
/// `content_length` ≥ 0 exactly that many bytes must follow (a longer or shorter
/// stream closes the connection and returns `WARPCORE_RESULT_LENGTH_MISMATCH`);
/// with -1 the body is sent chunked (HTTP/1.1) or delimited by closing the
/// connection (HTTP/1.0). HEAD requests get the head only.
#[no_mangle]
pub extern "C" fn warpcore_response_start(
    response: *mut warpcore_response,
    status: u16,
    headers: *const warpcore_header,
    header_count: usize,
    content_length: i64,
) -> warpcore_result {
    response_boundary!(response, {
        let fields = ok_or_return!(check_headers(headers, header_count));
        let length = match content_length {
            -1 => None,
            n if n >= 0 => Some(n as u64),
            n => return fail(warpcore_result::InvalidArgument, format!("content_length {n} is neither -1 nor >= 0")),
        };
        perform(response, Call::Start { status, headers: fields, length })
    })
}

/// Sends `len` more bytes of a started stream (copied). Inside the handler call
/// this never blocks. Afterwards, a write is taken while at most the
/// high-water mark (`warpcore_config_set_stream_high_water`, default 1 MiB) is
/// queued for the connection; over it, a thread that is not a worker's blocks
/// until the client reads, and a worker thread (any handler's, writing to
/// another request's stream) never waits: it gets
/// `WARPCORE_RESULT_WOULD_BLOCK`, nothing was sent, and the handle stays the
/// caller's, still streaming.
#[no_mangle]
pub extern "C" fn warpcore_response_write(response: *mut warpcore_response, data: *const u8, len: usize) -> warpcore_result {
    response_boundary!(response, {
        let data = ok_or_return!(try_slice(data, len, "data"));
        perform(response, Call::Write(Body::Borrowed(data)))
    })
}

/// Like `warpcore_response_write`, without copying: `release` is called exactly
/// once, as for `warpcore_respond_buffer`.
#[no_mangle]
pub extern "C" fn warpcore_response_write_buffer(
    response: *mut warpcore_response,
    data: *const u8,
    len: usize,
    release: warpcore_release_cb,
    release_userdata: *mut c_void,
) -> warpcore_result {
    response_boundary!(response, {
        let Some(release) = release else {
            return fail(warpcore_result::NullArgument, "release is NULL");
        };
        let buffer = CBuffer { data, len, release, userdata: release_userdata };
        if data.is_null() && len > 0 {
            return fail(warpcore_result::NullArgument, "data is NULL");
        }
        perform(response, Call::Write(Body::Owned(Payload::new(Box::new(buffer)))))
    })
}

/// Ends a started stream (the last chunk for chunked bodies). Returns
/// `WARPCORE_RESULT_LENGTH_MISMATCH` if fewer bytes than the declared
/// Content-Length were written (the connection is then closed).
#[no_mangle]
pub extern "C" fn warpcore_response_end(response: *mut warpcore_response) -> warpcore_result {
    response_boundary!(response, { perform(response, Call::End) })
}

/// Gives up on the answer, for a handler or a stream that failed: the error
/// path of `warpcore_response_end`. Before anything was sent (no respond, no
/// start) the client gets `500 Internal Server Error` and the connection
/// closes. In the middle of a stream, what was already written is sent and the
/// connection closes without the stream's end (no last chunk, or fewer bytes
/// than the Content-Length), which is how HTTP/1.1 tells the client that the
/// body is incomplete; later pipelined requests on that connection are not
/// answered. (A close-delimited HTTP/1.0 body cannot show it.) Finishes the
/// answer like `warpcore_response_end`: a deferred handle is released.
///
/// Errors: `WARPCORE_RESULT_ALREADY_ANSWERED` (the answer was complete),
/// `WARPCORE_RESULT_CLOSED` (the client is gone; the handle is released),
/// `WARPCORE_RESULT_NULL_ARGUMENT`. Thread-safe like the other response calls.
#[no_mangle]
pub extern "C" fn warpcore_response_abort(response: *mut warpcore_response) -> warpcore_result {
    response_boundary!(response, { perform(response, Call::Abort) })
}

//! `warpcore_response`: the handle a handler answers through, inside the call
//! (fast path, no queue, no wakeup) or later from any thread (deferred).
//!
//! A handle is a token for a slot of the process-wide table in `handles.rs`:
//! the slot holds the state of the request it serves now, and the token's
//! generation tells whether that is still the token's request. Slots are
//! reused (a request answered in its call costs no allocation) but never
//! freed, and tokens are never reused, so no call on a stale handle reaches
//! another request or freed memory.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::cast::{try_array, try_slice, try_slice_named};
use super::handles::Table;
use super::request::{warpcore_header, warpcore_str};
use super::result::{fail, warpcore_result};
use crate::app::deferred::Deferred;
use crate::app::handler::{RespondError, Response};
use crate::app::prepared::PreparedAnswer;
use crate::net::payload::Payload;
use crate::sys::membarrier;

symbol_versions!();

// A token is a slot's index and a generation in 64 bits.
const _: () = assert!(usize::BITS == 64, "response handles are 64-bit tokens");

/// Called exactly once when the library is done with a buffer handed to it
/// without a copy (`warpcore_respond_buffer`, `warpcore_response_write_buffer`):
/// after its bytes were sent, when the connection is gone, or right away when
/// the call that passed it fails. `userdata` is the caller's. It may run on any
/// thread (usually the worker's) and must not call back into the library.
pub type warpcore_release_cb = Option<unsafe extern "C" fn(userdata: *mut c_void, data: *const u8, len: usize)>;

/// Told that a request ended before its answer was complete (see
/// `warpcore_response_on_close`): `res` is the request's handle, still the
/// caller's (an answering call or `warpcore_response_abort` on it now returns
/// `WARPCORE_RESULT_CLOSED` and releases it); `userdata` is the caller's. Runs
/// on the worker thread that served the connection, inside its event loop: it
/// must not block.
pub type warpcore_close_cb = Option<unsafe extern "C" fn(userdata: *mut c_void, res: *mut warpcore_response)>;

// Where a slot's current request is: the low two bits of `Slot::state`, above
// them the generation, one per request the slot served (0: none yet).

/// Inside the handler call: that thread answers through `in_call_core`
/// without the lock; any other thread waits for the call to return.
const IN_CALL: u64 = 0;
/// Done: answered inside the call, or released by the call that finished a
/// deferred answer. The slot is back in a pool.
const ANSWERED: u64 = 1;
/// The call ended without finishing the answer: `deferred` holds it.
const DEFERRED: u64 = 2;
/// Not a state: what `wait_for_call_end` says of a token from the future
/// (never handed out; a forged or corrupted handle).
const UNKNOWN: u64 = 3;
const PHASE_BITS: u32 = 2;
const PHASE_MASK: u64 = (1 << PHASE_BITS) - 1;
/// The last generation a slot serves; then it is retired, so that tokens,
/// 32 bits of generation, never repeat.
const LAST_GENERATION: u64 = u32::MAX as u64;

/// The response to one request.
///
/// Inside the handler call, answering is the fast path: the answer joins the
/// worker's output with no queue and no wakeup. A handler may instead return
/// without answering (or in the middle of a stream) and answer later from any
/// thread: the connection keeps its place (later pipelined requests wait).
///
/// Owner and lifetime: a handle stands for one request and is never reused
/// for another (it is a token, not an address: do not dereference it). A
/// handle answered inside the handler call is done when the handler returns.
/// A handle the handler returned from without finishing its answer is the
/// caller's until the call that finishes it: `warpcore_respond*`,
/// `warpcore_response_end` or `warpcore_response_abort` that succeeds, or any
/// call that returns `WARPCORE_RESULT_CLOSED` or
/// `WARPCORE_RESULT_LENGTH_MISMATCH`. That call releases the handle. Any
/// call on a done or released handle, from any thread, in any order, before
/// or after the server is freed, returns `WARPCORE_RESULT_ALREADY_ANSWERED`
/// and changes nothing (a buffer it was given is released at once); a value
/// that never was a handle gets `WARPCORE_RESULT_INVALID_ARGUMENT` when the
/// library can tell. A handle never answered keeps its connection open until
/// shutdown's deadline; its next call after that, even after
/// `warpcore_server_free`, returns `WARPCORE_RESULT_CLOSED` and releases it.
/// Memory: the library keeps each handle's state (a few hundred bytes) in a
/// table for the life of the process and reuses it for later requests; an
/// unfinished handle also keeps its request's answer state until released.
///
/// Threads: every call is thread-safe. A call from another thread made while
/// the handler is still running waits until it returns — unless that thread is
/// a worker thread (another handler), which never waits and gets
/// `WARPCORE_RESULT_WOULD_BLOCK` instead (nothing changed; call again later or
/// from a thread of your own). On a deferred
/// handle, the first call that finishes the answer wins and releases it;
/// every later or concurrent one returns `WARPCORE_RESULT_ALREADY_ANSWERED`
/// (or `WARPCORE_RESULT_CLOSED` when the client left first). A write waiting
/// for the stream to drain does not hold the handle: another thread's
/// `warpcore_response_abort` or `warpcore_response_end` goes through at once,
/// and the waiting write then returns `WARPCORE_RESULT_ALREADY_ANSWERED`.
pub struct warpcore_response {
    /// Never made: the type of the tokens C holds.
    _token: [u8; 0],
}

/// The state behind a handle: the request it serves now.
pub(crate) struct Slot {
    /// The thread (`current_thread`) inside whose handler call this slot
    /// is, or 0; with `in_call_core`, the lock-free path of a call made by the
    /// handler itself. Only that thread writes its own id here, so no other
    /// thread ever finds its id in it.
    in_call_on: AtomicUsize,
    /// The live core response while `in_call_on` is set; read only by that thread.
    in_call_core: AtomicPtr<Response<'static>>,
    /// The generation (above `PHASE_BITS`) and `IN_CALL`, `ANSWERED` or
    /// `DEFERRED`. The worker ends a call answered inside it with one store,
    /// without the lock: the common case costs no locked instruction (see
    /// `end_answered_call`). A token whose generation is not this one is
    /// stale: its request is over.
    state: AtomicU64,
    /// Set by a thread about to wait for the call to end, so that the worker
    /// knows to wake it (see `wait_for_call_end`); cleared for each call.
    waiting: AtomicBool,
    /// The deferred answer, while `state` is `DEFERRED`; taken by other threads.
    deferred: Mutex<Option<Deferred>>,
    handed_over: Condvar,
    /// The close callback of a request of this slot, and whether it runs.
    /// Locked after `deferred` when both are (never the other way round).
    close: Mutex<CloseWatch>,
    /// Signalled when a close callback returns.
    close_done: Condvar,
    /// The generation a close callback was last registered for (0: none):
    /// a request that never registers one takes no lock for it.
    close_watched: AtomicU64,
}

/// A caller's close callback and its userdata.
type CloseCallback = (unsafe extern "C" fn(*mut c_void, *mut warpcore_response), *mut c_void);

/// A request's close callback (`warpcore_response_on_close`), tagged with the
/// generation it was registered for: one left by an earlier request is
/// never run (it is replaced by the next registration).
struct CloseWatch {
    generation: u64,
    callback: Option<CloseCallback>,
    /// The generation whose callback runs now (0: none), on `running_on`.
    running: u64,
    running_on: usize,
}

// SAFETY: `in_call_core` is only dereferenced on the thread recorded in
// `in_call_on` (the worker, during the handler call); other threads wait on
// the condvar while the state is `IN_CALL`, until it is `DEFERRED` (with a
// `Deferred`, which is `Send`, behind the mutex) or `ANSWERED`.
unsafe impl Send for Slot {}
// SAFETY: as above; `deferred` is behind the mutex, `state` and `waiting`
// are atomics. `close` holds the caller's userdata pointer, which the library
// only passes back to the caller's callback (documented to run on the
// worker's thread), behind its mutex.
unsafe impl Sync for Slot {}

/// Every handle's slot, for the life of the process.
static SLOTS: Table<Slot> = Table::new(|| Slot {
    in_call_on: AtomicUsize::new(0),
    in_call_core: AtomicPtr::new(std::ptr::null_mut()),
    state: AtomicU64::new(0),
    waiting: AtomicBool::new(false),
    deferred: Mutex::new(None),
    handed_over: Condvar::new(),
    close: Mutex::new(CloseWatch { generation: 0, callback: None, running: 0, running_on: 0 }),
    close_done: Condvar::new(),
    close_watched: AtomicU64::new(0),
});

/// A slot's index and the generation of one request it served.
#[derive(Clone, Copy)]
struct Token {
    index: u32,
    generation: u64,
}

impl Token {
    fn handle(self) -> *mut warpcore_response {
        // A number in a pointer's clothes: never dereferenced, by C or here.
        (self.generation << 32 | self.index as u64) as usize as *mut warpcore_response
    }

    fn of(handle: *mut warpcore_response) -> Token {
        let bits = handle as usize as u64;
        Token { index: bits as u32, generation: bits >> 32 }
    }
}

/// The slot of a handle C passed in: `NULL_ARGUMENT` for NULL,
/// `INVALID_ARGUMENT` for a value no handle ever had.
fn resolve(handle: *mut warpcore_response) -> Result<(Token, &'static Slot), warpcore_result> {
    if handle.is_null() {
        return Err(fail(warpcore_result::NullArgument, "response is NULL"));
    }
    let token = Token::of(handle);
    match SLOTS.get(token.index) {
        Some(slot) if token.generation != 0 => Ok((token, slot)),
        _ => Err(not_a_handle()),
    }
}

fn not_a_handle() -> warpcore_result {
    fail(warpcore_result::InvalidArgument, "response is not a handle the library gave out")
}

/// A number, never 0, that tells the calling thread from every other live
/// thread: its `pthread_t`, which glibc reads from the thread pointer without
/// the `__tls_get_addr` call a thread-local of a shared object costs.
pub(crate) fn current_thread() -> usize {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as usize }
}

/// A thread's slot for its next handler call, kept so that a request
/// answered in the call costs no allocation and no lock (one is enough: a
/// thread runs one handler call at a time, and a slot that leaves with a
/// deferred answer goes back to the table); given back when the thread ends.
pub(crate) struct HandlePool(Cell<Option<(u32, &'static Slot)>>);

impl HandlePool {
    pub(crate) const fn new() -> HandlePool {
        HandlePool(Cell::new(None))
    }

    fn take(&self) -> (u32, &'static Slot) {
        self.0.take().unwrap_or_else(|| SLOTS.take())
    }

    /// Keeps a slot whose request is done, unless its generations are used up.
    fn put(&self, token: Token, slot: &'static Slot) {
        if token.generation < LAST_GENERATION {
            if let Some((index, _)) = self.0.replace(Some((token.index, slot))) {
                SLOTS.give_back(index);
            }
        }
    }
}

impl Drop for HandlePool {
    fn drop(&mut self) {
        if let Some((index, _)) = self.0.take() {
            SLOTS.give_back(index);
        }
    }
}

/// Runs the C handler with a handle for `res`, sends the prepared response it
/// returned if any (an answering handler's), then either keeps the slot for
/// the thread's next call or leaves the handle to the caller as a deferred
/// handle.
pub(crate) fn with_handle<'p>(
    pool: &HandlePool,
    res: &mut Response<'_>,
    call: impl FnOnce(*mut warpcore_response) -> Option<&'p Arc<PreparedAnswer>>,
) {
    let (index, slot) = pool.take();
    let response: *mut Response<'static> = (res as *mut Response<'_>).cast();
    let me = current_thread();
    // No lock: the slot is this thread's until `call` hands the token out
    // (a thread with a stale token may still look at it: hence atomic
    // stores). A pooled slot's request is done, so it holds no deferred
    // answer. The state is stored first with its new generation (release):
    // a waiter that sees this generation sees `waiting` cleared for it.
    let generation = (slot.state.load(Ordering::Relaxed) >> PHASE_BITS) + 1;
    let token = Token { index, generation };
    slot.waiting.store(false, Ordering::Relaxed);
    slot.state.store(generation << PHASE_BITS | IN_CALL, Ordering::Release);
    slot.in_call_core.store(response, Ordering::Relaxed);
    slot.in_call_on.store(me, Ordering::Relaxed);
    let returned = call(token.handle());
    slot.in_call_on.store(0, Ordering::Relaxed);
    if let Some(prepared) = returned {
        // As if the handler had sent it last: refused when it answered already.
        let p = prepared;
        let _ = res.respond_prepared(p.status, &p.head, p.image.as_ref());
    }

    if res.is_complete() {
        // A thread waiting for the call learns that it ended answered; from
        // now on the token is stale, whoever holds it.
        slot.end_answered_call(generation);
        pool.put(token, slot);
        return;
    }
    let mut deferred = slot.lock();
    let phase = match res.defer() {
        Ok(d) => {
            let d = deferred.insert(d);
            // A close callback registered inside the call: the connection
            // runs it if it lets go of the request unanswered. A fresh
            // answer's state is open, so this cannot fail.
            if slot.close_watched.load(Ordering::Relaxed) == generation && slot.watches_close(generation) {
                let _ = d.set_close_hook(close_hook(token));
            }
            DEFERRED
        }
        Err(_) => ANSWERED,
    };
    slot.state.store(generation << PHASE_BITS | phase, Ordering::Release);
    if slot.waiting.load(Ordering::Relaxed) {
        slot.handed_over.notify_all();
    }
    drop(deferred);
    if phase == ANSWERED {
        pool.put(token, slot);
    }
    // Else the caller owns the handle now; the call that finishes the answer
    // gives the slot back to the table.
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Option<Deferred>> {
        self.deferred.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends a handler call that answered, on the worker, and wakes a thread
    /// waiting for it if there is one.
    ///
    /// The common case takes no lock: a store, then a look at `waiting`. A
    /// waiter sets `waiting` and then looks at `state`; the asymmetric fence
    /// between each side's store and load (a compiler fence here, a
    /// `membarrier` on the waiter's side) means at least one of them sees the
    /// other's store. So either the waiter finds the call over, or the worker
    /// finds it waiting, takes the lock (which the waiter holds from its last
    /// look until it sleeps) and wakes it.
    fn end_answered_call(&self, generation: u64) {
        self.state.store(generation << PHASE_BITS | ANSWERED, Ordering::Release);
        membarrier::light();
        if self.waiting.load(Ordering::Relaxed) {
            let _locked = self.lock();
            self.handed_over.notify_all();
        }
    }

    /// Waits until the handler call of `generation`'s request, running on
    /// another thread, has ended; returns how that request stands (`ANSWERED`
    /// when it is over, whatever the slot serves now, `DEFERRED`, or
    /// `UNKNOWN` for a generation never handed out) with `deferred` locked.
    fn wait_for_call_end(&self, generation: u64) -> (u64, MutexGuard<'_, Option<Deferred>>) {
        let mut guard = self.lock();
        let mut yields = 0;
        let mut announced = false;
        loop {
            let now = self.state.load(Ordering::Acquire);
            let current = now >> PHASE_BITS;
            if current != generation {
                // Over (the slot serves a later request), or never begun.
                return (if generation < current { ANSWERED } else { UNKNOWN }, guard);
            }
            if now & PHASE_MASK != IN_CALL {
                return (now & PHASE_MASK, guard);
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

    /// Whether `generation`'s request is deferred and unfinished.
    fn holds(&self, generation: u64) -> bool {
        self.state.load(Ordering::Acquire) == generation << PHASE_BITS | DEFERRED
    }

    fn lock_close(&self) -> MutexGuard<'_, CloseWatch> {
        self.close.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a close callback is registered for `generation`'s request.
    fn watches_close(&self, generation: u64) -> bool {
        let c = self.lock_close();
        c.generation == generation && c.callback.is_some()
    }

    /// Registers (or, with None, removes) `generation`'s close callback in
    /// `c` (this slot's, locked); a callback it replaces never runs from now
    /// on (one running already is waited for by `settle_close_watch`).
    fn watch_close(&self, c: &mut CloseWatch, generation: u64, callback: Option<CloseCallback>) {
        c.generation = generation;
        c.callback = callback;
        self.close_watched.store(generation, Ordering::Release);
    }

    /// Returns once `generation`'s close callback is not running (unless on
    /// this very thread: from the callback itself), with `held` (the lock,
    /// when the caller holds it) or the lock taken here. Called without
    /// `deferred` locked: the callback may be calling the handle.
    fn settle_close_watch(&self, generation: u64, held: Option<MutexGuard<'_, CloseWatch>>) {
        let c = held.unwrap_or_else(|| self.lock_close());
        self.wait_close_callback(c, generation);
    }

    /// The request of `generation` is over for its caller (the call that
    /// finished it is about to return): its close callback will not run,
    /// and one running on another thread has returned when this returns.
    /// Called without `deferred` locked: the callback may be calling the handle.
    fn end_close_watch(&self, generation: u64, held: Option<MutexGuard<'_, CloseWatch>>) {
        if held.is_none() && self.close_watched.load(Ordering::Acquire) != generation {
            // Never registered for this request: no callback to stop or wait for.
            return;
        }
        let mut c = held.unwrap_or_else(|| self.lock_close());
        if c.generation == generation {
            c.callback = None;
        }
        self.wait_close_callback(c, generation);
    }

    /// Whether `generation`'s close callback runs now on another thread.
    fn close_callback_elsewhere(c: &CloseWatch, generation: u64) -> bool {
        c.running == generation && c.running_on != current_thread()
    }

    fn wait_close_callback(&self, mut c: MutexGuard<'_, CloseWatch>, generation: u64) {
        while Slot::close_callback_elsewhere(&c, generation) {
            c = self.close_done.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The hook the connection runs when it lets go of `token`'s request
/// unanswered: it runs the request's close callback, unless the request was
/// finished meanwhile.
fn close_hook(token: Token) -> crate::app::deferred_shared::CloseHook {
    Box::new(move || run_close_callback(token))
}

/// Runs `token`'s close callback, on the worker thread, if it is registered
/// and the request is still deferred and unfinished. While it runs, a call
/// on another thread that finishes the request waits for it before
/// returning, so the callback never runs after such a call returned; calls
/// from the callback itself go through (they find the connection closed).
fn run_close_callback(token: Token) {
    let Some(slot) = SLOTS.get(token.index) else { return };
    let (callback, userdata) = {
        let mut c = slot.lock_close();
        if c.generation != token.generation || !slot.holds(token.generation) {
            return;
        }
        let Some(callback) = c.callback.take() else { return };
        c.running = token.generation;
        c.running_on = current_thread();
        callback
    };
    // SAFETY: the caller registered this function for this signature, with
    // this userdata, and is told it runs on the worker thread; it was not
    // released (the request is unfinished: a finishing call waits for it).
    unsafe { callback(userdata, token.handle()) };
    let mut c = slot.lock_close();
    if c.running == token.generation {
        c.running = 0;
        c.running_on = 0;
    }
    drop(c);
    slot.close_done.notify_all();
}

/// What a response call does, in either mode.
pub(crate) enum Call<'a> {
    File {
        status: u16,
        headers: CheckedHeaders<'a>,
        path: &'a std::path::Path,
    },
    Prepared(&'a Arc<PreparedAnswer>),
    Respond {
        status: u16,
        headers: CheckedHeaders<'a>,
        body: Body<'a>,
    },
    Start {
        status: u16,
        headers: CheckedHeaders<'a>,
        length: Option<u64>,
    },
    Write(Body<'a>),
    End,
    Abort,
    /// Accept the request's upgrade; the handle lands in `out` on success.
    Upgrade {
        headers: CheckedHeaders<'a>,
        events: Option<std::sync::Arc<dyn crate::app::upgrade::UpgradeEvents>>,
        out: &'a mut Option<crate::app::upgrade::Upgraded>,
    },
    /// Take the connection over raw, nothing sent; the handle lands in `out`.
    TakeOver {
        events: Option<std::sync::Arc<dyn crate::app::upgrade::UpgradeEvents>>,
        out: &'a mut Option<crate::app::upgrade::Upgraded>,
    },
    /// Runs a function on the request's upgrade offer (None when it made none).
    UpgradeRequest(&'a mut dyn FnMut(Option<&crate::app::upgrade::UpgradeRequest>)),
    /// Sets the reason phrase of the status line to come (checked already).
    SetReason(&'a [u8]),
    /// Registers (None: removes) the close callback and its userdata.
    OnClose(Option<CloseCallback>),
    /// Pauses the answer timeout.
    PauseTimeout,
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
pub(crate) struct CBuffer {
    pub(crate) data: *const u8,
    pub(crate) len: usize,
    pub(crate) release: unsafe extern "C" fn(*mut c_void, *const u8, usize),
    pub(crate) userdata: *mut c_void,
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
    /// Views the library made of its own byte slices, valid for `'a`.
    pub(crate) fn of(views: &'a [warpcore_header]) -> CheckedHeaders<'a> {
        CheckedHeaders(views)
    }

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

pub(crate) fn check_headers<'a>(
    headers: *const warpcore_header,
    count: usize,
) -> Result<CheckedHeaders<'a>, warpcore_result> {
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
    resolve(handle.cast_mut()).is_ok_and(|(_, slot)| slot.waiting.load(Ordering::Acquire))
}

/// Whether a handler call is running on this thread with `handle`'s slot (so
/// the call runs inside the worker loop, whose panics are quiet already).
pub(crate) fn in_call_here(handle: *mut warpcore_response) -> bool {
    resolve(handle).is_ok_and(|(_, slot)| slot.in_call_on.load(Ordering::Relaxed) == current_thread())
}

/// Runs `f` on the handle's core response when this thread is inside its
/// handler call; `INVALID_STATE` otherwise (after the call, or on another
/// thread), `ALREADY_ANSWERED` or `INVALID_ARGUMENT` for a stale or unknown
/// handle.
pub(crate) fn with_core_in_call<R>(
    handle: *mut warpcore_response,
    f: impl FnOnce(&mut Response<'_>) -> R,
) -> Result<R, warpcore_result> {
    let (token, slot) = resolve(handle)?;
    if slot.in_call_on.load(Ordering::Relaxed) == current_thread()
        && slot.state.load(Ordering::Relaxed) >> PHASE_BITS == token.generation
    {
        // SAFETY: as in `perform`: this thread is inside the handler call of
        // this token's request, where `in_call_core` is the live core response.
        let core = unsafe { &mut *slot.in_call_core.load(Ordering::Relaxed) };
        return Ok(f(core));
    }
    let now = slot.state.load(Ordering::Acquire);
    let current = now >> PHASE_BITS;
    Err(if token.generation > current {
        not_a_handle()
    } else if token.generation < current || !matches!(now & PHASE_MASK, IN_CALL | DEFERRED) {
        into_result(Err(RespondError::AlreadyAnswered))
    } else {
        fail(warpcore_result::InvalidState, "only inside the handler call, on its own thread")
    })
}

/// Runs `call` on the handle in whichever mode its request is: inside its
/// handler call on this thread, deferred, or done.
pub(crate) fn perform(handle: *mut warpcore_response, call: Call<'_>) -> warpcore_result {
    let (token, slot) = match resolve(handle) {
        Ok(found) => found,
        Err(e) => return e,
    };
    if slot.in_call_on.load(Ordering::Relaxed) == current_thread()
        && slot.state.load(Ordering::Relaxed) >> PHASE_BITS == token.generation
    {
        // SAFETY: this thread is inside `with_handle`'s handler call for this
        // token's request (only this thread stores its own id in
        // `in_call_on`, and the generation is the token's), where
        // `in_call_core` is the live core response; other threads wait for
        // the call to end (`wait_for_call_end`).
        let core = unsafe { &mut *slot.in_call_core.load(Ordering::Relaxed) };
        if let Call::OnClose(callback) = call {
            // Kept in the slot: `with_handle` gives the connection its hook
            // if the call returns without finishing the answer.
            if core.is_complete() {
                return into_result(Err(RespondError::AlreadyAnswered));
            }
            slot.watch_close(&mut slot.lock_close(), token.generation, callback);
            return warpcore_result::Ok;
        }
        return into_result(call_in_handler(core, call));
    }
    // A worker thread never waits for another's handler call (two handlers
    // answering each other's handles would wait for each other for good).
    let on_worker = crate::app::mailbox::on_worker_thread();
    if on_worker {
        let now = slot.state.load(Ordering::Acquire);
        if now >> PHASE_BITS == token.generation && now & PHASE_MASK == IN_CALL {
            return fail(
                warpcore_result::WouldBlock,
                "the handle's handler call is still running on another worker thread, and a worker thread never waits",
            );
        }
    }
    // Another thread's handler call may still run (its own calls took the
    // path above): wait for it to end. A stale token (a request answered in
    // its call, or released) finds its request over and is told so.
    let (phase, guard) = slot.wait_for_call_end(token.generation);
    match phase {
        DEFERRED => {
            // A call may finish the request, and then waits for its close
            // callback if that runs on another thread. A worker thread never
            // waits: it is refused while one runs, and holds the watch for the
            // call so that none starts meanwhile (two workers' callbacks
            // answering each other's requests would wait for each other).
            let close = if on_worker && slot.close_watched.load(Ordering::Acquire) == token.generation {
                let c = slot.lock_close();
                if Slot::close_callback_elsewhere(&c, token.generation) {
                    return close_callback_running();
                }
                Some(c)
            } else {
                None
            };
            perform_deferred(token, slot, guard, close, call)
        }
        UNKNOWN => not_a_handle(),
        _ => {
            // Over. Its close callback may still be running, if it released
            // the handle itself: the caller may free its userdata once this
            // returns, so it waits for it too (a worker thread is refused).
            drop(guard);
            let c = slot.lock_close();
            if Slot::close_callback_elsewhere(&c, token.generation) {
                if on_worker {
                    return close_callback_running();
                }
                slot.wait_close_callback(c, token.generation);
            }
            into_result(Err(RespondError::AlreadyAnswered))
        }
    }
}

fn close_callback_running() -> warpcore_result {
    fail(
        warpcore_result::WouldBlock,
        "the handle's close callback is running on another worker thread, and a worker thread never waits",
    )
}

/// Runs `call` on a deferred request, with its slot locked, and releases the
/// handle when the call finished the answer. A write that must wait for the
/// stream to drain waits without the lock, so that other calls (an abort)
/// go through meanwhile.
fn perform_deferred(
    token: Token,
    slot: &'static Slot,
    mut guard: MutexGuard<'static, Option<Deferred>>,
    mut close: Option<MutexGuard<'static, CloseWatch>>,
    call: Call<'_>,
) -> warpcore_result {
    let Some(d) = guard.as_mut() else {
        return into_result(Err(RespondError::AlreadyAnswered));
    };
    let mut settle_close = false;
    let result = match call {
        Call::OnClose(callback) => {
            // Registered before the hook is set: the hook may run at once
            // (on the worker), and finds it. A callback it replaces may be
            // running: waited for below, without the lock it may need.
            match close.as_mut() {
                Some(c) => slot.watch_close(c, token.generation, callback),
                None => slot.watch_close(&mut slot.lock_close(), token.generation, callback),
            }
            settle_close = true;
            match callback {
                Some(_) => d.set_close_hook(close_hook(token)),
                None => d.still_open(),
            }
        }
        Call::Write(body) => match d.backpressure() {
            None => d.write(body.into_payload()),
            Some(shared) => {
                drop(guard);
                shared.wait_writable(|| !slot.holds(token.generation));
                guard = slot.lock();
                match guard.as_mut() {
                    Some(d) if slot.holds(token.generation) => d.write_now(body.into_payload()),
                    // Another call finished the answer meanwhile.
                    _ => return into_result(Err(RespondError::AlreadyAnswered)),
                }
            }
        },
        call => call_deferred(d, call),
    };
    if guard.as_ref().is_some_and(Deferred::is_finished) {
        // Released: the state says so before anyone can take the slot, and
        // writers waiting for the stream to drain learn it.
        let done = guard.take();
        slot.state.store(token.generation << PHASE_BITS | ANSWERED, Ordering::Release);
        drop(guard);
        if let Some(done) = done {
            done.shared().wake_writers();
        }
        slot.end_close_watch(token.generation, close);
        if token.generation < LAST_GENERATION {
            SLOTS.give_back(token.index);
        }
    } else if settle_close {
        drop(guard);
        slot.settle_close_watch(token.generation, close);
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
        Call::Upgrade { headers, events, out } => {
            *out = Some(core.upgrade(headers.pairs(), events)?);
            Ok(())
        }
        Call::UpgradeRequest(f) => {
            f(core.upgrade_request());
            Ok(())
        }
        Call::TakeOver { events, out } => {
            *out = Some(core.take_over(events)?);
            Ok(())
        }
        Call::SetReason(reason) => core.set_reason(reason),
        Call::PauseTimeout => core.pause_timeout(),
        Call::OnClose(_) => unreachable!("perform registers close callbacks in the slot"),
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
        Call::Prepared(p) => d.respond_prepared(p),
        Call::Upgrade { headers, events, out } => {
            *out = Some(d.upgrade(headers.pairs(), events)?);
            Ok(())
        }
        Call::UpgradeRequest(f) => {
            f(d.upgrade_request());
            Ok(())
        }
        Call::TakeOver { events, out } => {
            *out = Some(d.take_over(events)?);
            Ok(())
        }
        Call::SetReason(reason) => d.set_reason(reason),
        Call::PauseTimeout => d.pause_timeout(),
        Call::OnClose(_) => unreachable!("perform_deferred registers close callbacks in the slot"),
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
/// Errors: `WARPCORE_RESULT_ALREADY_ANSWERED` (answered before, or the handle
/// is done or released: see `warpcore_response`), `WARPCORE_RESULT_INVALID_STATUS`
/// and `WARPCORE_RESULT_INVALID_HEADER` (a name that is not a token, a value
/// with CR, LF or NUL; nothing was sent and the request may be answered again),
/// `WARPCORE_RESULT_CLOSED` (the client is gone), `WARPCORE_RESULT_NULL_ARGUMENT`,
/// `WARPCORE_RESULT_INVALID_ARGUMENT` (not a handle).
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
/// caller's, still streaming. While a write blocks it does not hold the
/// handle: another thread's call goes through, and if that call finishes the
/// answer (`warpcore_response_abort`, `warpcore_response_end`) this one
/// returns `WARPCORE_RESULT_ALREADY_ANSWERED` at once, without sending its
/// bytes.
#[no_mangle]
pub extern "C" fn warpcore_response_write(
    response: *mut warpcore_response,
    data: *const u8,
    len: usize,
) -> warpcore_result {
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
/// Errors: `WARPCORE_RESULT_ALREADY_ANSWERED` (the answer was complete, or
/// the handle is done or released), `WARPCORE_RESULT_CLOSED` (the client is
/// gone; the handle is released), `WARPCORE_RESULT_NULL_ARGUMENT`. Thread-safe
/// like the other response calls: it never waits for a stream to drain, so it
/// is how another thread stops a writer blocked on a client that does not read.
#[no_mangle]
pub extern "C" fn warpcore_response_abort(response: *mut warpcore_response) -> warpcore_result {
    response_boundary!(response, { perform(response, Call::Abort) })
}

/// Sets the reason phrase of the status line this request's answer will
/// send, `len` bytes at `reason`, in place of the library's phrase for its
/// code: `HTTP/1.1 200 Fine` (Warp sends WAI's `statusMessage`, a WSGI
/// application gives its status as `"200 Fine"`). Call it before the call
/// that begins the answer (`warpcore_respond`, `warpcore_respond_buffer`,
/// `warpcore_respond_file`, `warpcore_respond_prepared`,
/// `warpcore_response_start`); a second call replaces the first. A `101`
/// sent by `warpcore_response_upgrade`, and the library's own error answers,
/// keep the library's phrase. The phrase may hold tabs, spaces, visible ASCII
/// and bytes from 0x80 (RFC 9112 §4), at most 8192 bytes; it may be empty
/// (`HTTP/1.1 200 `). It is copied: `reason` is only read during the call.
/// Thread-safe like the other response calls; it does not finish the answer.
///
/// Errors: `WARPCORE_RESULT_INVALID_STATUS` (a CR, LF or other control byte,
/// or longer than 8192 bytes; nothing changed), `WARPCORE_RESULT_ALREADY_ANSWERED`
/// (the answer began, or the handle is done or released),
/// `WARPCORE_RESULT_CLOSED` (the client is gone; a deferred handle is
/// released), `WARPCORE_RESULT_NULL_ARGUMENT`, `WARPCORE_RESULT_INVALID_ARGUMENT`
/// (not a handle).
#[no_mangle]
pub extern "C" fn warpcore_response_set_reason(
    response: *mut warpcore_response,
    reason: *const u8,
    len: usize,
) -> warpcore_result {
    response_boundary!(response, {
        let reason = ok_or_return!(try_slice(reason, len, "reason"));
        if !crate::http::compose::valid_reason(reason) {
            return fail(
                warpcore_result::InvalidStatus,
                "a reason phrase holds only tabs, spaces, visible ASCII and bytes from 0x80, at most 8192 bytes",
            );
        }
        perform(response, Call::SetReason(reason))
    })
}

/// Pauses the answer timeout for this request, as Warp's `pauseTimeout`: when
/// the handler returns without answering, the deferred answer may take as
/// long as it needs to begin (`WARPCORE_TIMEOUT_ANSWER` no longer applies to
/// it, nor to a streamed request body its application is slow to read while
/// the answer has not begun). For an application that works long on purpose
/// (a long poll, a report). The client's own waits stay bounded: a request
/// body that makes no progress (`WARPCORE_TIMEOUT_BODY`) and a response the
/// client does not read (`WARPCORE_TIMEOUT_WRITE`). A shutdown's deadline
/// still ends it. Call it inside the handler call or later, before the answer
/// begins (after that no answer timeout applies anyway: the call does nothing
/// and succeeds while a stream is open). Thread-safe like the other response
/// calls; it does not finish the answer.
///
/// Errors: `WARPCORE_RESULT_ALREADY_ANSWERED` (the answer is complete, or the
/// handle is done or released), `WARPCORE_RESULT_CLOSED` (the client is gone),
/// `WARPCORE_RESULT_NULL_ARGUMENT`, `WARPCORE_RESULT_INVALID_ARGUMENT` (not a
/// handle).
#[no_mangle]
pub extern "C" fn warpcore_response_pause_timeout(response: *mut warpcore_response) -> warpcore_result {
    response_boundary!(response, { perform(response, Call::PauseTimeout) })
}

/// Asks to be told when this request ends before its answer is complete:
/// `callback(userdata, response)` runs once, on the worker thread that serves
/// the connection, when the connection lets go of a request whose handler
/// returned without finishing its answer — the client closed or reset the
/// connection (or only sent its FIN, with
/// `warpcore_config_set_client_fin_ends_request`), a timeout (idle, write,
/// answer) or an error ended it, or a shutdown's deadline cut it. What an HTTP server's embedder needs for a
/// long poll or an event stream that has nothing to send: stop waiting and
/// release the handle (libmicrohttpd's `MHD_REQUEST_TERMINATED_CLIENT_ABORT`,
/// uvicorn's `http.disconnect`). The handle is still the caller's when it
/// runs: release it with `warpcore_response_abort` (or any answering call),
/// which returns `WARPCORE_RESULT_CLOSED`, from the callback or any thread.
///
/// Call it inside the handler call or later, from any thread, before the
/// answer is complete; a later call replaces the callback, and a NULL
/// `callback` removes it. Registered inside a handler call that then finishes
/// its answer, it never runs. Once a call on the handle that finished the
/// answer, released the handle, or found it released
/// (`WARPCORE_RESULT_ALREADY_ANSWERED`) returned, the callback is not running
/// (unless that call was made from it) and will not run: such a call made on
/// another thread while it runs waits until it returns. Likewise once a call
/// that replaced or removed a callback returned. So `userdata` may be freed
/// after such a call, or by the callback itself. A worker thread never waits:
/// there (another handler, or a callback of the library's), a call on a handle
/// whose close callback runs on another worker thread returns
/// `WARPCORE_RESULT_WOULD_BLOCK` and changes nothing; call again later, or
/// from a thread of your own.
///
/// The callback runs inside the worker's event loop: it must not block, nor
/// wait for a thread that may be calling this handle (that thread may be
/// waiting for the callback). It may call the library (a release callback,
/// `warpcore_response_abort` on this handle, a wake-up of your own thread).
/// The handle it is given is the request's own (the same token).
///
/// Errors: `WARPCORE_RESULT_ALREADY_ANSWERED` (the answer is complete, or the
/// handle is done or released: nothing was registered),
/// `WARPCORE_RESULT_CLOSED` (the connection is gone already: the callback
/// will not run, and the handle is released, as by any call that returns
/// it), `WARPCORE_RESULT_WOULD_BLOCK` (on a worker thread, see above),
/// `WARPCORE_RESULT_NULL_ARGUMENT` (`response` is NULL),
/// `WARPCORE_RESULT_INVALID_ARGUMENT` (not a handle).
#[no_mangle]
pub extern "C" fn warpcore_response_on_close(
    response: *mut warpcore_response,
    callback: warpcore_close_cb,
    userdata: *mut c_void,
) -> warpcore_result {
    response_boundary!(response, { perform(response, Call::OnClose(callback.map(|f| (f, userdata)))) })
}

//! A request body that streams: the engine hands the application its bytes as
//! they arrive, through a window of at most `BODY_WINDOW` bytes. While the
//! window is full the connection reads nothing more from its socket, so TCP
//! backpressure reaches the client; reading from the window makes room and
//! tells the worker to read on.
//!
//! The reader (`BodyStream`) may move to any thread. Off the worker threads a
//! read waits for bytes; on a worker thread it never waits: it returns
//! `WouldBlock` when the window is empty.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::mailbox::{on_worker_thread, Answer, ConnRef, Mailbox, Message};

/// The most body bytes a connection holds for its application at once.
pub const BODY_WINDOW: usize = 64 * 1024;

/// Why a body read did not return bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Nothing has arrived yet and the caller is a worker thread, which never
    /// waits: read again later (from a thread of your own, or after the next
    /// answer call).
    WouldBlock,
    /// The body passed the server's `max_body_size`.
    TooLarge,
    /// The chunked framing was invalid.
    Invalid,
    /// The client left, stopped sending past the body timeout, or the
    /// connection was closed (shutdown, the answer timeout).
    Closed,
}

/// How the body ended, as far as the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    Finished,
    Failed(BodyError),
}

struct BodyState {
    bytes: VecDeque<u8>,
    end: End,
    /// The application asked for the body (a `100 Continue` owed is sent).
    asked: bool,
    /// The worker stopped reading because the window was full.
    paused: bool,
    /// A `ReadBody` message is on its way to the worker.
    posted: bool,
    /// The reader was dropped: the worker discards what still comes.
    reader_gone: bool,
    waiters: usize,
    /// Told, on the worker, that a `try_read` that found nothing may read on.
    ready_hook: Option<ReadyHook>,
    /// A `try_read` found nothing: the hook is owed once bytes arrive or the
    /// body ends.
    want_ready: bool,
    /// The thread the hook runs on now: a reader dropped on another thread
    /// waits for it to return.
    hook_running_on: Option<std::thread::ThreadId>,
}

/// What a non-blocking reader is told by: run on the worker thread, it must
/// not block.
pub(crate) type ReadyHook = Arc<dyn Fn() + Send + Sync>;

/// What a body's reader and its connection share.
pub(crate) struct BodyShared {
    state: Mutex<BodyState>,
    arrived: Condvar,
}

impl BodyShared {
    pub fn new() -> Arc<BodyShared> {
        Arc::new(BodyShared {
            state: Mutex::new(BodyState {
                bytes: VecDeque::new(),
                end: End::Open,
                asked: false,
                paused: false,
                posted: false,
                reader_gone: false,
                waiters: 0,
                ready_hook: None,
                want_ready: false,
                hook_running_on: None,
            }),
            arrived: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BodyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Worker side: room left in the window (0 while full), and whether the
    /// reader is gone (what arrives is then discarded).
    pub fn room(&self) -> (usize, bool) {
        let s = self.lock();
        (BODY_WINDOW.saturating_sub(s.bytes.len()), s.reader_gone)
    }

    /// Worker side: appends decoded body bytes (at most the room it was told).
    pub fn push(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let hook = {
            let mut s = self.lock();
            s.bytes.extend(bytes);
            if s.waiters > 0 {
                self.arrived.notify_all();
            }
            Self::owed_hook(&mut s)
        };
        self.run_hook(hook);
    }

    /// The ready hook, when a `try_read` is owed it; marked running.
    fn owed_hook(s: &mut BodyState) -> Option<ReadyHook> {
        if !s.want_ready {
            return None;
        }
        let hook = s.ready_hook.clone()?;
        s.want_ready = false;
        s.hook_running_on = Some(std::thread::current().id());
        Some(hook)
    }

    /// Runs the ready hook taken by `owed_hook`, without the lock (it may
    /// read); its panic is contained, as an upgraded connection's event
    /// callback's is.
    fn run_hook(&self, hook: Option<ReadyHook>) {
        let Some(hook) = hook else { return };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook()));
        drop(hook);
        let mut s = self.lock();
        s.hook_running_on = None;
        if s.waiters > 0 {
            self.arrived.notify_all();
        }
    }

    /// Worker side: the window is full, reading stops until the reader makes
    /// room. Returns false when it has room again already (read on).
    pub fn pause(&self) -> bool {
        let mut s = self.lock();
        if s.bytes.len() < BODY_WINDOW || s.reader_gone {
            return false;
        }
        s.paused = true;
        true
    }

    /// Worker side: the client waits for `100 Continue` until the application
    /// asks for the body. Returns false when it has asked already.
    pub fn pause_until_asked(&self) -> bool {
        let mut s = self.lock();
        if s.asked {
            return false;
        }
        s.paused = true;
        true
    }

    /// Worker side: the handler returned without taking the reader.
    pub fn no_reader(&self) {
        let mut s = self.lock();
        s.reader_gone = true;
        s.bytes = VecDeque::new();
    }

    /// Worker side: a `ReadBody` message was taken.
    pub fn resumed(&self) {
        let mut s = self.lock();
        s.posted = false;
        s.paused = false;
    }

    /// Worker side: the body ended (`Ok`) or failed.
    pub fn finish(&self, result: Result<(), BodyError>) {
        let hook = {
            let mut s = self.lock();
            self.end(&mut s, result);
            Self::owed_hook(&mut s)
        };
        self.run_hook(hook);
    }

    /// Records how the body ended (the first word stays) and wakes blocked readers.
    fn end(&self, s: &mut BodyState, result: Result<(), BodyError>) {
        if s.end == End::Open {
            s.end = match result {
                Ok(()) => End::Finished,
                Err(e) => End::Failed(e),
            };
        }
        if s.waiters > 0 {
            self.arrived.notify_all();
        }
    }

    /// Whether the application asked for the body.
    pub fn asked(&self) -> bool {
        self.lock().asked
    }
}

/// The body of one request, read as it arrives. Made by
/// [`crate::Response::body`]; `Send`, so it may be read from any thread, one
/// thread at a time. Dropping it before the end lets the engine discard the
/// rest (up to a bound, past which the connection closes after its answer).
pub struct BodyStream {
    shared: Arc<BodyShared>,
    mailbox: Arc<Mailbox>,
    conn: ConnRef,
}

impl BodyStream {
    pub(crate) fn new(shared: Arc<BodyShared>, mailbox: Arc<Mailbox>, conn: ConnRef) -> BodyStream {
        BodyStream { shared, mailbox, conn }
    }

    /// Reads body bytes into `buf`: `Ok(n)` with `n > 0`, `Ok(0)` at the end
    /// of the body (or when `buf` is empty). Off the worker threads it waits
    /// for bytes; on a worker thread it returns `WouldBlock` instead. The first
    /// read answers a client's `Expect: 100-continue`.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, BodyError> {
        self.read_shared(buf)
    }

    /// `read` through a shared reference: overlapping reads take bytes in
    /// turn (for the C API, whose readers may share one body).
    pub(crate) fn read_shared(&self, buf: &mut [u8]) -> Result<usize, BodyError> {
        self.read_with(buf, on_worker_thread())
    }

    /// Reads what has arrived into `buf`, never waiting, on any thread:
    /// `WouldBlock` while nothing has. After a `WouldBlock`, the hook set by
    /// `on_readable` runs once, on the worker, when bytes arrive or the body
    /// ends or fails. Overlapping calls take bytes in turn.
    pub fn try_read(&self, buf: &mut [u8]) -> Result<usize, BodyError> {
        self.read_with(buf, true)
    }

    /// Sets the function run, on the worker thread, when a `try_read` that
    /// returned `WouldBlock` may read on (bytes arrived, or the body ended or
    /// failed): once per such `WouldBlock`. It replaces any set before. Set it
    /// before the first `try_read` (one that returned `WouldBlock` before it
    /// was set is not owed it: read again after setting it). It must not
    /// block; it may read. It is dropped with the reader, which then waits for
    /// it to return if it runs on another thread, so it never runs after the
    /// reader was dropped.
    pub fn on_readable(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.replace_ready_hook(Some(Arc::new(hook)));
    }

    /// Removes the hook set by `on_readable`: once this returns it is not
    /// running (unless on this thread: from the hook itself) and never runs.
    pub fn clear_ready_hook(&self) {
        self.replace_ready_hook(None);
    }

    fn replace_ready_hook(&self, hook: Option<ReadyHook>) {
        let old = {
            let mut s = self.shared.lock();
            s.want_ready = false;
            let old = std::mem::replace(&mut s.ready_hook, hook);
            // The one replaced may be running on the worker: its owner may
            // free what it uses once this returns.
            drop(self.wait_for_hook(s));
            old
        };
        drop(old);
    }

    /// Waits until the ready hook is not running on another thread.
    fn wait_for_hook<'a>(&'a self, mut s: MutexGuard<'a, BodyState>) -> MutexGuard<'a, BodyState> {
        let me = std::thread::current().id();
        while s.hook_running_on.is_some_and(|on| on != me) {
            s.waiters += 1;
            s = self.shared.arrived.wait(s).unwrap_or_else(|e| e.into_inner());
            s.waiters -= 1;
        }
        s
    }

    fn read_with(&self, buf: &mut [u8], never_block: bool) -> Result<usize, BodyError> {
        let mut s = self.shared.lock();
        let mut wake = !s.asked;
        s.asked = true;
        let result = loop {
            if !s.bytes.is_empty() || buf.is_empty() {
                let n = buf.len().min(s.bytes.len());
                // The window's two halves, copied as slices (not byte by byte).
                let (front, back) = s.bytes.as_slices();
                let first = n.min(front.len());
                buf[..first].copy_from_slice(&front[..first]);
                buf[first..n].copy_from_slice(&back[..n - first]);
                s.bytes.drain(..n);
                wake |= s.paused;
                break Ok(n);
            }
            match s.end {
                End::Finished => break Ok(0),
                End::Failed(e) => break Err(e),
                End::Open if never_block => break Err(BodyError::WouldBlock),
                End::Open => {}
            }
            if wake && !s.posted {
                // Read on (or send the 100 Continue) before waiting for it.
                s.posted = true;
                drop(s);
                self.post();
                s = self.shared.lock();
                wake = false;
                continue;
            }
            s.waiters += 1;
            s = self.shared.arrived.wait(s).unwrap_or_else(|e| e.into_inner());
            s.waiters -= 1;
        };
        if result == Err(BodyError::WouldBlock) {
            s.want_ready = true;
        }
        let post = wake && !s.posted && s.end == End::Open;
        if post {
            s.posted = true;
        }
        drop(s);
        if post && !self.post() && result == Err(BodyError::WouldBlock) {
            // The worker has stopped: no hook will come.
            return Err(BodyError::Closed);
        }
        result
    }

    /// Reads the rest of the body into `into`, up to `limit` bytes in all
    /// (`TooLarge` past it). Off the worker threads only: on one it returns
    /// `WouldBlock` at the first wait.
    pub fn read_to_end(&mut self, into: &mut Vec<u8>, limit: usize) -> Result<usize, BodyError> {
        let start = into.len();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = self.read(&mut chunk)?;
            if n == 0 {
                return Ok(into.len() - start);
            }
            if into.len() - start + n > limit {
                return Err(BodyError::TooLarge);
            }
            into.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the body has ended and every byte was read.
    pub fn is_finished(&self) -> bool {
        let s = self.shared.lock();
        s.bytes.is_empty() && s.end != End::Open
    }

    /// Tells the worker to read on; false when it has stopped.
    fn post(&self) -> bool {
        let message = Message { conn: self.conn, answer: Answer::ReadBody };
        if self.mailbox.post(message).is_err() {
            // The worker has stopped: nothing more will arrive. No hook is
            // run here, on the reader's thread, inside its own call.
            let mut s = self.shared.lock();
            self.shared.end(&mut s, Err(BodyError::Closed));
            s.want_ready = false;
            return false;
        }
        true
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        // A hook running on the worker returns before the reader is gone
        // (its owner may free what it uses), unless this is that thread.
        self.clear_ready_hook();
        let post = {
            let mut s = self.shared.lock();
            s.reader_gone = true;
            s.bytes = VecDeque::new();
            let post = s.paused && !s.posted && s.end == End::Open;
            if post {
                s.posted = true;
            }
            post
        };
        // A paused connection must learn it may read on, to discard the rest.
        if post {
            self.post();
        }
    }
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyStream").field("conn", &self.conn).finish()
    }
}

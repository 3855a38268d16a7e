//! Answering after the handler returned, from any thread: the `Deferred`
//! handle, the worker's mailbox it posts to, and the state both sides share
//! (closed flag, bytes queued for backpressure).

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use mio::Waker;

use crate::app::handler::{RespondError, DIRECT_WRITE_MIN};
use crate::app::prepared::PreparedAnswer;
use crate::app::upgrade::{UpgradeEvents, UpgradeRequest, UpgradeShared, Upgraded, UpgradedConn};
use crate::file::{FileError, FileQuery, Prepared};
use crate::http::compose::{self, HandlerFields, RequestMeta};
use crate::net::payload::Payload;

/// Which connection (and which incarnation of its slot) a message is for,
/// and which of its requests (the connection's count of requests handled;
/// messages about the connection itself — body reads, upgraded writes —
/// carry the request they came with, and are routed by kind, not by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnRef {
    pub index: usize,
    pub id: u64,
    pub seq: u32,
}

/// A deferred answer's header fields, validated and rendered as they go on the
/// wire on the caller's thread, with a small body copied in after them: one
/// allocation per answer, and the worker only copies bytes.
#[derive(Clone)]
pub(crate) struct OwnedHead {
    bytes: Vec<u8>,
    fields: HandlerFields,
    /// Where the copied body starts in `bytes`.
    body_at: usize,
    /// The application's own reason phrase, when it gave one: the last
    /// bytes of `bytes` (at most `MAX_REASON`), so that a message stays small.
    reason_len: Option<u16>,
}

impl OwnedHead {
    /// Validates and renders `headers`, then copies `body` after them.
    pub fn render<'h>(
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        body: &[u8],
    ) -> Result<OwnedHead, RespondError> {
        OwnedHead::render_in(Vec::new(), headers, body)
    }

    /// `render` into `bytes`, a buffer to reuse (emptied first).
    pub fn render_in<'h>(
        mut bytes: Vec<u8>,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        body: &[u8],
    ) -> Result<OwnedHead, RespondError> {
        bytes.clear();
        bytes.reserve(64 + body.len());
        let fields = compose::render_fields(&mut bytes, headers)?;
        let body_at = bytes.len();
        bytes.extend_from_slice(body);
        Ok(OwnedHead { bytes, fields, body_at, reason_len: None })
    }

    /// This head with the application's reason phrase (checked already, at
    /// most `MAX_REASON` bytes), in place of any it had.
    pub fn with_reason(mut self, reason: Option<Box<[u8]>>) -> OwnedHead {
        if let Some(reason) = reason {
            let end = self.bytes.len() - self.reason_len.take().unwrap_or(0) as usize;
            self.bytes.truncate(end);
            self.bytes.extend_from_slice(&reason);
            self.reason_len = Some(reason.len().min(compose::MAX_REASON) as u16);
        }
        self
    }

    /// The application's reason phrase, when it gave one.
    pub fn reason(&self) -> Option<&[u8]> {
        self.reason_len.map(|n| &self.bytes[self.bytes.len() - n as usize..])
    }

    /// The rendered fields and what they said.
    pub fn fields(&self) -> (&[u8], &HandlerFields) {
        (&self.bytes[..self.body_at], &self.fields)
    }

    /// The body copied in by `render`.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body_at..self.bytes.len() - self.reason_len.unwrap_or(0) as usize]
    }

    /// A copy of this head in `bytes`, a buffer to reuse.
    pub fn copy_in(&self, mut bytes: Vec<u8>) -> OwnedHead {
        bytes.clear();
        bytes.extend_from_slice(&self.bytes);
        OwnedHead { bytes, fields: self.fields, body_at: self.body_at, reason_len: self.reason_len }
    }

    /// The buffer, to render another answer into.
    pub fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }
}

/// What a deferred handle asks the worker to do.
pub(crate) enum Answer {
    /// A complete response; without a payload, the body is the one in `head`.
    Full { status: u16, head: OwnedHead, body: Option<Payload> },
    /// A prepared response, shared with its maker: nothing was copied.
    Prepared(Arc<PreparedAnswer>),
    /// The head of a streamed response; `length` None means unknown.
    Start { status: u16, head: OwnedHead, length: Option<u64> },
    /// More body bytes of the stream.
    Data(Payload),
    /// A file answer, planned (and the file opened) on the answering thread.
    File(Box<FileAnswer>),
    /// The end of the stream; on an upgraded connection, shut the writing
    /// side once what was written has left.
    End,
    /// Switch protocols: send the 101 (fields rendered in `head`) and hand
    /// the connection to the upgraded side.
    Upgrade(Box<UpgradeAnswer>),
    /// The request body's reader made room in its window, asked for the body
    /// (a `100 Continue` may be owed) or went away: read on.
    ReadBody,
    /// The handle was aborted or went away unanswered, or the stream broke its
    /// length: answer 500 if nothing was sent yet, else close the connection
    /// once what was written has left.
    Abort,
}

impl Answer {
    /// Whether the answer carries rendered fields (an `OwnedHead`).
    fn renders_head(&self) -> bool {
        matches!(self, Answer::Full { .. } | Answer::Start { .. } | Answer::File(_) | Answer::Upgrade(_))
    }
}

/// Keeps `head`'s buffer for another answer when it is small enough.
pub(crate) fn recycle_head(head: OwnedHead, spare: &mut Vec<Vec<u8>>) {
    let bytes = head.into_buffer();
    if bytes.capacity() <= SPARE_HEAD_MAX && spare.len() < SPARE_HEADS {
        spare.push(bytes);
    }
}

/// A planned file answer: the handler's header fields and the plan's own
/// (those the handler did not name) rendered together, and the body.
pub(crate) struct FileAnswer {
    pub status: u16,
    pub head: OwnedHead,
    pub length: u64,
    pub prepared: Prepared,
}

/// A deferred upgrade: the 101's rendered fields and the connection's side
/// (dropped unapplied, it tells the application `CLOSED`).
pub(crate) struct UpgradeAnswer {
    /// None: taken over raw, the application writes its own answer.
    pub head: Option<OwnedHead>,
    pub conn: UpgradedConn,
}

/// A message for one connection of a worker.
pub(crate) struct Message {
    pub conn: ConnRef,
    pub answer: Answer,
}

/// Answer buffers a mailbox keeps for the threads that answer through it.
const SPARE_HEADS: usize = 256;
/// Larger answer buffers are freed, not kept.
const SPARE_HEAD_MAX: usize = 4096;

thread_local! {
    /// A buffer this thread renders its next deferred answer into: one the
    /// worker gave back, handed out when the thread posted its last answer
    /// (no lock of its own, no allocation).
    static SPARE_HEAD: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A buffer to render a deferred answer into (empty; allocated only when
/// no spare came this thread's way).
pub(crate) fn head_buffer() -> Vec<u8> {
    SPARE_HEAD.try_with(Cell::take).unwrap_or_default()
}

thread_local! {
    /// While the thread runs a worker's event loop: that worker's mailbox's
    /// address (0 otherwise). A stream write there must never wait, since the
    /// worker it would wait for may be this one, or one waiting for this one;
    /// and a message posted to its own mailbox needs no wake-up.
    static ON_WORKER_THREAD: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as `mailbox`'s worker thread until dropped (also
/// when a panic unwinds the worker's loop). Made by the worker loop as it starts.
pub(crate) struct WorkerThread {
    was: usize,
}

impl WorkerThread {
    pub fn enter(mailbox: &Arc<Mailbox>) -> WorkerThread {
        let me = Arc::as_ptr(mailbox) as usize;
        WorkerThread { was: ON_WORKER_THREAD.with(|w| w.replace(me)) }
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        let was = self.was;
        ON_WORKER_THREAD.with(|w| w.set(was));
    }
}

/// Whether the calling thread runs a worker's event loop. One thread-local
/// read, made only by a deferred write that finds its stream over the mark.
pub(crate) fn on_worker_thread() -> bool {
    ON_WORKER_THREAD.with(|w| w.get()) != 0
}

/// The worker's inbox for answers from other threads. Posting the first message
/// of a batch wakes the worker; later ones ride along.
pub(crate) struct Mailbox {
    queue: Mutex<MailboxQueue>,
    waker: Waker,
    /// `MailboxQueue::own` as the worker reads it once a round without the lock.
    own_hint: std::sync::atomic::AtomicBool,
}

struct MailboxQueue {
    messages: Vec<Message>,
    closed: bool,
    /// Shutdown or reload asked the worker to look at the shared state.
    poke: bool,
    /// The first message of the batch came from the worker's own thread (an
    /// event callback's answer): no wake-up was sent, the worker takes the
    /// batch before it polls again (see `take_own`).
    own: bool,
    /// Answer buffers the worker gave back, for answering threads to reuse.
    spare_heads: Vec<Vec<u8>>,
}

impl Mailbox {
    pub fn new(waker: Waker) -> Mailbox {
        Mailbox {
            queue: Mutex::new(MailboxQueue {
                messages: Vec::new(),
                closed: false,
                poke: false,
                own: false,
                spare_heads: Vec::new(),
            }),
            waker,
            own_hint: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MailboxQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `message`; gives it back when the worker has stopped. The
    /// first message of a batch wakes the worker, unless it is posted on the
    /// worker's own thread, which takes it before it polls again (a wake-up
    /// there would be a write and an extra poll for nothing).
    pub fn post(&self, message: Message) -> Result<(), Message> {
        let wake = {
            let mut q = self.lock();
            if q.closed {
                return Err(message);
            }
            // An answer's post hands its thread a spare buffer for its next one.
            if message.answer.renders_head() && !q.spare_heads.is_empty() {
                let _ = SPARE_HEAD.try_with(|spare| {
                    let mine = spare.take();
                    spare.set(if mine.capacity() == 0 { q.spare_heads.pop().unwrap_or_default() } else { mine });
                });
            }
            q.messages.push(message);
            let first = q.messages.len() == 1 && !q.poke;
            if first && ON_WORKER_THREAD.with(|w| w.get()) == self as *const Mailbox as usize {
                q.own = true;
                // Only the worker's own thread sets it: it reads it later on
                // that same thread.
                self.own_hint.store(true, std::sync::atomic::Ordering::Relaxed);
                false
            } else {
                first
            }
        };
        if wake {
            let _ = self.waker.wake();
        }
        Ok(())
    }

    /// Whether messages posted on the worker's own thread wait unannounced.
    pub fn take_own(&self) -> bool {
        // Set only on this (the worker's) thread: no lock when it is not.
        if !self.own_hint.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let mut q = self.lock();
        std::mem::take(&mut q.own) && !q.messages.is_empty()
    }

    /// Wakes the worker (for messages left when it stopped taking its own).
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }

    /// Whether messages (or a poke) wait to be taken.
    pub fn has_messages(&self) -> bool {
        let q = self.lock();
        !q.messages.is_empty() || q.poke
    }

    /// Wakes the worker to look at the server's shared state.
    pub fn poke(&self) {
        self.lock().poke = true;
        let _ = self.waker.wake();
    }

    /// Moves the queued messages into `into`, and the answer buffers the
    /// worker is done with from `spare` into the mailbox's pool; returns
    /// whether a poke was pending.
    pub fn take(&self, into: &mut Vec<Message>, spare: &mut Vec<Vec<u8>>) -> bool {
        let mut q = self.lock();
        q.own = false;
        let room = SPARE_HEADS.saturating_sub(q.spare_heads.len());
        q.spare_heads.extend(spare.drain(..).take(room));
        spare.clear();
        std::mem::swap(&mut q.messages, into);
        std::mem::take(&mut q.poke)
    }

    /// The worker stopped (or died): refuse further messages and drop
    /// (release) the rest. Calling it again does nothing more.
    pub fn close(&self) {
        let rest = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.messages)
        };
        drop(rest);
    }
}

/// State a deferred handle shares with its connection.
pub(crate) struct DeferredShared {
    state: Mutex<SharedState>,
    drained: Condvar,
    high_water: usize,
    /// The application paused the answer timeout (Warp's `pauseTimeout`):
    /// the worker does not hold the answer to it.
    timeout_paused: std::sync::atomic::AtomicBool,
}

struct SharedState {
    /// Body bytes posted and not yet written to the socket.
    queued: usize,
    /// The connection is gone.
    closed: bool,
    /// Writers blocked in `reserve`: without them a wake-up is a wasted syscall
    /// (one per deferred answer, when the connection drops its `Waiting`).
    waiters: usize,
    /// What to run when the connection lets go of the request before its
    /// answer completed (see `Deferred::on_close`); only when asked for, so
    /// that a deferred request allocates nothing otherwise.
    on_close: Option<CloseHook>,
}

/// A function the connection runs, once, on its worker thread, when it lets
/// go of a request whose answer had not completed.
pub(crate) type CloseHook = Box<dyn FnOnce() + Send>;

impl DeferredShared {
    pub fn new(high_water: usize) -> Arc<DeferredShared> {
        Arc::new(DeferredShared {
            state: Mutex::new(SharedState { queued: 0, closed: false, waiters: 0, on_close: None }),
            drained: Condvar::new(),
            high_water,
            timeout_paused: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether the application paused the answer timeout.
    pub fn timeout_paused(&self) -> bool {
        self.timeout_paused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Pauses the answer timeout for this answer (read by the worker when it
    /// arms or sweeps the deadline).
    pub fn pause_timeout(&self) {
        self.timeout_paused.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The high-water mark writes are held to.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// Readies a state whose answer completed (its handle is done: it makes
    /// no more calls but its drop) for the connection's next deferred answer,
    /// so that a deferred request on a warm connection allocates none.
    pub fn reset(&self) {
        self.timeout_paused.store(false, std::sync::atomic::Ordering::Relaxed);
        let hook = {
            let mut s = self.lock();
            s.queued = 0;
            s.closed = false;
            if s.waiters > 0 {
                // A writer of the done handle still waiting learns it is over.
                self.drained.notify_all();
            }
            s.on_close.take()
        };
        // The answer completed: the hook is never run (dropped unlocked, as
        // it is the application's).
        drop(hook);
    }

    /// The connection is gone: wake blocked writers, refuse later calls, and
    /// run the close hook if one was set (on this thread, the worker's,
    /// without the lock, so that it may call the handle; its panic is
    /// contained, as an upgraded connection's event callback's is).
    pub fn mark_closed(&self) {
        let hook = {
            let mut s = self.lock();
            s.closed = true;
            if s.waiters > 0 {
                self.drained.notify_all();
            }
            s.on_close.take()
        };
        if let Some(hook) = hook {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook));
        }
    }

    /// Sets the function run if the connection lets go of the request before
    /// its answer completed, in place of any set before; `Closed` (and the
    /// hook dropped) when it is gone already.
    pub(crate) fn set_on_close(&self, hook: CloseHook) -> Result<(), RespondError> {
        let mut s = self.lock();
        if s.closed {
            return Err(RespondError::Closed);
        }
        let replaced = s.on_close.replace(hook);
        // Hooks are the application's: dropped unlocked (`s` goes first).
        drop(s);
        drop(replaced);
        Ok(())
    }

    /// `n` posted bytes have reached the socket.
    pub fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut s = self.lock();
        s.queued = s.queued.saturating_sub(n);
        if s.queued <= self.high_water && s.waiters > 0 {
            self.drained.notify_all();
        }
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits, counting nothing, until the queue is at or under the high-water
    /// mark or the connection is gone, or until `over()` says that another
    /// call finished the waiter's answer (that call then runs `wake_writers`).
    /// For a caller that must not hold its own lock while the stream drains.
    pub(crate) fn wait_writable(&self, over: impl Fn() -> bool) {
        let mut s = self.lock();
        while !s.closed && s.queued > self.high_water && !over() {
            s.waiters += 1;
            s = self.drained.wait(s).unwrap_or_else(|e| e.into_inner());
            s.waiters -= 1;
        }
    }

    /// Wakes the writers waiting in `wait_writable` to ask `over()` again.
    pub(crate) fn wake_writers(&self) {
        let s = self.lock();
        if s.waiters > 0 {
            self.drained.notify_all();
        }
    }

    /// Counts `n` more bytes once the queue is at or under the high-water
    /// mark (so it exceeds the mark by at most one write). Over the mark, a
    /// worker thread gets `WouldBlock` at once; any other thread waits for the
    /// worker to drain the queue (or the connection to close) — unless
    /// `may_wait` is false: a caller that waited in `wait_writable` already
    /// is counted at once (one write past the mark).
    fn reserve(&self, n: usize, may_wait: bool) -> Result<(), RespondError> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return Err(RespondError::Closed);
            }
            if s.queued <= self.high_water {
                s.queued += n;
                return Ok(());
            }
            // Waiting on a worker thread could wait for this very worker, or
            // for one that waits for it (two workers writing to each other's
            // streams): refuse instead.
            if on_worker_thread() {
                return Err(RespondError::WouldBlock);
            }
            if !may_wait {
                s.queued += n;
                return Ok(());
            }
            s.waiters += 1;
            s = self.drained.wait(s).unwrap_or_else(|e| e.into_inner());
            s.waiters -= 1;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fresh,
    Streaming { remaining: Option<u64> },
    Done,
}

/// A response answered after the handler returned, from any thread.
///
/// Made by [`crate::Response::defer`]. Its calls are thread-safe in the sense
/// that the handle may move between threads (`Send`); one handle is used by one
/// thread at a time. Only [`Deferred::write`] ever waits (backpressure), and
/// never on a worker thread, where it returns [`RespondError::WouldBlock`]
/// instead. Dropping it unanswered sends a 500 (or, mid-stream, closes the
/// connection).
pub struct Deferred {
    mailbox: Arc<Mailbox>,
    conn: ConnRef,
    shared: Arc<DeferredShared>,
    meta: RequestMeta,
    phase: Phase,
    /// What a file answer needs of the request.
    file_query: FileQuery,
    /// What the request said of switching protocols, when it asked to.
    pub(crate) upgrade_request: Option<Box<UpgradeRequest>>,
    /// The application's reason phrase for the status line, when it gave one.
    pub(crate) reason: Option<Box<[u8]>>,
}

impl Deferred {
    pub(crate) fn new(
        mailbox: Arc<Mailbox>,
        conn: ConnRef,
        shared: Arc<DeferredShared>,
        meta: RequestMeta,
        streaming: Option<Option<u64>>,
        file_query: FileQuery,
    ) -> Deferred {
        let phase = match streaming {
            Some(remaining) => Phase::Streaming { remaining },
            None => Phase::Fresh,
        };
        Deferred { mailbox, conn, shared, meta, phase, file_query, upgrade_request: None, reason: None }
    }

    /// Sets the reason phrase of the status line this answer will send, in
    /// place of the engine's for its code (see
    /// [`crate::Response::set_reason`]).
    pub fn set_reason(&mut self, reason: &[u8]) -> Result<(), RespondError> {
        if self.phase != Phase::Fresh {
            return Err(RespondError::AlreadyAnswered);
        }
        if !compose::valid_reason(reason) {
            return Err(RespondError::InvalidStatus);
        }
        self.reason = Some(reason.into());
        Ok(())
    }

    /// Pauses the answer timeout for this request (see
    /// [`crate::Response::pause_timeout`]); nothing to do once the answer
    /// began.
    pub fn pause_timeout(&mut self) -> Result<(), RespondError> {
        if self.phase == Phase::Done {
            return Err(RespondError::AlreadyAnswered);
        }
        self.shared.pause_timeout();
        Ok(())
    }

    /// Asks to be told when the request ends before its answer completed:
    /// `hook` runs once, on the worker thread that serves the connection,
    /// when the connection lets go of the request unanswered or part-way
    /// through its answer — the client left or reset, a timeout or an error
    /// closed the connection, the answer timeout answered for it, or shutdown
    /// cut it. It is not run once the connection took the complete answer
    /// (an answer finished just as the client left may still see it run: it
    /// did not reach the client). A later call replaces it. It runs inside
    /// the worker's loop and must not block; calls on this handle return
    /// [`RespondError::Closed`] from then on. `Closed` when the connection is
    /// gone already (the handle is then done).
    pub fn on_close(&mut self, hook: impl FnOnce() + Send + 'static) -> Result<(), RespondError> {
        self.set_close_hook(Box::new(hook))
    }

    /// `Ok` while the answer may still be given; `Closed` (the handle then
    /// done) when the connection is gone, as any call says then.
    pub(crate) fn still_open(&mut self) -> Result<(), RespondError> {
        if self.phase == Phase::Done {
            return Err(RespondError::AlreadyAnswered);
        }
        self.check_open()
    }

    pub(crate) fn set_close_hook(&mut self, hook: CloseHook) -> Result<(), RespondError> {
        if self.phase == Phase::Done {
            return Err(RespondError::AlreadyAnswered);
        }
        self.shared.set_on_close(hook).inspect_err(|_| self.phase = Phase::Done)
    }

    /// Whether the request is HEAD (the body will not be sent).
    pub fn is_head(&self) -> bool {
        self.meta.is_head
    }

    fn check_open(&mut self) -> Result<(), RespondError> {
        if self.shared.is_closed() {
            self.phase = Phase::Done;
            return Err(RespondError::Closed);
        }
        Ok(())
    }

    fn post(&mut self, answer: Answer) -> Result<(), RespondError> {
        match self.mailbox.post(Message { conn: self.conn, answer }) {
            Ok(()) => Ok(()),
            Err(_returned) => {
                self.phase = Phase::Done;
                Err(RespondError::Closed)
            }
        }
    }

    /// Sends a complete response (see [`crate::Response::respond`]).
    pub fn respond<'h, I>(&mut self, status: u16, headers: I, body: Payload) -> Result<(), RespondError>
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
    {
        self.respond_with(status, headers, b"", Some(body))
    }

    /// Like `respond` for a borrowed body, copied (small bodies share one
    /// allocation with the header fields).
    pub fn respond_bytes<'h, I>(&mut self, status: u16, headers: I, body: &[u8]) -> Result<(), RespondError>
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
    {
        if body.len() >= DIRECT_WRITE_MIN {
            return self.respond_with(status, headers, b"", Some(Payload::from(body.to_vec())));
        }
        self.respond_with(status, headers, body, None)
    }

    fn respond_with<'h>(
        &mut self,
        status: u16,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        inline: &[u8],
        body: Option<Payload>,
    ) -> Result<(), RespondError> {
        if self.phase != Phase::Fresh {
            return Err(RespondError::AlreadyAnswered);
        }
        check_status(status)?;
        let head = OwnedHead::render_in(head_buffer(), headers, inline)?.with_reason(self.reason.take());
        self.check_open()?;
        self.phase = Phase::Done;
        self.post(Answer::Full { status, head, body })
    }

    /// Sends a response rendered once beforehand (a C API prepared response):
    /// the worker gets a reference to it, and sends its image where the
    /// request allows, as an answer inside the handler call would. With the
    /// application's own reason phrase, a copy of its head goes instead.
    pub(crate) fn respond_prepared(&mut self, prepared: &Arc<PreparedAnswer>) -> Result<(), RespondError> {
        if self.phase != Phase::Fresh {
            return Err(RespondError::AlreadyAnswered);
        }
        self.check_open()?;
        self.phase = Phase::Done;
        let answer = match self.reason.take() {
            None => Answer::Prepared(prepared.clone()),
            Some(reason) => Answer::Full {
                status: prepared.status,
                head: prepared.head.copy_in(head_buffer()).with_reason(Some(reason)),
                body: None,
            },
        };
        self.post(answer)
    }

    /// Answers with a file (see [`crate::Response::respond_file`]). The file is
    /// looked up and opened on the calling thread, without the worker's
    /// caches; the worker sends it (`sendfile`). `FileUnavailable` when it is
    /// missing, a directory or not a readable regular file: nothing was sent
    /// and the request may be answered again.
    pub fn respond_file(
        &mut self,
        status: u16,
        headers: &[(&[u8], &[u8])],
        path: &std::path::Path,
    ) -> Result<(), RespondError> {
        if self.phase != Phase::Fresh {
            return Err(RespondError::AlreadyAnswered);
        }
        check_status(status)?;
        self.check_open()?;
        let prepared = self
            .file_query
            .with_request(|req| crate::file::plan_detached(req, status, path, headers))
            .map_err(|FileError(e)| RespondError::FileUnavailable(e.kind()))?;
        // A bad field fails here, after the file was opened but before
        // anything is posted: nothing is sent either way.
        let plan = &prepared.plan;
        let head =
            OwnedHead::render_in(head_buffer(), plan.fields.after(headers), b"")?.with_reason(self.reason.take());
        let (status, length) = (plan.status, plan.length);
        self.phase = Phase::Done;
        self.post(Answer::File(Box::new(FileAnswer { status, head, length, prepared })))
    }

    /// Starts a streamed response; `length` is the Content-Length if known.
    pub fn start<'h, I>(&mut self, status: u16, headers: I, length: Option<u64>) -> Result<(), RespondError>
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
    {
        if self.phase != Phase::Fresh {
            return Err(RespondError::AlreadyAnswered);
        }
        check_status(status)?;
        let head = OwnedHead::render_in(head_buffer(), headers, b"")?.with_reason(self.reason.take());
        self.check_open()?;
        self.phase = Phase::Streaming { remaining: length };
        self.post(Answer::Start { status, head, length })
    }

    /// Sends more of the stream.
    ///
    /// Backpressure: a write is accepted while at most the high-water mark
    /// (`Config::stream_high_water`) is queued for the connection, whatever
    /// its own size. Over the mark, a thread that is not a worker's waits
    /// until the client has read enough (or is gone). A worker thread never
    /// waits — not for its own worker's connections, nor for another
    /// worker's — and gets [`RespondError::WouldBlock`] instead: nothing was
    /// sent, `data` is dropped (released), and the stream goes on; write
    /// again later (from another thread, which then waits), skip the data, or
    /// `abort`. So one write can take the queue past the mark by at most its
    /// own length, on any thread.
    pub fn write(&mut self, data: Payload) -> Result<(), RespondError> {
        self.write_with(data, true)
    }

    /// `write` that never waits off the worker threads: for a caller that
    /// waited already, with `backpressure`, without holding its own lock.
    pub(crate) fn write_now(&mut self, data: Payload) -> Result<(), RespondError> {
        self.write_with(data, false)
    }

    /// What a `write` from this thread would wait on: the stream's shared
    /// state when the answer is streaming and this is not a worker thread.
    pub(crate) fn backpressure(&self) -> Option<Arc<DeferredShared>> {
        match self.phase {
            Phase::Streaming { .. } if !on_worker_thread() => Some(self.shared.clone()),
            _ => None,
        }
    }

    /// The state this answer shares with its connection.
    pub(crate) fn shared(&self) -> &DeferredShared {
        &self.shared
    }

    fn write_with(&mut self, data: Payload, may_wait: bool) -> Result<(), RespondError> {
        let Phase::Streaming { remaining } = self.phase else {
            return Err(if self.phase == Phase::Done {
                RespondError::AlreadyAnswered
            } else {
                RespondError::NotStreaming
            });
        };
        let len = data.as_ref().len();
        if remaining.is_some_and(|left| len as u64 > left) {
            // The declared length is broken: the connection must close.
            self.phase = Phase::Done;
            let _ = self.post(Answer::Abort);
            return Err(RespondError::LengthMismatch);
        }
        if len == 0 {
            return self.check_open();
        }
        match self.shared.reserve(len, may_wait) {
            Ok(()) => {}
            // Refused, not failed: the stream is where it was.
            Err(RespondError::WouldBlock) => return Err(RespondError::WouldBlock),
            Err(e) => {
                self.phase = Phase::Done;
                return Err(e);
            }
        }
        self.phase = Phase::Streaming { remaining: remaining.map(|left| left - len as u64) };
        self.post(Answer::Data(data))
    }

    /// Ends the stream.
    pub fn end(&mut self) -> Result<(), RespondError> {
        let Phase::Streaming { remaining } = self.phase else {
            return Err(if self.phase == Phase::Done {
                RespondError::AlreadyAnswered
            } else {
                RespondError::NotStreaming
            });
        };
        self.phase = Phase::Done;
        if remaining.is_some_and(|r| r > 0) && !self.meta.is_head {
            let _ = self.post(Answer::Abort);
            return Err(RespondError::LengthMismatch);
        }
        if self.shared.is_closed() {
            return Err(RespondError::Closed);
        }
        self.post(Answer::End)
    }

    /// What the request said of switching protocols (see
    /// [`crate::Response::upgrade_request`]).
    pub fn upgrade_request(&self) -> Option<&UpgradeRequest> {
        self.upgrade_request.as_deref()
    }

    /// Accepts the request's upgrade (see [`crate::Response::upgrade`]).
    /// The handle may be written to at once: its bytes follow the 101.
    pub fn upgrade<'h, I>(
        &mut self,
        headers: I,
        events: Option<Arc<dyn UpgradeEvents>>,
    ) -> Result<Upgraded, RespondError>
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])> + Clone,
    {
        if self.phase != Phase::Fresh {
            return Err(RespondError::AlreadyAnswered);
        }
        if self.upgrade_request.is_none() {
            return Err(RespondError::NotUpgradable);
        }
        if !compose::names_upgrade(headers.clone()) {
            return Err(RespondError::NoUpgradeField);
        }
        let head = OwnedHead::render_in(head_buffer(), headers, b"")?;
        self.switch(Some(head), events)
    }

    /// Takes the connection over with nothing sent (see
    /// [`crate::Response::take_over`]).
    pub fn take_over(&mut self, events: Option<Arc<dyn UpgradeEvents>>) -> Result<Upgraded, RespondError> {
        if self.phase != Phase::Fresh {
            return Err(RespondError::AlreadyAnswered);
        }
        if self.upgrade_request.is_none() {
            return Err(RespondError::NotUpgradable);
        }
        self.switch(None, events)
    }

    fn switch(
        &mut self,
        head: Option<OwnedHead>,
        events: Option<Arc<dyn UpgradeEvents>>,
    ) -> Result<Upgraded, RespondError> {
        self.check_open()?;
        let shared = UpgradeShared::new(self.shared.high_water);
        let conn = UpgradedConn::new(shared.clone(), events);
        self.phase = Phase::Done;
        let answer = Answer::Upgrade(Box::new(UpgradeAnswer { head, conn }));
        match self.mailbox.post(Message { conn: self.conn, answer }) {
            Ok(()) => Ok(Upgraded::new(shared, self.mailbox.clone(), self.conn)),
            Err(returned) => {
                // Never begun: the application hears nothing of it.
                if let Answer::Upgrade(mut answer) = returned.answer {
                    answer.conn.disarm();
                }
                Err(RespondError::Closed)
            }
        }
    }

    /// Gives up on the answer (see [`crate::Response::abort`]): `500` if
    /// nothing was sent, else the connection closes after what was written,
    /// without the stream's end.
    pub fn abort(&mut self) -> Result<(), RespondError> {
        if self.phase == Phase::Done {
            return Err(RespondError::AlreadyAnswered);
        }
        self.check_open()?;
        self.phase = Phase::Done;
        self.post(Answer::Abort)
    }

    /// Whether the answer is complete (or the connection gone).
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if self.phase != Phase::Done {
            let _ = self.mailbox.post(Message { conn: self.conn, answer: Answer::Abort });
        }
    }
}

pub(crate) fn check_status(status: u16) -> Result<(), RespondError> {
    if (200..=599).contains(&status) {
        Ok(())
    } else {
        Err(RespondError::InvalidStatus)
    }
}

//! The worker's mailbox: what other threads ask of a connection (a deferred
//! answer, more of a stream, a body reader's room, an upgraded side's
//! writes), and which thread runs a worker's loop.

use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard};

use mio::Waker;

use super::head::{OwnedHead, SPARE_HEAD, SPARE_HEADS};
use super::prepared::PreparedAnswer;
use super::upgrade_shared::UpgradedConn;
use crate::file::Prepared;
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

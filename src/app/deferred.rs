//! Answering after the handler returned, from any thread: the `Deferred`
//! handle, which posts its answer to the worker's mailbox.

use std::sync::Arc;

use super::deferred_shared::{CloseHook, DeferredShared};
use super::error::RespondError;
use super::head::{head_buffer, OwnedHead, DIRECT_WRITE_MIN};
use super::mailbox::{on_worker_thread, Answer, ConnRef, FileAnswer, Mailbox, Message, UpgradeAnswer};
use super::prepared::PreparedAnswer;
use super::upgrade::Upgraded;
use super::upgrade_shared::{UpgradeEvents, UpgradeRequest, UpgradeShared, UpgradedConn};
use crate::file::{FileError, FileQuery};
use crate::http::compose::{self, RequestMeta};
use crate::net::payload::Payload;

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
        let shared = UpgradeShared::new(self.shared.high_water());
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

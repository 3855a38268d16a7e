//! What an application sees: the `Handler` trait, the borrowed `Request` and the
//! `Response` it answers through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::body::{BodyShared, BodyStream};
use super::deferred::Deferred;
use super::deferred_shared::DeferredShared;
pub use super::error::RespondError;
use super::head::OwnedHead;
pub use super::head::DIRECT_WRITE_MIN;
use super::mailbox::{ConnRef, Mailbox};
use super::upgrade::Upgraded;
use super::upgrade_shared::{UpgradeEvents, UpgradeRequest, UpgradeShared, UpgradedConn};
use super::waiting::Waiting;
use crate::file::StaticFiles;
use crate::http::compose::{
    compose_head, compose_head_rendered, compose_switching, names_upgrade, render_fields, BodyLength, ComposeEnv,
    Composed, RequestMeta,
};
use crate::http::image::{ImageCache, KeepAliveImage};
use crate::http::stream::StreamOut;
use crate::net::output::OutQueue;
use crate::net::payload::Payload;
use crate::net::peer::Peer;
use crate::net::stream::Stream;
use crate::observe::stats::{bump, WorkerStats};
use crate::tls::TlsInfo;

/// An application. Called on the worker thread that read the request; shared by
/// every worker, hence `Sync`. A handler that blocks holds up its worker's other
/// connections.
pub trait Handler: Send + Sync + 'static {
    /// Answers `req` through `res` (exactly once).
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>);
}

impl<F> Handler for F
where
    F: Fn(&Request<'_>, &mut Response<'_>) + Send + Sync + 'static,
{
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        self(req, res)
    }
}

/// A parsed request, borrowed from the connection's buffers for the length of the
/// handler call.
pub struct Request<'a> {
    /// The method token (`GET`, `POST`, …).
    pub method: &'a [u8],
    /// The request target as sent.
    pub target: &'a [u8],
    /// The path, percent-decoded.
    pub path: &'a [u8],
    /// The query, as sent (without `?`).
    pub query: &'a [u8],
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The header fields in the order received.
    pub headers: &'a [httparse::Header<'a>],
    /// The whole body (chunked coding removed), when it arrived whole; empty
    /// when `body_follows`.
    pub body: &'a [u8],
    /// The body is larger than the whole-body maximum and did not arrive with
    /// the head: it streams, read through [`Response::body`].
    pub body_follows: bool,
    /// The client: its address and port, or `Peer::Unix` on a Unix socket.
    pub peer: Peer,
    /// The peer's IP address as text (`127.0.0.1`, `::1`), `unix:` on a Unix socket.
    pub peer_ip: &'a [u8],
    /// Which worker read the request (0-based).
    pub worker_index: usize,
    /// What the connection's TLS negotiated; None on a plain connection.
    pub tls: Option<&'a TlsInfo>,
}

impl<'a> Request<'a> {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }
}

/// What a response needs to answer with a file: the worker's static files and
/// the request's method and header fields.
pub(crate) struct FileCtx<'a> {
    pub files: &'a mut StaticFiles,
    pub method: &'a [u8],
    pub headers: &'a [httparse::Header<'a>],
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Pending,
    Answered {
        close: bool,
    },
    /// A stream was started in the handler and is still open.
    Streaming(StreamOut),
    /// Handed to a `Deferred`.
    Deferred,
    /// Switched protocols: the connection belongs to an `Upgraded` now.
    Upgraded,
    /// Writing failed: the connection is to be closed.
    Broken,
}

/// What `Response::defer` needs from the connection.
pub(crate) struct DeferSlot<'a> {
    pub mailbox: &'a Arc<Mailbox>,
    pub conn: ConnRef,
    pub waiting: &'a mut Option<Waiting>,
    /// A completed answer's shared state, to reuse.
    pub spare: &'a mut Option<Arc<DeferredShared>>,
    /// The worker's other completed answers' shared states, to reuse next.
    pub pool: &'a mut Vec<Arc<DeferredShared>>,
    pub high_water: usize,
    /// Where an upgrade in the call leaves the connection's side of it.
    pub upgraded: &'a mut Option<Box<UpgradedConn>>,
    /// What the request said of switching protocols, when it asked to.
    pub upgrade_request: Option<Box<UpgradeRequest>>,
}

/// The answer to one request, on the worker thread during the handler call.
/// Responses of pipelined requests are gathered in the worker's output buffer
/// and leave together; nothing here queues or wakes anything.
pub struct Response<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) backlog: &'a mut OutQueue,
    pub(crate) stream: &'a Stream,
    pub(crate) env: ComposeEnv<'a>,
    /// The worker's complete copies of prepared responses.
    pub(crate) images: &'a mut ImageCache,
    pub(crate) meta: RequestMeta,
    /// The server's shutdown flag: once set, answers close their connection.
    pub(crate) shutting_down: &'a AtomicBool,
    pub(crate) outcome: Outcome,
    pub(crate) defer_slot: DeferSlot<'a>,
    /// The status sent, for the counters and the access log (0: none yet).
    pub(crate) status: u16,
    /// Body bytes sent so far.
    pub(crate) body_bytes: u64,
    /// For file answers: the worker's static files and the request's method and fields.
    pub(crate) file: FileCtx<'a>,
    /// The worker's counters, and whether this request is counted already:
    /// it is before any of its bytes are written from inside the handler call,
    /// so that a client never sees an answer the counters do not show yet.
    pub(crate) stats: &'a WorkerStats,
    pub(crate) counted: bool,
    /// The streamed body, until `body` takes its reader.
    pub(crate) body_stream: Option<Arc<BodyShared>>,
    /// The client waits for `100 Continue` before it sends the streamed body.
    pub(crate) continue_owed: bool,
    /// A stream began while the reader was held: the 100 went out first.
    pub(crate) continue_sent: bool,
    /// An earlier answer is pending: everything this one writes stays in
    /// `out` and `backlog` (its own), never reaching the socket before it.
    pub(crate) held: bool,
    /// The application's reason phrase for the status line (`set_reason`).
    pub(crate) reason: Option<Box<[u8]>>,
    /// The application paused the answer timeout (`pause_timeout`).
    pub(crate) timeout_paused: bool,
}

impl Response<'_> {
    /// The request's meta as of now: shutdown may have begun while the handler
    /// ran (the worker learns of it only when it next polls), and then the
    /// answer must say it closes.
    pub(crate) fn meta_now(&mut self) -> RequestMeta {
        if self.meta.keep_alive && self.shutting_down.load(Ordering::Relaxed) {
            self.meta.keep_alive = false;
        }
        self.meta
    }

    /// Sets the reason phrase of the status line the answer will send, in
    /// place of the engine's for its code (`HTTP/1.1 200 Fine`; Warp sends
    /// WAI's `statusMessage`, WSGI's status string has one): tabs, spaces,
    /// visible ASCII and bytes from 0x80, at most `MAX_REASON` bytes, empty
    /// allowed. Before the answer begins; applies to every answer kind but a
    /// switch of protocols. `InvalidStatus` for a phrase with CR, LF or
    /// another control byte; `AlreadyAnswered` once the answer began.
    pub fn set_reason(&mut self, reason: &[u8]) -> Result<(), RespondError> {
        self.check_fresh()?;
        if !crate::http::compose::valid_reason(reason) {
            return Err(RespondError::InvalidStatus);
        }
        self.reason = Some(reason.into());
        Ok(())
    }

    /// Pauses the answer timeout for this request (Warp's `pauseTimeout`):
    /// when the handler returns without answering, the deferred answer is
    /// not bounded by `Config::answer_timeout`. The client's own waits (the
    /// request body's progress, the response's writes) stay bounded.
    pub fn pause_timeout(&mut self) -> Result<(), RespondError> {
        match self.outcome {
            Outcome::Pending | Outcome::Streaming(_) => {
                self.timeout_paused = true;
                Ok(())
            }
            Outcome::Broken => Err(RespondError::Closed),
            _ => Err(RespondError::AlreadyAnswered),
        }
    }

    /// Puts the application's reason phrase, if any, in the status line
    /// composed at `at` in the output.
    pub(crate) fn apply_reason(&mut self, at: usize) {
        if let Some(reason) = &self.reason {
            crate::http::compose::replace_reason(self.out, at, reason);
        }
    }

    fn check_fresh(&self) -> Result<(), RespondError> {
        match self.outcome {
            Outcome::Pending => Ok(()),
            Outcome::Broken => Err(RespondError::Closed),
            _ => Err(RespondError::AlreadyAnswered),
        }
    }

    /// Sends a complete response. `headers` are the handler's fields; the engine
    /// adds `Date`, `Server`, `Content-Length` and `Connection`.
    pub fn respond<'h, I>(&mut self, status: u16, headers: I, body: &[u8]) -> Result<(), RespondError>
    where
        I: Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
    {
        self.check_fresh()?;
        let meta = self.meta_now();
        let at = self.out.len();
        let composed = compose_head(self.out, &self.env, status, headers, BodyLength::Known(body.len() as u64), meta)?;
        self.apply_reason(at);
        self.answered(status, composed, body)
    }

    /// Like `respond` for a response whose status was checked and whose fields
    /// were checked and rendered once beforehand (`OwnedHead::render`): the
    /// head is composed by copying them.
    pub(crate) fn respond_rendered(&mut self, status: u16, head: &OwnedHead) -> Result<(), RespondError> {
        self.check_fresh()?;
        let meta = self.meta_now();
        let (rendered, fields) = head.fields();
        let body = head.body();
        let at = self.out.len();
        let composed = compose_head_rendered(
            self.out,
            &self.env,
            status,
            rendered,
            fields,
            BodyLength::Known(body.len() as u64),
            meta,
        )?;
        self.apply_reason(at);
        self.answered(status, composed, body)
    }

    /// The rest of a complete answer once its head is composed: the outcome,
    /// and the body unless the head says to leave it out.
    fn answered(&mut self, status: u16, composed: Composed, body: &[u8]) -> Result<(), RespondError> {
        self.outcome = Outcome::Answered { close: composed.close };
        self.status = status;
        if !composed.omit_body {
            self.body_bytes = body.len() as u64;
            self.put_body(body, b"")?;
        }
        Ok(())
    }

    /// `respond_rendered` that copies `image` when it fits the request (the
    /// common HTTP/1.1 keep-alive GET), instead of composing the head.
    pub(crate) fn respond_prepared(
        &mut self,
        status: u16,
        head: &OwnedHead,
        image: Option<&KeepAliveImage>,
    ) -> Result<(), RespondError> {
        match image {
            Some(image) if KeepAliveImage::fits(&self.meta_now()) && self.reason.is_none() => {
                self.check_fresh()?;
                self.images.compose(image, &self.env, self.out);
                self.outcome = Outcome::Answered { close: false };
                self.status = status;
                self.body_bytes = image.body_len();
                Ok(())
            }
            _ => self.respond_rendered(status, head),
        }
    }

    /// Like `respond`, with a body the engine keeps without copying and drops
    /// (releases) once it is sent or the connection is gone.
    pub fn respond_payload<'h, I>(&mut self, status: u16, headers: I, body: Payload) -> Result<(), RespondError>
    where
        I: Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
    {
        self.check_fresh()?;
        let len = body.as_ref().len() as u64;
        let meta = self.meta_now();
        let at = self.out.len();
        let composed = compose_head(self.out, &self.env, status, headers, BodyLength::Known(len), meta)?;
        self.apply_reason(at);
        self.outcome = Outcome::Answered { close: composed.close };
        self.status = status;
        if !composed.omit_body {
            self.body_bytes = len;
            self.put_payload(body, b"")?;
        }
        Ok(())
    }

    /// Starts a streamed response: chunked when `length` is None (close-delimited
    /// for HTTP/1.0), else exactly `length` bytes must follow.
    pub fn start<'h, I>(&mut self, status: u16, headers: I, length: Option<u64>) -> Result<(), RespondError>
    where
        I: Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
    {
        self.check_fresh()?;
        let framing = length.map_or(BodyLength::Chunked, BodyLength::Known);
        let meta = self.meta_now();
        // A stream begun while holding the body's reader (an echo) wants the
        // body: the client is told to send it, before this head.
        let continue_at = self.out.len();
        if self.continue_owed && self.body_stream.is_none() {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let at = self.out.len();
        let composed = match compose_head(self.out, &self.env, status, headers, framing, meta) {
            Ok(c) => c,
            Err(e) => {
                self.out.truncate(continue_at);
                return Err(e.into());
            }
        };
        self.apply_reason(at);
        self.continue_sent |= self.out.len() > continue_at && self.continue_owed && self.body_stream.is_none();
        self.continue_owed &= !self.continue_sent;
        let stream = StreamOut::new(framing, composed, self.meta.minor);
        self.outcome = Outcome::Streaming(stream);
        self.status = status;
        Ok(())
    }

    /// Sends more of a started stream. Never blocks on the worker thread.
    pub fn write(&mut self, data: &[u8]) -> Result<(), RespondError> {
        let mut stream = self.streaming()?;
        let suffix = self.frame(&mut stream, data.len())?;
        if stream.sends_body() {
            self.body_bytes += data.len() as u64;
            self.put_body(data, suffix)?;
        }
        Ok(())
    }

    /// Like `write`, without copying `data`.
    pub fn write_payload(&mut self, data: Payload) -> Result<(), RespondError> {
        let mut stream = self.streaming()?;
        let suffix = self.frame(&mut stream, data.as_ref().len())?;
        if stream.sends_body() {
            self.body_bytes += data.as_ref().len() as u64;
            self.put_payload(data, suffix)?;
        }
        Ok(())
    }

    /// Ends a started stream.
    pub fn end(&mut self) -> Result<(), RespondError> {
        let mut stream = self.streaming()?;
        match stream.finish(self.out) {
            Ok(close) => {
                self.outcome = Outcome::Answered { close: close || stream.close_after };
                Ok(())
            }
            Err(_) => {
                self.outcome = Outcome::Broken;
                Err(RespondError::LengthMismatch)
            }
        }
    }

    /// Gives up on the answer. Before anything was sent the client gets `500`
    /// and the connection closes; in the middle of a stream the connection
    /// closes after what was already written, without the stream's end (no
    /// last chunk, or fewer bytes than the Content-Length), so the client can
    /// tell the body is incomplete. An HTTP/1.0 close-delimited body cannot
    /// show it.
    pub fn abort(&mut self) -> Result<(), RespondError> {
        match self.outcome {
            Outcome::Pending => {
                crate::http::compose::compose_error(self.out, &self.env, 500);
                self.outcome = Outcome::Answered { close: true };
                self.status = 500;
                Ok(())
            }
            Outcome::Streaming(_) => {
                // Finished, unterminated: the close delimits what was sent.
                self.outcome = Outcome::Answered { close: true };
                Ok(())
            }
            Outcome::Broken => Err(RespondError::Closed),
            Outcome::Answered { .. } | Outcome::Deferred | Outcome::Upgraded => Err(RespondError::AlreadyAnswered),
        }
    }

    /// Hands the response to a [`Deferred`] that may be answered later from any
    /// thread (also mid-stream). The connection waits: later pipelined requests
    /// are handled after this answer.
    pub fn defer(&mut self) -> Result<Deferred, RespondError> {
        let stream = match self.outcome {
            Outcome::Pending => None,
            Outcome::Streaming(s) => Some(s),
            Outcome::Broken => return Err(RespondError::Closed),
            _ => return Err(RespondError::AlreadyAnswered),
        };
        let high_water = self.defer_slot.high_water;
        let spare = self.defer_slot.spare.take().or_else(|| self.defer_slot.pool.pop());
        let shared = match spare {
            Some(spare) if spare.high_water() == high_water => spare,
            _ => DeferredShared::new(high_water),
        };
        let mut waiting = Waiting::new(self.defer_slot.conn.seq, shared.clone(), self.meta, stream);
        waiting.status = self.status;
        waiting.body_bytes = self.body_bytes;
        waiting.counted = self.counted;
        if self.timeout_paused {
            shared.pause_timeout();
        }
        *self.defer_slot.waiting = Some(waiting);
        self.outcome = Outcome::Deferred;
        let remaining = stream.map(|s| s.remaining());
        let file_query = crate::file::FileQuery::capture(self.file.method, self.file.headers);
        let mut deferred = Deferred::new(
            self.defer_slot.mailbox.clone(),
            self.defer_slot.conn,
            shared,
            self.meta,
            remaining,
            file_query,
        );
        if stream.is_none() {
            deferred.upgrade_request = self.defer_slot.upgrade_request.take();
            deferred.reason = self.reason.take();
        }
        Ok(deferred)
    }

    /// What the request said of switching protocols, when it asked to
    /// (HTTP/1.1, `Connection: upgrade`, an `Upgrade` field, no streaming
    /// body); None for every other request.
    pub fn upgrade_request(&self) -> Option<&UpgradeRequest> {
        self.defer_slot.upgrade_request.as_deref()
    }

    /// Accepts the request's upgrade: `101 Switching Protocols` with the
    /// handler's `headers` (which must name the protocol in `Upgrade`; the
    /// engine adds `Date`, `Server` and `Connection: Upgrade`), and from then
    /// on the connection's bytes both ways through the returned handle. Bytes
    /// the client sent after the request head are the first it reads.
    /// `events`, if given, is told on the worker thread when to read or write
    /// again and when the connection closes (see [`UpgradeEvents`]).
    pub fn upgrade<'h, I>(
        &mut self,
        headers: I,
        events: Option<Arc<dyn UpgradeEvents>>,
    ) -> Result<Upgraded, RespondError>
    where
        I: Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
    {
        self.check_fresh()?;
        if self.defer_slot.upgrade_request.is_none() {
            return Err(RespondError::NotUpgradable);
        }
        if !names_upgrade(headers.clone()) {
            return Err(RespondError::NoUpgradeField);
        }
        let mut rendered = Vec::with_capacity(128);
        let fields = render_fields(&mut rendered, headers)?;
        compose_switching(self.out, &self.env, &rendered, &fields);
        self.status = 101;
        Ok(self.switch(events))
    }

    /// Takes the connection over with nothing sent: the application writes
    /// its own answer (a `101` it composed) and then speaks the new protocol,
    /// through the returned handle. Warp's `responseRaw`, for libraries such
    /// as Haskell's `websockets` that write their own handshake. Only for a
    /// request that asked to switch protocols (see [`Response::upgrade`]).
    pub fn take_over(&mut self, events: Option<Arc<dyn UpgradeEvents>>) -> Result<Upgraded, RespondError> {
        self.check_fresh()?;
        if self.defer_slot.upgrade_request.is_none() {
            return Err(RespondError::NotUpgradable);
        }
        // No status is counted: the application writes its own (the access
        // log says 101, which is what it is for).
        self.counted = true;
        self.status = 101;
        bump(&self.stats.requests, 1);
        Ok(self.switch(events))
    }

    fn switch(&mut self, events: Option<Arc<dyn UpgradeEvents>>) -> Upgraded {
        let shared = UpgradeShared::new(self.defer_slot.high_water);
        *self.defer_slot.upgraded = Some(Box::new(UpgradedConn::new(shared.clone(), events)));
        self.outcome = Outcome::Upgraded;
        Upgraded::new(shared, self.defer_slot.mailbox.clone(), self.defer_slot.conn)
    }

    /// The request body as it arrives, when it streams (`Request::body_follows`):
    /// a reader that may move to any thread and outlive this call. A body that
    /// arrived whole is in `Request::body`, and this returns None; so does a
    /// second call. Take it during the handler call: afterwards the engine
    /// discards what arrives. Reading first sends the `100 Continue` a client
    /// may wait for.
    pub fn body(&mut self) -> Option<BodyStream> {
        let shared = self.body_stream.take()?;
        Some(BodyStream::new(shared, self.defer_slot.mailbox.clone(), self.defer_slot.conn))
    }

    /// Whether the answer is complete (or the connection broke): nothing more
    /// will be sent for this request.
    pub fn is_complete(&self) -> bool {
        matches!(self.outcome, Outcome::Answered { .. } | Outcome::Broken | Outcome::Upgraded)
    }

    /// Whether the request has been answered, is streaming or was deferred.
    pub fn is_answered(&self) -> bool {
        !matches!(self.outcome, Outcome::Pending)
    }

    /// Whether the request is HEAD (no body will be sent).
    pub fn is_head(&self) -> bool {
        self.meta.is_head
    }

    fn streaming(&self) -> Result<StreamOut, RespondError> {
        match self.outcome {
            Outcome::Streaming(s) => Ok(s),
            Outcome::Pending => Err(RespondError::NotStreaming),
            Outcome::Broken => Err(RespondError::Closed),
            _ => Err(RespondError::AlreadyAnswered),
        }
    }

    /// Frames `len` more stream bytes; returns the suffix to send after them.
    fn frame(&mut self, stream: &mut StreamOut, len: usize) -> Result<&'static [u8], RespondError> {
        if stream.data_prefix(len, self.out).is_err() {
            self.outcome = Outcome::Broken;
            return Err(RespondError::LengthMismatch);
        }
        self.outcome = Outcome::Streaming(*stream);
        Ok(stream.data_suffix(len))
    }

    /// Counts the request and its answer before bytes leave from inside the
    /// handler call (answers gathered in the output buffer are counted when
    /// the handler returns, before the buffer is written).
    pub(crate) fn count_before_writing(&mut self) {
        if !self.counted {
            self.counted = true;
            bump(&self.stats.requests, 1);
            self.stats.response(self.status);
        }
    }

    /// Adds body bytes after what is gathered: copied when small, else written
    /// straight from `body` with one `writev`.
    fn put_body(&mut self, body: &[u8], suffix: &[u8]) -> Result<(), RespondError> {
        if body.len() < DIRECT_WRITE_MIN || !self.backlog.is_empty() || self.held {
            self.out.extend_from_slice(body);
            self.out.extend_from_slice(suffix);
            return Ok(());
        }
        self.count_before_writing();
        if !crate::net::output::write_borrowed(self.stream, self.backlog, self.out, body, suffix) {
            self.outcome = Outcome::Broken;
            return Err(RespondError::Closed);
        }
        Ok(())
    }

    fn put_payload(&mut self, body: Payload, suffix: &[u8]) -> Result<(), RespondError> {
        if body.as_ref().len() < DIRECT_WRITE_MIN && self.backlog.is_empty() {
            self.out.extend_from_slice(body.as_ref());
            self.out.extend_from_slice(suffix);
            return Ok(());
        }
        if self.held {
            // Kept, in order, for when the answers before it are out.
            self.backlog.push_copy(self.out);
            self.out.clear();
            self.backlog.push_payload(body);
            self.backlog.push_copy(suffix);
            return Ok(());
        }
        self.count_before_writing();
        if !crate::net::output::write_now_or_queue(self.stream, self.backlog, self.out, Some(body), suffix) {
            self.outcome = Outcome::Broken;
            return Err(RespondError::Closed);
        }
        Ok(())
    }
}

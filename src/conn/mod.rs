//! One connection's state machine: parse every complete request in the input,
//! call the handler, gather the responses, and remember a request whose body is
//! still arriving, and the deferred answer it waits for.

mod ahead;
mod answer;
pub(crate) mod context;
pub(crate) mod deadline;
mod proxy;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::app::body::{BodyError, BodyShared};
use crate::app::deferred_shared::DeferredShared;
use crate::app::handler::FileCtx;
use crate::app::handler::{DeferSlot, Outcome, Request, Response};
use crate::app::mailbox::{Answer, ConnRef, UpgradeAnswer};
use crate::app::upgrade::{events, UpgradeRequest};
use crate::app::upgrade_shared::UpgradedConn;
use crate::app::waiting::Waiting;
use crate::http::chunked::{ChunkError, ChunkedDecoder};
use crate::http::compose::{compose_error, compose_switching, ComposeEnv, RequestMeta};
use crate::http::head::{self, Framing, Reject};
use crate::http::percent;
use crate::net::input::InBuf;
use crate::net::output::{write_now_or_queue, OutQueue};
use crate::net::peer::{Peer, PeerText};
use crate::net::proxy_protocol::ProxyProtocol;
use crate::net::stream::Stream;
use crate::observe::log::{Level, LogRequest, LogStart};
use crate::observe::stats::bump;
use ahead::{Ahead, ReadAhead, MAX_AHEAD, MAX_HELD};
use answer::{apply_answer, finish_waiting, Sink};
use context::{WorkerCtx, SPARE_QUEUES, SPARE_SHARED};
use deadline::{Deadline, Wait};

/// How many bytes of composed answers a connection may have waiting before its
/// next pipelined request is handled: past it the answers are sent first, and
/// while the socket does not take them (the backlog is not empty) no further
/// request is read or handled. So a client that pipelines and never reads
/// costs at most this plus the one answer that crossed it, not an answer per
/// request it sent (nginx and hyper's `max_buf_size` bound the same thing).
pub(crate) const MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// A decoded chunked body larger than this is given back when its request
/// ends, so an idle connection does not keep a large upload's memory.
const KEEP_BODY: usize = 16 * 1024;

/// How many bytes of a streamed body that its application did not read are
/// discarded before the connection is reused; past it the connection closes
/// after its answer (Warp's `setMaximumBodyFlush`, nginx's discarded body).
pub(crate) const MAX_BODY_FLUSH: usize = 256 * 1024;

/// The body of the request being answered, streaming to its application.
struct BodyIn {
    shared: Arc<BodyShared>,
    framing: BodyFraming,
    /// `Expect: 100-continue` was asked and no `100 Continue` sent yet: it is
    /// sent when the application first reads.
    continue_owed: bool,
    /// Bytes discarded since the application stopped reading.
    discarded: usize,
}

enum BodyFraming {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

impl Drop for BodyIn {
    /// Ended or not, the reader learns that nothing more will come.
    fn drop(&mut self) {
        self.shared.finish(Err(BodyError::Closed));
    }
}

impl BodyIn {
    fn new(framing: BodyFraming, continue_owed: bool) -> BodyIn {
        BodyIn { shared: BodyShared::new(), framing, continue_owed, discarded: 0 }
    }
}

/// Gives decoded body bytes to the reader, or counts them discarded.
fn deliver(body: &mut BodyIn, bytes: &[u8], reader_gone: bool) {
    if reader_gone {
        body.discarded += bytes.len();
    } else {
        body.shared.push(bytes);
    }
}

/// Why feeding a streamed body stopped short of its end.
enum BodyStop {
    /// Every byte given was taken: more must be read.
    NeedInput,
    /// The window is full: nothing more is read until the reader makes room.
    Paused,
    /// The body failed (too large, bad framing, too much to discard): the
    /// connection closes after what is queued.
    Failed,
}

/// The interim answer a client sent `Expect: 100-continue` waits for.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A request whose head has arrived and whose body has not (yet) all arrived.
struct PartialBody {
    /// `100 Continue` was sent for it.
    continue_sent: bool,
    /// For a chunked body: the decoder and how many raw body bytes it has consumed.
    chunked: Option<(ChunkedDecoder, usize)>,
}

/// Why processing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// All complete requests were handled; more bytes are needed.
    NeedInput,
    /// Output is backed up; resume when the socket drains.
    Backpressure,
    /// A streamed body's window is full: resume when its reader makes room.
    BodyPaused,
    /// `MAX_PENDING_OUTPUT` bytes of answers are composed and not sent: send
    /// them before the next request is handled.
    OutputFull,
    /// A deferred answer is pending; resume when it is complete.
    Waiting,
    /// The connection closes once its output is written.
    Close,
}

/// What one pass over the input did.
pub(crate) struct Progress {
    /// Input bytes that belonged to handled requests.
    pub consumed: usize,
    pub stop: Stop,
    /// A request in progress needs this many bytes buffered in all.
    pub need: usize,
}

/// Everything about a connection except its input buffer.
pub(crate) struct ConnState {
    pub conn_ref: ConnRef,
    pub stream: Stream,
    pub peer: Peer,
    pub peer_text: PeerText,
    /// Output the socket did not take yet.
    pub backlog: OutQueue,
    /// The request whose answer is deferred, if any.
    pub waiting: Option<Waiting>,
    /// The shared state of the last deferred answer that completed, for the
    /// next one (a deferred request on a warm connection allocates none).
    spare_deferred: Option<Arc<DeferredShared>>,
    /// Requests handled while `waiting` is pending, in order (see `ahead`);
    /// at most `MAX_AHEAD`, taken from the front as the answers leave.
    ahead: VecDeque<Ahead>,
    /// The next buffered request may not be handled ahead: it waits until
    /// the front completes.
    ahead_blocked: bool,
    /// The `ConnRef::seq` of the next request handled.
    next_seq: u32,
    /// A decoded chunked body.
    body: Vec<u8>,
    partial: Option<PartialBody>,
    /// The body of the request being answered, while it streams.
    body_in: Option<Box<BodyIn>>,
    /// The connection switched protocols: its bytes belong to the application.
    pub upgraded: Option<Box<UpgradedConn>>,
    /// Send what is queued, then close.
    pub close_after_flush: bool,
    /// Output was queued without a write, for the worker to write once the
    /// batch of messages it belongs to is applied.
    pub flush_pending: bool,
    /// Write interest is registered with the poller.
    pub write_registered: bool,
    /// The socket may hold bytes not read yet: a readiness edge came, and no
    /// read since met `EAGAIN` or a short read (nginx's `rev->ready`). While
    /// false, new bytes raise a new edge, so reading can wait for it.
    pub read_ready: bool,
    /// The peer's FIN (or a reset) has been reported: read on to the end.
    pub peer_closing: bool,
    /// The peer's FIN was read: it sends no more. Its complete requests are
    /// still answered; then the connection closes.
    pub peer_finished: bool,
    /// The FIN came while answers were pending and nothing else was left to
    /// handle, with `client_fin_ends_request`: those still pending when its
    /// grace ends are let go (`abandon_pending`): when it ends, in coarse
    /// seconds (0 = no grace). Kept here, not only in `deadline`, so that a
    /// write deadline armed meanwhile neither hides nor extends it.
    pub fin_grace_at: u32,
    pub deadline: Deadline,
    /// Answers held for the end of the poll round: their number in the
    /// worker's `HeldAnswers`, sent before anything else is written here.
    pub held: Option<u32>,
    /// The listener's PROXY protocol mode until the header is read (`None`
    /// from then on, and for listeners without one).
    pub proxy: ProxyProtocol,
}

/// A connection: its state and the bytes of a request that did not arrive whole.
/// When idle it owns no buffer: reads land in the worker's scratch buffer first.
pub(crate) struct Conn {
    pub input: InBuf,
    pub state: ConnState,
}

impl Conn {
    pub fn new(stream: Stream, peer: Peer, conn_ref: ConnRef) -> Conn {
        Conn {
            input: InBuf::default(),
            state: ConnState {
                conn_ref,
                waiting: None,
                spare_deferred: None,
                ahead: VecDeque::new(),
                ahead_blocked: false,
                next_seq: 1,
                stream,
                peer_text: PeerText::new(&peer),
                peer,
                backlog: OutQueue::default(),
                body: Vec::new(),
                partial: None,
                body_in: None,
                upgraded: None,
                close_after_flush: false,
                flush_pending: false,
                write_registered: false,
                // The request often arrives with the connection.
                read_ready: true,
                peer_closing: false,
                peer_finished: false,
                fin_grace_at: 0,
                deadline: Deadline::NONE,
                held: None,
                proxy: ProxyProtocol::None,
            },
        }
    }
}

impl ConnState {
    /// Whether a request head has been parsed and its body is still arriving
    /// (whole, or streaming and not paused).
    pub fn awaiting_body(&self) -> bool {
        self.partial.is_some() || self.body_in.as_ref().is_some_and(|b| self.body_can_take(b))
    }

    /// How many bytes the streamed body's window takes now (chunk framing
    /// may come on top), or None when no body streams.
    pub fn body_room(&self) -> Option<usize> {
        if let Some(up) = &self.upgraded {
            return Some(up.shared.room().max(4096));
        }
        let body = self.body_in.as_ref()?;
        let (room, reader_gone) = body.shared.room();
        Some(if reader_gone { usize::MAX } else { room.max(4096) })
    }

    /// The client sent its FIN or left while its body was streaming: the body
    /// cannot come whole, and its reader learns so at once.
    pub fn end_body_early(&mut self) {
        if let Some(body) = self.body_in.take() {
            body.shared.finish(Err(BodyError::Closed));
            self.release_body();
        }
    }

    /// Whether the application paused the timeout of the answer the
    /// connection waits for (Warp's `pauseTimeout`).
    pub fn answer_paused(&self) -> bool {
        self.waiting.as_ref().is_some_and(|w| w.status == 0 && w.shared().timeout_paused())
    }

    /// Whether a request body is streaming to its application.
    pub fn streams_body(&self) -> bool {
        self.body_in.is_some()
    }

    /// Why the connection cannot go on with its input right now, before any
    /// is processed: the same checks, in the same order, as `process`.
    pub fn next_stop(&self) -> Stop {
        if self.close_after_flush {
            Stop::Close
        } else if let Some(up) = &self.upgraded {
            if up.shared.room() > 0 || !up.shared.pause() {
                Stop::NeedInput
            } else {
                Stop::BodyPaused
            }
        } else if let Some(body) = &self.body_in {
            if self.body_can_take(body) {
                Stop::NeedInput
            } else {
                Stop::BodyPaused
            }
        } else if self.waiting.is_some() {
            if self.may_read_ahead() {
                Stop::NeedInput
            } else {
                Stop::Waiting
            }
        } else if !self.backlog.is_empty() {
            Stop::Backpressure
        } else {
            Stop::NeedInput
        }
    }

    /// Whether, with an answer pending, the bounds let another request be
    /// handled ahead of it (see `ahead`).
    fn may_read_ahead(&self) -> bool {
        !self.ahead_blocked
            && self.body_in.is_none()
            // Answers already promoted to the output and not taken by the
            // client count too: one that reads nothing stops the read-ahead
            // as it stops the in-call path (`Stop::Backpressure`).
            && self.backlog.len() < MAX_PENDING_OUTPUT
            && self.ahead.len() < MAX_AHEAD
            && self.ahead.iter().map(|a| a.held.len()).sum::<usize>() < MAX_HELD
    }

    /// Whether requests were handled ahead of the pending answer.
    pub fn has_ahead(&self) -> bool {
        !self.ahead.is_empty()
    }

    /// Arms `deadline`, unless the grace after the client's FIN ends first
    /// while requests are still pending: then the grace's.
    pub fn arm(&mut self, deadline: Deadline) {
        let grace = self.fin_grace_at;
        self.deadline = if grace != 0 && self.waiting.is_some() && (deadline.at == 0 || grace < deadline.at) {
            Deadline { at: grace, wait: Wait::FinGrace }
        } else {
            deadline
        };
    }

    /// The client left while answers were pending (its FIN, with
    /// `client_fin_ends_request`): they are let go as a closed connection
    /// lets them go — their handles get `Closed`, their close hooks run —
    /// and the connection closes once what was composed before them left.
    pub fn abandon_pending(&mut self) {
        self.fin_grace_at = 0;
        // Dropped, each tells its handle (`Waiting`'s drop).
        self.waiting = None;
        self.ahead.clear();
        self.ahead_blocked = true;
        self.close_after_flush = true;
    }

    /// Handles every complete request at the start of `input`, appending the
    /// responses to `out`.
    pub fn process(&mut self, input: &[u8], ctx: &mut WorkerCtx, out: &mut Vec<u8>) -> Progress {
        let mut pos = 0;
        loop {
            if self.close_after_flush {
                return Progress { consumed: pos, stop: Stop::Close, need: 0 };
            }
            if self.proxy != ProxyProtocol::None {
                match self.take_proxy_header(&input[pos..], ctx) {
                    Ok(n) => pos += n,
                    Err(need) => return Progress { consumed: pos, stop: Stop::NeedInput, need },
                }
                continue;
            }
            if let Some(up) = &self.upgraded {
                let (used, stop) = feed_raw(up, &input[pos..]);
                return Progress { consumed: pos + used, stop, need: 0 };
            }
            if self.body_in.is_some() {
                let (used, stopped) = self.feed_body(&input[pos..], ctx, out);
                pos += used;
                match stopped {
                    None => {}
                    Some(BodyStop::NeedInput) => return Progress { consumed: pos, stop: Stop::NeedInput, need: 0 },
                    Some(BodyStop::Paused) => return Progress { consumed: pos, stop: Stop::BodyPaused, need: 0 },
                    Some(BodyStop::Failed) => continue,
                }
            }
            if self.waiting.is_some() {
                // The next request is handled ahead if it may be; its answer
                // is held, so the output's state does not matter here.
                if !self.may_read_ahead() {
                    return Progress { consumed: pos, stop: Stop::Waiting, need: 0 };
                }
                if pos == input.len() {
                    return Progress { consumed: pos, stop: Stop::NeedInput, need: 0 };
                }
                match self.handle_one(&input[pos..], ctx, out) {
                    Ok(n) => pos += n,
                    Err(ahead::BLOCKED) => {
                        self.ahead_blocked = true;
                        return Progress { consumed: pos, stop: Stop::Waiting, need: 0 };
                    }
                    Err(need) => return Progress { consumed: pos, stop: Stop::NeedInput, need },
                }
                continue;
            }
            if !self.backlog.is_empty() {
                return Progress { consumed: pos, stop: Stop::Backpressure, need: 0 };
            }
            if out.len() >= MAX_PENDING_OUTPUT {
                return Progress { consumed: pos, stop: Stop::OutputFull, need: 0 };
            }
            if pos == input.len() {
                return Progress { consumed: pos, stop: Stop::NeedInput, need: 0 };
            }
            match self.handle_one(&input[pos..], ctx, out) {
                Ok(n) => pos += n,
                Err(need) => return Progress { consumed: pos, stop: Stop::NeedInput, need },
            }
        }
    }

    /// Handles the request at the start of `buf`: `Ok(bytes it used)`, or
    /// `Err(bytes needed in all)` when it is incomplete (0 if unknown).
    fn handle_one(&mut self, buf: &[u8], ctx: &mut WorkerCtx, out: &mut Vec<u8>) -> Result<usize, usize> {
        // An answer is pending: this request is handled ahead, if it may be,
        // and its answer held.
        let held = self.waiting.is_some();
        let mut headers = head::uninit_headers();
        let (req, info) = match head::parse_uninit(buf, &mut headers, &ctx.settings.head_limits) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Err(0),
            Err(Reject(status)) => return Ok(self.reject(status, buf.len(), ctx, out)),
        };
        if held {
            match ahead::decide(buf.len(), &info, ctx) {
                ReadAhead::Go => {}
                ReadAhead::NeedMore(need) => return Err(need),
                ReadAhead::Blocked => return Err(ahead::BLOCKED),
            }
        }
        let head_len = info.head_len;
        // A body larger than the whole-body maximum that has not arrived whole
        // streams: the handler is called now and reads it as it arrives.
        let mut streamed: Option<BodyIn> = None;
        let (body, used): (&[u8], usize) = match info.framing {
            Framing::Empty => (&[], head_len),
            Framing::Length(n) => {
                if n > ctx.settings.max_body_size {
                    return Ok(self.reject(413, buf.len(), ctx, out));
                }
                let end = (head_len as u64).saturating_add(n);
                if (buf.len() as u64) < end {
                    if n > ctx.settings.whole_body_max as u64 {
                        streamed = Some(BodyIn::new(BodyFraming::Length { remaining: n }, info.expect_continue));
                        (&[], head_len)
                    } else {
                        self.wait_for_body(info.expect_continue, false, out);
                        return Err(end as usize);
                    }
                } else {
                    (&buf[head_len..end as usize], end as usize)
                }
            }
            Framing::Chunked => {
                let partial = self.partial.get_or_insert(PartialBody { continue_sent: false, chunked: None });
                let (decoder, raw_done) =
                    partial.chunked.get_or_insert_with(|| (ChunkedDecoder::new(ctx.settings.max_body_size), 0));
                let raw = &buf[head_len + *raw_done..];
                // A body decodes to at most its raw bytes: reserve them fallibly,
                // so a refused allocation is a 503, never an abort.
                if self.body.try_reserve(raw.len()).is_err() {
                    return Ok(self.reject(503, buf.len(), ctx, out));
                }
                match decoder.decode(raw, &mut self.body) {
                    Ok((n, done)) => {
                        *raw_done += n;
                        if done {
                            let used = head_len + *raw_done;
                            (&self.body[..], used)
                        } else if *raw_done > ctx.settings.whole_body_max {
                            // Decoded bytes are never more than their raw ones,
                            // so chunk framing cannot hold the switch up.
                            // Too large to gather: the rest streams, after
                            // what was decoded so far.
                            let used = head_len + *raw_done;
                            let continue_owed = info.expect_continue && !partial.continue_sent;
                            let Some(PartialBody { chunked: Some((decoder, _)), .. }) = self.partial.take() else {
                                unreachable!("a chunked body has its decoder")
                            };
                            let body_in = BodyIn::new(BodyFraming::Chunked(decoder), continue_owed);
                            body_in.shared.push(&self.body);
                            self.body.clear();
                            streamed = Some(body_in);
                            (&[], used)
                        } else {
                            self.wait_for_body(info.expect_continue, true, out);
                            return Err(0);
                        }
                    }
                    Err(ChunkError::Invalid) => return Ok(self.reject(400, buf.len(), ctx, out)),
                    Err(ChunkError::TooLarge) => return Ok(self.reject(413, buf.len(), ctx, out)),
                }
            }
        };

        let target = req.path.unwrap_or("").as_bytes();
        let Some((raw_path, query)) = percent::split_target(target) else {
            return Ok(self.reject(400, buf.len(), ctx, out));
        };
        // Most paths have no escape: they are their own decoding.
        let path: &[u8] = if raw_path.contains(&b'%') {
            ctx.path_buf.clear();
            if percent::decode_path_into(raw_path, &mut ctx.path_buf).is_err() {
                return Ok(self.reject(400, buf.len(), ctx, out));
            }
            &ctx.path_buf
        } else {
            raw_path
        };
        let fields: &[httparse::Header<'_>] = req.headers;
        // Only a request that asks to switch protocols pays for this.
        let upgrade_request = if info.upgrade && streamed.is_none() && !held {
            UpgradeRequest::capture(req.method.unwrap_or("").as_bytes(), fields).map(Box::new)
        } else {
            None
        };
        if !held {
            // What follows a request that may switch protocols, or after
            // which the connection closes, is never handled ahead of it.
            self.ahead_blocked = upgrade_request.is_some() || !info.keep_alive || info.minor == 0;
        }
        let request = Request {
            method: req.method.unwrap_or("").as_bytes(),
            target,
            path,
            query,
            minor_version: info.minor,
            headers: fields,
            body,
            body_follows: streamed.is_some(),
            peer: self.peer,
            peer_ip: self.peer_text.as_bytes(),
            worker_index: ctx.index,
            tls: self.stream.tls_info(),
        };
        // Borrowed, not cloned: the snapshot changes only between loop turns.
        let settings = &*ctx.settings;
        let env = ctx.date.compose_env();
        let meta =
            RequestMeta { minor: info.minor, keep_alive: info.keep_alive && !ctx.draining, is_head: info.is_head };
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        // Held: the answer goes to a queue of its own, and a deferral to a
        // waiting answer of its own, until the answers before it are out.
        // (Made only then: the common request pays nothing for it.)
        let mut held_answer: Option<(Vec<u8>, OutQueue, Option<Waiting>)> =
            held.then(|| (std::mem::take(&mut ctx.held_out), ctx.spare_queues.pop().unwrap_or_default(), None));
        let (answer_out, answer_queue, answer_waiting) = match &mut held_answer {
            Some((held_out, held_queue, held_waiting)) => (held_out, held_queue, held_waiting),
            None => (&mut *out, &mut self.backlog, &mut self.waiting),
        };
        let mut response = Response {
            out: answer_out,
            backlog: answer_queue,
            stream: &self.stream,
            env,
            images: &mut ctx.images,
            meta,
            shutting_down: &ctx.shutting_down,
            outcome: Outcome::Pending,
            defer_slot: DeferSlot {
                mailbox: &ctx.mailbox,
                conn: ConnRef { seq, ..self.conn_ref },
                waiting: answer_waiting,
                spare: &mut self.spare_deferred,
                pool: &mut ctx.spare_shared,
                high_water: settings.stream_high_water,
                upgraded: &mut self.upgraded,
                upgrade_request,
            },
            status: 0,
            body_bytes: 0,
            file: FileCtx { files: &mut ctx.files, method: request.method, headers: fields },
            stats: &ctx.stats,
            counted: false,
            body_stream: streamed.as_ref().map(|b| b.shared.clone()),
            continue_owed: streamed.as_ref().is_some_and(|b| b.continue_owed),
            continue_sent: false,
            held,
            reason: None,
            timeout_paused: false,
        };
        // A path under a static mount is served by the engine, without the
        // handler; a panicking handler costs its connection, never the worker.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if !response.serve_static(raw_path, query) {
                settings.handler.handle(&request, &mut response);
            }
        }));
        let reader_taken = response.body_stream.is_none();
        let continue_sent = response.continue_sent;
        let (outcome, status, body_bytes, counted) =
            (response.outcome, response.status, response.body_bytes, response.counted);
        let stats = &ctx.stats;
        if !counted {
            bump(&stats.requests, 1);
        }
        let log_request = ctx.access.as_ref().map(|_| LogRequest {
            peer: self.peer_text.as_bytes(),
            method: request.method,
            target: request.target,
            minor: info.minor,
            referer: request.header("referer"),
            user_agent: request.header("user-agent"),
        });
        if let Err(panic) = run {
            settings.log_error(Level::Error, &format!("handler panicked: {}", panic_message(&*panic)));
        }
        // The connection closes after this answer.
        let mut closes = false;
        let final_status = match outcome {
            Outcome::Answered { close } => {
                closes = close;
                Some(status)
            }
            Outcome::Upgraded => {
                bump(&stats.upgrades, 1);
                if ctx.draining {
                    if let Some(up) = self.upgraded.as_mut() {
                        up.tell_draining(ctx.drain_deadline);
                    }
                }
                Some(status)
            }
            Outcome::Deferred => {
                let w = match &mut held_answer {
                    Some((_, _, held_waiting)) => held_waiting.as_mut(),
                    None => self.waiting.as_mut(),
                };
                if let (Some(access), Some(lr), Some(w)) = (ctx.access.as_mut(), &log_request, w) {
                    let mut start = LogStart { head: Vec::new(), tail: Vec::new() };
                    access.start(lr, &mut start.head, &mut start.tail);
                    w.log = Some(Box::new(start));
                }
                None
            }
            // A stream left open without a handle to finish it cannot end well.
            Outcome::Broken | Outcome::Streaming(_) => {
                closes = true;
                (status != 0).then_some(status)
            }
            Outcome::Pending => {
                // A handler that neither answered nor deferred (or panicked
                // first) is a bug in it; the client still gets an answer.
                let to = match &mut held_answer {
                    Some((held_out, _, _)) => held_out,
                    None => &mut *out,
                };
                compose_error(to, &env, 500);
                closes = true;
                Some(500)
            }
        };
        let mut held_count = None;
        if let Some(status) = final_status {
            if !counted {
                if held {
                    held_count = Some(status);
                } else {
                    stats.response(status);
                }
            }
            if ctx.draining {
                ctx.finished_while_draining += 1;
            }
            if let (Some(access), Some(lr)) = (ctx.access.as_mut(), &log_request) {
                access.record(lr, status, if status == 500 && outcome_is_pending(outcome) { 0 } else { body_bytes });
            }
        }
        if let Some((mut held_out, mut held_queue, held_waiting)) = held_answer {
            held_queue.push_copy(&held_out);
            held_out.clear();
            ctx.held_out = held_out;
            self.ahead.push_back(Ahead {
                seq,
                held: held_queue,
                waiting: held_waiting,
                close: closes,
                count: held_count,
            });
            // Nothing after an answer that closes is answered.
            self.ahead_blocked |= closes;
        } else {
            self.close_after_flush |= closes;
        }
        if let Some(mut body_in) = streamed {
            if !reader_taken {
                body_in.shared.no_reader();
            }
            // A stream begun while holding the reader sent the 100 first.
            body_in.continue_owed &= !continue_sent;
            self.body_in = Some(Box::new(body_in));
        }
        self.partial = None;
        self.release_body();
        Ok(used)
    }

    /// Empties the decoded chunked body, giving a large one's memory back.
    fn release_body(&mut self) {
        if self.body.capacity() > KEEP_BODY {
            self.body = Vec::new();
        } else {
            self.body.clear();
        }
    }

    /// Hands the streamed body what `input` holds of it, as far as its
    /// window has room: the bytes used, and why it stopped short of the end
    /// (None: the body ended, `body_in` is gone).
    fn feed_body(&mut self, input: &[u8], ctx: &mut WorkerCtx, out: &mut Vec<u8>) -> (usize, Option<BodyStop>) {
        let Some(mut body) = self.body_in.take() else { return (0, None) };
        if body.continue_owed {
            let deferred_not_begun = self.waiting.as_ref().is_some_and(|w| w.status == 0);
            if body.shared.asked() && deferred_not_begun {
                out.extend_from_slice(CONTINUE);
                body.continue_owed = false;
            } else if !deferred_not_begun {
                // Answered before the client was told to send its body:
                // whether it sends it cannot be known, so close.
                self.body_in = Some(body);
                return self.drop_body(ctx, out, None);
            } else if body.shared.pause_until_asked() {
                // The application has not asked: the client waits for the 100.
                self.body_in = Some(body);
                return (0, Some(BodyStop::Paused));
            } else {
                self.body_in = Some(body);
                return self.feed_body(input, ctx, out);
            }
        }
        let mut used = 0;
        let result = loop {
            let (room, reader_gone) = body.shared.room();
            if reader_gone {
                if self.waiting.is_some() {
                    // Nothing is discarded while the answer is being made.
                    break Ok(false);
                }
                if body.discarded + (input.len() - used) > MAX_BODY_FLUSH {
                    // Too much left unread to discard: close after the answer.
                    break Err(None);
                }
            }
            let room = if reader_gone { usize::MAX } else { room };
            if room == 0 {
                if body.shared.pause() {
                    break Ok(false);
                }
                continue;
            }
            let avail = &input[used..];
            let step = match &mut body.framing {
                BodyFraming::Length { remaining } => {
                    let take = avail.len().min(room).min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    *remaining -= take as u64;
                    used += take;
                    let done = *remaining == 0;
                    deliver(&mut body, &avail[..take], reader_gone);
                    Ok(done)
                }
                BodyFraming::Chunked(decoder) => {
                    // Decoded bytes are never more than their raw bytes.
                    let raw = &avail[..avail.len().min(room)];
                    self.body.clear();
                    if self.body.try_reserve(raw.len()).is_err() {
                        Err(Some(503))
                    } else {
                        match decoder.decode(raw, &mut self.body) {
                            Ok((n, done)) => {
                                used += n;
                                Ok(done)
                            }
                            Err(ChunkError::Invalid) => Err(Some(400)),
                            Err(ChunkError::TooLarge) => Err(Some(413)),
                        }
                    }
                }
            };
            if matches!(body.framing, BodyFraming::Chunked(_)) {
                deliver(&mut body, &self.body, reader_gone);
                self.body.clear();
            }
            match step {
                Ok(true) => break Ok(true),
                Ok(false) if used == input.len() => break Ok(false),
                Ok(false) => {}
                Err(status) => break Err(status),
            }
        };
        match result {
            Ok(true) => {
                body.shared.finish(Ok(()));
                drop(body);
                self.release_body();
                (used, None)
            }
            Ok(false) => {
                let stop = if self.body_can_take(&body) { BodyStop::NeedInput } else { BodyStop::Paused };
                self.body_in = Some(body);
                (used, Some(stop))
            }
            Err(status) => {
                self.body_in = Some(body);
                let (_, stop) = self.drop_body(ctx, out, status);
                (used, stop)
            }
        }
    }

    /// Whether the connection may read more of the streamed body now: the
    /// client was told to send it, the window has room, and what the reader
    /// left is discarded only once the answer is made.
    /// A full window or an unasked `100 Continue` marks the body paused, so
    /// that the reader's next read tells the worker to read on.
    fn body_can_take(&self, body: &BodyIn) -> bool {
        if body.continue_owed && self.waiting.as_ref().is_some_and(|w| w.status == 0) {
            return !body.shared.pause_until_asked();
        }
        let (room, reader_gone) = body.shared.room();
        if reader_gone {
            self.waiting.is_none()
        } else {
            room > 0 || !body.shared.pause()
        }
    }

    /// Gives up on a streamed body: the reader gets its error, an answer not
    /// begun becomes `status` (413, 400, 503; nothing when None), and the
    /// connection closes after what is queued.
    fn drop_body(&mut self, ctx: &mut WorkerCtx, out: &mut Vec<u8>, status: Option<u16>) -> (usize, Option<BodyStop>) {
        if let Some(body) = self.body_in.take() {
            let error = match status {
                Some(413) => BodyError::TooLarge,
                Some(400) => BodyError::Invalid,
                _ => BodyError::Closed,
            };
            body.shared.finish(Err(error));
        }
        self.release_body();
        if let Some(status) = status {
            bump(&ctx.stats.parse_errors, 1);
            if self.waiting.as_ref().is_some_and(|w| w.status == 0) {
                // The handle can no longer answer; the client learns why.
                self.waiting = None;
                compose_error(out, &env_of(ctx), status);
                ctx.stats.response(status);
            }
        }
        self.close_after_flush = true;
        (0, Some(BodyStop::Failed))
    }

    /// Sends `100 Continue` once when the client asked for it.
    fn wait_for_body(&mut self, expect_continue: bool, chunked: bool, out: &mut Vec<u8>) {
        let partial = self.partial.get_or_insert(PartialBody { continue_sent: false, chunked: None });
        debug_assert!(chunked || partial.chunked.is_none());
        if expect_continue && !partial.continue_sent {
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            partial.continue_sent = true;
        }
    }

    /// Answers a request the engine refuses; nothing after it on this connection
    /// is read as a request.
    fn reject(&mut self, status: u16, rest: usize, ctx: &mut WorkerCtx, out: &mut Vec<u8>) -> usize {
        if self.waiting.is_some() {
            // Behind a pending answer: held until it is the front, then the
            // connection closes.
            let mut bytes = Vec::new();
            compose_error(&mut bytes, &env_of(ctx), status);
            let mut held = ctx.spare_queues.pop().unwrap_or_default();
            held.push_copy(&bytes);
            let seq = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(1);
            self.ahead.push_back(Ahead { seq, held, waiting: None, close: true, count: Some(status) });
            self.ahead_blocked = true;
        } else {
            compose_error(out, &env_of(ctx), status);
            self.close_after_flush = true;
            ctx.stats.response(status);
        }
        self.partial = None;
        self.release_body();
        bump(&ctx.stats.parse_errors, 1);
        bump(&ctx.stats.requests, 1);
        rest
    }
}

/// Hands an upgraded connection's application what `input` holds, as far as
/// its window has room: the bytes used, and whether to read on (`NeedInput`)
/// or wait for the application to read (`BodyPaused`).
fn feed_raw(up: &UpgradedConn, input: &[u8]) -> (usize, Stop) {
    let mut used = 0;
    loop {
        let room = up.shared.room();
        let take = room.min(input.len() - used);
        if take > 0 {
            up.shared.push(&input[used..used + take]);
            used += take;
            up.notify(events::READABLE);
        }
        if used == input.len() && room > take {
            return (used, Stop::NeedInput);
        }
        if up.shared.pause() {
            return (used, Stop::BodyPaused);
        }
        if used == input.len() {
            return (used, Stop::NeedInput);
        }
    }
}

fn env_of(ctx: &WorkerCtx) -> ComposeEnv<'_> {
    ctx.date.compose_env()
}

fn outcome_is_pending(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Pending)
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

impl ConnState {
    /// Applies one answer posted by a `Deferred`. Returns false when the
    /// connection must be closed at once.
    pub fn apply(&mut self, seq: u32, answer: Answer, ctx: &mut WorkerCtx, out: &mut Vec<u8>) -> bool {
        if let Some(up) = self.upgraded.as_mut() {
            return match answer {
                Answer::ReadBody => {
                    up.shared.resumed();
                    // Told again: its owner may have attached after the first.
                    if up.shared.readable() {
                        up.notify(events::READABLE);
                    }
                    true
                }
                // Written after a shut writing side: dropped (released).
                Answer::Data(_) if up.shut_write => true,
                Answer::Data(data) => {
                    // Queued, not written: the worker writes every message of
                    // its batch for this connection with one `writev` (see
                    // `flush_pending`), not one `send` each.
                    up.unacked += data.as_ref().len();
                    if !out.is_empty() {
                        self.backlog.push_copy(out);
                        out.clear();
                    }
                    self.backlog.push_payload(data);
                    self.flush_pending = true;
                    true
                }
                Answer::End => {
                    up.shut_write = true;
                    true
                }
                Answer::Abort => {
                    if up.shared.timed_out() {
                        bump(&ctx.stats.timed_out, 1);
                    }
                    self.close_after_flush = true;
                    true
                }
                // Nothing else is posted for an upgraded connection.
                _ => true,
            };
        }
        if let Answer::ReadBody = answer {
            // The worker reads on when it drives the connection next.
            if let Some(body) = &self.body_in {
                body.shared.resumed();
            }
            return true;
        }
        if self.waiting.as_ref().is_none_or(|w| w.seq != seq) {
            return self.apply_ahead(seq, answer, ctx, out);
        }
        let Some(waiting) = self.waiting.as_mut() else { return true };
        if let Some(body) = self.body_in.as_mut() {
            // A deferred stream begins while its application holds the body's
            // reader (an echo), or the application asked already: the client
            // is told to send the body first. A complete answer given without
            // asking (a refusal) sends no 100: the connection closes after it.
            let stream_begins = matches!(answer, Answer::Start { .. }) && !body.shared.room().1;
            let begins =
                matches!(answer, Answer::Full { .. } | Answer::Prepared(_) | Answer::File(_) | Answer::Start { .. });
            if begins && body.continue_owed && (stream_begins || body.shared.asked()) {
                out.extend_from_slice(CONTINUE);
                body.continue_owed = false;
            }
        }
        // An answer that arrives while shutting down closes its connection
        // (also when this worker has not polled since shutdown began).
        waiting.meta.keep_alive &= !(ctx.draining || ctx.shutting_down.load(std::sync::atomic::Ordering::Acquire));
        if let Answer::Upgrade(answer) = answer {
            let stats = &*ctx.stats;
            let env = ctx.date.compose_env();
            let UpgradeAnswer { head, conn } = *answer;
            if let Some(head) = head {
                let (rendered, fields) = head.fields();
                compose_switching(out, &env, rendered, fields);
                stats.response(101);
            }
            waiting.status = 101;
            bump(&stats.upgrades, 1);
            let mut conn = Box::new(conn);
            if ctx.draining {
                conn.tell_draining(ctx.drain_deadline);
            }
            self.upgraded = Some(conn);
            let ok = write_now_or_queue(&self.stream, &mut self.backlog, out, None, b"");
            return self.finish_front(ctx) && ok;
        }
        // Written once the worker applied the whole batch of messages this
        // one came in (`flush_pending`): answers completed together leave
        // together, not one `send` each.
        if !out.is_empty() {
            self.backlog.push_copy(out);
            out.clear();
        }
        self.backlog.offer_spare(|| ctx.spare_out.pop());
        let mut sink = Sink::Batch(&mut self.backlog);
        self.flush_pending = true;
        let mut closes = false;
        let Some((ok, finished)) = apply_answer(waiting, &mut sink, answer, ctx, out, &mut closes) else {
            return false;
        };
        if closes {
            // Nothing after an answer that closes is sent: the requests
            // handled ahead of it are dropped (their handles learn it).
            self.close_after_flush = true;
            self.ahead.clear();
        }
        if finished {
            return self.finish_front(ctx) && ok;
        }
        ok
    }

    /// Applies an answer for a request handled ahead of the front: held.
    fn apply_ahead(&mut self, seq: u32, answer: Answer, ctx: &mut WorkerCtx, out: &mut Vec<u8>) -> bool {
        // Not found: a request whose connection moved on (closed after an
        // earlier answer, or timed out): nothing to do.
        let Some(slot) = self.ahead.iter_mut().find(|a| a.seq == seq) else { return true };
        let Some(waiting) = slot.waiting.as_mut() else { return true };
        if let Answer::Upgrade(_) = answer {
            // Requests asking to switch protocols are never handled ahead.
            return false;
        }
        waiting.meta.keep_alive &= !(ctx.draining || ctx.shutting_down.load(std::sync::atomic::Ordering::Acquire));
        let mut sink = Sink::Held(&mut slot.held);
        let Some((ok, finished)) = apply_answer(waiting, &mut sink, answer, ctx, out, &mut slot.close) else {
            return false;
        };
        self.ahead_blocked |= slot.close;
        if finished {
            if let Some(w) = slot.waiting.take() {
                if !w.counted {
                    slot.count = Some(w.status);
                }
                let spare = finish_waiting(w, ctx);
                keep_spare(&mut self.spare_deferred, spare, ctx);
            }
        }
        ok
    }

    /// The answer at the front completed: logged, its shared state kept for
    /// the next, and the answers held behind it sent (see `promote`).
    /// False when writing failed: the connection closes.
    fn finish_front(&mut self, ctx: &mut WorkerCtx) -> bool {
        if let Some(w) = self.waiting.take() {
            let spare = finish_waiting(w, ctx);
            keep_spare(&mut self.spare_deferred, spare, ctx);
        }
        self.ahead_blocked = false;
        self.promote(ctx)
    }

    /// Moves the answers held behind the completed front to the output, in
    /// order, up to the next one still pending, which becomes the front;
    /// writes them with one `writev`.
    fn promote(&mut self, ctx: &mut WorkerCtx) -> bool {
        if self.ahead.is_empty() {
            return true;
        }
        // Armed afresh for the new front's wait.
        self.deadline = Deadline::NONE;
        self.backlog.offer_spare(|| ctx.spare_out.pop());
        while self.waiting.is_none() {
            let Some(mut next) = self.ahead.pop_front() else { break };
            if let Some(status) = next.count {
                ctx.stats.response(status);
            }
            self.backlog.append(&mut next.held);
            if ctx.spare_queues.len() < SPARE_QUEUES {
                ctx.spare_queues.push(next.held);
            }
            self.waiting = next.waiting.take();
            if next.close {
                // Nothing after an answer that closes is sent; the handles
                // of what was handled after it learn it (Closed).
                self.close_after_flush = true;
                self.ahead.clear();
                break;
            }
        }
        // Written with the rest of the worker's batch.
        self.flush_pending = true;
        true
    }

    /// Tells a streaming handle how much of what it posted has left the socket.
    pub fn acknowledge_written(&mut self) {
        let pending = self.backlog.len();
        if let Some(up) = self.upgraded.as_mut() {
            if up.unacked > pending {
                let owed = up.shared.release(up.unacked - pending);
                up.unacked = pending;
                if owed {
                    up.notify(events::WRITABLE);
                }
            }
            return;
        }
        if let Some(w) = self.waiting.as_mut() {
            if w.unacked > pending {
                w.shared().release(w.unacked - pending);
                w.unacked = pending;
            }
        }
    }
}

/// Keeps a completed answer's shared state for the next deferral: the
/// connection keeps one, the worker's pool the rest (the answers of a
/// pipelined batch complete together and are deferred again together).
fn keep_spare(mine: &mut Option<Arc<DeferredShared>>, spare: Option<Arc<DeferredShared>>, ctx: &mut WorkerCtx) {
    let Some(spare) = spare else { return };
    if mine.is_none() {
        *mine = Some(spare);
    } else if ctx.spare_shared.len() < SPARE_SHARED {
        ctx.spare_shared.push(spare);
    }
}

#[cfg(test)]
mod size_tests {
    /// An idle connection costs its slot and nothing else (its buffers are
    /// given back), so the slot's size bounds the memory per idle connection.
    #[test]
    fn an_idle_connection_slot_stays_under_half_a_kib() {
        assert!(std::mem::size_of::<Option<super::Conn>>() <= 512, "{}", std::mem::size_of::<Option<super::Conn>>());
    }
}

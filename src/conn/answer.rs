//! Applying a deferred answer to the output of its request: the connection's
//! queue when it is the front answer (written once the worker has applied its
//! whole batch of messages, so answers completed together leave with one
//! `writev`), or the request's held output when earlier answers are still
//! pending (read-ahead: see `ahead.rs`).

use super::context::WorkerCtx;
use crate::app::handler::DIRECT_WRITE_MIN;
use crate::app::head::recycle_head;
use crate::app::mailbox::{Answer, FileAnswer};
use crate::app::prepared::PreparedAnswer;
use crate::app::respond_file::push_file_body;
use crate::app::waiting::Waiting;
use crate::file::serve::Body;
use crate::file::Prepared;
use crate::http::compose::{compose_error, BodyLength};
use crate::http::image::KeepAliveImage;
use crate::http::stream::StreamOut;
use crate::net::output::OutQueue;
use crate::net::payload::Payload;
use std::sync::Arc;

/// Where an answer's bytes go; neither writes to the socket.
pub(crate) enum Sink<'a> {
    /// The front answer, queued for the worker to write with the rest of
    /// the batch of messages it came in; counted now.
    Batch(&'a mut OutQueue),
    /// An answer behind a pending one: kept, in order, until it is the
    /// front; counted when it leaves.
    Held(&'a mut OutQueue),
}

impl Sink<'_> {
    fn queue(&mut self) -> &mut OutQueue {
        match self {
            Sink::Batch(queue) | Sink::Held(queue) => queue,
        }
    }

    /// `out`, then `body`, then `suffix`.
    pub fn send(&mut self, out: &mut Vec<u8>, body: Option<Payload>, suffix: &[u8]) -> bool {
        let queue = self.queue();
        queue.push_copy(out);
        out.clear();
        if let Some(body) = body {
            queue.push_payload(body);
        }
        queue.push_copy(suffix);
        true
    }

    /// `out` (a file answer's head), then the file's pieces.
    pub fn send_file(&mut self, out: &mut Vec<u8>, body: &Body, file: Option<Arc<std::fs::File>>) -> bool {
        let queue = self.queue();
        queue.push_copy(out);
        out.clear();
        push_file_body(queue, body, file);
        true
    }
}

/// Applies `answer` (not a body read, not an upgrade: the connection handles
/// those) to `waiting`'s request, its bytes into `sink`. `close` is set when
/// the connection must close after this answer. The answer is counted by its
/// status now, unless it is held (`Sink::Held`): then when it leaves, as it
/// may never. Returns whether the output went well and whether the answer is
/// complete; None when the connection must close at once.
pub(crate) fn apply_answer(
    waiting: &mut Waiting,
    sink: &mut Sink<'_>,
    answer: Answer,
    ctx: &mut WorkerCtx,
    out: &mut Vec<u8>,
    close: &mut bool,
) -> Option<(bool, bool)> {
    // Counted before the bytes leave, so a client never sees an answer the
    // counters do not show yet.
    let count_now = matches!(sink, Sink::Batch(_));
    let stats = &*ctx.stats;
    let count = |status: u16| {
        if count_now {
            stats.response(status)
        }
    };
    let env = ctx.date.compose_env();
    Some(match answer {
        Answer::Full { status, head, body } => {
            let len = body.as_ref().map_or(head.body().len(), |p| p.as_ref().len()) as u64;
            let composed = waiting.compose(out, &env, status, &head, BodyLength::Known(len))?;
            let body = if composed.omit_body {
                None
            } else {
                waiting.body_bytes = len;
                if body.is_none() {
                    out.extend_from_slice(head.body());
                }
                body
            };
            recycle_head(head, &mut ctx.spare_heads);
            *close |= composed.close;
            count(status);
            (sink.send(out, body, b""), true)
        }
        Answer::Prepared(prepared) => {
            let len = prepared.head.body().len() as u64;
            let image = prepared.image.as_ref().filter(|_| KeepAliveImage::fits(&waiting.meta));
            let body = match image {
                // The common case: the whole response but for the worker's
                // lines, as an answer inside the handler call sends it.
                Some(image) => {
                    ctx.images.compose(image, &env, out);
                    waiting.status = prepared.status;
                    waiting.body_bytes = image.body_len();
                    &[][..]
                }
                None => {
                    let composed =
                        waiting.compose(out, &env, prepared.status, &prepared.head, BodyLength::Known(len))?;
                    *close |= composed.close;
                    if composed.omit_body {
                        &[][..]
                    } else {
                        waiting.body_bytes = len;
                        prepared.head.body()
                    }
                }
            };
            count(prepared.status);
            if body.len() >= DIRECT_WRITE_MIN {
                // A large body goes out from the prepared response itself,
                // which the queue holds until it is written: no copy, and no
                // buffer of the worker's grown to its size.
                let held = Payload::new(Box::new(PreparedBody(prepared.clone())));
                return Some((sink.send(out, Some(held), b""), true));
            }
            out.extend_from_slice(body);
            (sink.send(out, None, b""), true)
        }
        Answer::File(answer) => {
            let FileAnswer { status, head, length, prepared: Prepared { plan, file } } = *answer;
            let composed = waiting.compose(out, &env, status, &head, BodyLength::Known(length))?;
            recycle_head(head, &mut ctx.spare_heads);
            *close |= composed.close;
            count(status);
            if composed.omit_body {
                (sink.send(out, None, b""), true)
            } else {
                waiting.body_bytes = length;
                if let Body::Text(text) = plan.body {
                    out.extend_from_slice(text);
                }
                // The head (and earlier answers) first, then the file's pieces.
                (sink.send_file(out, &plan.body, file), true)
            }
        }
        Answer::Start { status, head, length } => {
            let framing = length.map_or(BodyLength::Chunked, BodyLength::Known);
            let composed = waiting.compose(out, &env, status, &head, framing)?;
            recycle_head(head, &mut ctx.spare_heads);
            waiting.stream = Some(StreamOut::new(framing, composed, waiting.meta.minor));
            (sink.send(out, None, b""), false)
        }
        Answer::Data(data) => {
            let stream = waiting.stream.as_mut()?;
            let len = data.as_ref().len();
            if stream.data_prefix(len, out).is_err() {
                return None;
            }
            waiting.unacked += len;
            if !stream.sends_body() {
                return Some((true, false));
            }
            waiting.body_bytes += len as u64;
            let suffix = stream.data_suffix(len);
            (sink.send(out, Some(data), suffix), false)
        }
        Answer::End => {
            let stream = waiting.stream.as_mut()?;
            match stream.finish(out) {
                Ok(closes) => {
                    *close |= closes || stream.close_after;
                    if !waiting.counted {
                        count(waiting.status);
                    }
                    (sink.send(out, None, b""), true)
                }
                Err(_) => return None,
            }
        }
        Answer::ReadBody | Answer::Upgrade(_) => unreachable!("handled by the connection"),
        Answer::Abort => {
            *close = true;
            if waiting.stream.is_some() {
                // What was written leaves (earlier pipelined answers whole);
                // the missing end tells the client the body is incomplete.
                if !waiting.counted {
                    count(waiting.status);
                }
                (sink.send(out, None, b""), true)
            } else {
                compose_error(out, &env, 500);
                waiting.status = 500;
                count(500);
                (sink.send(out, None, b""), true)
            }
        }
    })
}

/// Ends a completed answer: counted as finished while draining, logged; its
/// shared state is given back for the connection's next deferred answer.
pub(crate) fn finish_waiting(
    w: Waiting,
    ctx: &mut WorkerCtx,
) -> Option<Arc<crate::app::deferred_shared::DeferredShared>> {
    if ctx.draining {
        ctx.finished_while_draining += 1;
    }
    if let (Some(access), Some(start)) = (ctx.access.as_mut(), &w.log) {
        access.finish(start, w.status, w.body_bytes);
    }
    // Completed by its handle, which is done with it.
    w.into_spare()
}

/// A prepared response's body, sent from the response itself.
struct PreparedBody(Arc<PreparedAnswer>);

impl AsRef<[u8]> for PreparedBody {
    fn as_ref(&self) -> &[u8] {
        self.0.head.body()
    }
}

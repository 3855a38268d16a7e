//! The connection's side of a deferred answer: the request handed to a
//! `Deferred`, whose answer the connection waits for and applies when the
//! worker's mailbox delivers it.

use std::sync::Arc;

use super::deferred_shared::DeferredShared;
use super::head::OwnedHead;
use crate::http::compose::{compose_head_rendered, BodyLength, ComposeEnv, Composed, RequestMeta};
use crate::http::stream::StreamOut;
use crate::observe::log::LogStart;

/// A request handed to a `Deferred`: the connection waits for its answer.
pub(crate) struct Waiting {
    /// Which of the connection's requests this answers (`ConnRef::seq`).
    pub seq: u32,
    /// None only once `into_spare` took it.
    shared: Option<Arc<DeferredShared>>,
    pub meta: RequestMeta,
    /// The stream state once the head has been sent.
    pub stream: Option<StreamOut>,
    /// Body bytes posted by the handle and not yet released to it.
    pub unacked: usize,
    /// The status sent (0 until the head is), and body bytes so far.
    pub status: u16,
    pub body_bytes: u64,
    /// The access-log line's request part, when logging (boxed: it is
    /// rare, and a connection's idle slot stays small, see `conn`).
    pub log: Option<Box<LogStart>>,
    /// The answer was counted in the handler call (its stream began writing there).
    pub counted: bool,
}

impl Waiting {
    pub fn new(seq: u32, shared: Arc<DeferredShared>, meta: RequestMeta, stream: Option<StreamOut>) -> Waiting {
        Waiting {
            seq,
            shared: Some(shared),
            meta,
            stream,
            unacked: 0,
            status: 0,
            body_bytes: 0,
            log: None,
            counted: false,
        }
    }

    /// The state shared with the handle.
    pub fn shared(&self) -> &DeferredShared {
        self.shared.as_deref().expect("a waiting answer has its shared state")
    }

    /// Ends a completed answer, whose handle is done, keeping its shared
    /// state for the connection's next deferred answer.
    pub fn into_spare(mut self) -> Option<Arc<DeferredShared>> {
        let shared = self.shared.take()?;
        shared.reset();
        Some(shared)
    }

    /// Composes the head of this answer (fields rendered on the answering
    /// thread) into `out` and records its status; None when it cannot be.
    pub fn compose(
        &mut self,
        out: &mut Vec<u8>,
        env: &ComposeEnv<'_>,
        status: u16,
        head: &OwnedHead,
        length: BodyLength,
    ) -> Option<Composed> {
        let (rendered, fields) = head.fields();
        let at = out.len();
        let composed = compose_head_rendered(out, env, status, rendered, fields, length, self.meta).ok()?;
        if let Some(reason) = head.reason() {
            crate::http::compose::replace_reason(out, at, reason);
        }
        self.status = status;
        Some(composed)
    }
}

impl Drop for Waiting {
    /// Finished or not, the handle can no longer reach this request.
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.mark_closed();
        }
    }
}

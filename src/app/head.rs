//! A deferred answer's head: its header fields rendered on the answering
//! thread (with a small body copied in after them), and the buffers those
//! renderings reuse.

use std::cell::Cell;

use super::error::RespondError;
use crate::http::compose::{self, HandlerFields};

/// Bodies at least this large are written straight from the caller's buffer with
/// `writev` instead of being copied into the output buffer.
pub const DIRECT_WRITE_MIN: usize = 32 * 1024;

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

/// Keeps `head`'s buffer for another answer when it is small enough.
pub(crate) fn recycle_head(head: OwnedHead, spare: &mut Vec<Vec<u8>>) {
    let bytes = head.into_buffer();
    if bytes.capacity() <= SPARE_HEAD_MAX && spare.len() < SPARE_HEADS {
        spare.push(bytes);
    }
}

/// Answer buffers a mailbox keeps for the threads that answer through it.
pub(crate) const SPARE_HEADS: usize = 256;
/// Larger answer buffers are freed, not kept.
const SPARE_HEAD_MAX: usize = 4096;

thread_local! {
    /// A buffer this thread renders its next deferred answer into: one the
    /// worker gave back, handed out when the thread posted its last answer
    /// (no lock of its own, no allocation).
    pub(crate) static SPARE_HEAD: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A buffer to render a deferred answer into (empty; allocated only when
/// no spare came this thread's way).
pub(crate) fn head_buffer() -> Vec<u8> {
    SPARE_HEAD.try_with(Cell::take).unwrap_or_default()
}

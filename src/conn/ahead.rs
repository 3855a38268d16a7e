//! Read-ahead: while the answer at the front of a connection is deferred, the
//! complete requests it pipelined behind it are handled too, each with its
//! own handle, instead of waiting in the input for that answer. Their answers
//! may complete in any order; each is kept (held) in its own queue and leaves
//! in request order: when the front completes, the completed answers behind
//! it join the connection's output at once, in one write, up to the next one
//! still pending, which becomes the front.
//!
//! Bounds: at most `MAX_AHEAD` requests ahead and `MAX_HELD` bytes of held
//! answers (a held stream is further bounded by its own high-water mark: its
//! writer waits, as for a client that does not read). Reading ahead stops at a
//! request whose body is not whole (or would stream), that expects
//! `100-continue`, asks to close (or is HTTP/1.0) or to switch protocols, and
//! after an answer that closes: those wait until they are at the front.

use crate::app::waiting::Waiting;
use crate::http::head::{Framing, HeadInfo};
use crate::net::output::OutQueue;

use super::context::WorkerCtx;

/// The most requests handled ahead of a pending answer.
pub(crate) const MAX_AHEAD: usize = 16;

/// The most bytes of answers held behind a pending one: past it, no further
/// request is handled ahead (the bound of `MAX_PENDING_OUTPUT`, for answers
/// that cannot leave yet).
pub(crate) const MAX_HELD: usize = super::MAX_PENDING_OUTPUT;

/// A request handled ahead of the pending front, and its answer so far.
pub(crate) struct Ahead {
    /// Its `ConnRef::seq`: deferred messages are routed by it.
    pub seq: u32,
    /// Its answer's bytes, in order, not yet written.
    pub held: OutQueue,
    /// Its deferred answer while pending; None once complete.
    pub waiting: Option<Waiting>,
    /// The connection closes after this answer.
    pub close: bool,
    /// The status to count once the answer leaves (held answers are counted
    /// when they go to the socket, as they may never: see `promote`).
    pub count: Option<u16>,
}

/// Whether a parsed request may be handled ahead.
pub(crate) enum ReadAhead {
    /// Yes: it is complete and may be answered out of turn.
    Go,
    /// Not yet: this many bytes must be buffered in all.
    NeedMore(usize),
    /// No: it waits until it is at the front (or the bounds are reached).
    Blocked,
}

/// What `handle_one` returns (as the bytes it needs) for a request that may
/// not be handled ahead: nothing of it was used.
pub(crate) const BLOCKED: usize = usize::MAX;

/// Looks at a request parsed from `buffered` bytes (without handling it).
pub(crate) fn decide(buffered: usize, info: &HeadInfo, ctx: &WorkerCtx) -> ReadAhead {
    let settings = &ctx.settings;
    if !info.keep_alive || info.minor == 0 || info.expect_continue || info.upgrade {
        return ReadAhead::Blocked;
    }
    match info.framing {
        Framing::Empty => ReadAhead::Go,
        // Refused with 413 whatever else: held like any answer.
        Framing::Length(n) if n > settings.max_body_size => ReadAhead::Go,
        // It would stream: only at the front.
        Framing::Length(n) if n > settings.whole_body_max as u64 => ReadAhead::Blocked,
        Framing::Length(n) => {
            let end = info.head_len + n as usize;
            if buffered >= end {
                ReadAhead::Go
            } else {
                ReadAhead::NeedMore(end)
            }
        }
        Framing::Chunked => ReadAhead::Blocked,
    }
}

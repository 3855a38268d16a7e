//! A connection its application took over with `101 Switching Protocols`:
//! from then on the engine hands it the connection's bytes both ways and
//! speaks no more HTTP on it.
//!
//! The application holds an [`Upgraded`] handle (`Send + Sync`: one thread may
//! read while another writes). Bytes that arrive wait in a window of at most
//! `UPGRADE_WINDOW` bytes; while it is full the connection reads nothing more
//! from its socket, so TCP slows the peer down. Writes queue for the worker,
//! with the same high-water mark and zero-copy payloads as streamed answers.
//! Off the worker threads a read waits for bytes and a write over the mark
//! waits for the peer to read; on a worker thread neither ever waits: they
//! return `WouldBlock`, and an [`UpgradeEvents`] callback, run on the worker's
//! event loop, says when to try again. So an application can serve many
//! upgraded connections from the loop itself, without a thread each.
//!
//! The connection stays under the engine: an idle timeout (settable per
//! connection), the write timeout, the connection limit, the counters, and
//! graceful shutdown (the application is told the server drains, and by when).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mailbox::{on_worker_thread, Answer, ConnRef, Mailbox, Message};
pub use super::upgrade_shared::{
    events, UpgradeError, UpgradeEvents, UpgradeRequest, DEFAULT_UPGRADE_IDLE, UPGRADE_WINDOW,
};
use super::upgrade_shared::{ReadEnd, UpgradeShared};
use crate::net::payload::Payload;

/// The application's handle on an upgraded connection. Made by
/// [`crate::Response::upgrade`] or [`crate::Deferred::upgrade`]. Dropping it
/// closes the connection (after what was written leaves).
pub struct Upgraded {
    shared: Arc<UpgradeShared>,
    mailbox: Arc<Mailbox>,
    conn: ConnRef,
}

impl Upgraded {
    pub(crate) fn new(shared: Arc<UpgradeShared>, mailbox: Arc<Mailbox>, conn: ConnRef) -> Upgraded {
        Upgraded { shared, mailbox, conn }
    }

    /// Reads received bytes into `buf`: `Ok(n)` with `n > 0`, or `Ok(0)`
    /// once the peer half-closed and every byte was read (or `buf` is empty).
    /// Off the worker threads it waits for bytes; on one it returns
    /// `WouldBlock` instead. `Closed` once the connection is gone and the
    /// window is empty.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, UpgradeError> {
        self.read_with(buf, !on_worker_thread())
    }

    /// `read` that never waits.
    pub fn try_read(&self, buf: &mut [u8]) -> Result<usize, UpgradeError> {
        self.read_with(buf, false)
    }

    fn read_with(&self, buf: &mut [u8], may_wait: bool) -> Result<usize, UpgradeError> {
        let mut s = self.shared.lock();
        loop {
            if !s.inbound.is_empty() || buf.is_empty() {
                let n = buf.len().min(s.inbound.len());
                let (front, back) = s.inbound.as_slices();
                let first = n.min(front.len());
                buf[..first].copy_from_slice(&front[..first]);
                buf[first..n].copy_from_slice(&back[..n - first]);
                s.inbound.drain(..n);
                if s.inbound.is_empty() && s.inbound.capacity() > 16 * 1024 {
                    // An idle connection does not keep a burst's memory.
                    s.inbound = VecDeque::new();
                }
                let post = s.paused && !s.posted && !s.closed;
                if post {
                    s.posted = true;
                }
                drop(s);
                if post {
                    self.post(Answer::ReadBody);
                }
                return Ok(n);
            }
            match s.read_end {
                ReadEnd::Eof => return Ok(0),
                ReadEnd::Closed => return Err(UpgradeError::Closed),
                ReadEnd::Open if !may_wait => return Err(UpgradeError::WouldBlock),
                ReadEnd::Open => {}
            }
            s.waiters += 1;
            s = self.shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            s.waiters -= 1;
        }
    }

    /// Sends `data` to the peer, without copying it. A write is taken while at
    /// most the high-water mark is queued (so one write may pass it by its own
    /// length). Over the mark, a thread that is not a worker's waits until the
    /// peer has read enough; a worker thread gets `WouldBlock` (nothing was
    /// sent, `data` is dropped) and a `WRITABLE` event once it may write again.
    pub fn write(&self, data: Payload) -> Result<(), UpgradeError> {
        self.write_with(data, !on_worker_thread())
    }

    /// `write` that never waits: `WouldBlock` over the mark, on any thread.
    pub fn try_write(&self, data: Payload) -> Result<(), UpgradeError> {
        self.write_with(data, false)
    }

    fn write_with(&self, data: Payload, may_wait: bool) -> Result<(), UpgradeError> {
        self.write_or_give_back(data, may_wait).map_err(|(e, _)| e)
    }

    /// `try_write` that gives `data` back when it was not taken.
    pub(crate) fn try_write_or_give_back(&self, data: Payload) -> Result<(), (UpgradeError, Payload)> {
        self.write_or_give_back(data, false)
    }

    fn write_or_give_back(&self, data: Payload, may_wait: bool) -> Result<(), (UpgradeError, Payload)> {
        let len = data.as_ref().len();
        let mut s = self.shared.lock();
        loop {
            if s.closed || s.write_shut {
                return Err((UpgradeError::Closed, data));
            }
            if s.queued <= self.shared.high_water {
                break;
            }
            if !may_wait {
                s.want_writable = true;
                return Err((UpgradeError::WouldBlock, data));
            }
            s.waiters += 1;
            s = self.shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            s.waiters -= 1;
        }
        if len == 0 {
            return Ok(());
        }
        s.queued += len;
        drop(s);
        self.post(Answer::Data(data));
        Ok(())
    }

    /// Waits (off the worker threads; on one it returns at once) until a
    /// write would be taken without waiting, or the connection is closed.
    pub fn wait_writable(&self) {
        if on_worker_thread() {
            return;
        }
        let mut s = self.shared.lock();
        while !s.closed && !s.write_shut && s.queued > self.shared.high_water {
            s.waiters += 1;
            s = self.shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            s.waiters -= 1;
        }
    }

    /// Shuts the writing side once what was written has left (a TCP
    /// half-close): the peer reads the end of the stream; reading goes on.
    pub fn shutdown_write(&self) -> Result<(), UpgradeError> {
        let mut s = self.shared.lock();
        if s.closed || s.write_shut {
            return Err(UpgradeError::Closed);
        }
        s.write_shut = true;
        self.shared.wake(&s);
        drop(s);
        self.post(Answer::End);
        Ok(())
    }

    /// Closes the connection once what was written has left. Reads and
    /// writes fail from now on (`Closed`), here and on other threads.
    pub fn close(&self) -> Result<(), UpgradeError> {
        self.close_with(false)
    }

    /// Closes the connection because the peer went silent (a keepalive ping
    /// left unanswered): as `close`, and the server counts it with the
    /// connections that timed out.
    pub(crate) fn close_timed_out(&self) -> Result<(), UpgradeError> {
        self.close_with(true)
    }

    fn close_with(&self, timed_out: bool) -> Result<(), UpgradeError> {
        let mut s = self.shared.lock();
        if s.closed {
            return Err(UpgradeError::Closed);
        }
        s.timed_out = timed_out;
        s.closed = true;
        s.write_shut = true;
        s.read_end = ReadEnd::Closed;
        s.inbound = VecDeque::new();
        self.shared.wake(&s);
        drop(s);
        self.post(Answer::Abort);
        Ok(())
    }

    /// Sets how long the connection may see no byte either way before it is
    /// closed (None: never; the default is [`DEFAULT_UPGRADE_IDLE`]). Takes
    /// effect from now.
    pub fn set_idle_timeout(&self, idle: Option<Duration>) -> Result<(), UpgradeError> {
        let mut s = self.shared.lock();
        if s.closed {
            return Err(UpgradeError::Closed);
        }
        s.idle = idle;
        drop(s);
        // The worker re-arms the deadline when it looks at the connection.
        self.post(Answer::ReadBody);
        Ok(())
    }

    /// How many bytes the peer has sent so far, read or not yet.
    pub(crate) fn bytes_received(&self) -> u64 {
        self.shared.lock().received
    }

    /// Asks to be told [`events::QUIET`] each time the connection has seen
    /// no byte either way for half its idle timeout, instead of the idle
    /// timeout closing it: for a protocol that keeps a connection alive with
    /// pings and ends it itself when they go unanswered.
    pub(crate) fn notify_when_quiet(&self) {
        self.shared.lock().quiet_notice = true;
    }

    /// With `on`, the connection's owner is told [`events::QUIET`] each time
    /// it has seen no byte either way for half its idle timeout, and the idle
    /// timeout no longer closes it: the owner sends its protocol's ping then,
    /// and closes the connection itself when the peer stays silent. With
    /// `on` false (the default) the idle timeout closes a quiet connection.
    /// Without an idle timeout nothing is told; without an events callback
    /// nobody can be, and the idle timeout closes it as before. On a
    /// WebSocket's connection (`WebSocket::connection`), turning it off
    /// stops the WebSocket's pings: the idle timeout closes it instead.
    pub fn set_quiet_notice(&self, on: bool) -> Result<(), UpgradeError> {
        let mut s = self.shared.lock();
        if s.closed {
            return Err(UpgradeError::Closed);
        }
        s.quiet_notice = on;
        drop(s);
        // The worker re-arms the deadline when it looks at the connection.
        self.post(Answer::ReadBody);
        Ok(())
    }

    /// Closes the connection within `limit` from now whatever the traffic
    /// (idle or not): the bound of a closing handshake the peer may drag out.
    pub fn close_within(&self, limit: Duration) -> Result<(), UpgradeError> {
        let mut s = self.shared.lock();
        if s.closed {
            return Err(UpgradeError::Closed);
        }
        let by = Instant::now() + limit;
        s.close_by = Some(s.close_by.map_or(by, |earlier| earlier.min(by)));
        drop(s);
        self.post(Answer::ReadBody);
        Ok(())
    }

    /// When the server is shutting down: how long until it cuts the
    /// connection (zero once past). None while it serves normally.
    pub fn draining(&self) -> Option<Duration> {
        let deadline = self.shared.lock().drain_deadline?;
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    /// Asks the worker to tell `READABLE` again if a read would return at
    /// once: for an owner that attached itself after events may have fired.
    pub(crate) fn nudge(&self) {
        self.post(Answer::ReadBody);
    }

    /// Whether the connection is closed (or closing).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    fn post(&self, answer: Answer) {
        if self.mailbox.post(Message { conn: self.conn, answer }).is_err() {
            // The worker has stopped: the connection is gone with it.
            self.shared.mark_closed();
        }
    }
}

impl Drop for Upgraded {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded").field("conn", &self.conn).finish()
    }
}

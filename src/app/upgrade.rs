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
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::deferred::{on_worker_thread, Answer, ConnRef, Mailbox, Message};
use crate::net::payload::Payload;

/// The most received bytes a connection holds for its application at once.
pub const UPGRADE_WINDOW: usize = 64 * 1024;

/// How long an upgraded connection may see no byte either way before it is
/// closed, unless its application sets another (Warp's 30 s timeout, nginx's
/// `proxy_read_timeout` of 60 s: a WebSocket without pings stays up a minute).
pub const DEFAULT_UPGRADE_IDLE: Duration = Duration::from_secs(60);

/// Events passed to [`UpgradeEvents::on_events`], as bits.
pub mod events {
    /// Bytes arrived, or the peer half-closed (a read returns 0), or the
    /// connection failed (a read returns `Closed`): read until `WouldBlock`.
    pub const READABLE: u32 = 1;
    /// A write refused with `WouldBlock` may be made again: the queue drained
    /// under the high-water mark.
    pub const WRITABLE: u32 = 2;
    /// The connection is closed; the last event, sent exactly once.
    pub const CLOSED: u32 = 4;
    /// The server is shutting down: finish up (see [`super::Upgraded::draining`]).
    pub const DRAINING: u32 = 8;
    /// No byte either way for half the idle timeout: a protocol with pings
    /// sends one now (the WebSocket layer does). Told again after each quiet
    /// half; the idle timeout itself no longer closes the connection then,
    /// its owner does. Only to connections that asked (`notify_when_quiet`).
    pub const QUIET: u32 = 16;
}

/// Told, on the worker thread that owns the connection, what happened to an
/// upgraded connection. It must not block: read and write with the `try_`
/// calls (on a worker thread the others do not wait either).
pub trait UpgradeEvents: Send + Sync + 'static {
    /// `events` is a set of [`events`] bits.
    fn on_events(&self, events: u32);
}

/// Why a call on an upgraded connection did not do what it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeError {
    /// Nothing to read yet, or the write queue is over its high-water mark,
    /// and the call may not wait (a worker thread, or a `try_` call).
    WouldBlock,
    /// The connection is closed (by the peer, a timeout, shutdown or
    /// `close`), or the application shut its writing side.
    Closed,
}

/// What a request that asked to switch protocols said, captured with its
/// head (only for such requests: other requests pay nothing).
#[derive(Debug, Clone, Default)]
pub struct UpgradeRequest {
    /// The method was GET.
    pub is_get: bool,
    /// The `Upgrade` field's value: the protocols the client offers.
    pub upgrade: Vec<u8>,
    /// `Sec-WebSocket-Key`, when sent.
    pub websocket_key: Option<Vec<u8>>,
    /// `Sec-WebSocket-Version`, when sent.
    pub websocket_version: Option<Vec<u8>>,
}

impl UpgradeRequest {
    /// Captures what `headers` say of an upgrade.
    pub(crate) fn capture(method: &[u8], headers: &[httparse::Header<'_>]) -> Option<UpgradeRequest> {
        let mut request = UpgradeRequest { is_get: method == b"GET", ..UpgradeRequest::default() };
        let mut offered = false;
        for h in headers {
            let value = h.value.trim_ascii();
            if h.name.eq_ignore_ascii_case("upgrade") {
                if offered {
                    request.upgrade.extend_from_slice(b", ");
                }
                request.upgrade.extend_from_slice(value);
                offered = true;
            } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
                // Exactly one key (RFC 6455 §4.1): a second makes it invalid.
                let repeated = request.websocket_key.is_some();
                request.websocket_key = Some(if repeated { Vec::new() } else { value.to_vec() });
            } else if h.name.eq_ignore_ascii_case("sec-websocket-version") {
                request.websocket_version = Some(value.to_vec());
            }
        }
        (offered && !request.upgrade.is_empty()).then_some(request)
    }

    /// Whether the client offers `protocol` (a token of `Upgrade`, its
    /// version ignored: `websocket`, `h2c`).
    pub fn offers(&self, protocol: &[u8]) -> bool {
        self.upgrade.split(|&b| b == b',').any(|p| {
            let name = p.trim_ascii().split(|&b| b == b'/').next().unwrap_or(b"");
            name.eq_ignore_ascii_case(protocol)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    Open,
    /// The peer half-closed: what is in the window is all there is.
    Eof,
    /// The connection is closed: reads fail once the window is empty.
    Closed,
}

struct State {
    inbound: VecDeque<u8>,
    read_end: ReadEnd,
    /// The worker stopped reading because the window was full.
    paused: bool,
    /// A message telling the worker to read on is on its way.
    posted: bool,
    /// Bytes posted for writing and not yet written to the socket.
    queued: usize,
    /// A write was refused over the mark: `WRITABLE` is owed.
    want_writable: bool,
    /// The connection is gone: every call fails with `Closed`.
    closed: bool,
    /// The application shut its writing side (or closed): writes fail.
    write_shut: bool,
    /// The idle timeout asked for (None: none at all).
    idle: Option<Duration>,
    /// The owner is told `QUIET` after half the idle timeout instead of the
    /// connection closing at its end (a WebSocket, which pings).
    quiet_notice: bool,
    /// Bytes received from the peer so far, read or not.
    received: u64,
    /// Closed by then whatever the traffic (a closing handshake's bound).
    close_by: Option<Instant>,
    /// When the server's shutdown cuts the connection, once it drains.
    drain_deadline: Option<Instant>,
    /// Threads waiting in a read or a write.
    waiters: usize,
}

/// What an upgraded connection's handle and the connection share.
pub(crate) struct UpgradeShared {
    state: Mutex<State>,
    changed: Condvar,
    high_water: usize,
}

impl UpgradeShared {
    pub fn new(high_water: usize) -> Arc<UpgradeShared> {
        Arc::new(UpgradeShared {
            state: Mutex::new(State {
                inbound: VecDeque::new(),
                read_end: ReadEnd::Open,
                paused: false,
                posted: false,
                queued: 0,
                want_writable: false,
                closed: false,
                write_shut: false,
                idle: Some(DEFAULT_UPGRADE_IDLE),
                quiet_notice: false,
                received: 0,
                close_by: None,
                drain_deadline: None,
                waiters: 0,
            }),
            changed: Condvar::new(),
            high_water,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self, s: &State) {
        if s.waiters > 0 {
            self.changed.notify_all();
        }
    }

    /// Worker side: room left in the window.
    pub fn room(&self) -> usize {
        UPGRADE_WINDOW.saturating_sub(self.lock().inbound.len())
    }

    /// Worker side: appends received bytes (at most the room it was told).
    pub fn push(&self, bytes: &[u8]) {
        let mut s = self.lock();
        s.inbound.extend(bytes);
        s.received += bytes.len() as u64;
        self.wake(&s);
    }

    /// Worker side: the window is full; reading stops until the application
    /// reads. False when it has room again already (read on).
    pub fn pause(&self) -> bool {
        let mut s = self.lock();
        if s.inbound.len() < UPGRADE_WINDOW {
            return false;
        }
        s.paused = true;
        true
    }

    /// Worker side: the message asking it to read on was taken.
    pub fn resumed(&self) {
        let mut s = self.lock();
        s.posted = false;
        s.paused = false;
    }

    /// Worker side: whether a read would return at once (bytes, the end, or
    /// the connection's failure).
    pub fn readable(&self) -> bool {
        let s = self.lock();
        !s.inbound.is_empty() || s.read_end != ReadEnd::Open
    }

    /// Worker side: the peer half-closed; reads return 0 after the window.
    pub fn peer_finished(&self) {
        let mut s = self.lock();
        if s.read_end == ReadEnd::Open {
            s.read_end = ReadEnd::Eof;
        }
        self.wake(&s);
    }

    /// Worker side: the connection is gone.
    pub fn mark_closed(&self) {
        let mut s = self.lock();
        s.closed = true;
        if s.read_end == ReadEnd::Open {
            s.read_end = ReadEnd::Closed;
        }
        self.wake(&s);
    }

    /// Worker side: `n` posted bytes reached the socket. True when a writer
    /// refused over the mark is owed `WRITABLE`.
    pub fn release(&self, n: usize) -> bool {
        let mut s = self.lock();
        s.queued = s.queued.saturating_sub(n);
        let under = s.queued <= self.high_water;
        if under {
            self.wake(&s);
        }
        let owed = under && s.want_writable;
        if owed {
            s.want_writable = false;
        }
        owed
    }

    /// Worker side: the server drains; the connection is cut at `deadline`.
    pub fn set_draining(&self, deadline: Instant) {
        self.lock().drain_deadline = Some(deadline);
    }

    /// Worker side: the idle timeout to arm (None: none), the time the
    /// connection must be closed by whatever the traffic, and whether a quiet
    /// half of the idle timeout is told (`QUIET`) instead of closing.
    pub fn timeouts(&self) -> (Option<Duration>, Option<Instant>, bool) {
        let s = self.lock();
        (s.idle, s.close_by, s.quiet_notice)
    }
}

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
        let mut s = self.shared.lock();
        if s.closed {
            return Err(UpgradeError::Closed);
        }
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

/// The connection's side of an upgrade, held by the connection once the 101
/// is composed (or, for a deferred upgrade, by the message carrying it).
/// Dropping it, for whatever reason, closes the handle's side and sends the
/// last event, `CLOSED`.
pub(crate) struct UpgradedConn {
    pub shared: Arc<UpgradeShared>,
    events: Option<Arc<dyn UpgradeEvents>>,
    /// Bytes written for the handle not yet released to it.
    pub unacked: usize,
    /// The handle shut the writing side: done once the backlog is written.
    pub shut_write: bool,
    /// The socket's writing side is shut.
    pub write_done: bool,
    /// The peer's end of stream was handed to the window.
    pub eof_told: bool,
    /// `DRAINING` was sent.
    pub drain_told: bool,
}

impl UpgradedConn {
    pub fn new(shared: Arc<UpgradeShared>, events: Option<Arc<dyn UpgradeEvents>>) -> UpgradedConn {
        UpgradedConn {
            shared,
            events,
            unacked: 0,
            shut_write: false,
            write_done: false,
            eof_told: false,
            drain_told: false,
        }
    }

    /// Tells the application `events`; its panic is contained here (the
    /// callback runs inside the worker's loop).
    pub fn notify(&self, events: u32) {
        if let Some(e) = &self.events {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.on_events(events)));
        }
    }

    /// Tells the application once that the server drains, and by when.
    pub fn tell_draining(&mut self, deadline: Option<Instant>) {
        if let (false, Some(deadline)) = (self.drain_told, deadline) {
            self.drain_told = true;
            self.shared.set_draining(deadline);
            self.notify(events::DRAINING);
        }
    }

    /// The upgrade failed before it began: the application is told nothing.
    pub fn disarm(&mut self) {
        self.events = None;
    }
}

impl Drop for UpgradedConn {
    fn drop(&mut self) {
        self.shared.mark_closed();
        self.notify(events::CLOSED);
    }
}

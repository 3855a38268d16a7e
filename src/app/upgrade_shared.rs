//! What an upgraded connection's handle (`upgrade::Upgraded`) and the
//! connection share: the window of received bytes, the write queue's count,
//! the timeouts asked for; and the connection's side (`UpgradedConn`), which
//! tells the application's `UpgradeEvents`.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
pub(super) enum ReadEnd {
    Open,
    /// The peer half-closed: what is in the window is all there is.
    Eof,
    /// The connection is closed: reads fail once the window is empty.
    Closed,
}

pub(super) struct State {
    pub(super) inbound: VecDeque<u8>,
    pub(super) read_end: ReadEnd,
    /// The worker stopped reading because the window was full.
    pub(super) paused: bool,
    /// A message telling the worker to read on is on its way.
    pub(super) posted: bool,
    /// Bytes posted for writing and not yet written to the socket.
    pub(super) queued: usize,
    /// A write was refused over the mark: `WRITABLE` is owed.
    pub(super) want_writable: bool,
    /// The connection is gone: every call fails with `Closed`.
    pub(super) closed: bool,
    /// The application shut its writing side (or closed): writes fail.
    pub(super) write_shut: bool,
    /// The idle timeout asked for (None: none at all).
    pub(super) idle: Option<Duration>,
    /// The owner is told `QUIET` after half the idle timeout instead of the
    /// connection closing at its end (a WebSocket, which pings).
    pub(super) quiet_notice: bool,
    /// Bytes received from the peer so far, read or not.
    pub(super) received: u64,
    /// Closed by then whatever the traffic (a closing handshake's bound).
    pub(super) close_by: Option<Instant>,
    /// When the server's shutdown cuts the connection, once it drains.
    pub(super) drain_deadline: Option<Instant>,
    /// Threads waiting in a read or a write.
    pub(super) waiters: usize,
    /// Closed because the peer went silent (a WebSocket's unanswered ping):
    /// counted as a timeout.
    pub(super) timed_out: bool,
}

/// What an upgraded connection's handle and the connection share.
pub(crate) struct UpgradeShared {
    state: Mutex<State>,
    pub(super) changed: Condvar,
    pub(super) high_water: usize,
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
                timed_out: false,
            }),
            changed: Condvar::new(),
            high_water,
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn wake(&self, s: &State) {
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

    /// Whether the application closed the connection for the peer's
    /// silence (see `Upgraded::close_timed_out`).
    pub fn timed_out(&self) -> bool {
        self.lock().timed_out
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

    /// Whether the application gave a callback to tell events to.
    pub fn has_events(&self) -> bool {
        self.events.is_some()
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

//! WebSocket (RFC 6455) on an upgraded connection: the handshake, then whole
//! messages both ways. Framing, masking, fragmentation, control frames, UTF-8
//! and close-code checks and size limits are tungstenite's, used without its
//! I/O (`WebSocketContext`) over the connection's `Upgraded` handle; pings are
//! answered and the close handshake is completed here.
//!
//! The worker drives it: when bytes arrive (the connection's `READABLE`, on
//! the worker's loop) complete messages are decoded into a small inbox and
//! the application is told `MESSAGE`; it takes them with `recv`, from any
//! thread. While the inbox holds `INBOX_MAX` bytes no more are decoded, and
//! the connection's window then stops the peer (TCP backpressure). `send`
//! follows the connection's high-water mark: off the worker threads it waits,
//! on one it queues at most one message past the mark and then returns
//! `WouldBlock` until `WRITABLE`.

pub mod handshake;
mod reframe;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tungstenite::error::{Error as WsLibError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use crate::app::handler::RespondError;
use crate::app::mailbox::on_worker_thread;
use crate::app::upgrade::{events as raw_events, UpgradeError, UpgradeEvents, UpgradeRequest, Upgraded};
use crate::net::payload::Payload;
use handshake::HandshakeError;
use reframe::Reframe;

/// Decoded messages a connection holds for its application before it stops
/// decoding (at least one message is always taken).
pub const INBOX_MAX: usize = 64 * 1024;

/// The largest message (and frame) accepted unless the application says
/// otherwise; a larger one closes the connection with 1009. The `websockets`
/// Python package and uvicorn use the same default.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// How long the peer has to answer our close frame before the connection is
/// closed anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Events a WebSocket's application is told, as bits.
pub mod events {
    /// Messages are waiting: `recv` until `WouldBlock`.
    pub const MESSAGE: u32 = 1;
    /// A `send` refused with `WouldBlock` may be made again.
    pub const WRITABLE: u32 = 2;
    /// The connection is closed; the last event, exactly once.
    pub const CLOSED: u32 = 4;
    /// The server is shutting down: close soon.
    pub const DRAINING: u32 = 8;
}

/// What a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text.
    Text = 1,
    /// Bytes.
    Binary = 2,
    /// The end: the connection closed. Its data is the close code (two bytes,
    /// big-endian: 1000 normal, 1006 closed without a close frame, 1002, 1007,
    /// 1009 when the peer broke the protocol) and the reason, in UTF-8. The
    /// last message `recv` returns.
    Close = 8,
}

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsMessage {
    /// Text, binary, or the close.
    pub kind: MessageKind,
    /// The payload (for `Close`: code and reason).
    pub data: Bytes,
}

impl WsMessage {
    fn close(code: u16, reason: &str) -> WsMessage {
        let mut data = Vec::with_capacity(2 + reason.len());
        data.extend_from_slice(&code.to_be_bytes());
        data.extend_from_slice(reason.as_bytes());
        WsMessage { kind: MessageKind::Close, data: Bytes::from(data) }
    }

    /// A `Close` message's code.
    pub fn close_code(&self) -> Option<u16> {
        (self.kind == MessageKind::Close && self.data.len() >= 2)
            .then(|| u16::from_be_bytes([self.data[0], self.data[1]]))
    }
}

/// Why a WebSocket call did not do what it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// Nothing to receive, or the peer is not reading, and the call may not wait.
    WouldBlock,
    /// The connection is closed or closing: nothing more can be sent, and
    /// every message, the `Close` last, was received.
    Closed,
    /// A text message that is not UTF-8, a close code an endpoint may not
    /// send, or a close reason over 123 bytes.
    Invalid,
}

/// Why `accept` failed; nothing was sent, and the request may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// Not a WebSocket handshake the server can accept.
    Handshake(HandshakeError),
    /// The response refused the upgrade.
    Respond(RespondError),
}

/// Settings of one WebSocket.
#[derive(Debug, Clone, Copy)]
pub struct WsOptions {
    /// The largest message (and frame) accepted, in bytes.
    pub max_message: usize,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions { max_message: DEFAULT_MAX_MESSAGE }
    }
}

/// The connection's bytes as tungstenite's stream: never waiting.
struct Io<'a>(&'a Upgraded);

impl Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.try_read(buf) {
            Ok(n) => Ok(n),
            Err(UpgradeError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(UpgradeError::Closed) => Err(io::ErrorKind::ConnectionReset.into()),
        }
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.try_write(Payload::from(buf.to_vec())) {
            Ok(()) => Ok(buf.len()),
            Err(UpgradeError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(UpgradeError::Closed) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The connection as tungstenite's stream while it reads: the client's big
/// frames reach it cut into fragments (see `reframe`), so that memory
/// follows the bytes that came, not the lengths their heads promise.
struct ReadIo<'a> {
    raw: &'a Upgraded,
    reframe: &'a mut Reframe,
}

impl Read for ReadIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reframe.read(self.raw, buf)
    }
}

impl Write for ReadIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Io(self.raw).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A whole message as one server frame (FIN, unmasked): its head and a copy
/// of `data`, ready to be queued in one piece.
fn encode_frame(opcode: u8, data: &[u8]) -> Vec<u8> {
    let len = data.len();
    let mut out = Vec::with_capacity(10 + len);
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

struct State {
    ctx: WebSocketContext,
    reframe: Reframe,
    inbox: VecDeque<WsMessage>,
    inbox_bytes: usize,
    /// The connection ended: the `Close` message is in the inbox (or taken).
    ended: bool,
    /// The peer's close frame, kept for the `Close` message.
    peer_close: Option<(u16, String)>,
    /// tungstenite holds output the connection refused (over its mark).
    backed_up: bool,
    /// A send was refused: `WRITABLE` is owed.
    want_writable: bool,
    /// A keepalive ping went out when the peer had sent this many bytes:
    /// unanswered while it has sent no more (read or not: a pong behind a
    /// full inbox counts).
    ping_sent_at: Option<u64>,
    waiters: usize,
}

struct Inner {
    raw: Upgraded,
    state: Mutex<State>,
    arrived: Condvar,
    events: Option<Arc<dyn UpgradeEvents>>,
}

/// The connection's events, turned into the WebSocket's: set up before the
/// connection exists, pointed at it once it does.
struct Pump {
    inner: OnceLock<Weak<Inner>>,
    app: Option<Arc<dyn UpgradeEvents>>,
    closed_told: AtomicBool,
}

impl UpgradeEvents for Pump {
    fn on_events(&self, ev: u32) {
        let inner = self.inner.get().and_then(Weak::upgrade);
        if let Some(inner) = &inner {
            if ev & raw_events::READABLE != 0 {
                inner.pump();
            }
            if ev & raw_events::WRITABLE != 0 {
                inner.writable();
            }
            if ev & raw_events::QUIET != 0 {
                inner.keepalive();
            }
            if ev & raw_events::CLOSED != 0 {
                inner.connection_closed();
            }
        }
        if ev & raw_events::DRAINING != 0 {
            self.tell(events::DRAINING);
        }
        if ev & raw_events::CLOSED != 0 && !self.closed_told.swap(true, Ordering::AcqRel) {
            self.tell(events::CLOSED);
        }
    }
}

impl Pump {
    fn tell(&self, ev: u32) {
        if let Some(app) = &self.app {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.on_events(ev)));
        }
    }
}

/// A WebSocket's handle: `Send + Sync`, so one thread may receive while
/// another sends. Dropping it closes the connection (with a close frame,
/// 1001, if none was sent).
pub struct WebSocket {
    inner: Arc<Inner>,
}

impl WebSocket {
    /// Accepts the WebSocket handshake of the request `res` answers: 101 with
    /// `Upgrade: websocket`, `Sec-WebSocket-Accept` and `headers` (a chosen
    /// `Sec-WebSocket-Protocol`, cookies). `events`, if given, is told
    /// [`events`] on the worker's loop.
    pub fn accept(
        res: &mut crate::app::handler::Response<'_>,
        headers: &[(&[u8], &[u8])],
        events: Option<Arc<dyn UpgradeEvents>>,
        options: WsOptions,
    ) -> Result<WebSocket, AcceptError> {
        let key = handshake::accept_value(res.upgrade_request()).map_err(AcceptError::Handshake)?;
        Self::upgrade_with(&key, headers, events, options, |fields, raw| res.upgrade(fields.iter().copied(), Some(raw)))
    }

    /// `accept` for a deferred response, from any thread.
    pub fn accept_deferred(
        d: &mut crate::app::deferred::Deferred,
        headers: &[(&[u8], &[u8])],
        events: Option<Arc<dyn UpgradeEvents>>,
        options: WsOptions,
    ) -> Result<WebSocket, AcceptError> {
        let key = handshake::accept_value(d.upgrade_request()).map_err(AcceptError::Handshake)?;
        Self::upgrade_with(&key, headers, events, options, |fields, raw| d.upgrade(fields.iter().copied(), Some(raw)))
    }

    /// Checks `request` as `accept` does, giving the accept value.
    pub fn check(request: Option<&UpgradeRequest>) -> Result<[u8; 28], HandshakeError> {
        handshake::accept_value(request)
    }

    /// Upgrades through `upgrade` with the handshake's fields and `headers`.
    pub(crate) fn upgrade_with(
        accept: &[u8; 28],
        headers: &[(&[u8], &[u8])],
        events: Option<Arc<dyn UpgradeEvents>>,
        options: WsOptions,
        upgrade: impl FnOnce(&[(&[u8], &[u8])], Arc<dyn UpgradeEvents>) -> Result<Upgraded, RespondError>,
    ) -> Result<WebSocket, AcceptError> {
        let mut fields: Vec<(&[u8], &[u8])> = Vec::with_capacity(headers.len() + 2);
        fields.push((b"Upgrade", b"websocket"));
        fields.push((b"Sec-WebSocket-Accept", accept));
        fields.extend(
            headers.iter().filter(|(n, _)| {
                !n.eq_ignore_ascii_case(b"upgrade") && !n.eq_ignore_ascii_case(b"sec-websocket-accept")
            }),
        );
        let pump = Arc::new(Pump { inner: OnceLock::new(), app: events.clone(), closed_told: AtomicBool::new(false) });
        let raw = upgrade(&fields, pump.clone()).map_err(AcceptError::Respond)?;
        // Kept alive with pings instead of closed by the idle timeout.
        raw.notify_when_quiet();
        let max = options.max_message.max(125);
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_write_buffer_size(usize::MAX)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let inner = Arc::new(Inner {
            raw,
            state: Mutex::new(State {
                ctx: WebSocketContext::new(Role::Server, Some(config)),
                reframe: Reframe::new(max),
                inbox: VecDeque::new(),
                inbox_bytes: 0,
                ended: false,
                peer_close: None,
                backed_up: false,
                want_writable: false,
                ping_sent_at: None,
                waiters: 0,
            }),
            arrived: Condvar::new(),
            events,
        });
        let _ = pump.inner.set(Arc::downgrade(&inner));
        // Events that fired before the handle existed are told again.
        if inner.raw.is_closed() {
            inner.connection_closed();
        } else {
            inner.raw.nudge();
        }
        Ok(WebSocket { inner })
    }

    /// The next message: text, binary, or at the end the `Close` (after which
    /// `Closed`). Off the worker threads it waits for one (unless `may_wait`
    /// is false); on a worker thread it returns `WouldBlock` instead.
    pub fn recv(&self) -> Result<WsMessage, WsError> {
        self.recv_with(!on_worker_thread())
    }

    /// `recv` that waits only when `may_wait` and not on a worker thread.
    pub fn recv_with(&self, may_wait: bool) -> Result<WsMessage, WsError> {
        let may_wait = may_wait && !on_worker_thread();
        let inner = &*self.inner;
        let mut st = inner.lock();
        loop {
            if let Some(message) = st.inbox.pop_front() {
                st.inbox_bytes -= message.data.len();
                // Room again: decode what waits in the connection's window.
                if !st.ended && st.inbox_bytes < INBOX_MAX {
                    inner.fill(&mut st);
                }
                return Ok(message);
            }
            if st.ended {
                return Err(WsError::Closed);
            }
            // Bytes may wait in the window (the inbox was full when they came).
            if inner.fill(&mut st) {
                continue;
            }
            if !may_wait {
                return Err(WsError::WouldBlock);
            }
            st.waiters += 1;
            st = inner.arrived.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiters -= 1;
        }
    }

    /// Sends a whole message (`Text` must be UTF-8). Off the worker threads
    /// it waits while the peer is not reading (unless `may_wait` is false);
    /// on a worker thread one message may wait past the high-water mark, and
    /// the next send returns `WouldBlock` until `WRITABLE`.
    pub fn send(&self, kind: MessageKind, data: Bytes) -> Result<(), WsError> {
        self.send_with(kind, data, !on_worker_thread())
    }

    /// `send` that waits only when `may_wait` and not on a worker thread.
    pub fn send_with(&self, kind: MessageKind, data: Bytes, may_wait: bool) -> Result<(), WsError> {
        self.send_slice(kind, &data, may_wait)
    }

    /// `send_with` from borrowed bytes (copied once, into the frame).
    ///
    /// Data frames are composed here, not by tungstenite: its write buffer
    /// would keep the largest message's capacity for the connection's life.
    /// Its control frames (pongs, close) are written first when held back.
    pub(crate) fn send_slice(&self, kind: MessageKind, data: &[u8], may_wait: bool) -> Result<(), WsError> {
        let opcode = match kind {
            MessageKind::Text => {
                std::str::from_utf8(data).map_err(|_| WsError::Invalid)?;
                1
            }
            MessageKind::Binary => 2,
            MessageKind::Close => return Err(WsError::Invalid),
        };
        let may_wait = may_wait && !on_worker_thread();
        let inner = &*self.inner;
        let mut frame = Payload::from(encode_frame(opcode, data));
        loop {
            if may_wait {
                // Never with the state locked: the worker takes it to report progress.
                inner.raw.wait_writable();
            }
            let mut st = inner.lock();
            if st.ended || !st.ctx.can_write() {
                return Err(WsError::Closed);
            }
            if st.backed_up {
                // What was held back goes first; until it has, nothing more is taken.
                match inner.flush(&mut st) {
                    Ok(true) => {}
                    Ok(false) if may_wait => continue,
                    Ok(false) => {
                        st.want_writable = true;
                        return Err(WsError::WouldBlock);
                    }
                    Err(()) => return Err(WsError::Closed),
                }
            }
            match inner.raw.try_write_or_give_back(frame) {
                Ok(()) => return Ok(()),
                Err((UpgradeError::WouldBlock, back)) if may_wait => frame = back,
                Err((UpgradeError::WouldBlock, _)) => {
                    // The connection tells WRITABLE once under its mark; so do we.
                    st.want_writable = true;
                    return Err(WsError::WouldBlock);
                }
                Err((UpgradeError::Closed, _)) => return Err(WsError::Closed),
            }
        }
    }

    /// Starts the closing handshake with `code` (1000 normal, 1001 going
    /// away, 1003, 1007–1014, or 3000–4999) and `reason` (at most 123 bytes):
    /// the peer answers, the connection closes, and `recv` then returns the
    /// `Close`. A peer that does not answer within 5 s is cut.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), WsError> {
        let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
        if !allowed || reason.len() > 123 {
            return Err(WsError::Invalid);
        }
        let inner = &*self.inner;
        let mut st = inner.lock();
        if st.ended || !st.ctx.can_write() {
            return Err(WsError::Closed);
        }
        let frame = CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from(reason.to_owned()) };
        let _ = st.ctx.close(&mut Io(&inner.raw), Some(frame));
        drop(st);
        let _ = inner.raw.close_within(CLOSE_WAIT);
        Ok(())
    }

    /// Closes now: a close frame (1001) if none was sent, the end for
    /// `recv` (waking blocked calls), and the connection after what was written.
    pub(crate) fn terminate(&self) {
        let _ = self.close(1001, "");
        let mut st = self.inner.lock();
        self.inner.end(&mut st, 1001, "");
    }

    /// Puts a message `recv` returned back at the front (for a caller whose
    /// buffer was too small for it).
    pub(crate) fn unrecv(&self, message: WsMessage) {
        let mut st = self.inner.lock();
        st.inbox_bytes += message.data.len();
        st.inbox.push_front(message);
    }

    /// When the server is shutting down: how long until it cuts the connection.
    pub fn draining(&self) -> Option<Duration> {
        self.inner.raw.draining()
    }

    /// The underlying connection (its idle timeout, say).
    pub fn connection(&self) -> &Upgraded {
        &self.inner.raw
    }
}

impl Drop for WebSocket {
    fn drop(&mut self) {
        let _ = self.close(1001, "");
    }
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").field("connection", &self.inner.raw).finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tell(&self, ev: u32) {
        if let Some(app) = &self.events {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.on_events(ev)));
        }
    }

    /// Bytes arrived (on the worker): decode, then tell the application.
    fn pump(&self) {
        let mut st = self.lock();
        let got = self.fill(&mut st);
        if got && st.waiters > 0 {
            self.arrived.notify_all();
        }
        drop(st);
        if got {
            self.tell(events::MESSAGE);
        }
    }

    /// Decodes messages from the window into the inbox until it is full or
    /// the window empty, answering pings and close frames; true when the
    /// inbox got a message (or the end).
    fn fill(&self, st: &mut State) -> bool {
        let mut got = false;
        while !st.ended && st.inbox_bytes < INBOX_MAX {
            // While tungstenite holds a pong or a close answer the peer has
            // not read, nothing more is decoded (`writable` goes on): a peer
            // that pings and never reads would pile up pongs without bound.
            if st.backed_up && self.flush(st) != Ok(true) {
                break;
            }
            let read = st.ctx.read(&mut ReadIo { raw: &self.raw, reframe: &mut st.reframe });
            match read {
                Ok(Message::Text(text)) => {
                    got = true;
                    push(st, WsMessage { kind: MessageKind::Text, data: Bytes::from(text) });
                }
                Ok(Message::Binary(data)) => {
                    got = true;
                    push(st, WsMessage { kind: MessageKind::Binary, data });
                }
                Ok(Message::Close(frame)) => {
                    // tungstenite queued the answer; the end follows.
                    st.peer_close =
                        Some(frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.to_string())));
                }
                Ok(_) => {
                    // A ping's pong leaves now, or is held back (above).
                    let _ = self.flush(st);
                }
                Err(WsLibError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(WsLibError::ConnectionClosed | WsLibError::AlreadyClosed) => {
                    let (code, reason) = st.peer_close.take().unwrap_or((1005, String::new()));
                    self.end(st, code, &reason);
                    got = true;
                }
                Err(WsLibError::Protocol(ProtocolError::ResetWithoutClosingHandshake) | WsLibError::Io(_)) => {
                    self.end(st, 1006, "");
                    got = true;
                }
                Err(e) => {
                    let code = match e {
                        WsLibError::Utf8(_) => 1007,
                        WsLibError::Capacity(_) => 1009,
                        WsLibError::Protocol(_) => 1002,
                        _ => 1011,
                    };
                    // Fail the connection (RFC 6455 §7.1.7): a close frame saying why.
                    let frame = CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from_static("") };
                    let _ = st.ctx.close(&mut Io(&self.raw), Some(frame));
                    self.end(st, code, "");
                    got = true;
                }
            }
        }
        if !st.ended {
            // Pongs and close answers the reads queued.
            if let Err(()) = self.flush(st) {
                let (code, reason) = st.peer_close.take().unwrap_or((1006, String::new()));
                self.end(st, code, &reason);
                got = true;
            }
        }
        got
    }

    /// Writes what tungstenite holds: Ok(true) when all of it left, Ok(false)
    /// when the connection is over its mark, Err when it is closed.
    fn flush(&self, st: &mut State) -> Result<bool, ()> {
        match st.ctx.flush(&mut Io(&self.raw)) {
            Ok(()) => {
                st.backed_up = false;
                Ok(true)
            }
            Err(WsLibError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                st.backed_up = true;
                Ok(false)
            }
            Err(_) => Err(()),
        }
    }

    /// The connection drained under its mark (on the worker).
    fn writable(&self) {
        let mut st = self.lock();
        let (tell, go_on) = match self.flush(&mut st) {
            Ok(true) => (std::mem::take(&mut st.want_writable), true),
            Ok(false) => (false, false),
            // The close answer held back has left (or the connection failed):
            // `fill` ends the WebSocket.
            Err(()) => (false, true),
        };
        // Decoding may have stopped while output was held back (see `fill`),
        // whoever flushed it since: on.
        let got = go_on && self.fill(&mut st);
        if got && st.waiters > 0 {
            self.arrived.notify_all();
        }
        drop(st);
        if got {
            self.tell(events::MESSAGE);
        }
        if tell {
            self.tell(events::WRITABLE);
        }
    }

    /// Half the idle timeout went by without a byte (on the worker): a ping,
    /// so that a live peer's pong keeps the connection up (proxies and NATs
    /// see traffic too), or, when the peer sent nothing since the last one,
    /// the end: a close frame (1011, as the `websockets` package's keepalive
    /// timeout) and the connection cut soon after, the application told 1006.
    fn keepalive(&self) {
        let mut st = self.lock();
        if st.ended || !st.ctx.can_write() {
            return;
        }
        let received = self.raw.bytes_received();
        if st.ping_sent_at == Some(received) {
            let frame =
                CloseFrame { code: CloseCode::from(1011), reason: Utf8Bytes::from_static("keepalive ping timeout") };
            let _ = st.ctx.close(&mut Io(&self.raw), Some(frame));
            // Counted as a timeout (the idle timeout's close was, before pings).
            let _ = self.raw.close_timed_out();
            self.end(&mut st, 1006, "");
            return;
        }
        st.ping_sent_at = Some(received);
        let _ = st.ctx.write(&mut Io(&self.raw), Message::Ping(Bytes::new()));
        if let Err(()) = self.flush(&mut st) {
            self.end(&mut st, 1006, "");
        }
    }

    /// The connection is gone (on the worker): the end, if not yet.
    fn connection_closed(&self) {
        let mut st = self.lock();
        let (code, reason) = st.peer_close.take().unwrap_or((1006, String::new()));
        self.end(&mut st, code, &reason);
    }

    /// Queues the `Close` message once and closes the connection after what
    /// was written.
    fn end(&self, st: &mut State, code: u16, reason: &str) {
        if st.ended {
            return;
        }
        st.ended = true;
        st.inbox.push_back(WsMessage::close(code, reason));
        if st.waiters > 0 {
            self.arrived.notify_all();
        }
        let _ = self.raw.close();
    }
}

fn push(st: &mut State, message: WsMessage) {
    st.inbox_bytes += message.data.len();
    st.inbox.push_back(message);
}

//! One event loop: accept, read, dispatch, write, apply deferred answers, sweep
//! deadlines, drain on shutdown. Owns its listener, its connections and its
//! buffers; shares nothing on the request path with other workers.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::buffer::InBuf;
use crate::config::Config;
use crate::conn::{Conn, ConnState, Stop};
use crate::deferred::{ConnRef, Mailbox, Message};
use crate::handler::Handler;
use crate::http::compose::{compose_error, ComposeEnv};
use crate::http::date::DateCache;
use crate::http::head::HeadLimits;
use crate::out::write_now_or_queue;
use crate::server::Shared;
use crate::timer::{CoarseClock, Deadline, Wait};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Reads land here first; a connection gets its own buffer only for a request
/// that did not arrive whole.
const SCRATCH_SIZE: usize = 64 * 1024;
/// A connection buffer larger than this is released when it empties.
const KEEP_INPUT: usize = 16 * 1024;
/// How long a closing connection may keep sending before it is dropped.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_DISCARD_MAX: usize = 256 * 1024;

/// The per-worker context the connection code reaches the shared machinery
/// through: handler, limits, date, mailbox, scratch for the decoded path, counters.
pub(crate) struct WorkerCtx {
    pub index: usize,
    pub handler: Arc<dyn Handler>,
    pub head_limits: HeadLimits,
    pub max_body_size: u64,
    pub server_line: Vec<u8>,
    pub date: DateCache,
    pub path_buf: Vec<u8>,
    pub mailbox: Arc<Mailbox>,
    pub stream_high_water: usize,
    /// Shutting down: responses close their connections.
    pub draining: bool,
    pub requests: u64,
    pub parse_errors: u64,
}

struct Timeouts {
    header: Duration,
    idle: Duration,
    body: Duration,
    write: Duration,
}

/// A worker before it runs: created by `start` so that bind errors surface there.
pub(crate) struct Worker {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
    next_conn_id: u64,
    scratch: InBuf,
    out: Vec<u8>,
    inbox: Vec<Message>,
    ctx: WorkerCtx,
    timeouts: Timeouts,
    clock: CoarseClock,
    shared: Arc<Shared>,
    accept_paused: bool,
}

impl Worker {
    pub fn new(
        index: usize,
        config: &Config,
        mut listener: TcpListener,
        shared: Arc<Shared>,
    ) -> io::Result<(Worker, Arc<Mailbox>)> {
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let mailbox = Arc::new(Mailbox::new(Waker::new(poll.registry(), WAKER)?));
        let handler = config.handler.clone().expect("validated config has a handler");
        let worker = Worker {
            poll,
            listener: Some(listener),
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_conn_id: 0,
            scratch: InBuf::with_capacity(SCRATCH_SIZE),
            out: Vec::with_capacity(SCRATCH_SIZE),
            inbox: Vec::new(),
            ctx: WorkerCtx {
                index,
                handler,
                head_limits: config.head_limits(),
                max_body_size: config.max_body_size,
                server_line: crate::http::compose::server_line(&config.server_name),
                date: DateCache::default(),
                path_buf: Vec::with_capacity(256),
                mailbox: mailbox.clone(),
                stream_high_water: config.stream_high_water,
                draining: false,
                requests: 0,
                parse_errors: 0,
            },
            timeouts: Timeouts {
                header: config.header_timeout,
                idle: config.idle_timeout,
                body: config.body_timeout,
                write: config.write_timeout,
            },
            clock: CoarseClock::new(),
            shared,
            accept_paused: false,
        };
        Ok((worker, mailbox))
    }

    /// Runs the loop until shutdown has drained every connection.
    pub fn run(mut self) {
        self.ctx.mailbox.set_worker_thread();
        // A shutdown may have been asked before this thread started.
        self.check_shutdown();
        let mut events = Events::with_capacity(1024);
        loop {
            if self.ctx.draining && (self.live == 0 || self.shared.past_deadline()) {
                break;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_secs(1))) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            self.ctx.date.refresh();
            let new_second = self.clock.tick();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => self.read_mailbox(),
                    Token(i) => self.on_conn_event(i, event.is_readable(), event.is_writable()),
                }
            }
            if new_second {
                self.sweep();
            }
        }
        // Whatever is left at the deadline is cut; pending handles learn it.
        self.conns.clear();
        self.live = 0;
        self.ctx.mailbox.close();
    }

    fn read_mailbox(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        let poked = self.ctx.mailbox.take(&mut inbox);
        if poked {
            self.check_shutdown();
        }
        for message in inbox.drain(..) {
            self.deliver(message);
        }
        self.inbox = inbox;
    }

    /// Applies a deferred answer to its connection, then lets the connection
    /// go on (flush, next pipelined request, close).
    fn deliver(&mut self, message: Message) {
        let ConnRef { index, id } = message.conn;
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        if conn.state.conn_ref.id != id {
            return;
        }
        let ok = conn.state.apply(message.answer, &self.ctx, &mut self.out);
        self.out.clear();
        if !ok {
            self.close(index);
            return;
        }
        conn.state.acknowledge_written();
        self.drive(index);
    }

    fn check_shutdown(&mut self) {
        if self.shared.is_shutting_down() && !self.ctx.draining {
            self.ctx.draining = true;
            if let Some(mut l) = self.listener.take() {
                let _ = self.poll.registry().deregister(&mut l);
            }
            // Idle keep-alive connections and half-received heads close now
            // (Warp #853 kept them to the deadline); requests in progress finish.
            for i in 0..self.conns.len() {
                let idle = matches!(&self.conns[i], Some(c) if c.state.backlog.is_empty()
                    && !c.state.awaiting_body()
                    && c.state.waiting.is_none());
                if idle {
                    self.close(i);
                }
            }
        }
    }

    fn accept_all(&mut self) {
        if self.accept_paused {
            return;
        }
        loop {
            let Some(listener) = &self.listener else { return };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let index = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    if self.poll.registry().register(&mut stream, Token(index), Interest::READABLE).is_err() {
                        self.free.push(index);
                        continue;
                    }
                    self.next_conn_id += 1;
                    let mut conn = Conn::new(stream, peer, ConnRef { index, id: self.next_conn_id });
                    conn.state.deadline = Deadline { at: self.clock.after(self.timeouts.header), wait: Wait::Head };
                    self.conns[index] = Some(conn);
                    self.live += 1;
                    // The request often arrived with the connection.
                    self.drive(index);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_transient_accept_error(&e) => {}
                Err(_) => {
                    // Out of descriptors or memory: retry on the next sweep
                    // instead of spinning.
                    self.accept_paused = true;
                    return;
                }
            }
        }
    }

    fn on_conn_event(&mut self, index: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get_mut(index).and_then(|c| c.as_mut()) else { return };
        if conn.state.deadline.wait == Wait::Linger {
            if readable {
                self.discard_input(index);
            }
            return;
        }
        if writable && !conn.state.backlog.is_empty() && !self.flush_backlog(index) {
            return;
        }
        if readable || writable {
            self.drive(index);
        }
    }

    /// Reads, handles and writes until the socket has nothing more or the
    /// connection must wait (backlog, deferred answer, close).
    fn drive(&mut self, index: usize) {
        let Worker { conns, scratch, out, ctx, clock, timeouts, .. } = self;
        let Some(Some(conn)) = conns.get_mut(index) else { return };
        let mut eof = false;
        let mut stop = if conn.state.close_after_flush {
            Stop::Close
        } else if conn.state.waiting.is_some() {
            Stop::Waiting
        } else if !conn.state.backlog.is_empty() {
            Stop::Backpressure
        } else {
            Stop::NeedInput
        };

        // Bytes left from an earlier pass (stopped by backpressure or a
        // deferred answer) come first.
        if !conn.input.is_empty() && stop == Stop::NeedInput {
            let progress = conn.state.process(conn.input.bytes(), ctx, out);
            conn.input.consume(progress.consumed);
            conn.input.grow_to(progress.need);
            stop = progress.stop;
        }

        while stop == Stop::NeedInput && !eof {
            let own = !conn.input.is_empty();
            let buf: &mut InBuf = if own { &mut conn.input } else { scratch };
            if buf.spare().is_empty() {
                let limit = ctx.head_limits.max_head_bytes + ctx.max_body_size as usize + SCRATCH_SIZE;
                if buf.capacity() >= limit {
                    // Only chunk overhead can take a request past the limits.
                    compose_error(out, &env(ctx), 413);
                    conn.state.close_after_flush = true;
                    break;
                }
                buf.grow_to((buf.capacity() * 2).clamp(4096, limit));
            }
            match (&conn.state.stream).read(buf.spare()) {
                Ok(0) => eof = true,
                Ok(n) => buf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    out.clear();
                    break;
                }
            }
            let progress = conn.state.process(buf.bytes(), ctx, out);
            stop = progress.stop;
            if own {
                conn.input.consume(progress.consumed);
            } else {
                if progress.consumed < scratch.len() {
                    conn.input.extend_from_slice(&scratch.bytes()[progress.consumed..]);
                }
                scratch.clear();
            }
            conn.input.grow_to(progress.need);
            // Keep pipelined answers together unless the batch grew large.
            if stop == Stop::NeedInput && out.len() >= SCRATCH_SIZE {
                write_out(&mut conn.state, out);
            }
        }

        // While an answer is deferred, watch for the client going away
        // (buffering what it pipelines, up to the head limit).
        if stop == Stop::Waiting && !eof {
            eof = watch_while_waiting(conn, ctx.head_limits.max_head_bytes);
        }

        write_out(&mut conn.state, out);
        conn.state.acknowledge_written();
        if eof {
            conn.state.close_after_flush = true;
        }
        let broken = eof && conn.state.waiting.is_some();

        // Arm the deadline for what the connection now waits for.
        let state = &mut conn.state;
        if !state.backlog.is_empty() {
            if state.deadline.wait != Wait::Write {
                state.deadline = Deadline { at: clock.after(timeouts.write), wait: Wait::Write };
            }
        } else if state.waiting.is_some() || state.close_after_flush {
            // A handler is working: no timeout (Warp #351, #808).
            state.deadline = Deadline::NONE;
        } else if state.awaiting_body() {
            state.deadline = Deadline { at: clock.after(timeouts.body), wait: Wait::Body };
        } else if !conn.input.is_empty() {
            if state.deadline.wait != Wait::Head {
                state.deadline = Deadline { at: clock.after(timeouts.header), wait: Wait::Head };
            }
        } else {
            conn.input.clear_and_shrink(KEEP_INPUT);
            state.deadline = Deadline { at: clock.after(timeouts.idle), wait: Wait::Idle };
        }

        let needs_write = !conn.state.backlog.is_empty();
        let closing = conn.state.close_after_flush && !needs_write && conn.state.waiting.is_none();
        if broken {
            self.close(index);
            return;
        }
        self.set_write_interest(index, needs_write);
        if closing {
            if eof || self.ctx.draining {
                self.close(index);
            } else {
                self.start_linger(index);
            }
        }
    }

    /// Writes the backlog; true when it is empty afterwards.
    fn flush_backlog(&mut self, index: usize) -> bool {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return false };
        let state = &mut conn.state;
        let before = state.backlog.len();
        let Ok(empty) = state.backlog.flush(&state.stream) else {
            self.close(index);
            return false;
        };
        if state.backlog.len() < before {
            state.deadline = Deadline { at: self.clock.after(self.timeouts.write), wait: Wait::Write };
        }
        state.acknowledge_written();
        if empty {
            self.set_write_interest(index, false);
        }
        empty
    }

    fn set_write_interest(&mut self, index: usize, want: bool) {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        if conn.state.write_registered == want {
            return;
        }
        let interest = if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        if self.poll.registry().reregister(&mut conn.state.stream, Token(index), interest).is_ok() {
            conn.state.write_registered = want;
        }
    }

    /// Half-closes and discards what the client still sends, so that our last
    /// response is not destroyed by a reset (the lingering close nginx does).
    fn start_linger(&mut self, index: usize) {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        if conn.state.stream.shutdown(std::net::Shutdown::Write).is_err() {
            self.close(index);
            return;
        }
        conn.input.clear_and_shrink(0);
        conn.state.deadline = Deadline { at: self.clock.after(LINGER), wait: Wait::Linger };
        self.discard_input(index);
    }

    fn discard_input(&mut self, index: usize) {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        let mut discarded = 0;
        loop {
            match (&conn.state.stream).read(self.scratch.spare()) {
                Ok(0) => break,
                Ok(n) => {
                    discarded += n;
                    if discarded > LINGER_DISCARD_MAX {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.close(index);
    }

    fn close(&mut self, index: usize) {
        if let Some(slot) = self.conns.get_mut(index) {
            if slot.take().is_some() {
                self.free.push(index);
                self.live -= 1;
            }
        }
    }

    /// Once a second: expire deadlines, retry a paused accept.
    fn sweep(&mut self) {
        let now = self.clock.now();
        for i in 0..self.conns.len() {
            let expired = matches!(&self.conns[i], Some(c) if c.state.deadline.expired(now));
            if expired {
                self.close(i);
            }
        }
        if self.accept_paused {
            self.accept_paused = false;
            self.accept_all();
        }
    }
}

fn env(ctx: &WorkerCtx) -> ComposeEnv<'_> {
    ComposeEnv { date: ctx.date.get(), server_line: &ctx.server_line }
}

/// Reads what a client sends while its answer is deferred; true on EOF or error.
fn watch_while_waiting(conn: &mut Conn, limit: usize) -> bool {
    loop {
        if conn.input.len() >= limit {
            return false;
        }
        if conn.input.spare().is_empty() {
            conn.input.grow_to((conn.input.capacity() * 2).clamp(4096, limit));
        }
        match (&conn.state.stream).read(conn.input.spare()) {
            Ok(0) => return true,
            Ok(n) => conn.input.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Sends the batch in `out`, keeping what the socket does not take in the
/// connection's backlog.
fn write_out(state: &mut ConnState, out: &mut Vec<u8>) {
    if out.is_empty() {
        return;
    }
    if !write_now_or_queue(&state.stream, &mut state.backlog, out, None, b"") {
        state.backlog.clear();
        state.close_after_flush = true;
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED) | Some(libc::EPROTO) | Some(libc::EPERM) | Some(libc::ENETDOWN) | Some(libc::EHOSTUNREACH)
    )
}

//! One event loop: accept, read, dispatch, write, sweep deadlines, drain on
//! shutdown. Owns its listener, its connections and its buffers; shares nothing
//! on the request path with other workers.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::buffer::InBuf;
use crate::config::Config;
use crate::conn::{Conn, ConnState, Stop};
use crate::file::StaticFiles;
use crate::handler::Handler;
use crate::http::date::DateCache;
use crate::http::head::HeadLimits;
use crate::server::Shared;
use crate::timer::{CoarseClock, Deadline, Wait};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// The file watcher (inotify) of the worker's static-file caches.
const FILE_WATCH: Token = Token(usize::MAX - 3);
/// Reads land here first; a connection gets its own buffer only for a request
/// that did not arrive whole.
const SCRATCH_SIZE: usize = 64 * 1024;
/// A connection buffer larger than this is released when it empties.
const KEEP_INPUT: usize = 16 * 1024;
/// How long a closing connection may keep sending before it is dropped.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_DISCARD_MAX: usize = 256 * 1024;

/// The per-worker context the connection code reaches the shared machinery
/// through: handler, limits, date, static files, scratch for the decoded path,
/// counters.
pub(crate) struct WorkerCtx {
    pub index: usize,
    pub handler: Arc<dyn Handler>,
    pub head_limits: HeadLimits,
    pub max_body_size: u64,
    pub server_line: Vec<u8>,
    pub date: DateCache,
    /// Mounts, fd and file-info caches of this worker.
    pub files: StaticFiles,
    pub path_buf: Vec<u8>,
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
    scratch: InBuf,
    out: Vec<u8>,
    ctx: WorkerCtx,
    timeouts: Timeouts,
    clock: CoarseClock,
    shared: Arc<Shared>,
    accept_paused: bool,
}

impl Worker {
    pub fn new(index: usize, config: &Config, mut listener: TcpListener, shared: Arc<Shared>) -> io::Result<(Worker, Waker)> {
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let handler = config.handler.clone().expect("validated config has a handler");
        let files = StaticFiles::new(shared.files.clone(), index, poll.registry().try_clone().ok(), FILE_WATCH);
        let worker = Worker {
            poll,
            listener: Some(listener),
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            scratch: InBuf::with_capacity(SCRATCH_SIZE),
            out: Vec::with_capacity(SCRATCH_SIZE),
            ctx: WorkerCtx {
                index,
                handler,
                head_limits: config.head_limits(),
                max_body_size: config.max_body_size,
                server_line: crate::http::compose::server_line(&config.server_name),
                date: DateCache::default(),
                files,
                path_buf: Vec::with_capacity(256),
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
        Ok((worker, waker))
    }

    /// Runs the loop until shutdown has drained every connection.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            if self.ctx.draining && (self.live == 0 || self.shared.past_deadline()) {
                break;
            }
            let timeout = Duration::from_secs(1);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            self.ctx.date.refresh();
            let new_second = self.clock.tick();
            // File changes first: a request that follows a change must see it.
            if events.iter().any(|e| e.token() == FILE_WATCH) {
                self.ctx.files.on_watch_event();
            }
            for event in events.iter() {
                match event.token() {
                    FILE_WATCH => {}
                    LISTENER => self.accept_all(),
                    WAKER => self.check_shutdown(),
                    Token(i) => self.on_conn_event(i, event.is_readable(), event.is_writable()),
                }
            }
            if new_second {
                self.sweep();
            }
        }
        // Whatever is left at the deadline is cut.
        self.conns.clear();
        self.live = 0;
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
                let idle = matches!(&self.conns[i], Some(c) if c.state.backlog.is_empty() && !c.state.awaiting_body());
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
                    let mut conn = Conn::new(stream, peer);
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
    /// connection must wait (backlog, close).
    fn drive(&mut self, index: usize) {
        let Worker { conns, scratch, out, ctx, clock, timeouts, .. } = self;
        let Some(Some(conn)) = conns.get_mut(index) else { return };
        let mut eof = false;
        let mut stop = if conn.state.close_after_flush {
            Stop::Close
        } else if !conn.state.backlog.is_empty() {
            Stop::Backpressure
        } else {
            Stop::NeedInput
        };

        // Bytes left from an earlier pass (stopped by backpressure) come first.
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
                    crate::http::compose::compose_error(out, &env(ctx), 413);
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
                    conn.state.close_after_flush = true;
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
            if stop == Stop::NeedInput && !out.is_empty() {
                // Keep pipelined answers together unless the batch grew large.
                if out.len() >= SCRATCH_SIZE {
                    write_out(&mut conn.state, out);
                }
            }
        }

        write_out(&mut conn.state, out);
        if eof {
            conn.state.close_after_flush = true;
        }

        // Arm the deadline for what the connection now waits for.
        let state = &mut conn.state;
        if !state.backlog.is_empty() {
            if state.deadline.wait != Wait::Write {
                state.deadline = Deadline { at: clock.after(timeouts.write), wait: Wait::Write };
            }
        } else if state.close_after_flush {
            // Handled below.
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
        let closing = conn.state.close_after_flush && !needs_write;
        let peer_gone = eof;
        self.set_write_interest(index, needs_write);
        if closing {
            if peer_gone || self.ctx.draining {
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
        let ok = state.backlog.flush(state.stream.as_fd()).is_ok();
        if !ok {
            self.close(index);
            return false;
        }
        if state.backlog.len() < before {
            state.deadline = Deadline { at: self.clock.after(self.timeouts.write), wait: Wait::Write };
        }
        if state.backlog.is_empty() {
            self.set_write_interest(index, false);
            true
        } else {
            false
        }
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
        self.ctx.files.sweep();
    }
}

fn env(ctx: &WorkerCtx) -> crate::http::compose::ComposeEnv<'_> {
    crate::http::compose::ComposeEnv { date: ctx.date.get(), server_line: &ctx.server_line }
}

/// Sends the batch in `out`, keeping what the socket does not take in the
/// connection's backlog.
fn write_out(state: &mut ConnState, out: &mut Vec<u8>) {
    if out.is_empty() {
        return;
    }
    if state.backlog.is_empty() {
        let mut written = 0;
        while written < out.len() {
            match (&state.stream).write(&out[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    out.clear();
                    state.close_after_flush = true;
                    return;
                }
            }
        }
        state.backlog.extend_from_slice(&out[written..]);
    } else {
        state.backlog.extend_from_slice(out);
        if state.backlog.flush(state.stream.as_fd()).is_err() {
            state.backlog.clear();
            state.close_after_flush = true;
        }
    }
    out.clear();
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED) | Some(libc::EPROTO) | Some(libc::EPERM) | Some(libc::ENETDOWN) | Some(libc::EHOSTUNREACH)
    )
}

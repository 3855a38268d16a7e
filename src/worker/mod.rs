//! One event loop: accept, read, dispatch, write, apply deferred answers, sweep
//! deadlines, drain on shutdown. Owns its connections and its buffers, and
//! accepts from every listener of the server (its own `SO_REUSEPORT` socket
//! of each TCP address, the sockets it shares with the other workers for the
//! rest); shares nothing on the request path with other workers.

pub(crate) mod clock;
mod coalesce;
mod held;
pub(crate) mod sched;
pub(crate) mod shared;
mod tls;

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::app::hooks::Hooked;
use crate::app::mailbox::{ConnRef, Mailbox, Message, WorkerThread};
use crate::app::upgrade::events as upgrade_events;
use crate::conn::context::WorkerCtx;
use crate::conn::deadline::{Deadline, Wait};
use crate::conn::{Conn, ConnState, Stop};
use crate::file::StaticFiles;
use crate::http::compose::{compose_error, ComposeEnv};
use crate::http::date::DateCache;
use crate::http::image::ImageCache;
use crate::net::input::InBuf;
use crate::net::listen::Listener;
use crate::net::output::{send_or_queue, write_now_or_queue};
use crate::observe::log::{AccessBuffer, Level};
use crate::observe::stats::{bump, WorkerStats};
use crate::sys::socket_io;
use crate::tls::acceptor::Acceptor;
use clock::CoarseClock;
use coalesce::Coalescer;
use held::HeldAnswers;
use shared::{Listeners, Shared};

/// Listener `i` of the worker's is `Token(LISTENERS + i)`; connections'
/// tokens are their slot index, far below.
const LISTENERS: usize = usize::MAX / 2;
const WAKER: Token = Token(usize::MAX - 2);
/// The file watcher (inotify) of the worker's static-file caches.
const FILE_WATCH: Token = Token(usize::MAX - 3);
/// Reads land here first; a connection gets its own buffer only for a request
/// that did not arrive whole.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Output buffers idle connections gave back, kept for busy ones (see
/// `OutQueue::take_spare`).
const SPARE_OUT: usize = 64;
/// How long after a client's FIN its pending requests are let go, with
/// `client_fin_ends_request`: an answer given meanwhile still goes out (a
/// client that half-closed right after sending waits for it), one not given
/// is not waited for (a long poll whose browser tab closed).
const FIN_GRACE: Duration = Duration::from_secs(1);
/// A connection buffer larger than this is released when it empties.
const KEEP_INPUT: usize = 16 * 1024;
/// When shutdown begins, how long an idle keep-alive connection is kept for
/// a request its client may have sent already (answered with `Connection:
/// close`) before it is closed; at most the shutdown's grace. Closed at once,
/// such a request would be lost.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// How long a closing connection may keep sending before it is dropped.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_DISCARD_MAX: usize = 256 * 1024;

/// A worker before it runs: created by `start` so that bind errors surface there.
pub(crate) struct Worker {
    poll: Poll,
    /// The listeners this worker accepts from, by token (`LISTENERS + i`).
    listeners: Vec<Option<Arc<Listener>>>,
    /// The server's listeners the worker last took (see `follow_listeners`).
    listener_set: Listeners,
    conns: Vec<Option<Conn>>,
    /// Per connection slot, the connection hooks that saw it open (see
    /// `app::hooks`): dropped as it closes, they hear of it. Beside the
    /// slots, not in them, so that a connection costs nothing more without
    /// hooks.
    hooked: Vec<Option<Box<Hooked>>>,
    free: Vec<usize>,
    live: usize,
    next_conn_id: u64,
    scratch: InBuf,
    out: Vec<u8>,
    /// Answers waiting for the end of the poll round (see `held`).
    held: HeldAnswers,
    inbox: Vec<Message>,
    /// Connections whose output a batch of messages queued without writing.
    flush_after_batch: Vec<usize>,
    ctx: WorkerCtx,
    clock: CoarseClock,
    /// Whether to nap before the next poll (see `coalesce`).
    coalescer: Coalescer,
    shared: Arc<Shared>,
    accept_paused: bool,
    /// While draining: when idle connections close (see `DRAIN_IDLE`).
    close_idle_at: Option<Instant>,
}

impl Worker {
    pub fn new(index: usize, shared: Arc<Shared>, stats: Arc<WorkerStats>) -> io::Result<(Worker, Arc<Mailbox>)> {
        let poll = Poll::new()?;
        let mailbox = Arc::new(Mailbox::new(Waker::new(poll.registry(), WAKER)?));
        let (settings, generation) = shared.current_settings();
        let mut date = DateCache::default();
        date.set_server_line(&settings.server_line);
        let access = settings.access_log.as_ref().map(|_| AccessBuffer::default());
        let coalesce_wait = settings.coalesce_wait;
        let files = StaticFiles::new(
            settings.site.clone(),
            shared.file_counters.clone(),
            index,
            poll.registry().try_clone().ok(),
            FILE_WATCH,
        );
        let mut worker = Worker {
            poll,
            listeners: Vec::new(),
            listener_set: Arc::new([]),
            conns: Vec::new(),
            hooked: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_conn_id: 0,
            scratch: InBuf::with_capacity(SCRATCH_SIZE),
            out: Vec::with_capacity(SCRATCH_SIZE),
            held: HeldAnswers::default(),
            inbox: Vec::new(),
            flush_after_batch: Vec::new(),
            ctx: WorkerCtx {
                index,
                settings,
                generation,
                date,
                files,
                path_buf: Vec::with_capacity(256),
                images: ImageCache::default(),
                mailbox: mailbox.clone(),
                stats,
                access,
                draining: false,
                close_idle: false,
                drain_deadline: None,
                spare_heads: Vec::new(),
                held_out: Vec::new(),
                spare_queues: Vec::new(),
                spare_shared: Vec::new(),
                spare_out: Vec::new(),
                finished_while_draining: 0,
                shutting_down: shared.shutdown_flag().clone(),
            },
            clock: CoarseClock::new(),
            coalescer: Coalescer::new(coalesce_wait, Instant::now()),
            shared,
            accept_paused: false,
            close_idle_at: None,
        };
        let listeners = worker.shared.current_listeners();
        worker.follow_listeners(listeners, false)?;
        Ok((worker, mailbox))
    }

    /// The state shared with the server.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Runs the loop until shutdown has drained every connection.
    pub fn run(mut self) {
        // Stream writes made on this thread, to any worker's connection,
        // never wait from now on (see `Deferred::write`).
        let _worker_thread = WorkerThread::enter(&self.ctx.mailbox);
        self.shared.worker_running(self.ctx.index, true);
        // A reload or shutdown may have been asked before this thread started.
        self.check_settings();
        self.check_shutdown();
        let mut events = Events::with_capacity(1024);
        loop {
            if self.close_idle_at.is_some_and(|at| Instant::now() >= at) {
                self.close_idle();
            }
            if self.ctx.draining && (self.live == 0 || self.shared.past_deadline()) {
                break;
            }
            let wait = match self.close_idle_at {
                Some(at) => at.saturating_duration_since(Instant::now()).min(Duration::from_secs(1)),
                None => Duration::from_secs(1),
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            let now = Instant::now();
            self.ctx.date.refresh();
            let new_second = self.clock.tick_at(now);
            // File changes first: a request that follows a change must see it.
            if events.iter().any(|e| e.token() == FILE_WATCH) {
                self.ctx.files.on_watch_event();
            }
            let mut round = events.iter().count();
            self.held.start_round(round);
            for event in events.iter() {
                match event.token() {
                    Token(i) if i < LISTENERS => self.contained(i, |w| {
                        w.on_conn_event(i, event.is_readable(), event.is_writable(), event.is_read_closed())
                    }),
                    FILE_WATCH => {}
                    // One wake-up may bring many answers: each counts.
                    WAKER => round += self.read_mailbox(),
                    Token(t) => self.accept_from(t - LISTENERS),
                }
                if self.held.overdue() {
                    self.release_all_held();
                }
            }
            self.release_all_held();
            if new_second {
                // Shutdown is announced through the mailbox's wake-up; looking
                // once a second as well bounds the drain's start even if that
                // wake-up were ever missed.
                self.check_shutdown();
                self.sweep();
                self.flush_access_log();
            } else if self.ctx.access.as_ref().is_some_and(|a| a.lines.len() >= 64 * 1024) {
                self.flush_access_log();
            }
            self.take_own_messages();
            if !self.ctx.draining {
                self.nap_if_worth_it(now, round);
            }
        }
        // Whatever is left at the deadline is cut; pending handles learn it.
        let cut = self.live as u64;
        self.conns.clear();
        self.hooked.clear();
        bump(&self.ctx.stats.closed, cut);
        self.live = 0;
        self.ctx.mailbox.close();
        self.flush_access_log();
        self.shared.worker_report(self.ctx.finished_while_draining, cut);
        self.shared.worker_running(self.ctx.index, false);
    }

    /// Runs `f` for connection `index`; a panic in the engine's own code costs
    /// that connection only, and is reported to the error log.
    fn contained(&mut self, index: usize, f: impl FnOnce(&mut Worker)) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        if let Err(panic) = result {
            let message = crate::conn::panic_message(&*panic);
            self.ctx
                .settings
                .log_error(Level::Error, &format!("worker {}: panic contained: {message}", self.ctx.index));
            self.out.clear();
            self.scratch.clear();
            self.close(index);
        }
    }

    /// Sleeps before the next poll when the coalescer says so (see
    /// `coalesce`), unless answers from other threads are waiting: the
    /// mailbox's wake-up cannot cut a nap short.
    fn nap_if_worth_it(&mut self, now: Instant, events: usize) {
        let Some(nap) = self.coalescer.after_round(now, events) else { return };
        if self.ctx.mailbox.has_messages() {
            return;
        }
        bump(&self.ctx.stats.coalesce_naps, 1);
        let start = Instant::now();
        std::thread::sleep(nap);
        self.coalescer.slept(start.elapsed());
    }

    fn flush_access_log(&mut self) {
        if let (Some(buffer), Some(log)) = (self.ctx.access.as_mut(), self.ctx.settings.access_log.as_ref()) {
            if !buffer.lines.is_empty() {
                log.write(&buffer.lines);
                buffer.lines.clear();
            }
        }
    }

    /// Takes a newer settings snapshot after a reload and acknowledges it.
    fn check_settings(&mut self) {
        let (settings, generation) = self.shared.current_settings();
        if generation == self.ctx.generation {
            return;
        }
        self.flush_access_log();
        self.ctx.access = settings.access_log.as_ref().map(|_| self.ctx.access.take().unwrap_or_default());
        self.ctx.files.use_site(&settings.site);
        self.ctx.date.set_server_line(&settings.server_line);
        self.coalescer.set_nap(settings.coalesce_wait, Instant::now());
        sched::follow(&settings, &self.shared);
        // Listeners whose TLS the reload replaced: (before, after).
        let replaced: Vec<(Arc<Acceptor>, Arc<Acceptor>)> = self
            .ctx
            .settings
            .tls
            .iter()
            .filter_map(|(address, was)| {
                let (_, now) = settings.tls.iter().find(|(a, _)| a == address)?;
                (!Arc::ptr_eq(was, now)).then(|| (was.clone(), now.clone()))
            })
            .collect();
        self.ctx.settings = settings;
        self.ctx.generation = generation;
        if !replaced.is_empty() {
            self.follow_tls(&replaced);
        }
        // After the settings: connections accepted here are driven at once,
        // with the new settings, and must not find this reload still to do.
        if !self.ctx.draining {
            self.take_listeners(true);
        }
        self.shared.acknowledge(self.ctx.index, generation);
    }

    /// Connections still in their TLS handshake under a listener's TLS that
    /// a reload replaced: silent ones begin again under the new rules (a
    /// client may not open connections before a reload to handshake after it
    /// under the old ones); ones part-way through finish if the rules name
    /// the same clients, else close (see `Stream::follow_tls`).
    fn follow_tls(&mut self, replaced: &[(Arc<Acceptor>, Arc<Acceptor>)]) {
        for index in 0..self.conns.len() {
            let Some(Some(conn)) = self.conns.get_mut(index) else { continue };
            let stream = &mut conn.state.stream;
            if !replaced.iter().all(|(was, now)| stream.follow_tls(was, now)) {
                self.close(index);
            }
        }
    }

    /// Applies what this thread posted to its own mailbox this round (event
    /// callbacks' writes and answers, which sent no wake-up), and what those
    /// posted in turn, a few rounds deep; what is left after that gets a
    /// wake-up, so that the next poll returns at once.
    fn take_own_messages(&mut self) {
        let mut passes = 0;
        while self.ctx.mailbox.take_own() {
            if passes == 4 {
                self.ctx.mailbox.wake();
                return;
            }
            passes += 1;
            self.read_mailbox();
        }
    }

    /// Applies what other threads posted; returns how many messages it
    /// delivered (the coalescer counts each as an event).
    fn read_mailbox(&mut self) -> usize {
        let mut inbox = std::mem::take(&mut self.inbox);
        let poked = self.ctx.mailbox.take(&mut inbox, &mut self.ctx.spare_heads);
        if poked {
            self.check_settings();
            self.check_shutdown();
        }
        let delivered = inbox.len();
        let mut flush = std::mem::take(&mut self.flush_after_batch);
        for message in inbox.drain(..) {
            let index = message.conn.index;
            self.contained(index, |w| w.deliver(message, &mut flush));
        }
        self.inbox = inbox;
        // Output the batch queued without writing: one write per connection.
        for index in flush.drain(..) {
            self.contained(index, |w| {
                if let Some(Some(conn)) = w.conns.get_mut(index) {
                    conn.state.flush_pending = false;
                    if w.flush_backlog(index) || w.conns.get(index).is_some_and(Option::is_some) {
                        w.drive(index);
                    }
                }
            });
        }
        self.flush_after_batch = flush;
        delivered
    }

    /// Applies a deferred answer to its connection, then lets the connection
    /// go on (flush, next pipelined request, close).
    fn deliver(&mut self, message: Message, flush: &mut Vec<usize>) {
        let ConnRef { index, id, .. } = message.conn;
        self.release_held(index);
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        if conn.state.conn_ref.id != id {
            return;
        }
        let was_pending = conn.state.flush_pending;
        let ok = conn.state.apply(message.conn.seq, message.answer, &mut self.ctx, &mut self.out);
        self.out.clear();
        if !ok {
            self.close(index);
            return;
        }
        if conn.state.flush_pending {
            // Written with the rest of the batch (see `read_mailbox`).
            if !was_pending {
                flush.push(index);
            }
            return;
        }
        conn.state.acknowledge_written();
        bump(&self.ctx.stats.bytes_out, conn.state.backlog.take_written());
        self.drive(index);
    }

    fn check_shutdown(&mut self) {
        if self.shared.is_shutting_down() && !self.ctx.draining {
            self.ctx.draining = true;
            // What already waits in the listen queues is taken (and answered
            // with `Connection: close`): closing a listener resets its queue.
            self.accept_all();
            for slot in 0..self.listeners.len() {
                self.stop_listener(slot);
            }
            self.listener_set = Arc::new([]);
            // Idle keep-alive connections close after `DRAIN_IDLE` (or at the
            // deadline, if sooner), not at once: a request already on its way
            // is answered then (Warp #853 kept them to the deadline).
            // Requests in progress finish. Upgraded connections are told, and
            // have until the deadline.
            let deadline = self.shared.drain_deadline();
            self.ctx.drain_deadline = deadline;
            let idle_until = Instant::now() + DRAIN_IDLE;
            self.close_idle_at = Some(deadline.map_or(idle_until, |d| d.min(idle_until)));
            for conn in self.conns.iter_mut().flatten() {
                if let Some(up) = conn.state.upgraded.as_mut() {
                    up.tell_draining(deadline);
                }
            }
        }
    }

    /// The drain's wait for idle connections is over: each is read once more
    /// (a request that came is answered, with `Connection: close`) and, with
    /// nothing to do, closed; from now on any connection that falls idle closes.
    fn close_idle(&mut self) {
        self.close_idle_at = None;
        self.ctx.close_idle = true;
        let idle = |c: &Conn| {
            c.state.backlog.is_empty()
                && !c.state.awaiting_body()
                && !c.state.streams_body()
                && c.state.waiting.is_none()
                && c.state.upgraded.is_none()
        };
        for i in 0..self.conns.len() {
            let Some(Some(c)) = self.conns.get_mut(i) else { continue };
            if !idle(c) {
                continue;
            }
            if c.state.deadline.wait != Wait::Linger {
                c.state.read_ready = true;
                self.contained(i, |w| w.drive(i));
            }
            // Still idle, or with half a head: closed.
            if self.conns[i].as_ref().is_some_and(idle) {
                self.close_idle_conn(i);
            }
        }
    }

    /// Closes an idle connection (the drain's, or one past its keep-alive
    /// timeout) as a server that chose to: a TLS stream says `close_notify`
    /// first, if the socket takes it now. Not an upgraded one: what its
    /// application wrote may still wait in the shared queue, and a clean end
    /// would hide the loss.
    fn close_idle_conn(&mut self, index: usize) {
        if let Some(Some(c)) = self.conns.get(index) {
            if c.state.upgraded.is_none() {
                let _ = c.state.stream.close_notify();
            }
        }
        self.close(index);
    }

    /// For a worker no thread runs yet: takes the server's current listeners
    /// (the rest of a reload it takes when it runs), without accepting on
    /// this thread what waits on those dropped.
    pub fn follow_server_listeners(&mut self) {
        self.take_listeners(false);
    }

    /// Takes the server's current listeners if they changed (see `follow_listeners`).
    fn take_listeners(&mut self, take_queued: bool) {
        let listeners = self.shared.current_listeners();
        if !Arc::ptr_eq(&listeners, &self.listener_set) {
            if let Err(e) = self.follow_listeners(listeners, take_queued) {
                let message = format!("worker {}: cannot poll a listener: {e}", self.ctx.index);
                self.ctx.settings.log_error(Level::Error, &message);
            }
        }
    }

    /// Takes the server's listeners `set`: polls those it did not have, and
    /// stops polling those gone from it (after taking the connections already
    /// in their queue, with `take_queued`), which close once no worker holds them.
    fn follow_listeners(&mut self, set: Listeners, take_queued: bool) -> io::Result<()> {
        self.listener_set = set.clone();
        for slot in 0..self.listeners.len() {
            let gone = matches!(&self.listeners[slot], Some(l) if !set.iter().any(|n| Arc::ptr_eq(n, l)));
            if gone {
                if take_queued {
                    self.accept_from(slot);
                }
                self.stop_listener(slot);
            }
        }
        let mut result = Ok(());
        for listener in set.iter() {
            if self.listeners.iter().flatten().any(|l| Arc::ptr_eq(l, listener)) {
                continue;
            }
            let slot = match self.listeners.iter().position(Option::is_none) {
                Some(free) => free,
                None => {
                    self.listeners.push(None);
                    self.listeners.len() - 1
                }
            };
            let token = Token(LISTENERS + slot);
            let (socket, shared) = listener.socket_for(self.ctx.index);
            // A socket with connections already queued reports them at once.
            let registered = if shared {
                crate::sys::epoll::register_exclusive(&self.poll, socket.as_fd(), token)
            } else {
                self.poll.registry().register(&mut SourceFd(&socket.as_raw_fd()), token, Interest::READABLE)
            };
            match registered {
                Ok(()) => self.listeners[slot] = Some(listener.clone()),
                Err(e) => result = Err(e),
            }
        }
        result
    }

    /// Stops polling listener `slot` and lets go of it.
    fn stop_listener(&mut self, slot: usize) {
        if let Some(listener) = self.listeners.get_mut(slot).and_then(Option::take) {
            let (socket, _) = listener.socket_for(self.ctx.index);
            let _ = self.poll.registry().deregister(&mut SourceFd(&socket.as_raw_fd()));
        }
    }

    /// Accepts what waits on every listener.
    fn accept_all(&mut self) {
        for slot in 0..self.listeners.len() {
            self.accept_from(slot);
        }
    }

    /// Accepts the connections waiting on listener `slot`.
    fn accept_from(&mut self, slot: usize) {
        if self.accept_paused {
            return;
        }
        loop {
            let Some(Some(listener)) = self.listeners.get(slot) else { return };
            if !self.shared.open_connection(self.ctx.settings.max_connections) {
                // At the limit: new connections wait in the backlog until one closes.
                self.accept_paused = true;
                return;
            }
            let (socket, _) = listener.socket_for(self.ctx.index);
            let accepted = crate::net::stream::accept(socket, listener.is_tcp());
            let proxy = listener.proxy.get();
            match accepted {
                Ok((mut stream, peer)) => {
                    bump(&self.ctx.stats.accepted, 1);
                    self.next_conn_id += 1;
                    let id = self.next_conn_id;
                    // Told before any byte is read; a refusal closes it.
                    let hooked = match &self.ctx.settings.conn_hooks {
                        Some(hooks) => match crate::app::hooks::open(hooks, peer, self.ctx.index, id) {
                            (hooked, true) => Some(hooked),
                            (hooked, false) => {
                                drop(stream);
                                drop(hooked);
                                self.shared.close_connection();
                                bump(&self.ctx.stats.closed, 1);
                                continue;
                            }
                        },
                        None => None,
                    };
                    // The handshake starts once the hooks let the connection in
                    // (a refusal reads nothing, not even a ClientHello).
                    if !tls::start(&mut stream, listener, &self.ctx) {
                        self.shared.close_connection();
                        bump(&self.ctx.stats.closed, 1);
                        continue;
                    }
                    let index = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    if self.poll.registry().register(&mut stream, Token(index), Interest::READABLE).is_err() {
                        self.free.push(index);
                        self.shared.close_connection();
                        bump(&self.ctx.stats.closed, 1);
                        continue;
                    }
                    let mut conn = Conn::new(stream, peer, ConnRef { index, id, seq: 0 });
                    conn.state.proxy = proxy;
                    if let Some(hooked) = hooked {
                        if self.hooked.len() <= index {
                            self.hooked.resize_with(index + 1, || None);
                        }
                        self.hooked[index] = Some(hooked);
                    }
                    conn.state.deadline =
                        Deadline { at: self.clock.after(self.ctx.settings.timeouts.header), wait: Wait::Head };
                    self.conns[index] = Some(conn);
                    self.live += 1;
                    // The request often arrived with the connection.
                    self.contained(index, |w| w.drive(index));
                }
                Err(e) => {
                    self.shared.close_connection();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return,
                        io::ErrorKind::Interrupted => {}
                        _ if is_transient_accept_error(&e) => {}
                        _ => {
                            // Out of descriptors or memory: existing connections
                            // go on; accepting retries on the next sweep or when
                            // a connection closes, instead of spinning.
                            self.ctx.settings.log_error(
                                Level::Warning,
                                &format!("worker {}: accept failed, pausing: {e}", self.ctx.index),
                            );
                            self.accept_paused = true;
                            return;
                        }
                    }
                }
            }
        }
    }

    fn on_conn_event(&mut self, index: usize, readable: bool, writable: bool, read_closed: bool) {
        self.release_held(index);
        let Some(conn) = self.conns.get_mut(index).and_then(|c| c.as_mut()) else { return };
        if conn.state.deadline.wait == Wait::Linger {
            if readable {
                self.discard_input(index);
            }
            return;
        }
        if readable || read_closed {
            conn.state.read_ready = true;
            conn.state.peer_closing |= read_closed;
        }
        let pending = !conn.state.backlog.is_empty() || conn.state.stream.wants_write();
        if writable && pending && !self.flush_backlog(index) {
            return;
        }
        if readable || writable || read_closed {
            self.drive_with(index, !read_closed);
        }
    }

    /// Reads, handles and writes until the socket has nothing more or the
    /// connection must wait (backlog, deferred answer, close).
    fn drive(&mut self, index: usize) {
        self.drive_with(index, false);
    }

    /// `drive`; with `short_read_drains`, a read that does not fill the buffer
    /// ends the reading (the socket is empty: new bytes raise a new edge), which
    /// saves the `recv` that would only return `EAGAIN` — one syscall per
    /// request. Only for a readiness event without `EPOLLRDHUP`: a FIN already
    /// queued raises no further edge, so then we read on to the end of stream.
    /// nginx does the same (`ngx_unix_recv`, `rev->ready = 0` unless `pending_eof`).
    /// A socket known to be empty (`read_ready` false) is not read at all, so a
    /// deferred answer or a drained backlog costs no `recv` either.
    fn drive_with(&mut self, index: usize, short_read_drains: bool) {
        // A handler on this worker may have reloaded (its wake-up comes
        // later): whatever is read from here on must see the new settings.
        if self.shared.generation() != self.ctx.generation {
            self.check_settings();
        }
        let Worker { conns, scratch, out, held, ctx, clock, .. } = self;
        let timeouts = ctx.settings.timeouts;
        let max_head = ctx.settings.head_limits.max_head_bytes;
        // A body past the whole-body maximum streams, so the buffer never
        // needs to hold more than that.
        let max_body = (ctx.settings.max_body_size.min(ctx.settings.whole_body_max as u64)) as usize;
        let limit = max_head.saturating_add(max_body).saturating_add(SCRATCH_SIZE);
        let Some(Some(conn)) = conns.get_mut(index) else { return };
        // A reset or a failed read: the client is gone.
        let mut gone = false;
        // The client's FIN was read in this pass.
        let mut fin_now = false;
        // A request was handled: the next head gets a fresh header deadline.
        let mut handled = false;
        let mut stop = conn.state.next_stop();
        // Bytes the request in progress needs in all (0 when unknown).
        let mut need = 0;

        // Bytes left from an earlier pass (stopped by backpressure or a
        // deferred answer) come first; a streamed body is fed even without
        // any, to send the 100 Continue its reader asked for.
        if (!conn.input.is_empty() || conn.state.streams_body()) && stop == Stop::NeedInput {
            let progress = conn.state.process(conn.input.bytes(), ctx, out);
            conn.input.consume(progress.consumed);
            handled |= progress.consumed > 0;
            (stop, need) = (progress.stop, progress.need);
            stop = send_and_go_on(conn, ctx, out, stop, &mut handled, &mut need);
        }

        while stop == Stop::NeedInput && !conn.state.peer_finished && conn.state.read_ready {
            let own = !conn.input.is_empty();
            let buf: &mut InBuf = if own { &mut conn.input } else { scratch };
            if buf.spare().is_empty() {
                if buf.capacity() >= limit {
                    // Only chunk overhead can take a request past the limits.
                    compose_error(out, &env(ctx), 413);
                    conn.state.close_after_flush = true;
                    break;
                }
                if !buf.make_room(need, limit) {
                    refuse_for_memory(&mut conn.state, ctx, out);
                    break;
                }
            }
            // A streamed body is read no faster than its window takes it: the
            // rest waits in the socket, not in the connection's buffer.
            let spare = buf.spare();
            let take = conn.state.body_room().map_or(spare.len(), |room| room.clamp(1, spare.len()));
            let spare = &mut spare[..take];
            let room = spare.len();
            let mut drained = false;
            let received = conn.state.stream.recv(spare);
            tls::note(&conn.state, ctx);
            match received {
                Ok(0) => {
                    conn.state.peer_finished = true;
                    fin_now = true;
                }
                Ok(n) => {
                    // A TLS stream may have met the client's end behind the
                    // bytes it returned: read on to it (no edge would come).
                    drained = short_read_drains && n < room && !conn.state.stream.end_pending();
                    conn.state.read_ready = !drained;
                    buf.advance(n);
                    bump(&ctx.stats.bytes_in, n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.state.read_ready = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    gone = true;
                    out.clear();
                    break;
                }
            }
            let progress = conn.state.process(buf.bytes(), ctx, out);
            handled |= progress.consumed > 0;
            (stop, need) = (progress.stop, progress.need);
            if own {
                conn.input.consume(progress.consumed);
            } else {
                if progress.consumed < scratch.len() {
                    conn.input.extend_from_slice(&scratch.bytes()[progress.consumed..]);
                }
                scratch.clear();
            }
            stop = send_and_go_on(conn, ctx, out, stop, &mut handled, &mut need);
            // Keep pipelined answers together unless the batch grew large.
            if stop == Stop::NeedInput && out.len() >= SCRATCH_SIZE {
                write_out(&mut conn.state, out);
            }
            if drained {
                break;
            }
        }

        // While an answer is deferred, a client that sent its FIN may be gone:
        // read to see (buffering what it pipelined, up to the head limit).
        // Otherwise what it sends waits in the socket until the answer is out.
        // A FIN alone only means it sends no more (RFC 9112 §9.6): the answer
        // still goes out; a reset means it left.
        if stop == Stop::Waiting && !conn.state.peer_finished && !gone && conn.state.peer_closing {
            match watch_while_waiting(conn, max_head) {
                PeerInput::Open => {}
                PeerInput::Finished => {
                    conn.state.peer_finished = true;
                    fin_now = true;
                }
                PeerInput::Gone => gone = true,
            }
        }
        // With `client_fin_ends_request`, a FIN read now ends the requests
        // still pending `FIN_GRACE` later (a long poll whose tab closed is
        // told; a client that half-closed right after its request still gets
        // an answer given meanwhile), when no complete request is left to
        // handle: all were handled (`NeedInput`: what is left is part of a
        // request that can never come whole), or the front waits with
        // nothing behind it. Requests still to handle then are answered, as
        // without it; so is a body streaming in ended early (its reader is
        // told, below).
        if fin_now
            && !gone
            && ctx.settings.client_fin_ends_request
            && conn.state.waiting.is_some()
            && conn.state.upgraded.is_none()
            && !conn.state.streams_body()
            && (stop == Stop::NeedInput || (stop == Stop::Waiting && conn.input.is_empty()))
        {
            conn.state.fin_grace_at = clock.after(FIN_GRACE);
        }

        // A keep-alive connection's answers wait for the end of the round
        // (see `held`); anything else goes now.
        let hold = !out.is_empty()
            && conn.state.backlog.is_empty()
            && conn.state.held.is_none()
            && !conn.state.close_after_flush
            && !conn.state.peer_finished
            && !gone
            && !ctx.draining
            && held.can_hold(out.len());
        if hold {
            conn.state.held = Some(held.hold(index, out));
        } else {
            write_out(&mut conn.state, out);
        }
        conn.state.acknowledge_written();
        bump(&ctx.stats.bytes_out, conn.state.backlog.take_written());
        // After a FIN the requests it completed are still answered, in
        // order; once none is left to handle (more input is all that could
        // help), the connection closes after its answers.
        if let Some(up) = conn.state.upgraded.as_mut() {
            // An upgraded connection's peer may half-close and go on
            // reading: its application learns the end of the stream once it
            // has every byte before it, and the connection closes once both
            // sides are done.
            if conn.state.peer_finished && !up.eof_told && conn.input.is_empty() {
                up.eof_told = true;
                if conn.state.stream.truncated() {
                    // A TLS stream cut without `close_notify` may be an
                    // attacker's cut: the application reads a failure
                    // (`Closed`), not the end of the stream.
                    up.shared.mark_closed();
                    gone = true;
                } else {
                    up.shared.peer_finished();
                }
                up.notify(upgrade_events::READABLE);
            }
            if gone || (up.eof_told && up.write_done) {
                conn.state.close_after_flush = true;
            }
        } else if gone || (conn.state.peer_finished && stop == Stop::NeedInput) {
            conn.state.close_after_flush = true;
            // A body still streaming can never end now: its reader is told.
            conn.state.end_body_early();
        }
        let broken = gone && conn.state.waiting.is_some();

        // Arm the deadline for what the connection now waits for.
        let handshaking = conn.state.stream.handshaking();
        let state = &mut conn.state;
        if let Some(up) = state.upgraded.as_mut().filter(|up| up.shut_write && !up.write_done) {
            // A TLS stream's `close_notify` leaves before the half-close
            // (when the socket is full, once it is writable).
            if state.backlog.is_empty() && state.stream.close_notify().unwrap_or(true) {
                // Everything written has left: the peer reads the end now.
                up.write_done = true;
                if state.stream.shutdown(std::net::Shutdown::Write).is_err() || up.eof_told {
                    state.close_after_flush = true;
                }
            }
        }
        let half_closing = state.upgraded.as_ref().is_some_and(|up| up.shut_write && !up.write_done);
        if !state.backlog.is_empty() || ((state.close_after_flush || half_closing) && state.stream.wants_write()) {
            // Output to send, or a closing (or half-closing upgraded) TLS
            // stream's queued `close_notify`: bounded by the write timeout.
            if state.deadline.wait != Wait::Write {
                state.deadline = Deadline { at: clock.after(timeouts.write), wait: Wait::Write };
            }
        } else if let Some(up) = &state.upgraded {
            state.deadline = if state.close_after_flush { Deadline::NONE } else { upgraded_deadline(clock, up) };
        } else if state.awaiting_body() && !state.close_after_flush {
            // Body bytes are due from the client (whole, or streaming into a
            // window with room): extended on progress.
            state.deadline = Deadline { at: clock.after(timeouts.body), wait: Wait::Body };
        } else if let Some(waiting) = &state.waiting {
            // The request's body was read whole into the buffer, which may
            // have grown to `whole_body_max`: a long poll keeps its slot, not
            // that memory, while it waits.
            conn.input.release_excess(KEEP_INPUT);
            if waiting.status != 0 || waiting.shared().timeout_paused() {
                // A stream has begun: the handler is working (Warp #351,
                // #808); or the application paused the timeout.
                state.deadline = Deadline::NONE;
            } else if state.deadline.wait != Wait::Answer || (handled && !state.has_ahead()) {
                // Requests handled ahead of it do not extend its deadline.
                state.deadline = Deadline { at: clock.after(timeouts.answer), wait: Wait::Answer };
            }
        } else if state.streams_body() {
            // The application is slow to read its body (the window is full):
            // bounded by the answer timeout, so a reader held and never read
            // cannot keep the connection for good.
            if state.deadline.wait != Wait::Answer || handled {
                state.deadline = Deadline { at: clock.after(timeouts.answer), wait: Wait::Answer };
            }
        } else if state.close_after_flush {
            state.deadline = Deadline::NONE;
        } else if state.awaits_proxy_header() {
            // The PROXY header is bounded like a request head, from the
            // connection's start (armed at accept), never extended.
            if state.deadline.wait != Wait::Head {
                state.deadline = Deadline { at: clock.after(timeouts.header), wait: Wait::Head };
            }
        } else if !conn.input.is_empty() || handshaking {
            // A head (or a TLS handshake before it) is arriving: its deadline runs from its first byte, so
            // it is not extended by more bytes of it (slowloris), only by a
            // request finishing and the next one starting.
            if state.deadline.wait != Wait::Head || handled {
                state.deadline = Deadline { at: clock.after(timeouts.header), wait: Wait::Head };
            }
        } else {
            conn.input.clear_and_shrink(KEEP_INPUT);
            let spare = state.backlog.take_spare();
            if spare.capacity() > 0 && ctx.spare_out.len() < SPARE_OUT {
                ctx.spare_out.push(spare);
            }
            state.deadline = Deadline { at: clock.after(timeouts.idle), wait: Wait::Idle };
        }
        // The grace after a client's FIN bounds whatever the connection
        // waits for meanwhile (the answer, or output to a client that does
        // not read: neither hides nor extends it); at its end what is still
        // pending is let go (`fin_grace_over`).
        let armed = conn.state.deadline;
        conn.state.arm(armed);

        let mut needs_write = !conn.state.backlog.is_empty() || conn.state.stream.wants_write();
        // Draining, once idle connections' wait is over (see `close_idle`), a
        // connection with nothing left to do closes (a stream that started
        // before the shutdown could not announce it).
        let idle_while_draining = ctx.close_idle
            && conn.state.upgraded.is_none()
            && !needs_write
            && conn.state.waiting.is_none()
            && !conn.state.awaiting_body()
            && !conn.state.streams_body()
            && conn.input.is_empty();
        let mut closing =
            (conn.state.close_after_flush || idle_while_draining) && !needs_write && conn.state.waiting.is_none();
        // A TLS stream says `close_notify` before it closes; a socket too
        // full to take it now sends it when writable, as any output, under
        // the write timeout. (A client that left hears nothing.)
        if closing && !gone && !conn.state.stream.close_notify().unwrap_or(true) {
            closing = false;
            needs_write = true;
            if conn.state.deadline.wait != Wait::Write {
                conn.state.deadline = Deadline { at: clock.after(timeouts.write), wait: Wait::Write };
            }
        }
        let peer_done = conn.state.peer_finished || gone;
        if broken {
            self.close(index);
            return;
        }
        self.set_write_interest(index, needs_write);
        if closing {
            if peer_done || self.ctx.draining {
                self.close(index);
            } else {
                self.start_linger(index);
            }
        }
    }

    /// Sends every held answer, in the order they were held.
    fn release_all_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let conns = self.held.take_conns();
        for &index in &conns {
            self.release_held(index);
        }
        self.held.clear(conns);
    }

    /// Sends the answers held for connection `index`, before anything else is
    /// written to it; what the socket does not take waits in its backlog for
    /// the next writable event, and an error closes it.
    fn release_held(&mut self, index: usize) {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        let Some(number) = conn.state.held.take() else { return };
        let state = &mut conn.state;
        if !send_or_queue(&state.stream, &mut state.backlog, self.held.bytes(number)) {
            self.close(index);
            return;
        }
        bump(&self.ctx.stats.bytes_out, state.backlog.take_written());
        if !state.backlog.is_empty() {
            state.deadline = Deadline { at: self.clock.after(self.ctx.settings.timeouts.write), wait: Wait::Write };
            self.set_write_interest(index, true);
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
            state.arm(Deadline { at: self.clock.after(self.ctx.settings.timeouts.write), wait: Wait::Write });
        }
        state.acknowledge_written();
        bump(&self.ctx.stats.bytes_out, state.backlog.take_written());
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
            match socket_io::recv(conn.state.stream.as_fd(), self.scratch.spare()) {
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
        self.release_held(index);
        if let Some(slot) = self.conns.get_mut(index) {
            if slot.take().is_some() {
                // The hooks hear of it once the socket is closed.
                if let Some(hooked) = self.hooked.get_mut(index) {
                    hooked.take();
                }
                self.free.push(index);
                self.live -= 1;
                bump(&self.ctx.stats.closed, 1);
                self.shared.close_connection();
                if self.accept_paused {
                    // Below the connection limit again: take what waits.
                    self.accept_paused = false;
                    self.accept_all();
                }
            }
        }
    }

    /// A deferred answer that did not begin in time, or a streamed body its
    /// application stopped reading: an answer not begun becomes a 503, the
    /// connection closes, and the handle and the body's reader get `Closed`.
    fn answer_overdue(&mut self, index: usize) {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        let mut not_begun = false;
        if let Some(waiting) = conn.state.waiting.take() {
            not_begun = waiting.status == 0;
            if let (Some(access), Some(start)) = (self.ctx.access.as_mut(), &waiting.log) {
                access.finish(start, if not_begun { 503 } else { waiting.status }, waiting.body_bytes);
            }
        }
        // A body its application stopped reading ends here too.
        conn.state.end_body_early();
        if not_begun {
            compose_error(&mut self.out, &env(&self.ctx), 503);
            self.ctx.stats.response(503);
        }
        conn.state.close_after_flush = true;
        conn.state.deadline = Deadline::NONE;
        write_out(&mut conn.state, &mut self.out);
        self.out.clear();
        self.drive(index);
    }

    /// The grace after a client's FIN is over (`client_fin_ends_request`):
    /// the requests still pending are let go, as a reset lets them go, and
    /// the connection closes once what was composed before them left.
    fn fin_grace_over(&mut self, index: usize) {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        conn.state.abandon_pending();
        conn.state.deadline = Deadline::NONE;
        self.drive(index);
    }

    /// An upgraded connection quiet for half its idle timeout, that asked to
    /// be told (a WebSocket pings now): told, and told again after another
    /// quiet half unless bytes move meanwhile (which re-arm it as usual).
    fn tell_quiet(&mut self, index: usize) {
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        let Some(up) = conn.state.upgraded.as_ref() else { return };
        // The next quiet half, or the close the connection is bound to
        // (a closing handshake's), whichever comes first.
        conn.state.deadline = upgraded_deadline(&self.clock, up);
        up.notify(upgrade_events::QUIET);
    }

    /// Once a second: expire deadlines, retry a paused accept.
    fn sweep(&mut self) {
        let now = self.clock.now();
        for i in 0..self.conns.len() {
            let expired = matches!(&self.conns[i], Some(c) if c.state.deadline.expired(now));
            if expired {
                let wait = self.conns[i].as_ref().map(|c| c.state.deadline.wait);
                if let Some(c) =
                    self.conns[i].as_mut().filter(|c| wait == Some(Wait::Answer) && c.state.answer_paused())
                {
                    // The application paused the timeout since it was armed.
                    c.state.deadline = Deadline::NONE;
                    continue;
                }
                // A WebSocket cut for an unanswered ping was counted when its
                // close was applied; its close frame stuck behind a client that
                // does not read is the same timeout.
                let counted = matches!(&self.conns[i], Some(c) if c.state.upgraded.as_ref().is_some_and(|up| up.shared.timed_out()));
                if !matches!(wait, Some(Wait::Linger | Wait::Quiet | Wait::FinGrace)) && !counted {
                    bump(&self.ctx.stats.timed_out, 1);
                }
                if wait == Some(Wait::Head) && matches!(&self.conns[i], Some(c) if c.state.stream.handshaking()) {
                    // A TLS handshake that did not complete in time failed too.
                    bump(&self.ctx.stats.tls_handshake_failures, 1);
                }
                match wait {
                    Some(Wait::Answer) => self.contained(i, |w| w.answer_overdue(i)),
                    // Past its keep-alive (or an upgraded stream's idle) timeout.
                    Some(Wait::Idle) => self.close_idle_conn(i),
                    Some(Wait::Quiet) => self.contained(i, |w| w.tell_quiet(i)),
                    Some(Wait::FinGrace) => self.contained(i, |w| w.fin_grace_over(i)),
                    _ => self.close(i),
                }
            }
        }
        if self.accept_paused {
            self.accept_paused = false;
            self.accept_all();
        }
        self.ctx.files.sweep();
    }
}

impl Drop for Worker {
    /// After `run`'s own ending this finds nothing left. When a panic that
    /// escaped containment unwinds the loop, the worker dies here: its
    /// connections close (their handles learn it), their slots go back to the
    /// server's limit, its mailbox refuses what handles post from now on
    /// (`Closed`) and releases what they posted and it never took, and its
    /// own sockets of TCP addresses stop listening, so that the kernel sends
    /// their connections to the other workers.
    fn drop(&mut self) {
        for listener in self.listeners.iter().flatten() {
            listener.retire(self.ctx.index);
        }
        let cut = self.live;
        self.conns.clear();
        self.hooked.clear();
        self.live = 0;
        if cut > 0 {
            bump(&self.ctx.stats.closed, cut as u64);
            self.shared.close_connections(cut);
        }
        self.ctx.mailbox.close();
    }
}

/// An upgraded connection's deadline from now: quiet both ways for its
/// application's idle timeout, it is closed — or, for one that pings, told
/// at half of it — unless it must be closed sooner whatever the traffic
/// (`close_within`, a closing handshake's bound).
fn upgraded_deadline(clock: &CoarseClock, up: &crate::app::upgrade_shared::UpgradedConn) -> Deadline {
    let (idle, close_by, quiet_notice) = up.shared.timeouts();
    // Nobody to tell (no events callback): the idle timeout closes it.
    let quiet_notice = quiet_notice && up.has_events();
    let (idle_at, idle_wait) = match idle {
        Some(idle) if quiet_notice => (Some(clock.after(half_idle(idle))), Wait::Quiet),
        idle => (idle.map(|idle| clock.after(idle)), Wait::Idle),
    };
    match (idle_at, close_by.map(|by| clock.at(by))) {
        (Some(at), Some(by)) if at < by => Deadline { at, wait: idle_wait },
        (_, Some(by)) => Deadline { at: by, wait: Wait::Idle },
        (Some(at), None) => Deadline { at, wait: idle_wait },
        (None, None) => Deadline::NONE,
    }
}

/// Half an idle timeout, at least the clock's second: when a connection that
/// pings is told it is quiet.
fn half_idle(idle: Duration) -> Duration {
    (idle / 2).max(Duration::from_secs(1))
}

fn env(ctx: &WorkerCtx) -> ComposeEnv<'_> {
    ctx.date.compose_env()
}

/// What a client that sent its FIN is doing while its answer is deferred.
enum PeerInput {
    /// Nothing more to read for now.
    Open,
    /// End of stream: it sends no more but may still read the answer.
    Finished,
    /// A reset or another error: it left.
    Gone,
}

/// Reads what a client that sent its FIN sends while its answer is deferred.
fn watch_while_waiting(conn: &mut Conn, limit: usize) -> PeerInput {
    loop {
        if conn.input.len() >= limit {
            return PeerInput::Open;
        }
        if conn.input.spare().is_empty() && !conn.input.make_room(0, limit) {
            return PeerInput::Open;
        }
        match conn.state.stream.recv(conn.input.spare()) {
            Ok(0) => return PeerInput::Finished,
            Ok(n) => conn.input.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.state.read_ready = false;
                return PeerInput::Open;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return PeerInput::Gone,
        }
    }
}

/// After a pass stopped at `MAX_PENDING_OUTPUT`: sends the answers, and
/// while the socket takes them all, handles the requests left in the
/// connection's input. Returns why it stopped (`Backpressure` when the socket
/// did not take everything: nothing more is handled until it drains).
fn send_and_go_on(
    conn: &mut Conn,
    ctx: &mut WorkerCtx,
    out: &mut Vec<u8>,
    mut stop: Stop,
    handled: &mut bool,
    need: &mut usize,
) -> Stop {
    while stop == Stop::OutputFull {
        debug_assert!(conn.state.held.is_none(), "held answers go before anything else");
        write_out(&mut conn.state, out);
        let progress = conn.state.process(conn.input.bytes(), ctx, out);
        conn.input.consume(progress.consumed);
        *handled |= progress.consumed > 0;
        (stop, *need) = (progress.stop, progress.need);
    }
    stop
}

/// Answers 503 and closes when the memory for a request's bytes is refused:
/// the library never aborts its host for a client's sake.
fn refuse_for_memory(state: &mut ConnState, ctx: &mut WorkerCtx, out: &mut Vec<u8>) {
    compose_error(out, &env(ctx), 503);
    state.close_after_flush = true;
    bump(&ctx.stats.requests, 1);
    ctx.stats.response(503);
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
        Some(libc::ECONNABORTED)
            | Some(libc::EPROTO)
            | Some(libc::EPERM)
            | Some(libc::ENETDOWN)
            | Some(libc::EHOSTUNREACH)
    )
}

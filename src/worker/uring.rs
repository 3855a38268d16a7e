//! The io_uring loop (`IoLoop::Uring`): the same worker, connections and
//! state machine as the epoll loop, with fewer crossings into the kernel.
//!
//! - A plain connection gets one multishot receive at accept; each arrival
//!   completes into a ring of buffers the kernel picks from, and is appended
//!   to the connection's fed input (`net::fed`), which `Stream::recv` reads:
//!   no `recv` call per request, and no `EAGAIN` one either.
//! - A round's held answers (see `held`) are queued as sends and go to the
//!   kernel with the `io_uring_enter` that waits for the next completions:
//!   one call per round, not one `send` per connection. They are sent with
//!   `MSG_DONTWAIT`, so each completes within that call: a full socket gives
//!   `EAGAIN` (or a short count) there, and what is left goes to the
//!   connection's backlog, flushed when a one-shot `POLLOUT` poll completes.
//!   Send completions are handled before anything else of their round, so
//!   nothing written afterwards can overtake them.
//! - Everything else stays on epoll, whose descriptor the ring polls: the
//!   listeners, the mailbox's wake-up, the file watcher, and TLS connections
//!   (their session reads the socket itself). One `epoll_wait` runs only when
//!   one of those has something.
//!
//! A connection whose fed input passes `FED_MAX` (its application is not
//! reading: a deferred answer, a full body window) has its receive cancelled,
//! so that the socket, not memory, holds the rest; it is armed again once the
//! input has drained below half of that.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use mio::Events;

use super::Worker;
use crate::conn::deadline::{Deadline, Wait};
use crate::net::stream::Stream;
use crate::observe::log::Level;
use crate::observe::stats::bump;
use crate::sys::uring::{Completion, Ring};

/// Submission queue entries (the completion queue has four times as many).
const ENTRIES: u32 = 1024;
/// Receive buffers: how many, and how large.
const BUF_COUNT: u16 = 256;
const BUF_SIZE: usize = 8 * 1024;
/// Fed input a connection may hold before its receive is cancelled.
const FED_MAX: usize = 256 * 1024;

/// What a completion is for (bits 56..63 of its token; bit 63 is the ring's).
const RECV: u64 = 1;
const POLLOUT: u64 = 2;
const EPOLL: u64 = 3;
const CANCEL: u64 = 4;
const SEND: u64 = 5;

fn token(kind: u64, index: usize, id: u64) -> u64 {
    (kind << 56) | ((index as u64 & 0xFF_FFFF) << 32) | (id & 0xFFFF_FFFF)
}

fn kind(token: u64) -> u64 {
    (token >> 56) & 0x7F
}

fn index_of(token: u64) -> usize {
    ((token >> 32) & 0xFF_FFFF) as usize
}

fn same_id(token: u64, id: u64) -> bool {
    token & 0xFFFF_FFFF == id & 0xFFFF_FFFF
}

/// What the ring is doing for one connection slot.
#[derive(Default, Clone, Copy)]
struct Slot {
    id: u64,
    /// A multishot receive is armed (until a completion without `more`).
    recv: bool,
    /// A `POLLOUT` poll is armed.
    pollout: bool,
    /// The receive was cancelled for `FED_MAX`: armed again once drained.
    paused: bool,
}

/// The ring and what the worker tracks on it.
pub(super) struct Driver {
    ring: Ring,
    slots: Vec<Slot>,
    /// Connections whose receive is paused (see `FED_MAX`).
    paused: Vec<usize>,
    /// Completions reaped and not handled yet.
    done: Vec<Completion>,
    /// The poll of the epoll descriptor is armed.
    epoll_armed: bool,
}

impl Driver {
    fn new() -> io::Result<Driver> {
        Ok(Driver {
            ring: Ring::new(ENTRIES, BUF_COUNT, BUF_SIZE)?,
            slots: Vec::new(),
            paused: Vec::new(),
            done: Vec::with_capacity(1024),
            epoll_armed: false,
        })
    }

    fn slot(&mut self, index: usize) -> &mut Slot {
        if self.slots.len() <= index {
            self.slots.resize(index + 1, Slot::default());
        }
        &mut self.slots[index]
    }

    /// Takes a new connection: a plain one is fed by a multishot receive
    /// (true); a TLS one is left to epoll (false).
    pub fn watch(&mut self, stream: &mut Stream, index: usize, id: u64) -> io::Result<bool> {
        if !stream.feed_from_loop() {
            return Ok(false);
        }
        self.ring.recv_multishot(stream.as_fd(), token(RECV, index, id))?;
        *self.slot(index) = Slot { id, recv: true, pollout: false, paused: false };
        Ok(true)
    }

    /// Queues `bytes` to be sent as the loop next waits; false for a stream
    /// the ring does not drive (then the caller sends).
    pub fn queue_send(&mut self, stream: &Stream, index: usize, id: u64, bytes: &[u8]) -> bool {
        if stream.fed().is_none() {
            return false;
        }
        self.ring.queue_send(stream.as_fd(), bytes, token(SEND, index, id));
        true
    }

    /// Arms a `POLLOUT` poll when `want`; false for a stream on epoll.
    pub fn want_write(&mut self, stream: &Stream, index: usize, id: u64, want: bool) -> bool {
        if stream.fed().is_none() {
            return false;
        }
        let fd = stream.as_fd();
        let slot = self.slot(index);
        if want && !slot.pollout {
            slot.pollout = true;
            if self.ring.poll_once(fd, libc::POLLOUT as u32, token(POLLOUT, index, id)).is_err() {
                self.slots[index].pollout = false;
                return false;
            }
        }
        true
    }

    /// The connection closed: its requests are cancelled (each holds the
    /// socket open until it ends).
    pub fn forget(&mut self, index: usize, id: u64) {
        let Some(slot) = self.slots.get_mut(index).filter(|s| s.id == id) else { return };
        let slot = std::mem::take(slot);
        if slot.recv {
            let _ = self.ring.cancel(token(RECV, index, id), token(CANCEL, index, id));
        }
        if slot.pollout {
            let _ = self.ring.cancel(token(POLLOUT, index, id), token(CANCEL, index, id));
        }
    }

    fn arm_epoll(&mut self, epoll: BorrowedFd<'_>) {
        if !self.epoll_armed {
            self.epoll_armed = self.ring.poll_once(epoll, libc::POLLIN as u32, token(EPOLL, 0, 0)).is_ok();
        }
    }
}

impl Worker {
    /// Makes the ring on this thread; where io_uring is missing or refused,
    /// says so in the error log and returns false (the worker runs on epoll).
    pub(super) fn start_uring(&mut self) -> bool {
        match Driver::new() {
            Ok(driver) => {
                self.ring = Some(driver);
                true
            }
            Err(e) => {
                let message = format!("worker {}: io_uring unavailable ({e}); running on epoll", self.ctx.index);
                self.ctx.settings.log_error(Level::Error, &message);
                false
            }
        }
    }

    /// The io_uring loop (see the module's notes).
    pub(super) fn run_uring(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut done = Vec::with_capacity(1024);
        while let Some(wait) = self.before_poll() {
            self.release_all_held_via(true);
            let Some(driver) = self.ring.as_mut() else { return };
            driver.arm_epoll(crate::sys::epoll::descriptor(&self.poll));
            std::mem::swap(&mut done, &mut driver.done);
            if let Err(e) = driver.ring.submit_and_wait(wait, &mut done) {
                let message = format!("worker {}: io_uring wait failed: {e}", self.ctx.index);
                self.ctx.settings.log_error(Level::Error, &message);
                break;
            }
            let (now, new_second) = self.start_round();
            let mut round = done.len();
            // Held answers ride on the next wait's call, which happens
            // anyway: holding pays even in a round of one completion.
            self.held.start_round(round.max(2));
            // Sends first: what they left goes to the backlogs before
            // anything else is written.
            for c in done.iter().filter(|c| c.send.is_some()) {
                self.on_sent(c);
            }
            for c in done.iter().filter(|c| c.send.is_none()) {
                round += self.on_completion(c, &mut events);
                if self.held.overdue() {
                    self.release_all_held();
                }
            }
            done.clear();
            self.resume_paused();
            self.end_round(now, new_second, round);
        }
    }

    /// The round's answers leave before the coalescer's nap, and what they
    /// left behind is queued at once.
    pub(super) fn submit_before_nap(&mut self) {
        if self.ring.is_none() {
            return;
        }
        self.release_all_held_via(true);
        let Some(driver) = self.ring.as_mut() else { return };
        let mut done = std::mem::take(&mut driver.done);
        let before = done.len();
        if driver.ring.submit(&mut done).is_err() {
            driver.done = done;
            return;
        }
        let sent: Vec<Completion> = done[before..].iter().filter(|c| c.send.is_some()).copied().collect();
        done.retain(|c| c.send.is_none());
        if let Some(driver) = self.ring.as_mut() {
            driver.done = done;
        }
        for c in &sent {
            self.on_sent(c);
        }
    }

    /// Handles one completion other than a send; returns the deferred
    /// answers it delivered (the coalescer counts them).
    fn on_completion(&mut self, c: &Completion, events: &mut Events) -> usize {
        let index = index_of(c.token);
        match kind(c.token) {
            RECV => self.contained(index, |w| w.on_received(c)),
            POLLOUT => self.contained(index, |w| w.on_writable(c)),
            EPOLL => return self.on_epoll(events),
            _ => {}
        }
        0
    }

    /// The epoll descriptor is readable: its events are handled as the
    /// epoll loop does.
    fn on_epoll(&mut self, events: &mut Events) -> usize {
        if let Some(driver) = self.ring.as_mut() {
            driver.epoll_armed = false;
        }
        let mut delivered = 0;
        loop {
            if let Err(e) = self.poll.poll(events, Some(Duration::ZERO)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            let count = events.iter().count();
            delivered += count + self.on_events(events);
            if count < events.capacity() {
                break;
            }
        }
        delivered
    }

    /// Bytes (or the end) arrived for a connection.
    fn on_received(&mut self, c: &Completion) {
        let index = index_of(c.token);
        let Some(driver) = self.ring.as_mut() else { return };
        let alive = matches!(self.conns.get(index), Some(Some(conn)) if same_id(c.token, conn.state.conn_ref.id));
        if !alive {
            if let Some(id) = c.buffer() {
                driver.ring.recycle(id);
            }
            return;
        }
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        let Some(fed) = conn.state.stream.fed() else { return };
        let id = conn.state.conn_ref.id;
        let slot = driver.slot(index);
        if !c.more() {
            slot.recv = false;
        }
        let mut closed = false;
        if c.result > 0 {
            if let Some(buffer) = c.buffer() {
                fed.push(driver.ring.buffer(buffer, c.result as usize));
                driver.ring.recycle(buffer);
            }
        } else if c.result == 0 {
            fed.end(None);
            closed = true;
        } else {
            match -c.result {
                // Out of buffers (they are back by now), or cancelled for
                // `FED_MAX` (armed again later), or for a close.
                libc::ENOBUFS | libc::ECANCELED => {}
                errno => {
                    fed.end(Some(errno));
                    closed = true;
                }
            }
        }
        let Slot { recv, paused, .. } = *driver.slot(index);
        if fed.len() > FED_MAX {
            if recv && !paused {
                let _ = driver.ring.cancel(token(RECV, index, id), token(CANCEL, index, id));
            }
            if !paused {
                driver.slot(index).paused = true;
                driver.paused.push(index);
            }
        } else if !recv && !paused && !fed.ended() {
            // The multishot receive ended without the input ending.
            let armed = driver.ring.recv_multishot(conn.state.stream.as_fd(), token(RECV, index, id)).is_ok();
            driver.slot(index).recv = armed;
        }
        if c.result > 0 || closed {
            self.on_conn_event(index, true, false, closed);
        }
    }

    /// A connection's socket takes bytes again.
    fn on_writable(&mut self, c: &Completion) {
        let index = index_of(c.token);
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        if !same_id(c.token, conn.state.conn_ref.id) {
            return;
        }
        if let Some(driver) = self.ring.as_mut() {
            driver.slot(index).pollout = false;
        }
        conn.state.write_registered = false;
        self.on_conn_event(index, false, true, false);
        if let Some(Some(conn)) = self.conns.get(index) {
            let pending = !conn.state.backlog.is_empty() || conn.state.stream.wants_write();
            if pending && !conn.state.write_registered {
                self.set_write_interest(index, true);
            }
        }
    }

    /// A send queued by `release_held_via` completed: what it did not send
    /// goes to the backlog, ahead of anything else.
    fn on_sent(&mut self, c: &Completion) {
        let index = index_of(c.token);
        let Some(driver) = self.ring.as_ref() else { return };
        let Some(Some(conn)) = self.conns.get_mut(index) else { return };
        if !same_id(c.token, conn.state.conn_ref.id) {
            return;
        }
        if c.result > 0 {
            bump(&self.ctx.stats.bytes_out, c.result as u64);
        }
        if c.result < 0 && c.result != -libc::EAGAIN {
            // The peer is gone (EPIPE, ECONNRESET).
            self.close(index);
            return;
        }
        let unsent = driver.ring.unsent(c);
        if unsent.is_empty() {
            return;
        }
        debug_assert!(conn.state.backlog.is_empty(), "nothing is written between a send and its completion");
        conn.state.backlog.push_copy(unsent);
        conn.state.deadline = Deadline { at: self.clock.after(self.ctx.settings.timeouts.write), wait: Wait::Write };
        self.set_write_interest(index, true);
    }

    /// Arms again the receives paused for `FED_MAX` whose input has drained.
    fn resume_paused(&mut self) {
        let Some(driver) = self.ring.as_mut() else { return };
        if driver.paused.is_empty() {
            return;
        }
        let mut paused = std::mem::take(&mut driver.paused);
        paused.retain(|&index| {
            let Some(Some(conn)) = self.conns.get(index) else { return false };
            let slot = driver.slot(index);
            if !slot.paused || slot.id != conn.state.conn_ref.id {
                return false;
            }
            let Some(fed) = conn.state.stream.fed() else { return false };
            if fed.ended() {
                return false;
            }
            if slot.recv || fed.len() > FED_MAX / 2 {
                // The cancellation has not completed yet, or the input is still full.
                return true;
            }
            let fd = conn.state.stream.as_fd();
            let id = conn.state.conn_ref.id;
            let armed = driver.ring.recv_multishot(fd, token(RECV, index, id)).is_ok();
            let slot = driver.slot(index);
            slot.recv = armed;
            slot.paused = !armed;
            !armed
        });
        driver.paused = paused;
    }
}

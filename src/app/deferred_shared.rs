//! The state a deferred handle shares with its connection: the closed flag,
//! the bytes queued for backpressure, and the close hook.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::error::RespondError;
use super::mailbox::on_worker_thread;

/// State a deferred handle shares with its connection.
pub(crate) struct DeferredShared {
    state: Mutex<SharedState>,
    drained: Condvar,
    high_water: usize,
    /// The application paused the answer timeout (Warp's `pauseTimeout`):
    /// the worker does not hold the answer to it.
    timeout_paused: std::sync::atomic::AtomicBool,
}

struct SharedState {
    /// Body bytes posted and not yet written to the socket.
    queued: usize,
    /// The connection is gone.
    closed: bool,
    /// Writers blocked in `reserve`: without them a wake-up is a wasted syscall
    /// (one per deferred answer, when the connection drops its `Waiting`).
    waiters: usize,
    /// What to run when the connection lets go of the request before its
    /// answer completed (see `Deferred::on_close`); only when asked for, so
    /// that a deferred request allocates nothing otherwise.
    on_close: Option<CloseHook>,
}

/// A function the connection runs, once, on its worker thread, when it lets
/// go of a request whose answer had not completed.
pub(crate) type CloseHook = Box<dyn FnOnce() + Send>;

impl DeferredShared {
    pub fn new(high_water: usize) -> Arc<DeferredShared> {
        Arc::new(DeferredShared {
            state: Mutex::new(SharedState { queued: 0, closed: false, waiters: 0, on_close: None }),
            drained: Condvar::new(),
            high_water,
            timeout_paused: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether the application paused the answer timeout.
    pub fn timeout_paused(&self) -> bool {
        self.timeout_paused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Pauses the answer timeout for this answer (read by the worker when it
    /// arms or sweeps the deadline).
    pub fn pause_timeout(&self) {
        self.timeout_paused.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The high-water mark writes are held to.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// Readies a state whose answer completed (its handle is done: it makes
    /// no more calls but its drop) for the connection's next deferred answer,
    /// so that a deferred request on a warm connection allocates none.
    pub fn reset(&self) {
        self.timeout_paused.store(false, std::sync::atomic::Ordering::Relaxed);
        let hook = {
            let mut s = self.lock();
            s.queued = 0;
            s.closed = false;
            if s.waiters > 0 {
                // A writer of the done handle still waiting learns it is over.
                self.drained.notify_all();
            }
            s.on_close.take()
        };
        // The answer completed: the hook is never run (dropped unlocked, as
        // it is the application's).
        drop(hook);
    }

    /// The connection is gone: wake blocked writers, refuse later calls, and
    /// run the close hook if one was set (on this thread, the worker's,
    /// without the lock, so that it may call the handle; its panic is
    /// contained, as an upgraded connection's event callback's is).
    pub fn mark_closed(&self) {
        let hook = {
            let mut s = self.lock();
            s.closed = true;
            if s.waiters > 0 {
                self.drained.notify_all();
            }
            s.on_close.take()
        };
        if let Some(hook) = hook {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook));
        }
    }

    /// Sets the function run if the connection lets go of the request before
    /// its answer completed, in place of any set before; `Closed` (and the
    /// hook dropped) when it is gone already.
    pub(crate) fn set_on_close(&self, hook: CloseHook) -> Result<(), RespondError> {
        let mut s = self.lock();
        if s.closed {
            return Err(RespondError::Closed);
        }
        let replaced = s.on_close.replace(hook);
        // Hooks are the application's: dropped unlocked (`s` goes first).
        drop(s);
        drop(replaced);
        Ok(())
    }

    /// `n` posted bytes have reached the socket.
    pub fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut s = self.lock();
        s.queued = s.queued.saturating_sub(n);
        if s.queued <= self.high_water && s.waiters > 0 {
            self.drained.notify_all();
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits, counting nothing, until the queue is at or under the high-water
    /// mark or the connection is gone, or until `over()` says that another
    /// call finished the waiter's answer (that call then runs `wake_writers`).
    /// For a caller that must not hold its own lock while the stream drains.
    pub(crate) fn wait_writable(&self, over: impl Fn() -> bool) {
        let mut s = self.lock();
        while !s.closed && s.queued > self.high_water && !over() {
            s.waiters += 1;
            s = self.drained.wait(s).unwrap_or_else(|e| e.into_inner());
            s.waiters -= 1;
        }
    }

    /// Wakes the writers waiting in `wait_writable` to ask `over()` again.
    pub(crate) fn wake_writers(&self) {
        let s = self.lock();
        if s.waiters > 0 {
            self.drained.notify_all();
        }
    }

    /// Counts `n` more bytes once the queue is at or under the high-water
    /// mark (so it exceeds the mark by at most one write). Over the mark, a
    /// worker thread gets `WouldBlock` at once; any other thread waits for the
    /// worker to drain the queue (or the connection to close) — unless
    /// `may_wait` is false: a caller that waited in `wait_writable` already
    /// is counted at once (one write past the mark).
    pub(super) fn reserve(&self, n: usize, may_wait: bool) -> Result<(), RespondError> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return Err(RespondError::Closed);
            }
            if s.queued <= self.high_water {
                s.queued += n;
                return Ok(());
            }
            // Waiting on a worker thread could wait for this very worker, or
            // for one that waits for it (two workers writing to each other's
            // streams): refuse instead.
            if on_worker_thread() {
                return Err(RespondError::WouldBlock);
            }
            if !may_wait {
                s.queued += n;
                return Ok(());
            }
            s.waiters += 1;
            s = self.drained.wait(s).unwrap_or_else(|e| e.into_inner());
            s.waiters -= 1;
        }
    }
}

//! What every worker and the controlling `Server` share: the shutdown flag
//! and deadline, the current settings and their generation, the open
//! connection count, and the bookkeeping the controlling thread waits on
//! (which workers run, which settings each acknowledged, what shutdown did).
//! Workers read it when woken (shutdown, reload) and when a connection opens
//! or closes, never per request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::settings::Settings;
use crate::file::FileCounters;
use crate::net::listen::Listener;

/// The listeners the workers accept from, swapped whole by a reload.
pub(crate) type Listeners = Arc<[Arc<Listener>]>;

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Requests answered after the shutdown began.
    pub requests_finished: u64,
    /// Connections still open at the deadline, closed without their answer.
    pub connections_cut: u64,
}

/// Bookkeeping the controlling thread waits on.
struct Control {
    /// Workers that have not finished (not started counts as not finished).
    unfinished: usize,
    /// Per worker: running now, and the settings generation it acknowledged.
    running: Vec<bool>,
    /// Per worker: its loop has begun (it may have ended since).
    started: Vec<bool>,
    acked: Vec<u64>,
    report: ShutdownReport,
}

/// State every worker and the controlling thread share.
pub(crate) struct Shared {
    /// Shared with every worker's connection context (`WorkerCtx`), which reads
    /// it once per answer when composing.
    shutting_down: Arc<AtomicBool>,
    deadline: Mutex<Option<Instant>>,
    settings: Mutex<(Arc<Settings>, u64)>,
    /// The listeners, published with the settings: a worker that takes a
    /// generation takes the listeners that came with it. Emptied at shutdown,
    /// so that the server holds no listening socket open once it stops.
    listeners: Mutex<Listeners>,
    /// The generation in `settings`, readable without the lock: a worker whose
    /// own handler reloaded sees it before it reads another request.
    generation: AtomicU64,
    open_connections: AtomicUsize,
    /// Held while a reload builds and publishes its settings, so that each
    /// builds on the one before; never while it waits for the workers.
    reload: Mutex<()>,
    control: Mutex<Control>,
    changed: Condvar,
    /// Every worker's file-cache counters (the mounts are in the settings).
    pub file_counters: Arc<FileCounters>,
    /// Whether a failure to change a worker thread's scheduling policy was
    /// reported (once per server: see `sched`).
    pub sched_error_reported: AtomicBool,
}

impl Shared {
    pub fn new(
        settings: Arc<Settings>,
        listeners: Listeners,
        workers: usize,
        file_counters: Arc<FileCounters>,
    ) -> Shared {
        Shared {
            shutting_down: Arc::new(AtomicBool::new(false)),
            deadline: Mutex::new(None),
            settings: Mutex::new((settings, 0)),
            listeners: Mutex::new(listeners),
            generation: AtomicU64::new(0),
            open_connections: AtomicUsize::new(0),
            reload: Mutex::new(()),
            control: Mutex::new(Control {
                unfinished: workers,
                running: vec![false; workers],
                started: vec![false; workers],
                acked: vec![0; workers],
                report: ShutdownReport::default(),
            }),
            changed: Condvar::new(),
            file_counters,
            sched_error_reported: AtomicBool::new(false),
        }
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// The flag `shutdown` sets, read once per answer when it is composed (a
    /// relaxed load of a value that changes once), so that an answer composed
    /// after shutdown began says it closes.
    pub fn shutdown_flag(&self) -> &Arc<AtomicBool> {
        &self.shutting_down
    }

    /// When shutdown cuts what is left (None before shutdown).
    pub fn drain_deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn past_deadline(&self) -> bool {
        match *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(d) => Instant::now() >= d,
            None => false,
        }
    }

    /// The current settings and their generation.
    pub fn current_settings(&self) -> (Arc<Settings>, u64) {
        let s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        (s.0.clone(), s.1)
    }

    /// The current listeners.
    pub fn current_listeners(&self) -> Listeners {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lets go of the listeners (at shutdown): each closes once the workers
    /// dropped theirs too.
    pub fn drop_listeners(&self) {
        // Under the settings lock, as `publish_settings`, which then sees the
        // shutdown and keeps no listener either.
        let _settings = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        let empty: Listeners = Arc::new([]);
        let old = std::mem::replace(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()), empty);
        drop(old);
    }

    /// The latest settings generation (one atomic load, cheap enough per event).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn acknowledge(&self, worker: usize, generation: u64) {
        self.control().acked[worker] = generation;
        self.changed.notify_all();
    }

    pub fn worker_running(&self, worker: usize, running: bool) {
        let mut c = self.control();
        c.running[worker] = running;
        c.started[worker] = true;
        if !running {
            c.unfinished -= 1;
        }
        self.changed.notify_all();
    }

    pub fn worker_report(&self, finished: u64, cut: u64) {
        let mut c = self.control();
        c.report.requests_finished += finished;
        c.report.connections_cut += cut;
    }

    /// Reserves a connection slot; false at the limit.
    pub fn open_connection(&self, max: usize) -> bool {
        let mut n = self.open_connections.load(Ordering::Relaxed);
        loop {
            if n >= max {
                return false;
            }
            match self.open_connections.compare_exchange_weak(n, n + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
    }

    pub fn close_connection(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Gives back `n` connection slots at once (a worker that died with them).
    pub fn close_connections(&self, n: usize) {
        self.open_connections.fetch_sub(n, Ordering::Relaxed);
    }

    /// Sets the shutdown flag and a drain deadline `grace` from now (an
    /// earlier deadline already set stays).
    pub fn begin_shutdown(&self, grace: Duration) {
        {
            let mut deadline = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
            let new = Instant::now() + grace;
            *deadline = Some(deadline.map_or(new, |d| d.min(new)));
        }
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Makes `settings` (and `listeners`, when given) current under the next
    /// generation, which it returns.
    pub fn publish_settings(&self, settings: Arc<Settings>, listeners: Option<Listeners>) -> u64 {
        let mut current = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(listeners) = listeners.filter(|_| !self.is_shutting_down()) {
            *self.listeners.lock().unwrap_or_else(|e| e.into_inner()) = listeners;
        }
        let generation = current.1 + 1;
        *current = (settings, generation);
        self.generation.store(generation, Ordering::Release);
        generation
    }

    /// Serialises building and publishing settings (not the waiting).
    pub fn reload_lock(&self) -> MutexGuard<'_, ()> {
        self.reload.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every running worker acknowledged `generation`. Only
    /// threads that are not workers wait: a worker never waits for another.
    pub fn wait_for_acknowledgements(&self, generation: u64) {
        let mut control = self.control();
        loop {
            let behind = (0..control.running.len()).any(|i| control.running[i] && control.acked[i] < generation);
            if !behind {
                return;
            }
            control = self.changed.wait(control).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Workers whose loop ended while the server runs on (a panic escaped
    /// its containment): they never accept again.
    pub fn dead_workers(&self) -> Vec<usize> {
        let c = self.control();
        if self.is_shutting_down() {
            return Vec::new();
        }
        (0..c.running.len()).filter(|&i| c.started[i] && !c.running[i]).collect()
    }

    /// Blocks until the loop of every worker in `0..count` has begun (or
    /// ended), so that reloads from then on wait for each of them.
    pub fn wait_started(&self, count: usize) {
        let mut control = self.control();
        while control.started[..count].iter().any(|s| !s) {
            control = self.changed.wait(control).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Blocks until every worker has stopped.
    pub fn wait_stopped(&self) {
        let mut control = self.control();
        while control.unfinished > 0 {
            control = self.changed.wait(control).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.control().unfinished == 0
    }

    /// What the shutdown did so far.
    pub fn report(&self) -> ShutdownReport {
        self.control().report
    }
}

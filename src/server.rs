//! A running server: starts the workers, reloads their settings, reports
//! their counters, stops them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::deferred::Mailbox;
use crate::error::{Error, ErrorKind};
use crate::file::{FileCacheStats, FileCounters};
use crate::settings::Settings;
use crate::stats::{Stats, WorkerStats};
use crate::worker::Worker;

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
    acked: Vec<u64>,
    report: ShutdownReport,
}

/// State every worker and the controlling thread share. Workers read it when
/// woken (shutdown, reload) and when a connection opens or closes, never per
/// request.
pub(crate) struct Shared {
    shutting_down: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    settings: Mutex<(Arc<Settings>, u64)>,
    /// The generation in `settings`, readable without the lock: a worker whose
    /// own handler reloaded sees it before it reads another request.
    generation: AtomicU64,
    open_connections: AtomicUsize,
    control: Mutex<Control>,
    changed: Condvar,
    /// Every worker's file-cache counters (the mounts are in the settings).
    pub file_counters: Arc<FileCounters>,
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// The flag `shutdown` sets, read once per answer when it is composed (a
    /// relaxed load of a value that changes once), so that an answer composed
    /// after shutdown began says it closes.
    pub fn shutdown_flag(&self) -> &AtomicBool {
        &self.shutting_down
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
}

/// A started server. All methods may be called from any thread.
pub struct Server {
    shared: Arc<Shared>,
    port: u16,
    workers: usize,
    listen: std::net::SocketAddr,
    /// Workers not yet taken by a thread.
    pending: Mutex<Vec<Option<Worker>>>,
    mailboxes: Vec<Arc<Mailbox>>,
    stats: Vec<Arc<WorkerStats>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

thread_local! {
    /// Set on threads running a worker, so a reload from a handler does not
    /// wait for its own worker.
    static ON_WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

impl Server {
    /// Binds the listeners and, unless `config.external_workers`, starts one
    /// thread per worker. Errors (bad address, port in use, bad settings) are
    /// reported here, before any connection is accepted.
    pub fn start(config: &Config) -> Result<Server, Error> {
        let settings = Arc::new(Settings::from_config(config, None)?);
        // Before any worker runs: the C handles' handshake then takes its
        // cheap side on the workers (see `sys::membarrier`).
        crate::sys::membarrier::register();
        let addr = crate::sys::resolve(&config.listen)?;
        let count = config.resolved_workers();
        let listeners = crate::sys::bind_listeners(addr, count, config.backlog, config.share_port)?;
        let bound = listeners[0].local_addr().map_err(|e| Error::io("local address", e))?;
        let shared = Arc::new(Shared {
            shutting_down: AtomicBool::new(false),
            deadline: Mutex::new(None),
            settings: Mutex::new((settings, 0)),
            generation: AtomicU64::new(0),
            open_connections: AtomicUsize::new(0),
            control: Mutex::new(Control {
                unfinished: count,
                running: vec![false; count],
                acked: vec![0; count],
                report: ShutdownReport::default(),
            }),
            changed: Condvar::new(),
            file_counters: FileCounters::new(count),
        });
        let mut workers = Vec::with_capacity(count);
        let mut mailboxes = Vec::with_capacity(count);
        let mut stats = Vec::with_capacity(count);
        for (index, listener) in listeners.into_iter().enumerate() {
            let worker_stats = Arc::new(WorkerStats::default());
            let (worker, mailbox) = Worker::new(index, listener, shared.clone(), worker_stats.clone())
                .map_err(|e| Error::io("event loop", e))?;
            workers.push(Some(worker));
            mailboxes.push(mailbox);
            stats.push(worker_stats);
        }
        let server = Server {
            shared,
            port: bound.port(),
            workers: count,
            listen: bound,
            pending: Mutex::new(workers),
            mailboxes,
            stats,
            threads: Mutex::new(Vec::new()),
        };
        if !config.external_workers {
            for index in 0..count {
                let worker = server.take_worker(index)?;
                let thread = std::thread::Builder::new()
                    .name(format!("warpcore-{index}"))
                    .spawn(move || run_contained(index, worker))
                    .map_err(|e| Error::io("cannot start worker thread", e));
                match thread {
                    Ok(t) => server.threads.lock().unwrap_or_else(|e| e.into_inner()).push(t),
                    Err(e) => {
                        server.shared.worker_running(index, false);
                        server.shutdown(Duration::ZERO);
                        return Err(e);
                    }
                }
            }
        }
        Ok(server)
    }

    /// The bound port (the real one when 0 was asked for).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many workers the server has.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs worker `index` on the calling thread until shutdown (external
    /// workers only; each index once).
    pub fn run_worker(&self, index: usize) -> Result<(), Error> {
        if self.shared.is_shutting_down() {
            return Err(Error::new(ErrorKind::ShuttingDown, "the server is shutting down"));
        }
        let worker = self.take_worker(index)?;
        run_contained(index, worker);
        Ok(())
    }

    fn take_worker(&self, index: usize) -> Result<Worker, Error> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.get_mut(index).and_then(Option::take).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidState,
                format!("worker {index} does not exist or is already running (the server has {})", self.workers),
            )
        })
    }

    /// Applies `config` to requests read from now on: handler, static mounts,
    /// limits, timeouts, server name, logs. Requests in flight finish with what they
    /// started with; no connection is dropped. Returns once every running
    /// worker uses the new settings. The listen address and the worker count
    /// cannot change: a config that changes them is refused.
    pub fn reload(&self, config: &Config) -> Result<(), Error> {
        if self.shared.is_shutting_down() {
            return Err(Error::new(ErrorKind::ShuttingDown, "the server is shutting down"));
        }
        let settings = Arc::new(Settings::from_config(config, Some(&self.shared.current_settings().0))?);
        let addr = crate::sys::resolve(&config.listen)?;
        let same_addr = addr.ip() == self.listen.ip() && (addr.port() == 0 || addr.port() == self.listen.port());
        if !same_addr {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("reload cannot move the server from {} to {addr}: restart it instead", self.listen),
            ));
        }
        if config.resolved_workers() != self.workers {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("reload cannot change the worker count ({}): restart the server instead", self.workers),
            ));
        }
        let generation = {
            let mut current = self.shared.settings.lock().unwrap_or_else(|e| e.into_inner());
            let generation = current.1 + 1;
            *current = (settings, generation);
            self.shared.generation.store(generation, Ordering::Release);
            generation
        };
        for mailbox in &self.mailboxes {
            mailbox.poke();
        }
        let own = ON_WORKER.with(|w| w.get());
        let mut control = self.shared.control();
        loop {
            let behind = (0..self.workers)
                .any(|i| control.running[i] && control.acked[i] < generation && Some(i) != own);
            if !behind {
                return Ok(());
            }
            control = self.shared.changed.wait(control).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The counters summed over every worker.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in &self.stats {
            s.add_to(&mut total);
        }
        let files = self.file_cache_stats();
        total.fd_cache_hits = files.fd_hits;
        total.fd_cache_misses = files.fd_misses;
        total.info_cache_hits = files.info_hits;
        total.info_cache_misses = files.info_misses;
        total
    }

    /// The file caches' hit and miss counts, summed over the workers.
    pub fn file_cache_stats(&self) -> FileCacheStats {
        self.shared.file_counters.stats()
    }

    /// Reopens the access-log file (after it was moved away, for rotation).
    pub fn reopen_logs(&self) -> Result<(), Error> {
        let (settings, _) = self.shared.current_settings();
        if let Some(log) = &settings.access_log {
            log.reopen().map_err(|e| Error::io("cannot reopen the access log", e))?;
        }
        Ok(())
    }

    /// Stops accepting, closes idle connections, lets requests already
    /// received finish for up to `grace`, closes what remains and returns when
    /// every worker has stopped. Calling it again returns the same report.
    pub fn shutdown(&self, grace: Duration) -> ShutdownReport {
        {
            let mut deadline = self.shared.deadline.lock().unwrap_or_else(|e| e.into_inner());
            let new = Instant::now() + grace;
            *deadline = Some(deadline.map_or(new, |d| d.min(new)));
        }
        self.shared.shutting_down.store(true, Ordering::Release);
        for mailbox in &self.mailboxes {
            mailbox.poke();
        }
        // Workers no thread has taken will never run: they count as finished.
        let never_ran: Vec<(usize, Worker)> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
            .enumerate()
            .filter_map(|(i, w)| w.take().map(|w| (i, w)))
            .collect();
        for (index, worker) in never_ran {
            drop(worker);
            self.shared.worker_running(index, false);
        }
        self.wait();
        let threads: Vec<_> = self.threads.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        self.shared.control().report
    }

    /// Blocks until every worker has stopped (after a `shutdown` from elsewhere).
    pub fn wait(&self) {
        let mut control = self.shared.control();
        while control.unfinished > 0 {
            control = self.shared.changed.wait(control).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Whether every worker has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.control().unfinished == 0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

/// Runs a worker; a panic that escapes the per-connection containment ends
/// that worker only, never the process.
fn run_contained(index: usize, worker: Worker) {
    let shared = worker.shared();
    ON_WORKER.with(|w| w.set(Some(index)));
    let finished = crate::quiet_panic::quietly(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())).is_ok()
    });
    ON_WORKER.with(|w| w.set(None));
    if !finished {
        shared.worker_running(index, false);
    }
}

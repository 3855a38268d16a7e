//! A running server: starts the workers, reloads their settings, reports
//! their counters, stops them.

pub(crate) mod quiet_panic;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::app::deferred::Mailbox;
use crate::config::settings::Settings;
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::file::{FileCacheStats, FileCounters};
use crate::observe::stats::{Stats, WorkerStats};
use crate::worker::shared::Shared;
use crate::worker::Worker;

pub use crate::worker::shared::ShutdownReport;

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

impl Server {
    /// Binds the listeners and, unless `config.external_workers`, starts one
    /// thread per worker. Errors (bad address, port in use, bad settings) are
    /// reported here, before any connection is accepted.
    pub fn start(config: &Config) -> Result<Server, Error> {
        let settings = Arc::new(Settings::from_config(config, None)?);
        // Before any worker runs: the C handles' handshake then takes its
        // cheap side on the workers (see `sys::membarrier`).
        crate::sys::membarrier::register();
        let addr = crate::net::listen::resolve(&config.listen)?;
        let count = config.resolved_workers();
        let listeners = crate::net::listen::bind_listeners(addr, count, config.backlog, config.share_port)?;
        let bound = listeners[0].local_addr().map_err(|e| Error::io("local address", e))?;
        let shared = Arc::new(Shared::new(settings, count, FileCounters::new(count)));
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
    ///
    /// Reloads may run at once, from any threads, handlers included: they
    /// take effect one after the other (the last one published wins). From a
    /// worker thread (a handler of this server or of any other) a reload never
    /// waits: it returns once the new settings are published, and each worker
    /// takes them before the next connection event it handles (the handler's
    /// own worker as soon as the handler returns). So reloads from handlers
    /// never deadlock, whatever the other workers are doing.
    pub fn reload(&self, config: &Config) -> Result<(), Error> {
        if self.shared.is_shutting_down() {
            return Err(Error::new(ErrorKind::ShuttingDown, "the server is shutting down"));
        }
        let generation = self.publish(config)?;
        if !crate::app::deferred::on_worker_thread() {
            self.shared.wait_for_acknowledgements(generation);
        }
        Ok(())
    }

    /// Builds settings from `config` on the current ones and makes them
    /// current, one reload at a time; returns their generation.
    fn publish(&self, config: &Config) -> Result<u64, Error> {
        let _one_at_a_time = self.shared.reload_lock();
        let settings = Arc::new(Settings::from_config(config, Some(&self.shared.current_settings().0))?);
        let addr = crate::net::listen::resolve(&config.listen)?;
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
        let generation = self.shared.publish_settings(settings);
        for mailbox in &self.mailboxes {
            mailbox.poke();
        }
        Ok(generation)
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
        self.shared.begin_shutdown(grace);
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
        self.shared.report()
    }

    /// Blocks until every worker has stopped (after a `shutdown` from elsewhere).
    pub fn wait(&self) {
        self.shared.wait_stopped();
    }

    /// Whether every worker has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.is_stopped()
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
    // SCHED_BATCH when the settings ask, undone when the worker ends.
    let _policy = crate::worker::sched::ThreadPolicy::enter(&shared);
    let finished = crate::server::quiet_panic::quietly(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())).is_ok()
    });
    if !finished {
        shared.worker_running(index, false);
    }
}

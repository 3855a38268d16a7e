//! A running server: binds its listeners, starts the workers, reloads their
//! settings and listeners, reports their counters, stops them.

pub(crate) mod quiet_panic;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::app::mailbox::Mailbox;
use crate::config::settings::Settings;
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::file::{FileCacheStats, FileCounters};
use crate::net::listen::{BindOptions, ListenSpec, Listener};
use crate::observe::stats::{Stats, WorkerStats};
use crate::worker::shared::{Listeners, Shared};
use crate::worker::Worker;

pub use crate::worker::shared::ShutdownReport;

/// What a server shows of one of its listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// The address it listens on (`127.0.0.1:39211`, `[::1]:80`, `unix:/run/app.sock`).
    pub address: String,
    /// The bound TCP address, for a TCP listener (one handed in included).
    pub tcp: Option<std::net::SocketAddr>,
}

/// A started server. All methods may be called from any thread.
pub struct Server {
    shared: Arc<Shared>,
    workers: usize,
    /// The listeners, in the config's order, as started or last reloaded
    /// (the sockets themselves are let go at shutdown: see `Shared`).
    listeners: Mutex<Vec<ListenerInfo>>,
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
        let count = config.resolved_workers();
        let addresses = config.listen_addresses();
        check_unique(&addresses)?;
        let bound = crate::net::listen::bind_all(addresses.iter().copied(), &bind_options(config, count), &[])?;
        let infos = bound.iter().map(info).collect();
        let listeners: Listeners = bound.into_iter().map(Arc::new).collect();
        set_proxy_modes(config, &listeners);
        let shared = Arc::new(Shared::new(settings, listeners.clone(), count, FileCounters::new(count)));
        let mut workers = Vec::with_capacity(count);
        let mut mailboxes = Vec::with_capacity(count);
        let mut stats = Vec::with_capacity(count);
        for index in 0..count {
            let worker_stats = Arc::new(WorkerStats::default());
            let made = Worker::new(index, shared.clone(), worker_stats.clone()).map_err(|e| Error::io("event loop", e));
            let (worker, mailbox) = match made {
                Ok(made) => made,
                Err(e) => {
                    drop(workers);
                    shared.drop_listeners();
                    give_back(listeners);
                    return Err(e);
                }
            };
            workers.push(Some(worker));
            mailboxes.push(mailbox);
            stats.push(worker_stats);
        }
        drop(listeners);
        let server = Server {
            shared,
            workers: count,
            listeners: Mutex::new(infos),
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
            // A reload waits for the workers that run: once start returns,
            // that is every one (else a reload could return while a thread
            // not yet running still held a listener it dropped).
            server.shared.wait_started(count);
        }
        Ok(server)
    }

    /// The port of the first TCP listener (the real one when 0 was asked
    /// for); 0 when no listener is TCP.
    pub fn port(&self) -> u16 {
        self.listeners().iter().find_map(|l| l.tcp).map_or(0, |a| a.port())
    }

    /// The listeners, in the config's order (as started or last reloaded).
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
        let worker = self.take_worker(index).map_err(|e| {
            // A shutdown that began after the check above took the worker
            // that never ran: say so, not that the index is wrong.
            if self.shared.is_shutting_down() && index < self.workers {
                Error::new(ErrorKind::ShuttingDown, "the server is shutting down")
            } else {
                e
            }
        })?;
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
    /// limits, timeouts, server name, logs, listeners. Requests in flight finish with what they
    /// started with; no connection is dropped. Returns once every running
    /// worker uses the new settings. Listeners whose address is unchanged
    /// keep their sockets; new ones are bound first (an error changes
    /// nothing); those gone stop accepting (what already waits in their
    /// queues is taken) and close, while their connections finish. The worker
    /// count cannot change: a config that changes it is refused.
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
        if !crate::app::mailbox::on_worker_thread() {
            self.shared.wait_for_acknowledgements(generation);
        }
        Ok(())
    }

    /// Builds settings from `config` on the current ones and makes them
    /// current, one reload at a time; returns their generation.
    fn publish(&self, config: &Config) -> Result<u64, Error> {
        let _one_at_a_time = self.shared.reload_lock();
        let settings = Arc::new(Settings::from_config(config, Some(&self.shared.current_settings().0))?);
        if config.resolved_workers() != self.workers {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("reload cannot change the worker count ({}): restart the server instead", self.workers),
            ));
        }
        let listeners = self.follow(config)?;
        // Before the workers take the new settings: connections accepted
        // from now on are read with each listener's new mode.
        set_proxy_modes(config, listeners.as_ref().unwrap_or(&self.shared.current_listeners()));
        let changed = listeners.is_some();
        let generation = self.shared.publish_settings(settings, listeners);
        if changed {
            // Workers no thread runs yet let go of the listeners dropped too.
            for worker in self.pending.lock().unwrap_or_else(|e| e.into_inner()).iter_mut().flatten() {
                worker.follow_server_listeners();
            }
        }
        for mailbox in &self.mailboxes {
            mailbox.poke();
        }
        Ok(generation)
    }

    /// The listeners `config` asks for: the current ones it still names, and
    /// new ones bound for the rest (nothing changes on an error); None when
    /// they are the current ones.
    fn follow(&self, config: &Config) -> Result<Option<Listeners>, Error> {
        let addresses = config.listen_addresses();
        check_unique(&addresses)?;
        let current = self.shared.current_listeners();
        let mut kept: Vec<Option<Arc<Listener>>> = Vec::with_capacity(addresses.len());
        let mut taken = vec![false; current.len()];
        for address in &addresses {
            let found = (0..current.len()).find(|&i| !taken[i] && current[i].serves(address));
            if let Some(i) = found {
                taken[i] = true;
            }
            kept.push(found.map(|i| current[i].clone()));
        }
        if kept.len() == current.len()
            && kept.iter().zip(current.iter()).all(|(k, c)| k.as_ref().is_some_and(|k| Arc::ptr_eq(k, c)))
        {
            return Ok(None);
        }
        let fresh = addresses.iter().zip(&kept).filter(|(_, k)| k.is_none()).map(|(a, _)| *a);
        let bound = crate::net::listen::bind_all(fresh, &bind_options(config, self.workers), &current)?;
        // A dead worker's socket of a new TCP address would get connections
        // nobody accepts.
        for index in self.shared.dead_workers() {
            bound.iter().for_each(|l| l.retire(index));
        }
        let mut bound = bound.into_iter();
        let next: Listeners = kept
            .into_iter()
            .map(|k| k.unwrap_or_else(|| Arc::new(bound.next().expect("one bound per new address"))))
            .collect();
        *self.listeners.lock().unwrap_or_else(|e| e.into_inner()) = next.iter().map(|l| info(l)).collect();
        Ok(Some(next))
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
        self.begin_shutdown(grace);
        self.wait();
        let threads: Vec<_> = self.threads.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        self.shared.report()
    }

    /// Starts a graceful shutdown without waiting for it (see `shutdown`):
    /// what a worker thread may do, since the workers it would wait for
    /// include its own.
    pub fn begin_shutdown(&self, grace: Duration) {
        self.shared.begin_shutdown(grace);
        // Each listener closes once the workers let go of it too.
        self.shared.drop_listeners();
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
    }

    /// Blocks until every worker has stopped (after a `shutdown` from elsewhere).
    pub fn wait(&self) {
        self.shared.wait_stopped();
    }

    /// What the shutdown did, once every worker has stopped (whoever
    /// started it); all zero before.
    pub fn report(&self) -> ShutdownReport {
        if self.is_stopped() {
            self.shared.report()
        } else {
            ShutdownReport::default()
        }
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

/// Gives each listener the PROXY protocol mode `config` asks for it
/// (`listeners` are in the order of `config.listen_addresses()`).
fn set_proxy_modes(config: &Config, listeners: &Listeners) {
    for (listener, address) in listeners.iter().zip(config.listen_addresses()) {
        listener.proxy.set(config.proxy_protocol.mode_for(address));
    }
}

fn bind_options(config: &Config, workers: usize) -> BindOptions {
    BindOptions { workers, backlog: config.backlog, share_port: config.share_port, unix: config.unix_perms }
}

fn info(listener: &Listener) -> ListenerInfo {
    ListenerInfo { address: listener.address.clone(), tcp: listener.tcp_addr }
}

/// A Unix path or a descriptor named twice would be bound or owned twice.
fn check_unique(addresses: &[&str]) -> Result<(), Error> {
    for (i, a) in addresses.iter().enumerate() {
        let spec = ListenSpec::parse(a)?;
        let twice = matches!(spec, ListenSpec::Unix(_) | ListenSpec::Fd(_))
            && addresses[..i].iter().any(|b| ListenSpec::parse(b).is_ok_and(|s| s == spec));
        if twice {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("listener {a} is named twice")));
        }
    }
    Ok(())
}

/// Lets go of listeners a failed start made: a descriptor handed in stays
/// open, the embedder's again.
fn give_back(listeners: Listeners) {
    let each: Vec<Arc<Listener>> = listeners.iter().cloned().collect();
    drop(listeners);
    for listener in each {
        if let Ok(listener) = Arc::try_unwrap(listener) {
            listener.abandon();
        }
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

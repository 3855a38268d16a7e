//! A running server: starts the workers, stops them, reports its port.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::Waker;

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::file::{FileCacheStats, FileSetup};
use crate::worker::Worker;

/// State every worker and the controlling thread share. Read by workers only when
/// woken, never per request.
pub(crate) struct Shared {
    shutting_down: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    /// Workers that have not finished (not started counts as not finished).
    unfinished: Mutex<usize>,
    finished: Condvar,
    /// Static mounts, file cache settings and counters.
    pub files: Arc<FileSetup>,
}

impl Shared {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub fn past_deadline(&self) -> bool {
        match *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(d) => Instant::now() >= d,
            None => false,
        }
    }

    fn worker_finished(&self) {
        let mut n = self.unfinished.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        self.finished.notify_all();
    }
}

/// A started server. All methods may be called from any thread.
pub struct Server {
    shared: Arc<Shared>,
    port: u16,
    workers: usize,
    /// Workers not yet taken by a thread.
    pending: Mutex<Vec<Option<Worker>>>,
    wakers: Vec<Waker>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Server {
    /// Binds the listeners and, unless `config.external_workers`, starts one
    /// thread per worker. Errors (bad address, port in use, bad settings) are
    /// reported here, before any connection is accepted.
    pub fn start(config: &Config) -> Result<Server, Error> {
        config.validate()?;
        let addr = crate::sys::resolve(&config.listen)?;
        let count = config.resolved_workers();
        let files = FileSetup::new(&config.static_mounts, config.fd_cache_lifetime, config.file_info_lifetime, count)?;
        let listeners = crate::sys::bind_listeners(addr, count, config.backlog)?;
        let port = listeners[0].local_addr().map_err(|e| Error::io("local address", e))?.port();
        let shared = Arc::new(Shared {
            shutting_down: AtomicBool::new(false),
            deadline: Mutex::new(None),
            unfinished: Mutex::new(count),
            finished: Condvar::new(),
            files,
        });
        let mut workers = Vec::with_capacity(count);
        let mut wakers = Vec::with_capacity(count);
        for (index, listener) in listeners.into_iter().enumerate() {
            let (worker, waker) =
                Worker::new(index, config, listener, shared.clone()).map_err(|e| Error::io("event loop", e))?;
            workers.push(Some(worker));
            wakers.push(waker);
        }
        let server = Server {
            shared,
            port,
            workers: count,
            pending: Mutex::new(workers),
            wakers,
            threads: Mutex::new(Vec::new()),
        };
        if !config.external_workers {
            for index in 0..count {
                let worker = server.take_worker(index)?;
                let shared = server.shared.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("warpcore-{index}"))
                    .spawn(move || run_contained(worker, &shared))
                    .map_err(|e| Error::io("cannot start worker thread", e));
                match thread {
                    Ok(t) => server.threads.lock().unwrap_or_else(|e| e.into_inner()).push(t),
                    Err(e) => {
                        server.shared.worker_finished();
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
        run_contained(worker, &self.shared);
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

    /// Stops accepting, lets requests already received finish for up to `grace`,
    /// closes what remains and returns when every worker has stopped. Idempotent.
    pub fn shutdown(&self, grace: Duration) {
        {
            let mut deadline = self.shared.deadline.lock().unwrap_or_else(|e| e.into_inner());
            let new = Instant::now() + grace;
            *deadline = Some(deadline.map_or(new, |d| d.min(new)));
        }
        self.shared.shutting_down.store(true, Ordering::Release);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
        // Workers no thread has taken will never run: they count as finished.
        let never_ran: Vec<Worker> =
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).iter_mut().filter_map(Option::take).collect();
        for _ in &never_ran {
            self.shared.worker_finished();
        }
        drop(never_ran);
        self.wait();
        let threads: Vec<_> = self.threads.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    /// Blocks until every worker has stopped (after a `shutdown` from elsewhere).
    pub fn wait(&self) {
        let mut n = self.shared.unfinished.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            n = self.shared.finished.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The file caches' hit and miss counts, summed over the workers.
    pub fn file_cache_stats(&self) -> FileCacheStats {
        self.shared.files.stats()
    }

    /// Whether every worker has stopped.
    pub fn is_stopped(&self) -> bool {
        *self.shared.unfinished.lock().unwrap_or_else(|e| e.into_inner()) == 0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

/// Runs a worker; a panic inside it ends that worker only, never the process.
fn run_contained(worker: Worker, shared: &Shared) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run()));
    shared.worker_finished();
}

//! Helpers for tests about workers as such: reaching a given worker over a
//! fresh connection, and a shutdown that must finish in time.

use std::time::Duration;

use warpcore::{Server, ShutdownReport};

use super::{Client, IO_TIMEOUT};

/// A keep-alive connection the kernel gave to worker `worker`, found by
/// asking `GET /whoami` (the handler must answer it with its
/// `Request::worker_index` as the body) on fresh connections until one
/// lands there. With `rcvbuf`, the connection's receive buffer is that small.
pub fn connect_to_worker(port: u16, worker: usize, rcvbuf: Option<usize>) -> Client {
    // SO_REUSEPORT spreads connections by a hash of their ports: with two
    // workers, 200 tries all missing one has a chance of 2^-200.
    for _ in 0..200 {
        let mut c = match rcvbuf {
            Some(bytes) => Client::connect_with_rcvbuf(port, bytes),
            None => Client::connect(port),
        };
        let r = c.get("/whoami");
        assert_eq!(r.status, 200, "/whoami answered");
        if r.text() == worker.to_string() {
            return c;
        }
    }
    panic!("no connection reached worker {worker}");
}

/// Shuts `server` down with `grace` on another thread and waits for the
/// report at most `limit`; panics if the shutdown does not return by then
/// (the server is then left running, leaked, so that the test fails instead
/// of hanging).
pub fn shutdown_within(server: Server, grace: Duration, limit: Duration) -> ShutdownReport {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let report = server.shutdown(grace);
        let _ = tx.send(report);
        drop(server);
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("shutdown did not return within {limit:?}"))
}

/// The default bound for `shutdown_within`: generous, and far below "hung".
pub const SHUTDOWN_LIMIT: Duration = IO_TIMEOUT;

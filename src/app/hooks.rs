//! Connection hooks: the application hears of each connection as it opens
//! (and may refuse it: it is closed before any byte is read) and as it
//! closes, as Warp's `setOnOpen` and `setOnClose`.
//!
//! Both run on the worker thread that owns the connection. `on_close` is
//! called exactly once for every connection `on_open` was called for,
//! refused ones included (as Warp calls `onClose` after an `onOpen` that said
//! no), with the same peer (the socket's: the address a PROXY protocol
//! header carries comes later), by the hooks that saw it open even if a
//! reload changed them since. A panic in a hook is contained: in `on_open`
//! it refuses the connection.

use std::sync::Arc;

use crate::net::peer::{Peer, PeerText};

/// What the hooks are told of a connection.
pub struct Connection<'a> {
    /// The client, as the socket gives it.
    pub peer: Peer,
    /// The peer's IP address as text (`127.0.0.1`, `::1`), `unix:` on a Unix socket.
    pub peer_ip: &'a [u8],
    /// The worker that owns the connection (0-based).
    pub worker_index: usize,
    /// The connection's number, unique within its worker: with `worker_index`
    /// it pairs an `on_close` with its `on_open`.
    pub id: u64,
}

/// Told of connections as they open and close; shared by every worker.
pub trait ConnHooks: Send + Sync + 'static {
    /// A connection was accepted; false closes it before anything is read.
    fn on_open(&self, conn: &Connection<'_>) -> bool;
    /// A connection `on_open` was called for is closed.
    fn on_close(&self, conn: &Connection<'_>);
}

/// Calls `on_open`; a panic refuses the connection. Returns the guard that
/// calls `on_close` when dropped (whatever `on_open` said), and the verdict.
pub(crate) fn open(hooks: &Arc<dyn ConnHooks>, peer: Peer, worker_index: usize, id: u64) -> (Box<Hooked>, bool) {
    let hooked = Box::new(Hooked { hooks: hooks.clone(), peer, peer_text: PeerText::new(&peer), worker_index, id });
    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hooks.on_open(&hooked.connection())));
    let accepted = verdict.unwrap_or(false);
    (hooked, accepted)
}

/// A connection the hooks were told of: dropped with it (closed, cut at a
/// shutdown's deadline, or lost with its worker), it calls `on_close`.
pub(crate) struct Hooked {
    hooks: Arc<dyn ConnHooks>,
    peer: Peer,
    peer_text: PeerText,
    worker_index: usize,
    id: u64,
}

impl Hooked {
    fn connection(&self) -> Connection<'_> {
        Connection { peer: self.peer, peer_ip: self.peer_text.as_bytes(), worker_index: self.worker_index, id: self.id }
    }
}

impl Drop for Hooked {
    fn drop(&mut self) {
        let conn = self.connection();
        // Contained: a drop may run while a panic unwinds the worker.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.hooks.on_close(&conn)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Record(Mutex<Vec<(bool, u64)>>);

    impl ConnHooks for Record {
        fn on_open(&self, conn: &Connection<'_>) -> bool {
            self.0.lock().unwrap().push((true, conn.id));
            if conn.id == 3 {
                panic!("refuse by panicking");
            }
            conn.id % 2 == 1
        }
        fn on_close(&self, conn: &Connection<'_>) {
            assert_eq!(conn.peer_ip, b"127.0.0.1");
            self.0.lock().unwrap().push((false, conn.id));
        }
    }

    #[test]
    fn every_open_gets_one_close_and_a_panic_refuses() {
        let record = Arc::new(Record::default());
        let hooks: Arc<dyn ConnHooks> = record.clone();
        let peer = Peer::Ip("127.0.0.1:9".parse().unwrap());
        let verdicts: Vec<bool> = (1..=3)
            .map(|id| {
                let (guard, ok) = open(&hooks, peer, 0, id);
                drop(guard);
                ok
            })
            .collect();
        assert_eq!(verdicts, [true, false, false]);
        assert_eq!(*record.0.lock().unwrap(), [(true, 1), (false, 1), (true, 2), (false, 2), (true, 3), (false, 3)]);
    }
}

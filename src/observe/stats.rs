//! Counters: each worker owns one set, writes it without locking (a relaxed
//! load and store: it is the only writer) and `Server::stats` sums them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Totals across workers, read without stopping them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Connections closed because a timeout expired (a WebSocket whose peer
    /// left a keepalive ping unanswered included).
    pub connections_timed_out: u64,
    /// Requests read and dispatched (the engine's error answers included).
    pub requests: u64,
    /// Responses by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub responses: [u64; 5],
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Requests refused as malformed or over a limit.
    pub parse_errors: u64,
    /// Static-file descriptor cache hits and misses (small files' bodies sent
    /// from memory count as hits).
    pub fd_cache_hits: u64,
    /// See `fd_cache_hits`.
    pub fd_cache_misses: u64,
    /// Static-file information (stat) cache hits and misses.
    pub info_cache_hits: u64,
    /// See `info_cache_hits`.
    pub info_cache_misses: u64,
    /// Naps busy workers took before polling, to gather events (see
    /// `Config::coalesce_wait`).
    pub coalesce_naps: u64,
    /// Connections that switched protocols (`101`, upgraded).
    pub upgrades: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes that failed (a protocol error, no common version or
    /// cipher, a client certificate refused; not a client that left or timed out).
    pub tls_handshake_failures: u64,
    /// TLS connections whose records the kernel encrypts (kTLS).
    pub tls_kernel: u64,
}

/// One worker's counters.
#[derive(Default)]
pub(crate) struct WorkerStats {
    pub accepted: AtomicU64,
    pub closed: AtomicU64,
    pub timed_out: AtomicU64,
    pub requests: AtomicU64,
    pub responses: [AtomicU64; 5],
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub parse_errors: AtomicU64,
    pub coalesce_naps: AtomicU64,
    pub upgrades: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub tls_kernel: AtomicU64,
}

/// Adds `n` to a counter this thread alone writes.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

impl WorkerStats {
    /// Counts one response with `status`.
    #[inline]
    pub fn response(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        bump(&self.responses[class], 1);
    }

    /// Adds this worker's counters into `total`.
    pub fn add_to(&self, total: &mut Stats) {
        let accepted = self.accepted.load(Relaxed);
        let closed = self.closed.load(Relaxed);
        total.connections_accepted += accepted;
        total.connections_active += accepted.saturating_sub(closed);
        total.connections_timed_out += self.timed_out.load(Relaxed);
        total.requests += self.requests.load(Relaxed);
        for (t, r) in total.responses.iter_mut().zip(&self.responses) {
            *t += r.load(Relaxed);
        }
        total.bytes_in += self.bytes_in.load(Relaxed);
        total.bytes_out += self.bytes_out.load(Relaxed);
        total.parse_errors += self.parse_errors.load(Relaxed);
        total.coalesce_naps += self.coalesce_naps.load(Relaxed);
        total.upgrades += self.upgrades.load(Relaxed);
        total.tls_handshakes += self.tls_handshakes.load(Relaxed);
        total.tls_handshake_failures += self.tls_handshake_failures.load(Relaxed);
        total.tls_kernel += self.tls_kernel.load(Relaxed);
    }
}

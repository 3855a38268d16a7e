//! What a connection reaches its worker's machinery through (Warp's
//! `InternalInfo`): the settings snapshot, the date, the static-file caches,
//! the mailbox, counters and access-log buffer. The worker owns one and lends
//! it to each connection it drives; the connection never sees the loop.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::app::deferred_shared::DeferredShared;
use crate::app::mailbox::Mailbox;
use crate::config::settings::Settings;
use crate::file::StaticFiles;
use crate::http::date::DateCache;
use crate::http::image::ImageCache;
use crate::net::output::OutQueue;
use crate::observe::log::AccessBuffer;
use crate::observe::stats::WorkerStats;

/// At most this many emptied held-answer queues are kept per worker (each
/// with a buffer of at most `HELD_SPARE_MAX`, so at most ~0.5 MiB): the
/// read-ahead of 32 connections at once.
pub(crate) const SPARE_QUEUES: usize = 512;
/// At most this many spare deferred states (~100 bytes each) are kept per
/// worker: as many as 1024 deferred answers in flight reuse them.
pub(crate) const SPARE_SHARED: usize = 1024;

/// The per-worker context the connection code reaches the shared machinery
/// through: the settings snapshot, date, mailbox, counters, access-log buffer,
/// scratch for the decoded path.
pub(crate) struct WorkerCtx {
    pub index: usize,
    pub settings: Arc<Settings>,
    /// Which reload `settings` came from.
    pub generation: u64,
    pub date: DateCache,
    /// Mounts, fd and file-info caches of this worker.
    pub files: StaticFiles,
    pub path_buf: Vec<u8>,
    /// Prepared responses' images complete with this worker's date line.
    pub images: ImageCache,
    pub mailbox: Arc<Mailbox>,
    pub stats: Arc<WorkerStats>,
    /// Formatted access-log lines, when the access log is on.
    pub access: Option<AccessBuffer>,
    /// Shutting down: responses close their connections.
    pub draining: bool,
    /// Draining, and the wait for idle keep-alive connections' last requests
    /// is over: a connection with nothing left to do closes.
    pub close_idle: bool,
    /// When shutdown cuts what is left (set with `draining`): told to
    /// connections that switch protocols while the server drains.
    pub drain_deadline: Option<std::time::Instant>,
    /// Output buffers idle connections gave back (at most 64 of 8 KiB).
    pub spare_out: Vec<Vec<u8>>,
    /// Scratch for the answer of a request handled ahead of a pending one.
    pub held_out: Vec<u8>,
    /// Emptied queues of answers that were held behind pending ones, for the
    /// next request handled ahead on any connection (see `SPARE_QUEUES`).
    pub spare_queues: Vec<OutQueue>,
    /// Completed deferred answers' shared states beyond the one a connection
    /// keeps, for the next deferral on any connection (see `SPARE_SHARED`).
    pub spare_shared: Vec<Arc<DeferredShared>>,
    /// Deferred answers' buffers this worker is done with, given back to the
    /// mailbox's pool at its next take.
    pub spare_heads: Vec<Vec<u8>>,
    /// Requests answered after shutdown began.
    pub finished_while_draining: u64,
    /// The server's shutdown flag, which answers read when composed: the
    /// worker itself learns of shutdown only when it next polls.
    pub shutting_down: Arc<AtomicBool>,
}

//! A connection's deadline in the worker's coarse seconds: arming one is one
//! store, the worker sweeps them once a second (see `worker::clock`), and a
//! connection whose handler call is running has none (a deferred answer has
//! one: the answer timeout).

/// Which wait a connection's deadline bounds: the reason it expired, and for
/// `Answer` what expiring does (a 503 instead of a silent close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// No deadline: a handler is working on the request.
    None,
    /// Keep-alive: waiting for the first byte of the next request.
    Idle,
    /// The request head is arriving; not extended by each byte (slowloris).
    Head,
    /// The request body is arriving; extended on progress.
    Body,
    /// The client is not reading the response; extended on progress.
    Write,
    /// Closing: discarding what the client still sends after our last response.
    Linger,
    /// A deferred answer has not begun; expiring answers 503.
    Answer,
    /// An upgraded connection that asked to be told when it is quiet (a
    /// WebSocket, which pings): expiring tells it `QUIET`, not a close.
    Quiet,
    /// The client's FIN came while answers were pending
    /// (`client_fin_ends_request`): expiring lets go of those still pending.
    FinGrace,
}

/// A connection's deadline in coarse seconds (0 = none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub at: u32,
    pub wait: Wait,
}

impl Deadline {
    pub const NONE: Deadline = Deadline { at: 0, wait: Wait::None };

    pub fn expired(&self, now: u32) -> bool {
        self.at != 0 && self.at <= now
    }
}

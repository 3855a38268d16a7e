//! The coarse clock and per-connection deadlines, swept once a second per worker,
//! as Warp's timeout manager does: arming a deadline is one store, there is no OS
//! timer per connection, and a connection whose handler is running has none.

use std::time::{Duration, Instant};

/// Seconds since the worker started, starting at 1 so that 0 means "no deadline".
pub(crate) struct CoarseClock {
    start: Instant,
    now: u32,
}

impl CoarseClock {
    pub fn new() -> CoarseClock {
        CoarseClock { start: Instant::now(), now: 1 }
    }

    /// Moves the clock to `now`; returns true when a new second began.
    pub fn tick_at(&mut self, now: Instant) -> bool {
        let now = now.saturating_duration_since(self.start).as_secs() as u32 + 1;
        let changed = now != self.now;
        self.now = now;
        changed
    }

    pub fn now(&self) -> u32 {
        self.now
    }

    /// The deadline `d` from now (at least one whole second away, so a deadline
    /// is never shorter than asked).
    pub fn after(&self, d: Duration) -> u32 {
        self.now + d.as_secs().max(1) as u32 + 1
    }
}

/// Which wait a connection's deadline bounds; decides nothing but the reason.
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

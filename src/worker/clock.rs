//! The worker's coarse clock: whole seconds since the worker started, moved on
//! once per poll round and read by every deadline, as Warp's timeout manager
//! does. There is no OS timer per connection; connection deadlines
//! (`conn::deadline`) are swept against this clock once a second.

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

    /// The deadline for the instant `when`: the same whenever asked (so
    /// re-arming it does not move it), never before `when`.
    pub fn at(&self, when: Instant) -> u32 {
        let secs = u32::try_from(when.saturating_duration_since(self.start).as_secs()).unwrap_or(u32::MAX);
        secs.saturating_add(2)
    }

    /// The deadline `d` from now (at least one whole second away, so a deadline
    /// is never shorter than asked; one past the clock's range is its end,
    /// not a wrapped, early one: an application sets an upgraded
    /// connection's idle timeout to any length).
    pub fn after(&self, d: Duration) -> u32 {
        let secs = u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1);
        self.now.saturating_add(secs).saturating_add(1)
    }
}

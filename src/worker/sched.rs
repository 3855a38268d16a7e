//! `SCHED_BATCH` on a worker's thread while the settings ask for it
//! (`Config::sched_batch`).
//!
//! When answers come from other threads, the worker wakes an answering
//! thread (or a runtime's scheduler) and the answer wakes the worker; under
//! `SCHED_OTHER` a wake-up tends to preempt the thread running on that core,
//! so on a shared core requests and answers cross nearly one at a time. A
//! woken `SCHED_BATCH` thread waits for the running one to block, so each
//! side works through a batch first (the Haskell binding measured 0.05 context
//! switches per request instead of 0.8–0.9).
//!
//! Only a thread under plain `SCHED_OTHER` is moved, and the same thread puts
//! itself back when its worker ends (panic or not) or a reload turns the
//! setting off, unless something else changed its policy meanwhile: a thread
//! the embedder lends (an external worker) is left as it was found, and one
//! it put under another policy (real-time, idle, batch already) is never
//! touched. A failure (a seccomp filter refusing the call, say) is ignored:
//! the worker runs on as it was, and the first one per server is reported to
//! the error log.

use std::cell::Cell;

use super::shared::Shared;
use crate::config::settings::Settings;
use crate::observe::log::Level;
use crate::sys::sched::{policy, set_policy, BATCH, OTHER};

thread_local! {
    /// Whether a worker moved this thread to `SCHED_BATCH` (and owes the move back).
    static MOVED: Cell<bool> = const { Cell::new(false) };
}

/// Held while a worker runs on the calling thread: applies the current
/// setting now and puts the thread back when dropped.
pub(crate) struct ThreadPolicy<'a> {
    shared: &'a Shared,
}

impl<'a> ThreadPolicy<'a> {
    pub fn enter(shared: &'a Shared) -> ThreadPolicy<'a> {
        follow(&shared.current_settings().0, shared);
        ThreadPolicy { shared }
    }
}

impl Drop for ThreadPolicy<'_> {
    fn drop(&mut self) {
        if MOVED.get() {
            let result = restore();
            report(result, &self.shared.current_settings().0, self.shared);
        }
    }
}

/// Moves the calling worker thread to `SCHED_BATCH` or back, as `settings` say.
/// Cheap when nothing changes: called on every settings change.
pub(crate) fn follow(settings: &Settings, shared: &Shared) {
    let result = match (settings.sched_batch, MOVED.get()) {
        (true, false) => match policy() {
            Ok(OTHER) => set_policy(BATCH).map(|()| MOVED.set(true)),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        },
        (false, true) => restore(),
        _ => Ok(()),
    };
    report(result, settings, shared);
}

/// Puts a thread moved to `SCHED_BATCH` back to `SCHED_OTHER`, unless its
/// policy changed since (then whoever changed it owns it).
fn restore() -> std::io::Result<()> {
    MOVED.set(false);
    match policy()? {
        BATCH => set_policy(OTHER),
        _ => Ok(()),
    }
}

fn report(result: std::io::Result<()>, settings: &Settings, shared: &Shared) {
    if let Err(e) = result {
        if !shared.sched_error_reported.swap(true, std::sync::atomic::Ordering::Relaxed) {
            settings.log_error(
                Level::Warning,
                &format!(
                    "cannot change a worker thread's scheduling policy (SCHED_BATCH setting): {e}; \
                     the workers run on as they are (reported once)"
                ),
            );
        }
    }
}

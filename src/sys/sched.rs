//! The calling thread's scheduling policy (Linux `sched_getscheduler(2)`,
//! `sched_setscheduler(2)`). Linux keeps it per thread, and pid 0 names the
//! calling thread, so these never touch another thread. A thread created
//! afterwards inherits its creator's policy.

use std::io;

/// Linux's default time-sharing policy.
pub(crate) const OTHER: i32 = libc::SCHED_OTHER;
/// Time-sharing for non-interactive threads: a woken `SCHED_BATCH` thread
/// does not preempt the thread running, it waits for it to block or for the
/// next tick (and its nice value weighs as usual).
pub(crate) const BATCH: i32 = libc::SCHED_BATCH;

/// The calling thread's policy, with `SCHED_RESET_ON_FORK` ored in when set.
pub(crate) fn policy() -> io::Result<i32> {
    // SAFETY: sched_getscheduler takes no pointers; pid 0 is the calling thread.
    syscall!(sched_getscheduler(0))
}

/// Puts the calling thread under `policy`, `OTHER` or `BATCH` (whose only
/// priority is 0); its nice value is kept.
pub(crate) fn set_policy(policy: i32) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call, which
    // only reads it; pid 0 is the calling thread.
    syscall!(sched_setscheduler(0, policy, &param)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_thread_moves_and_its_new_threads_inherit() {
        let outside = policy().unwrap();
        let (moved, child) = std::thread::spawn(|| {
            set_policy(BATCH).unwrap();
            let child = std::thread::spawn(|| policy().unwrap()).join().unwrap();
            let moved = policy().unwrap();
            set_policy(OTHER).unwrap();
            assert_eq!(policy().unwrap(), OTHER);
            (moved, child)
        })
        .join()
        .unwrap();
        assert_eq!((moved, child), (BATCH, BATCH));
        assert_eq!(policy().unwrap(), outside, "the test's own thread is untouched");
    }
}

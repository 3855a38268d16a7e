//! An asymmetric memory fence (Linux `membarrier(2)`, as liburcu and Folly
//! use it): the frequent side of a handshake pays only a compiler fence, the
//! rare side a system call that puts a full barrier on every CPU running one
//! of this process's threads.
//!
//! The pairing: thread A stores X, calls `light()`, loads Y; thread B stores
//! Y, calls `heavy()`, loads X. Then A sees B's store or B sees A's, never
//! neither, as with a `SeqCst` fence on both sides. Where the kernel refuses
//! `membarrier` (before Linux 4.14, or under a seccomp filter), both sides
//! fall back to a `SeqCst` fence.

use std::sync::atomic::{compiler_fence, fence, AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const EXPEDITED: u8 = 1;
const FALLBACK: u8 = 2;

/// Whether the process is registered for expedited private membarriers.
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

// From <linux/membarrier.h>; the libc crate does not define them.
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Registers the process once (cheap after the first call). Call it before
/// the threads that use `light()` start, so they take the cheap path; a
/// thread that ran `light()` before still pairs correctly (it used a full fence).
pub(crate) fn register() -> bool {
    match STATE.load(Ordering::Acquire) {
        EXPEDITED => return true,
        FALLBACK => return false,
        _ => {}
    }
    // SAFETY: membarrier takes no pointers; registering only changes how the
    // kernel treats this process's later PRIVATE_EXPEDITED calls.
    let ok = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0 as libc::c_long, 0 as libc::c_long) } == 0;
    STATE.store(if ok { EXPEDITED } else { FALLBACK }, Ordering::Release);
    ok
}

/// The frequent side: a compiler fence when the heavy side can use
/// `membarrier`, else a full fence.
#[inline]
pub(crate) fn light() {
    if STATE.load(Ordering::Relaxed) == EXPEDITED {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The rare side: a full barrier on every CPU running one of this process's
/// threads (a system call and an interrupt to each), or a full fence.
pub(crate) fn heavy() {
    fence(Ordering::SeqCst);
    if register() {
        // SAFETY: as in `register`; the process is registered.
        // A registered process is not refused; callers bound what a failure
        // could cost anyway (see `warpcore_response::wait_for_call_end`).
        unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0 as libc::c_long, 0 as libc::c_long) };
    }
    fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    /// Dekker's handshake, round after round on two spinning threads that
    /// start each round together: with the fences paired, they never both
    /// miss each other's store. (With compiler fences only on both sides,
    /// x86's store buffer lets both miss within a few thousand rounds.)
    #[test]
    fn light_and_heavy_never_both_miss() {
        register();
        const ROUNDS: usize = 20_000;
        let (x, y, a_saw) = (AtomicBool::new(false), AtomicBool::new(false), AtomicBool::new(false));
        let (go, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut both_missed = 0;
        std::thread::scope(|s| {
            s.spawn(|| {
                for round in 1..=ROUNDS {
                    while go.load(Ordering::Acquire) != round {
                        std::hint::spin_loop();
                    }
                    x.store(true, Ordering::Relaxed);
                    light();
                    a_saw.store(y.load(Ordering::Relaxed), Ordering::Relaxed);
                    done.store(round, Ordering::Release);
                }
            });
            for round in 1..=ROUNDS {
                x.store(false, Ordering::Relaxed);
                y.store(false, Ordering::Relaxed);
                go.store(round, Ordering::Release);
                y.store(true, Ordering::Relaxed);
                heavy();
                let b_saw = x.load(Ordering::Relaxed);
                while done.load(Ordering::Acquire) != round {
                    std::hint::spin_loop();
                }
                if !b_saw && !a_saw.load(Ordering::Relaxed) {
                    both_missed += 1;
                }
            }
        });
        assert_eq!(both_missed, 0, "both sides missed the other's store");
    }
}

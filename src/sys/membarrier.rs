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

/// Whether the process is registered for expedited private membarriers. It
/// never leaves `EXPEDITED` once there: a `light()` that relied on it must
/// meet a `heavy()` that issues the barrier.
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

fn membarrier(cmd: libc::c_int) -> std::io::Result<libc::c_long> {
    // SAFETY: membarrier takes no pointers; the commands used only order
    // memory or register this process for that.
    syscall!(syscall(libc::SYS_membarrier, cmd as libc::c_long, 0 as libc::c_long, 0 as libc::c_long))
}

/// Registers the process, once (a load after the first call). `light()`
/// takes its cheap path only after this succeeded.
pub(crate) fn register() -> bool {
    match STATE.load(Ordering::Acquire) {
        EXPEDITED => return true,
        FALLBACK => return false,
        _ => {}
    }
    let ok = membarrier(libc::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED).is_ok();
    let new = if ok { EXPEDITED } else { FALLBACK };
    // A concurrent first call decides the same way; `EXPEDITED` wins.
    match STATE.compare_exchange(UNKNOWN, new, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => ok,
        Err(current) => current == EXPEDITED,
    }
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
    if register() {
        // The kernel refuses a registered process only when it cannot
        // allocate; a `light()` may then have run with a compiler fence only
        // and nothing here could make up for it, so, as on a failed
        // allocation, the process stops.
        if let Err(e) = membarrier(libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED) {
            eprintln!("libwarpcore: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after registration: {e}");
            std::process::abort();
        }
    } else {
        fence(Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    /// Spins until `counter` reaches `round`, yielding now and then so that a
    /// loaded machine's scheduler can run the other thread.
    fn wait_for(counter: &AtomicUsize, round: usize) {
        let mut spins = 0u32;
        while counter.load(Ordering::Acquire) != round {
            spins += 1;
            if spins % 1024 == 0 {
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
    }

    /// Dekker's handshake, round after round on two spinning threads that
    /// start each round together: with the fences paired, they never both
    /// miss each other's store. (With compiler fences only on both sides,
    /// x86's store buffer lets both miss within a few thousand rounds.)
    #[test]
    fn light_and_heavy_never_both_miss() {
        // Where the kernel refuses membarrier this tests the fallback fences.
        if !register() {
            eprintln!("membarrier unavailable: testing the SeqCst fallback");
        }
        const ROUNDS: usize = 20_000;
        let (x, y, a_saw) = (AtomicBool::new(false), AtomicBool::new(false), AtomicBool::new(false));
        let (go, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut both_missed = 0;
        std::thread::scope(|s| {
            s.spawn(|| {
                for round in 1..=ROUNDS {
                    wait_for(&go, round);
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
                wait_for(&done, round);
                if !b_saw && !a_saw.load(Ordering::Relaxed) {
                    both_missed += 1;
                }
            }
        });
        assert_eq!(both_missed, 0, "both sides missed the other's store");
    }
}

//! The scheduling policy of the embedder's own threads: `SCHED_BATCH` for the
//! threads that answer deferred requests, as `warpcore_config_set_sched_batch`
//! does for the workers.

use super::result::{fail, warpcore_result};
use crate::sys::sched::{set_policy, BATCH, OTHER};

symbol_versions!();

/// Moves the calling thread to Linux's `SCHED_BATCH` scheduling policy (`on`
/// true) or to `SCHED_OTHER`, the default policy (`on` false), whatever
/// policy it had before (a real-time one included); its nice value is kept.
/// Only the calling thread changes, but threads it creates afterwards inherit
/// its policy.
///
/// Meant for the threads of a pool that answers deferred requests, with
/// `warpcore_config_set_sched_batch` on for the workers: a woken
/// `SCHED_BATCH` thread does not preempt the thread running, so requests and
/// answers cross between a worker and the pool in batches rather than one
/// context switch each (see `warpcore_config_set_sched_batch`). The library
/// never undoes it: call it with false before the thread goes back to other
/// work, or let the thread end.
///
/// May be called from any thread, at any time, without a server. Returns
/// `WARPCORE_RESULT_IO_ERROR` when the system refuses (a seccomp filter, say;
/// `warpcore_last_error_message` says why), with the policy unchanged.
#[no_mangle]
pub extern "C" fn warpcore_thread_set_sched_batch(on: bool) -> warpcore_result {
    ffi_boundary!({
        let (policy, name) = if on { (BATCH, "SCHED_BATCH") } else { (OTHER, "SCHED_OTHER") };
        match set_policy(policy) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => fail(warpcore_result::IoError, format!("cannot move the thread to {name}: {e}")),
        }
    })
}

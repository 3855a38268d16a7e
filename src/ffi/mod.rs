//! The C API. The only place with `extern "C"`, raw pointers and `catch_unwind`:
//! every function checks its pointers, turns errors into `warpcore_result` codes
//! (with a message readable through `warpcore_last_error_message`) and never lets
//! a panic cross the boundary.
//!
//! One concept per file, as in the header: results, config, server, request,
//! response, files, version, the scheduling policy of the embedder's threads
//! (`sched.rs`); `panic.rs`, `cast.rs`, `handles.rs` (where response handles
//! live), `sized.rs` (structs the caller allocates, which carry their size)
//! and `thread.rs` hold the plumbing.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]
// The C functions take raw pointers by design and check them (NULL, lengths)
// before use; `unsafe fn` would change nothing for C callers and hide where
// the real `unsafe` blocks (each with its SAFETY line) are.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

/// Gives the exported functions of the file it is used in their symbol
/// versions: the `.symver` lines build.rs wrote for the file from
/// abi/libwarpcore.map (empty where there are no symbol versions). In each
/// file with `extern "C"` functions, so that each line is assembled in the
/// object that defines its function.
macro_rules! symbol_versions {
    () => {
        #[cfg(all(
            warpcore_symbol_versions,
            any(
                target_arch = "x86_64",
                target_arch = "aarch64",
                target_arch = "x86",
                target_arch = "arm",
                target_arch = "riscv64"
            )
        ))]
        ::std::arch::global_asm!(include_str!(concat!(env!("OUT_DIR"), "/symver/", file!(), ".s")));
    };
}

#[macro_use]
mod panic;
#[macro_use]
mod sized;
pub mod body;
mod cast;
pub mod config;
pub mod file;
pub mod handler;
mod handles;
pub mod hooks;
pub mod listener;
pub mod log;
pub mod prepared;
pub mod proxy_protocol;
pub mod request;
pub mod response;
pub mod result;
pub mod sched;
pub mod server;
mod thread;
pub mod tls;
pub mod upgrade;
pub mod version;
pub mod websocket;

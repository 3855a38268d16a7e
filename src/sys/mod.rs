//! The operating-system layer: thin wrappers over the Linux calls that the
//! socket, file and handle machinery needs, one per submodule. The only
//! `unsafe` outside `src/ffi/` lives under this directory, each block with its
//! `// SAFETY:` line.

/// Calls a libc function and turns a `-1` return into the thread's `errno`.
/// The call site states why the call is sound with a `// SAFETY:` line.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub(crate) mod epoll;
pub(crate) mod fs;
pub(crate) mod inherited;
pub(crate) mod inotify;
pub(crate) mod ktls;
pub(crate) mod membarrier;
pub(crate) mod sched;
pub(crate) mod sendfile;
pub(crate) mod socket_io;

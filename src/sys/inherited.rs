//! Descriptors handed in by number (`fd://N`, systemd's `LISTEN_FDS`): looked
//! at without being taken, then taken once the server owns them.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Runs `f` on descriptor `fd` borrowed, if it is open (`EBADF` otherwise).
pub(crate) fn inspect<R>(fd: RawFd, f: impl FnOnce(BorrowedFd<'_>) -> R) -> io::Result<R> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; any number is safe to ask about.
    syscall!(fcntl(fd, libc::F_GETFD))?;
    // SAFETY: `fd` is open (just checked) and nothing here closes it while
    // `f` runs: the embedder handed it to the server, which only looks.
    Ok(f(unsafe { BorrowedFd::borrow_raw(fd) }))
}

/// Takes ownership of descriptor `fd`, which the embedder handed to the
/// server (its documentation says the server closes it).
pub(crate) fn adopt(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: as in `inspect`.
    syscall!(fcntl(fd, libc::F_GETFD))?;
    // SAFETY: `fd` is open, and the embedder gave it to the server: nothing
    // else closes it, so the server may own it from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

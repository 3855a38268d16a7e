//! `sendfile(2)` from a file to a socket (the head before it goes with
//! `MSG_MORE`, see `socket_io::send`, so both leave in one packet).
//!
//! Unlike `send`, `sendfile` takes no `MSG_NOSIGNAL`: writing to a connection the
//! peer has reset raises `SIGPIPE`, which kills a C program with the default
//! disposition. So the first `sendfile` on a thread blocks `SIGPIPE` for that
//! thread (the signal is thread-directed, so no other thread is affected), and a
//! `SIGPIPE` left pending by an `EPIPE` is consumed at once.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The most one `sendfile` call moves (Linux caps a call at this anyway).
const MAX_CHUNK: usize = 0x7fff_f000;

/// Sends up to `count` bytes of `file` from `*offset` to `socket`, advancing
/// `*offset` by what was sent. `Ok(0)` with `count > 0` means the file ends
/// before `*offset + count` (it shrank).
pub(crate) fn sendfile(
    socket: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    block_sigpipe_once();
    let mut off = *offset as libc::off_t;
    // SAFETY: both descriptors are live for the call and `off` is a valid
    // `off_t` the kernel updates.
    let res = syscall!(sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut off, count.min(MAX_CHUNK)));
    match res {
        Ok(n) => {
            *offset = off as u64;
            Ok(n as usize)
        }
        Err(e) => {
            if e.raw_os_error() == Some(libc::EPIPE) {
                consume_sigpipe();
            }
            Err(e)
        }
    }
}

thread_local! {
    static SIGPIPE_BLOCKED: Cell<bool> = const { Cell::new(false) };
}

fn sigpipe_set() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given; sigaddset then adds a
    // valid signal number to the initialised set.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        set.assume_init()
    }
}

fn block_sigpipe_once() {
    SIGPIPE_BLOCKED.with(|blocked| {
        if !blocked.get() {
            let set = sigpipe_set();
            // SAFETY: `set` is an initialised signal set; the old mask is not wanted.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
            blocked.set(true);
        }
    });
}

fn consume_sigpipe() {
    let set = sigpipe_set();
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `set` and `zero` are valid for the call; no siginfo is wanted.
    // With a zero timeout the call never waits (EAGAIN when nothing is pending).
    let _ = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::socket_io::send;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    #[test]
    fn sends_a_file_range_after_a_corked_head() {
        let path = std::env::temp_dir().join(format!("warpcore-sendfile-{}", std::process::id()));
        std::fs::File::create(&path).unwrap().write_all(b"0123456789").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();

        assert_eq!(send(server.as_fd(), b"head:", true).unwrap(), 5);
        let mut offset = 2;
        assert_eq!(sendfile(server.as_fd(), file.as_fd(), &mut offset, 5).unwrap(), 5);
        assert_eq!(offset, 7);
        // Past the end: 0 bytes, the file "shrank".
        let mut end = 10;
        assert_eq!(sendfile(server.as_fd(), file.as_fd(), &mut end, 5).unwrap(), 0);
        drop(server);
        let mut got = Vec::new();
        (&client).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"head:23456");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_reset_peer_gives_epipe_not_a_signal() {
        let path = std::env::temp_dir().join(format!("warpcore-sendfile-pipe-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        // Unread data on close makes the client's kernel answer with a reset.
        assert_eq!(send(server.as_fd(), b"x", false).unwrap(), 1);
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut saw_error = false;
        for _ in 0..100 {
            let mut offset = 0;
            match sendfile(server.as_fd(), file.as_fd(), &mut offset, 1 << 20) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(_) => {
                    saw_error = true;
                    break;
                }
                Ok(_) => {}
            }
        }
        // Still alive: the SIGPIPE (if any) was blocked and consumed.
        assert!(saw_error);
        std::fs::remove_file(&path).unwrap();
    }
}

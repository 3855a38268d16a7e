//! Reading and writing a connected socket with the bare system call.
//!
//! glibc's `recv`, `send` and `writev` are cancellation points: in a process
//! with more than one thread each call switches asynchronous cancellation on
//! and off around the system call (~65 instructions per request for a
//! `recv` + `send` pair, a fifth of the engine's own cost on a plaintext
//! request). The engine never cancels threads, so it calls the kernel through
//! `syscall(2)`, which does only the call (every argument passed as a `long`,
//! as that variadic function reads them). std's and mio's layers over the
//! socket go too: they add nothing the engine uses.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Turns a raw system-call return into bytes done or the thread's `errno`.
fn done(res: libc::c_long) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(res as usize)
    }
}

/// `recv(2)` into `buf`; `Ok(0)` is the end of the stream.
pub(crate) fn recv(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call, the
    // descriptor is live, and a null address with a null length is allowed.
    done(unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            socket.as_raw_fd() as libc::c_long,
            buf.as_mut_ptr(),
            buf.len(),
            0 as libc::c_long,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    })
}

/// `send(2)` of `buf` without raising `SIGPIPE`; with `more`, the kernel holds
/// a partial packet back for the data that follows (`MSG_MORE`: a head waits
/// for the first bytes of its file).
pub(crate) fn send(socket: BorrowedFd<'_>, buf: &[u8], more: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the call, the
    // descriptor is live, and a null destination with length 0 is allowed.
    done(unsafe {
        libc::syscall(
            libc::SYS_sendto,
            socket.as_raw_fd() as libc::c_long,
            buf.as_ptr(),
            buf.len(),
            flags as libc::c_long,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::c_long,
        )
    })
}

/// `sendmsg(2)` of several buffers in order, without raising `SIGPIPE` (what
/// `writev` does, minus the signal).
pub(crate) fn send_vectored(socket: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: zero is a valid `msghdr` (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec` on Unix (std guarantees it).
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: `msg` points at `msg_iovlen` valid iovecs, each valid for reads
    // for the call; the descriptor is live.
    done(unsafe {
        libc::syscall(
            libc::SYS_sendmsg,
            socket.as_raw_fd() as libc::c_long,
            &msg as *const libc::msghdr,
            libc::MSG_NOSIGNAL as libc::c_long,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn vectored_and_plain_sends_arrive_in_order_and_recv_reads_them() {
        let (mut client, server) = pair();
        let parts = [IoSlice::new(b"HTTP/1.1 "), IoSlice::new(b""), IoSlice::new(b"200 OK")];
        assert_eq!(send_vectored(server.as_fd(), &parts).unwrap(), 15);
        assert_eq!(send(server.as_fd(), b"\r\n", false).unwrap(), 2);
        server.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n");

        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        drop(client);
        let mut buf = [0u8; 64];
        let mut read = Vec::new();
        loop {
            match recv(server.as_fd(), &mut buf).unwrap() {
                0 => break,
                n => read.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(read, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn errors_come_back_as_the_os_error() {
        let (client, server) = pair();
        server.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(recv(server.as_fd(), &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // A reset peer: sending fails with EPIPE or ECONNRESET, and no signal.
        socket2::SockRef::from(&client).set_linger(Some(std::time::Duration::ZERO)).unwrap();
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut failed = None;
        for _ in 0..10 {
            if let Err(e) = send_vectored(server.as_fd(), &[IoSlice::new(b"x"), IoSlice::new(b"y")]) {
                failed = Some(e);
                break;
            }
        }
        let code = failed.expect("sending to a reset peer fails").raw_os_error();
        assert!(matches!(code, Some(libc::EPIPE) | Some(libc::ECONNRESET)), "{code:?}");
    }
}

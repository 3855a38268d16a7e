//! A connected socket, TCP or Unix: one type for both, so that the connection
//! code and every read and write stay the same (they go through the bare
//! descriptor, see `sys::socket_io`) and cost nothing more for it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use socket2::Socket;

use super::peer::Peer;

/// A connection's socket, non-blocking and close-on-exec.
pub(crate) struct Stream(Socket);

impl Stream {
    /// Half-closes (or closes) the socket.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.0.shutdown(how)
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Source for Stream {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).deregister(registry)
    }
}

/// Accepts one connection from `listener` (non-blocking, close-on-exec, in
/// one `accept4`); `tcp` turns Nagle's algorithm off on it, which only TCP has.
pub(crate) fn accept(listener: &Socket, tcp: bool) -> io::Result<(Stream, Peer)> {
    let (socket, addr) = listener.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    if tcp {
        let _ = socket.set_nodelay(true);
    }
    let peer = addr.as_socket().map_or(Peer::Unix, Peer::Ip);
    Ok((Stream(socket), peer))
}

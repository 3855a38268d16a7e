//! A connected socket, TCP or Unix, plain or TLS: one type for all, so that
//! the connection code and every read and write stay the same. Plain reads
//! and writes go through the bare descriptor (see `sys::socket_io`) and cost
//! one branch more for TLS being possible; a TLS stream's go through its
//! session (see `tls::session`).

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use socket2::Socket;

use super::peer::Peer;
use crate::sys::{sendfile, socket_io};
use crate::tls::acceptor::Acceptor;
use crate::tls::info::TlsInfo;
use crate::tls::session::{TlsEvent, TlsStream};

/// A connection's socket, non-blocking and close-on-exec.
pub(crate) struct Stream {
    socket: Socket,
    tls: Option<Box<TlsStream>>,
}

impl Stream {
    /// Makes the connection a TLS server's: its first bytes are the client's hello.
    pub fn start_tls(&mut self, acceptor: &Arc<Acceptor>) -> Result<(), rustls::Error> {
        self.tls = Some(Box::new(TlsStream::new(acceptor)?));
        Ok(())
    }

    /// After a reload replaced the listener's TLS (`now`, where `was` was):
    /// a session that has read nothing yet begins again under `now`, so that
    /// connections opened before the reload and silent since handshake under
    /// its rules; one part-way through its handshake finishes under the old
    /// rules when they name the same clients, else it must close (false).
    /// Sessions of other acceptors, and handshakes done, are left alone.
    pub fn follow_tls(&mut self, was: &Arc<Acceptor>, now: &Arc<Acceptor>) -> bool {
        let Some(tls) = &self.tls else { return true };
        if !Arc::ptr_eq(tls.acceptor(), was) || Arc::ptr_eq(was, now) || !tls.handshaking() {
            return true;
        }
        if tls.untouched() {
            return self.start_tls(now).is_ok();
        }
        was.same_rules(now)
    }

    /// What the TLS handshake negotiated, once it has completed; None for a
    /// plain connection.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref().and_then(|t| t.info())
    }

    /// Whether a TLS handshake is under way.
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.handshaking())
    }

    /// Whether TLS records wait for the socket with no output queued above
    /// them (handshake messages, alerts): the connection polls for writing.
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Whether a TLS stream saw the client's end of stream ahead of what
    /// the last read returned: a short read then does not mean the socket
    /// is empty, and the next read returns the end without a new readiness.
    pub fn end_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.end_pending())
    }

    /// Whether a TLS stream ended without the client's `close_notify`: the
    /// end of the socket may have been an attacker's cut, not the client's end.
    pub fn truncated(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.truncated())
    }

    /// Queues a TLS stream's `close_notify` (once) and sends it: true once
    /// it has left (always for a plain stream); false while the socket is
    /// full (`wants_write` says so, and `flush_tls` sends it).
    pub fn close_notify(&self) -> io::Result<bool> {
        match &self.tls {
            None => Ok(true),
            Some(tls) => tls.close_notify(self.socket.as_fd()),
        }
    }

    /// What the TLS session has to report (handshake done or failed).
    pub fn tls_event(&self) -> Option<TlsEvent> {
        self.tls.as_ref().and_then(|t| t.take_event())
    }

    /// Reads into `buf`; `Ok(0)` is the end of the stream.
    #[inline]
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            None => socket_io::recv(self.socket.as_fd(), buf),
            Some(tls) => tls.recv(self.socket.as_fd(), buf),
        }
    }

    /// Sends `buf` (see `socket_io::send` for `more`).
    #[inline]
    pub fn send(&self, buf: &[u8], more: bool) -> io::Result<usize> {
        match &self.tls {
            None => socket_io::send(self.socket.as_fd(), buf, more),
            Some(tls) => tls.send(self.socket.as_fd(), buf, more),
        }
    }

    /// Sends several buffers in order.
    #[inline]
    pub fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.tls {
            None => socket_io::send_vectored(self.socket.as_fd(), bufs),
            Some(tls) => tls.send_vectored(self.socket.as_fd(), bufs),
        }
    }

    /// Sends up to `count` bytes of `file` from `*offset`, advancing it
    /// (see `sys::sendfile`).
    pub fn sendfile(&self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
        match &self.tls {
            None => sendfile::sendfile(self.socket.as_fd(), file.as_fd(), offset, count),
            Some(tls) => tls.sendfile(self.socket.as_fd(), file, offset, count),
        }
    }

    /// Sends the TLS records waiting (see `wants_write`): true when none is left.
    pub fn flush_tls(&self) -> io::Result<bool> {
        match &self.tls {
            None => Ok(true),
            Some(tls) => tls.flush(self.socket.as_fd()),
        }
    }

    /// Half-closes (or closes) the socket; a TLS stream tells the client
    /// first (`close_notify`) when it stops writing, if the socket takes it
    /// now (callers that can wait send it first with `close_notify`).
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        if let (Some(tls), std::net::Shutdown::Write | std::net::Shutdown::Both) = (&self.tls, how) {
            let _ = tls.close_notify(self.socket.as_fd());
        }
        self.socket.shutdown(how)
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Source for Stream {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        SourceFd(&self.socket.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        SourceFd(&self.socket.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.socket.as_raw_fd()).deregister(registry)
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
    Ok((Stream { socket, tls: None }, peer))
}

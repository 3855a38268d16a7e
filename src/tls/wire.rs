//! The session as the socket sees it: who encrypts (`Mode`), how the peer
//! ended its side (`PeerEnd`), and rustls' records written to the socket.

use std::io::{self, IoSlice, Write};
use std::os::fd::BorrowedFd;

use rustls::server::ServerConnection;

use crate::sys::socket_io;

pub(super) enum Mode {
    /// rustls encrypts and decrypts.
    User(Box<ServerConnection>),
    /// The kernel does (kTLS): the socket is used as a plain one.
    Kernel,
    /// Failed: every call is an error.
    Failed,
}

/// How the client ended its side of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerEnd {
    /// With `close_notify`: the end of the stream.
    Clean,
    /// The socket's end without `close_notify`: the stream may have been
    /// cut (an attacker can end a TCP stream; only the alert is authenticated).
    Truncated,
    /// A fatal alert (its description), read under kernel TLS.
    Alert(u8),
    /// A record kernel TLS does not take (its type): a handshake message.
    Unexpected(u8),
}

impl PeerEnd {
    /// What a read returns once the stream ended so.
    pub(super) fn result(self) -> io::Result<usize> {
        match self {
            PeerEnd::Clean | PeerEnd::Truncated => Ok(0),
            PeerEnd::Alert(d) => {
                Err(io::Error::new(io::ErrorKind::ConnectionAborted, format!("the client sent the TLS alert {d}")))
            }
            PeerEnd::Unexpected(kind) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a TLS record of type {kind} after the handshake (a key update?), which kernel TLS does not take"
                ),
            )),
        }
    }
}

/// Writes the session's records until none is left (true) or the socket is full.
pub(super) fn flush(conn: &mut ServerConnection, socket: BorrowedFd<'_>) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(&mut SocketWriter(socket)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The socket as rustls writes it.
struct SocketWriter<'a>(BorrowedFd<'a>);

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        socket_io::send(self.0, buf, false)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        socket_io::send_vectored(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

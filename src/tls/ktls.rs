//! Moving a session into the kernel (kTLS) after its handshake: rustls
//! hands over the record keys and sequence numbers, the kernel encrypts what
//! is sent and decrypts what is read, and the connection uses its socket as
//! a plain one — `sendfile` included, so files leave without a copy through
//! the process.
//!
//! Conditions: the kernel has the `tls` module (probed once per process);
//! the handshake's last record was the last read (socket reads were cut at
//! record boundaries while handshaking, see `session`); rustls holds no
//! record to send and no decrypted byte. Otherwise the session stays in
//! rustls, which is always correct, only slower for files.
//!
//! What the kernel cannot do here: a TLS 1.3 key update from the client (rare:
//! clients send one after very long transfers) ends the connection, as does
//! any handshake message after the handshake. Alerts are read with their
//! record type: `close_notify` is the end of the stream.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::OnceLock;

use rustls::ConnectionTrafficSecrets;

use super::session::{flush, Mode};
use crate::sys::ktls::{self, Direction, RecordKeys, APPLICATION_DATA};

const ALERT: u8 = 21;
const CLOSE_NOTIFY: u8 = 0;

/// Whether this kernel has TLS: the `tls` upper-layer protocol attaches to a
/// connected loopback socket (loading the module if it can). Asked once.
pub(crate) fn supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let probe = || -> io::Result<()> {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let _client = std::net::TcpStream::connect(listener.local_addr()?)?;
            let (server, _) = listener.accept()?;
            ktls::attach(server.as_fd())
        };
        probe().is_ok()
    })
}

/// Moves the session in `mode` into the kernel: true when it moved; false
/// when it stays in rustls (it has records or bytes left, or the kernel has
/// no TLS); an error when the move failed halfway (the session is lost and
/// the connection must close).
pub(super) fn take_over(mode: &mut Mode, socket: BorrowedFd<'_>) -> io::Result<bool> {
    let Mode::User(conn) = mode else { return Ok(false) };
    // The tickets of TLS 1.3 are queued now: they go first, whole.
    if !flush(conn, socket)? || conn.process_new_packets().map_or(true, |s| s.plaintext_bytes_to_read() > 0) {
        return Ok(false);
    }
    let Some(version) = conn.protocol_version().map(u16::from) else { return Ok(false) };
    if ktls::attach(socket).is_err() {
        return Ok(false);
    }
    let Mode::User(conn) = std::mem::replace(mode, Mode::Failed) else { return Ok(false) };
    let secrets = conn.dangerous_extract_secrets().map_err(|e| io::Error::other(e.to_string()))?;
    let (tx_seq, tx) = &secrets.tx;
    let (rx_seq, rx) = &secrets.rx;
    ktls::set_keys(socket, Direction::Transmit, version, *tx_seq, &keys(tx)?)?;
    ktls::set_keys(socket, Direction::Receive, version, *rx_seq, &keys(rx)?)?;
    *mode = Mode::Kernel;
    Ok(true)
}

fn keys(secrets: &ConnectionTrafficSecrets) -> io::Result<RecordKeys<'_>> {
    Ok(match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => RecordKeys::Aes128Gcm { key: key.as_ref(), iv: iv.as_ref() },
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => RecordKeys::Aes256Gcm { key: key.as_ref(), iv: iv.as_ref() },
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            RecordKeys::Chacha20Poly1305 { key: key.as_ref(), iv: iv.as_ref() }
        }
        _ => return Err(io::Error::other("a cipher the kernel does not take")),
    })
}

/// Reads decrypted application data from a kernel TLS socket. A record of
/// another type comes alone (the kernel never joins types in one read):
/// `close_notify` is the end of the stream, anything else an error.
///
/// A read that stops short because the next record is of another type looks
/// like an empty socket; that record is read with the next readiness (the
/// client's FIN after its `close_notify`, or its next bytes).
pub(super) fn recv(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    match ktls::recv_record(socket, buf)? {
        (n, APPLICATION_DATA) => Ok(n),
        (0, _) => Ok(0),
        (n, ALERT) if n < 2 || buf[1] == CLOSE_NOTIFY => Ok(0),
        (_, ALERT) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the client sent a TLS alert")),
        (_, kind) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a TLS record of type {kind} after the handshake (a key update?), which kernel TLS does not take"),
        )),
    }
}

/// Sends `close_notify` through the kernel, if the socket takes it now.
pub(super) fn close_notify(socket: BorrowedFd<'_>) {
    let _ = ktls::send_record(socket, ALERT, &[1, CLOSE_NOTIFY]);
}

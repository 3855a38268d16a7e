//! One connection's TLS: a rustls `ServerConnection` driven without blocking
//! over the connection's socket, behind the same calls a plain socket
//! answers (`recv`, `send`, `send_vectored`, `sendfile`), so that the
//! connection code above is the same for both.
//!
//! Reading decrypts as much as the caller's buffer takes, and returns short
//! only once the socket is empty (or at its end): a short read still means
//! what it means on a plain socket, so edge-triggered polling holds.
//!
//! Writing: bytes the session took are reported written only once their
//! records have all left. When the socket takes only part of them, the call
//! says `WouldBlock` and remembers how many it took (`owed`); the caller,
//! which keeps unsent bytes queued in order, presents the same bytes again
//! when the socket is writable, and those are then reported without being
//! encrypted twice. So a connection with records still to send always has
//! output queued (the worker polls for writability), and rustls never holds
//! more than one call's records: memory per connection stays bounded.
//!
//! After the handshake, the session moves into the kernel (kTLS) where it can
//! (see `ktls`): then every call is the plain socket's, and files leave by
//! `sendfile` without passing through the process. Otherwise a file's bytes
//! are read (one copy) and encrypted here.

use std::cell::{OnceCell, RefCell};
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;

use rustls::server::ServerConnection;

use super::acceptor::Acceptor;
use super::info::TlsInfo;
use super::ktls;
use crate::sys::socket_io;

/// Most bytes of records a session buffers (rustls's own default): one
/// `send` encrypts at most this much.
const BUFFER_LIMIT: usize = 64 * 1024;
/// How much of a file one call reads and encrypts when the kernel cannot.
const FILE_CHUNK: usize = 64 * 1024;

/// What the worker learns from a session (counted, logged).
#[derive(Debug)]
pub(crate) enum TlsEvent {
    /// The handshake completed; `kernel`: the kernel now does the records.
    Completed { kernel: bool },
    /// The session failed; `handshake`: before its handshake completed.
    Failed { handshake: bool, reason: String },
}

/// A connection's TLS: the session, and what its handshake negotiated.
pub(crate) struct TlsStream {
    session: RefCell<Session>,
    info: OnceCell<TlsInfo>,
}

pub(super) enum Mode {
    /// rustls encrypts and decrypts.
    User(Box<ServerConnection>),
    /// The kernel does (kTLS): the socket is used as a plain one.
    Kernel,
    /// Failed: every call is an error.
    Failed,
}

struct Session {
    mode: Mode,
    /// Bytes taken and encrypted whose records have not all left (see the
    /// module's documentation).
    owed: usize,
    /// Cuts socket reads at record boundaries while handshaking, so that no
    /// record after the handshake's last is read ahead of the kernel.
    cut: Option<RecordCut>,
    event: Option<TlsEvent>,
    /// Bytes read from the socket while handshaking (see `MAX_HANDSHAKE_BYTES`).
    handshake_read: usize,
}

/// The most bytes a client may send while handshaking. rustls gathers a
/// handshake message of up to 64 KiB before it looks at it, so a client
/// that promises a huge ClientHello and never finishes would hold 64 KiB
/// for the header timeout: past this, the handshake fails. A ClientHello
/// is a few KiB (post-quantum key shares included), and a client's
/// certificate chain for client authentication rarely more than 8.
pub(crate) const MAX_HANDSHAKE_BYTES: usize = 24 * 1024;

impl TlsStream {
    /// A session that begins with the client's hello.
    pub fn new(acceptor: &Acceptor) -> Result<TlsStream, rustls::Error> {
        let mut conn = ServerConnection::new(acceptor.config.clone())?;
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        let cut = (acceptor.ktls && ktls::supported()).then(RecordCut::default);
        Ok(TlsStream {
            session: RefCell::new(Session {
                mode: Mode::User(Box::new(conn)),
                owed: 0,
                cut,
                event: None,
                handshake_read: 0,
            }),
            info: OnceCell::new(),
        })
    }

    /// What the handshake negotiated, once it has completed.
    pub fn info(&self) -> Option<&TlsInfo> {
        self.info.get()
    }

    /// Whether the handshake is still under way.
    pub fn handshaking(&self) -> bool {
        matches!(&self.session.borrow().mode, Mode::User(c) if c.is_handshaking())
    }

    /// Whether records wait for the socket (handshake messages, alerts) with
    /// nothing queued above that would flush them.
    pub fn wants_write(&self) -> bool {
        matches!(&self.session.borrow().mode, Mode::User(c) if c.wants_write())
    }

    /// The next thing the worker should count or log.
    pub fn take_event(&self) -> Option<TlsEvent> {
        self.session.borrow_mut().event.take()
    }

    /// Reads decrypted bytes into `buf` (see the module's documentation).
    pub fn recv(&self, socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
        self.session.borrow_mut().recv(socket, buf, &self.info)
    }

    /// Sends `bytes`: how many the session took and sent (see the module's
    /// documentation); `more` is passed on under kernel TLS.
    pub fn send(&self, socket: BorrowedFd<'_>, bytes: &[u8], more: bool) -> io::Result<usize> {
        let mut s = self.session.borrow_mut();
        if let Mode::Kernel = s.mode {
            return socket_io::send(socket, bytes, more);
        }
        s.write_with(socket, bytes.len(), |conn| conn.writer().write(bytes))
    }

    /// `send` of several buffers in order.
    pub fn send_vectored(&self, socket: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut s = self.session.borrow_mut();
        if let Mode::Kernel = s.mode {
            return socket_io::send_vectored(socket, bufs);
        }
        let total = bufs.iter().map(|b| b.len()).sum();
        s.write_with(socket, total, |conn| conn.writer().write_vectored(bufs))
    }

    /// Sends up to `count` bytes of `file` from `*offset`, advancing it:
    /// `sendfile` under kernel TLS, else read and encrypted here. `Ok(0)`
    /// means the file ends before (it shrank).
    pub fn sendfile(&self, socket: BorrowedFd<'_>, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
        use std::os::fd::AsFd;
        let mut s = self.session.borrow_mut();
        if let Mode::Kernel = s.mode {
            return crate::sys::sendfile::sendfile(socket, file.as_fd(), offset, count);
        }
        let at = *offset;
        let n = s.write_with(socket, count, |conn| {
            CHUNK.with_borrow_mut(|chunk| {
                let want = count.min(FILE_CHUNK);
                chunk.resize(want, 0);
                let got = file.read_at(&mut chunk[..want], at)?;
                if got == 0 {
                    return Ok(0);
                }
                conn.writer().write(&chunk[..got])
            })
        });
        if let Ok(n) = n {
            *offset += n as u64;
        }
        n
    }

    /// Sends the records waiting (handshake messages, alerts): true when none is left.
    pub fn flush(&self, socket: BorrowedFd<'_>) -> io::Result<bool> {
        match &mut self.session.borrow_mut().mode {
            Mode::User(conn) => flush(conn, socket),
            _ => Ok(true),
        }
    }

    /// Tells the client that nothing more comes (`close_notify`), if the
    /// socket takes it now; before a half-close or close.
    pub fn close_notify(&self, socket: BorrowedFd<'_>) {
        let mut s = self.session.borrow_mut();
        match &mut s.mode {
            Mode::User(conn) if !conn.is_handshaking() => {
                conn.send_close_notify();
                let _ = flush(conn, socket);
            }
            Mode::Kernel => ktls::close_notify(socket),
            _ => {}
        }
    }
}

thread_local! {
    /// A file's bytes on their way to encryption, one buffer per thread.
    static CHUNK: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Session {
    fn recv(&mut self, socket: BorrowedFd<'_>, buf: &mut [u8], info: &OnceCell<TlsInfo>) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            let conn = match &mut self.mode {
                // Reached only with nothing read yet in this call: the move
                // happens right after the handshake, before any data.
                Mode::Kernel => return ktls::recv(socket, &mut buf[filled..]).map(|n| filled + n),
                Mode::Failed => return Err(io::ErrorKind::ConnectionAborted.into()),
                Mode::User(conn) => conn,
            };
            match take_plaintext(conn, &mut buf[filled..])? {
                Taken::Bytes(n) => filled += n,
                Taken::End => return Ok(filled),
                Taken::Nothing => {}
            }
            if filled == buf.len() {
                return Ok(filled);
            }
            let handshaking = conn.is_handshaking();
            if handshaking && self.handshake_read >= MAX_HANDSHAKE_BYTES {
                let reason = format!("the client sent over {MAX_HANDSHAKE_BYTES} bytes while handshaking");
                self.event = Some(TlsEvent::Failed { handshake: true, reason: reason.clone() });
                self.mode = Mode::Failed;
                return Err(io::Error::new(io::ErrorKind::InvalidData, reason));
            }
            let mut reader = SocketReader { socket, cut: self.cut.as_mut(), short: false };
            match conn.read_tls(&mut reader) {
                Ok(n) => {
                    if handshaking {
                        self.handshake_read += n;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => return Ok(filled),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let short = reader.short;
            let was_handshaking = conn.is_handshaking();
            if let Err(e) = conn.process_new_packets() {
                // rustls queued an alert that says why: sent if the socket takes it.
                let _ = flush(conn, socket);
                self.event = Some(TlsEvent::Failed { handshake: was_handshaking, reason: e.to_string() });
                self.mode = Mode::Failed;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Handshake messages, tickets, alerts: what the socket does not
            // take now goes when it is writable (`wants_write`).
            flush(conn, socket)?;
            if was_handshaking && !conn.is_handshaking() {
                self.handshake_done(socket, info)?;
                continue;
            }
            if short {
                // The socket is empty: what it gave is returned now, without
                // a read that would only say so (a short return says it).
                match take_plaintext(conn, &mut buf[filled..])? {
                    Taken::Bytes(n) => filled += n,
                    Taken::End => return Ok(filled),
                    Taken::Nothing => {}
                }
                if filled > 0 {
                    return Ok(filled);
                }
            }
        }
    }

    /// Records what the handshake negotiated and moves the session into the
    /// kernel where it can.
    fn handshake_done(&mut self, socket: BorrowedFd<'_>, info: &OnceCell<TlsInfo>) -> io::Result<()> {
        let Mode::User(conn) = &self.mode else { return Ok(()) };
        let mut negotiated = TlsInfo::of(conn);
        let kernel = match self.cut.take() {
            Some(_) => match ktls::take_over(&mut self.mode, socket) {
                Ok(moved) => moved,
                Err(e) => {
                    self.event = Some(TlsEvent::Failed { handshake: false, reason: format!("kernel TLS: {e}") });
                    return Err(e);
                }
            },
            None => false,
        };
        negotiated.kernel = kernel;
        let _ = info.set(negotiated);
        self.event = Some(TlsEvent::Completed { kernel });
        Ok(())
    }

    /// Writes through rustls: `encrypt` gives the session at most `len`
    /// bytes; see the module's documentation for `owed`.
    fn write_with(
        &mut self,
        socket: BorrowedFd<'_>,
        len: usize,
        encrypt: impl FnOnce(&mut ServerConnection) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let Mode::User(conn) = &mut self.mode else { return Err(io::ErrorKind::BrokenPipe.into()) };
        if !flush(conn, socket)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.owed > 0 {
            let n = self.owed.min(len);
            self.owed -= n;
            return Ok(n);
        }
        let n = encrypt(conn)?;
        if n == 0 && len > 0 {
            // Nothing taken: a file that ended (the caller's error), or no room.
            return Ok(0);
        }
        if flush(conn, socket)? {
            Ok(n)
        } else {
            self.owed = n;
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

/// What `take_plaintext` found.
enum Taken {
    Bytes(usize),
    /// The end of the stream: the client's `close_notify`, or the socket's
    /// end without it (HTTP's own framing tells a cut request).
    End,
    Nothing,
}

/// Moves decrypted bytes into `buf`, as many as it takes.
fn take_plaintext(conn: &mut ServerConnection, buf: &mut [u8]) -> io::Result<Taken> {
    let mut filled = 0;
    while filled < buf.len() {
        match conn.reader().read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(Taken::End),
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && filled == 0 => return Ok(Taken::End),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(if filled > 0 { Taken::Bytes(filled) } else { Taken::Nothing })
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

/// Where a record's bytes end, for reading no further than a record.
#[derive(Default)]
struct RecordCut {
    header: [u8; 5],
    header_len: usize,
    body_left: usize,
}

/// The socket as rustls reads it: a read shorter than asked means the
/// socket is empty (`short`).
struct SocketReader<'a> {
    socket: BorrowedFd<'a>,
    cut: Option<&'a mut RecordCut>,
    short: bool,
}

impl Read for SocketReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.cut.as_deref() {
            Some(cut) if cut.header_len < 5 => (5 - cut.header_len).min(buf.len()),
            Some(cut) => cut.body_left.min(buf.len()),
            None => buf.len(),
        };
        let n = socket_io::recv(self.socket, &mut buf[..want])?;
        self.short = n < want;
        if let Some(cut) = self.cut.as_deref_mut() {
            if cut.header_len < 5 {
                cut.header[cut.header_len..cut.header_len + n].copy_from_slice(&buf[..n]);
                cut.header_len += n;
                if cut.header_len == 5 {
                    cut.body_left = u16::from_be_bytes([cut.header[3], cut.header[4]]) as usize;
                }
            } else {
                cut.body_left -= n;
            }
            if cut.header_len == 5 && cut.body_left == 0 {
                cut.header_len = 0;
            }
        }
        Ok(n)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// The reads that precede a move into kernel TLS never take a byte of
    /// the record after the one being read (the kernel must find it whole).
    #[test]
    fn cut_reads_stop_at_record_boundaries() {
        let (mut client, server) = std::os::unix::net::UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        // Two records (5-byte header, then 3 and 2 bytes), then one more byte.
        client.write_all(&[22, 3, 3, 0, 3, b'a', b'b', b'c', 23, 3, 3, 0, 2, b'x', b'y', 21]).unwrap();
        let mut cut = RecordCut::default();
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        while got.len() < 15 {
            let mut buf = [0u8; 64];
            let mut reader = SocketReader { socket: server.as_fd(), cut: Some(&mut cut), short: false };
            let n = reader.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            sizes.push(n);
        }
        assert_eq!(sizes, [5, 3, 5, 2], "a header, then exactly its body, record by record");
        assert_eq!(got.len(), 15, "the byte after the second record stays in the socket");
        let mut rest = [0u8; 8];
        assert_eq!(socket_io::recv(server.as_fd(), &mut rest).unwrap(), 1);
    }
}

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
use std::sync::Arc;

use rustls::server::ServerConnection;

use super::acceptor::Acceptor;
use super::info::TlsInfo;
use super::ktls::{self, KernelRx, KernelSupport, Moved};
use super::wire::{flush, Mode, PeerEnd};
use crate::sys::socket_io;

/// Most bytes of records a session buffers (rustls's own default): one
/// `send` encrypts at most this much.
const BUFFER_LIMIT: usize = 64 * 1024;
/// How much of a file one call reads and encrypts when the kernel cannot.
const FILE_CHUNK: usize = 64 * 1024;

/// What the worker learns from a session (counted, logged).
#[derive(Debug)]
pub(crate) enum TlsEvent {
    /// The handshake completed; `kernel`: the kernel now does the records;
    /// `refused`: why it could not, the first time in the process that
    /// reason kept a connection out of the kernel (logged once).
    Completed { kernel: bool, refused: Option<String> },
    /// The session failed; `handshake`: before its handshake completed.
    Failed { handshake: bool, reason: String },
}

/// A connection's TLS: the session, and what its handshake negotiated.
pub(crate) struct TlsStream {
    session: RefCell<Session>,
    info: OnceCell<TlsInfo>,
    /// The listener's TLS this session began with (a reload may replace it:
    /// see `Stream::follow_tls`).
    acceptor: Arc<Acceptor>,
}

/// Our `close_notify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseNotify {
    NotSent,
    /// Queued (rustls holds its record, or the kernel's socket was full).
    Queued,
    Sent,
}

struct Session {
    mode: Mode,
    /// Bytes taken and encrypted whose records have not all left (see the
    /// module's documentation).
    owed: usize,
    /// Cuts socket reads at record boundaries while handshaking, so that no
    /// record after the handshake's last is read ahead of the kernel.
    cut: Option<RecordCut>,
    /// What the worker is told, in this order: one slot each, since a
    /// handshake can complete and the session then fail in the same read.
    completed: Option<TlsEvent>,
    failed: Option<TlsEvent>,
    /// Bytes read from the socket while handshaking (see `MAX_HANDSHAKE_BYTES`).
    handshake_read: usize,
    /// How the client's side ended, once seen (`rx.end`), and what kernel
    /// TLS reads keep.
    rx: KernelRx,
    close: CloseNotify,
    /// What kernel TLS takes (see `ktls`).
    ktls: KernelSupport,
    /// A name no certificate has is refused with `unrecognized_name`.
    require_sni_match: bool,
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
    pub fn new(acceptor: &Arc<Acceptor>) -> Result<TlsStream, rustls::Error> {
        let mut conn = ServerConnection::new(acceptor.config.clone())?;
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        let cut = acceptor.ktls.any().then(RecordCut::default);
        Ok(TlsStream {
            session: RefCell::new(Session {
                mode: Mode::User(Box::new(conn)),
                owed: 0,
                cut,
                completed: None,
                failed: None,
                handshake_read: 0,
                rx: KernelRx::default(),
                close: CloseNotify::NotSent,
                ktls: acceptor.ktls,
                require_sni_match: acceptor.require_sni_match,
            }),
            info: OnceCell::new(),
            acceptor: acceptor.clone(),
        })
    }

    /// The listener's TLS this session began with.
    pub fn acceptor(&self) -> &Arc<Acceptor> {
        &self.acceptor
    }

    /// Whether no byte of the client's has been read yet: the session may
    /// still be replaced by one of another acceptor.
    pub fn untouched(&self) -> bool {
        let s = self.session.borrow();
        s.handshake_read == 0 && matches!(&s.mode, Mode::User(c) if c.is_handshaking() && !c.wants_write())
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
        let s = self.session.borrow();
        match &s.mode {
            Mode::User(c) => c.wants_write(),
            Mode::Kernel => s.close == CloseNotify::Queued,
            Mode::Failed => false,
        }
    }

    /// Whether the client's end of the stream was seen: the next read
    /// returns it without the socket (a short read before it does not mean
    /// the socket is empty).
    pub fn end_pending(&self) -> bool {
        self.session.borrow().rx.end.is_some()
    }

    /// Whether the client's side ended without `close_notify`.
    pub fn truncated(&self) -> bool {
        self.session.borrow().rx.end == Some(PeerEnd::Truncated)
    }

    /// The next thing the worker should count or log (take them until None).
    pub fn take_event(&self) -> Option<TlsEvent> {
        let mut s = self.session.borrow_mut();
        s.completed.take().or_else(|| s.failed.take())
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
        let s = &mut *self.session.borrow_mut();
        match &mut s.mode {
            Mode::User(conn) => flush(conn, socket),
            Mode::Kernel if s.close == CloseNotify::Queued => s.send_kernel_close_notify(socket),
            _ => Ok(true),
        }
    }

    /// Tells the client that nothing more comes (`close_notify`), once,
    /// before a half-close or close: true when it has left (or there is
    /// none to send: the handshake did not complete); false when the socket
    /// is full: it waits like other output (`wants_write`, `flush`).
    pub fn close_notify(&self, socket: BorrowedFd<'_>) -> io::Result<bool> {
        let s = &mut *self.session.borrow_mut();
        match &mut s.mode {
            Mode::User(conn) if !conn.is_handshaking() => {
                if s.close == CloseNotify::NotSent {
                    conn.send_close_notify();
                    s.close = CloseNotify::Queued;
                }
                let done = flush(conn, socket)?;
                if done {
                    s.close = CloseNotify::Sent;
                }
                Ok(done)
            }
            Mode::Kernel if s.close != CloseNotify::Sent => s.send_kernel_close_notify(socket),
            _ => Ok(true),
        }
    }
}

thread_local! {
    /// A file's bytes on their way to encryption, one buffer per thread.
    static CHUNK: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Session {
    /// Sends the kernel's `close_notify` (see `TlsStream::close_notify`).
    fn send_kernel_close_notify(&mut self, socket: BorrowedFd<'_>) -> io::Result<bool> {
        let sent = ktls::close_notify(socket)?;
        self.close = if sent { CloseNotify::Sent } else { CloseNotify::Queued };
        Ok(sent)
    }

    fn recv(&mut self, socket: BorrowedFd<'_>, buf: &mut [u8], info: &OnceCell<TlsInfo>) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            let conn = match &mut self.mode {
                // Reached only with nothing read yet in this call: the move
                // happens right after the handshake, before any data.
                Mode::Kernel => return ktls::recv(socket, &mut buf[filled..], &mut self.rx).map(|n| filled + n),
                Mode::Failed => return Err(io::ErrorKind::ConnectionAborted.into()),
                Mode::User(conn) => conn,
            };
            let (n, end) = take_plaintext(conn, &mut buf[filled..])?;
            filled += n;
            if end.is_some() {
                self.rx.end = end;
                return Ok(filled);
            }
            if filled == buf.len() {
                return Ok(filled);
            }
            let handshaking = conn.is_handshaking();
            if handshaking && self.handshake_read >= MAX_HANDSHAKE_BYTES {
                let reason = format!("the client sent over {MAX_HANDSHAKE_BYTES} bytes while handshaking");
                self.failed = Some(TlsEvent::Failed { handshake: true, reason: reason.clone() });
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
                let reason = if was_handshaking && self.require_sni_match && is_no_certificate(&e) {
                    // The resolver found no certificate for the name asked
                    // for (it falls back to none only with
                    // `require_sni_match`): RFC 6066's alert says so, instead
                    // of rustls's `access_denied`. Nothing was encrypted
                    // yet, so the alert record goes in clear.
                    let _ = socket_io::send(socket, &UNRECOGNIZED_NAME, false);
                    let name = conn.server_name().unwrap_or("");
                    format!("no certificate for the name the client asked for ('{name}'), and a match is required")
                } else {
                    // rustls queued an alert that says why: sent if the socket takes it.
                    let _ = flush(conn, socket);
                    e.to_string()
                };
                self.failed = Some(TlsEvent::Failed { handshake: was_handshaking, reason: reason.clone() });
                self.mode = Mode::Failed;
                return Err(io::Error::new(io::ErrorKind::InvalidData, reason));
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
                let (n, end) = take_plaintext(conn, &mut buf[filled..])?;
                filled += n;
                if end.is_some() {
                    self.rx.end = end;
                    return Ok(filled);
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
        let moved = match self.cut.take() {
            Some(_) => match ktls::take_over(&mut self.mode, socket, self.ktls) {
                Ok(moved) => moved,
                Err(e) => {
                    self.failed = Some(TlsEvent::Failed { handshake: false, reason: format!("kernel TLS: {e}") });
                    return Err(e);
                }
            },
            None => Moved::Stays,
        };
        let kernel = matches!(moved, Moved::Kernel);
        let refused = match moved {
            Moved::Refused(decision) if ktls::first_refusal(decision) => Some(format!(
                "kernel TLS: a connection negotiated {decision} (probed when the listener started): \
                 such connections stay in user space (logged once)"
            )),
            _ => None,
        };
        negotiated.kernel = kernel;
        let _ = info.set(negotiated);
        self.completed = Some(TlsEvent::Completed { kernel, refused });
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

/// A fatal `unrecognized_name` alert (RFC 6066), in a plaintext record.
const UNRECOGNIZED_NAME: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

/// Whether rustls failed for want of a certificate (the resolver chose none).
fn is_no_certificate(e: &rustls::Error) -> bool {
    matches!(e, rustls::Error::General(m) if m.contains("no server certificate"))
}

/// Moves decrypted bytes into `buf`, as many as it takes: how many, and
/// the end of the stream if it was reached (the client's `close_notify`,
/// or the socket's end without it).
fn take_plaintext(conn: &mut ServerConnection, buf: &mut [u8]) -> io::Result<(usize, Option<PeerEnd>)> {
    let mut filled = 0;
    while filled < buf.len() {
        match conn.reader().read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, Some(PeerEnd::Clean))),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok((filled, Some(PeerEnd::Truncated))),
            Err(e) => return Err(e),
        }
    }
    Ok((filled, None))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;

    use rustls::ClientConnection;

    use crate::tls::setup::TlsSetup;

    /// A session over a socket pair whose handshake with a rustls client
    /// has completed: the session, its socket, the client and its socket.
    fn handshaken() -> (TlsStream, UnixStream, ClientConnection, UnixStream) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        let mut setup = TlsSetup::new();
        setup.add_cert_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        setup.set_ktls(false);
        let stream = TlsStream::new(&Arc::new(Acceptor::build(&setup, None).unwrap())).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client = ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
        let (server_socket, client_socket) = UnixStream::pair().unwrap();
        server_socket.set_nonblocking(true).unwrap();
        client_socket.set_nonblocking(true).unwrap();
        for _ in 0..100 {
            while client.wants_write() {
                client.write_tls(&mut &client_socket).unwrap();
            }
            let mut buf = [0u8; 64];
            match stream.recv(server_socket.as_fd(), &mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => panic!("{other:?}"),
            }
            if client.read_tls(&mut &client_socket).is_ok() {
                client.process_new_packets().unwrap();
            }
            if !client.is_handshaking() && stream.info().is_some() {
                return (stream, server_socket, client, client_socket);
            }
        }
        panic!("the handshake did not complete");
    }

    /// Reads what the server sent: the plaintext, and whether the stream
    /// ended with `close_notify` (Some(true)), without it (Some(false)), or
    /// is still open (None).
    fn client_reads(client: &mut ClientConnection, socket: &UnixStream) -> (Vec<u8>, Option<bool>) {
        let mut got = Vec::new();
        loop {
            match client.read_tls(&mut &*socket) {
                Ok(0) => {}
                Ok(_) => {
                    client.process_new_packets().unwrap();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            let mut buf = [0u8; 65536];
            match client.reader().read(&mut buf) {
                Ok(0) => return (got, Some(true)),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (got, None),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return (got, Some(false)),
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A socket too full for `close_notify`: it waits as other output does
    /// (`wants_write`), leaves with the next flush, after every byte before
    /// it, and is queued once however often it is asked for.
    #[test]
    fn close_notify_waits_for_a_full_socket_instead_of_being_lost() {
        let (stream, server, mut client, client_socket) = handshaken();
        let fd = server.as_fd();
        let chunk = [7u8; 16 * 1024];
        let mut sent = 0;
        loop {
            match stream.send(fd, &chunk, false) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(!stream.close_notify(fd).unwrap(), "the socket is full");
        assert!(stream.wants_write());
        assert!(!stream.close_notify(fd).unwrap(), "asked again: still waiting, not queued twice");
        let mut got = Vec::new();
        let mut ended = None;
        for _ in 0..10_000 {
            let (bytes, end) = client_reads(&mut client, &client_socket);
            got.extend_from_slice(&bytes);
            if end.is_some() {
                ended = end;
                break;
            }
            if stream.flush(fd).unwrap() {
                assert!(stream.close_notify(fd).unwrap(), "sent: done");
                assert!(!stream.wants_write());
            }
        }
        assert_eq!(ended, Some(true), "the client read close_notify");
        // The bytes taken when the socket filled (`owed`) were encrypted too.
        assert!(got.len() >= sent && got.iter().all(|&b| b == 7), "{} of {sent}", got.len());
    }

    /// `close_notify` right behind data, without the socket's end: the data
    /// first, with the end known (`end_pending`: the caller reads again
    /// without waiting for readiness), then the end, a clean one.
    #[test]
    fn close_notify_behind_data_is_seen_with_it() {
        let (stream, server, mut client, client_socket) = handshaken();
        client.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        client.send_close_notify();
        while client.wants_write() {
            client.write_tls(&mut &client_socket).unwrap();
        }
        let mut buf = [0u8; 4096];
        assert_eq!(stream.recv(server.as_fd(), &mut buf).unwrap(), 18);
        assert!(stream.end_pending());
        assert_eq!(stream.recv(server.as_fd(), &mut buf).unwrap(), 0);
        assert!(!stream.truncated());
    }

    /// The socket's end without `close_notify` is an end too, marked
    /// truncated (for the connection to tell an upgraded stream).
    #[test]
    fn an_end_without_close_notify_is_a_truncation() {
        let (stream, server, mut client, client_socket) = handshaken();
        client.writer().write_all(b"abc").unwrap();
        while client.wants_write() {
            client.write_tls(&mut &client_socket).unwrap();
        }
        client_socket.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 4096];
        let mut got = 0;
        loop {
            match stream.recv(server.as_fd(), &mut buf[got..]).unwrap() {
                0 => break,
                n => got += n,
            }
        }
        assert_eq!(&buf[..got], b"abc");
        assert!(stream.truncated());
    }

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

//! Moving a session into the kernel (kTLS) after its handshake: rustls
//! hands over the record keys and sequence numbers, the kernel encrypts what
//! is sent and decrypts what is read, and the connection uses its socket as
//! a plain one — `sendfile` included, so files leave without a copy through
//! the process.
//!
//! Conditions: the kernel takes the negotiated version and cipher in both
//! directions (probed when the listener's TLS is built, `KernelSupport`: a
//! kernel may have the `tls` module and still lack TLS 1.3 before 5.1,
//! AES-256-GCM before 5.2, ChaCha20-Poly1305 before 5.11); the handshake's
//! last record was the last read (socket reads were cut at record
//! boundaries while handshaking, see `session`); rustls holds no record to
//! send and no decrypted byte. Otherwise the session stays in rustls, which
//! is always correct, only slower for files. The move cannot be undone, so
//! it is never tried on a combination the probe did not see work.
//!
//! What the kernel cannot do here: a TLS 1.3 key update from the client (rare:
//! clients send one after very long transfers) ends the connection, as does
//! any handshake message after the handshake. Alerts are read with their
//! record type: `close_notify` is the end of the stream, another alert an
//! error.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustls::ConnectionTrafficSecrets;

use super::setup::{TLS_1_2, TLS_1_3};
use super::wire::{flush, Mode, PeerEnd};
use crate::sys::ktls::{self, Direction, RecordKeys, APPLICATION_DATA};

const ALERT: u8 = 21;
const CLOSE_NOTIFY: u8 = 0;

/// A record cipher kernel TLS may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KernelCipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

const CIPHERS: [KernelCipher; 3] = [KernelCipher::Aes128Gcm, KernelCipher::Aes256Gcm, KernelCipher::Chacha20Poly1305];

impl KernelCipher {
    /// The record cipher of a cipher suite (its IANA number), if the kernel
    /// has one like it: the AES-GCM and ChaCha20-Poly1305 suites of TLS 1.3
    /// and of TLS 1.2's ECDHE.
    pub(crate) fn of_suite(suite: u16) -> Option<KernelCipher> {
        match suite {
            0x1301 | 0xc02b | 0xc02f => Some(KernelCipher::Aes128Gcm),
            0x1302 | 0xc02c | 0xc030 => Some(KernelCipher::Aes256Gcm),
            0x1303 | 0xcca8 | 0xcca9 => Some(KernelCipher::Chacha20Poly1305),
            _ => None,
        }
    }

    /// Keys of the right sizes, for probing.
    fn dummy_keys(self) -> RecordKeys<'static> {
        const KEY: [u8; 32] = [0x5a; 32];
        const IV: [u8; 12] = [0xa5; 12];
        match self {
            KernelCipher::Aes128Gcm => RecordKeys::Aes128Gcm { key: &KEY[..16], iv: &IV },
            KernelCipher::Aes256Gcm => RecordKeys::Aes256Gcm { key: &KEY, iv: &IV },
            KernelCipher::Chacha20Poly1305 => RecordKeys::Chacha20Poly1305 { key: &KEY, iv: &IV },
        }
    }
}

/// The (version, cipher, direction) combinations kernel TLS was seen to
/// take, one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KernelSupport(u16);

fn bit(version: u16, cipher: KernelCipher, direction: Direction) -> Option<u16> {
    let v = match version {
        TLS_1_2 => 0,
        TLS_1_3 => 1,
        _ => return None,
    };
    let c = CIPHERS.iter().position(|&k| k == cipher)? as u16;
    let d = match direction {
        Direction::Transmit => 0,
        Direction::Receive => 1,
    };
    Some(1 << (v * 6 + c * 2 + d))
}

/// Whether a connection moves into the kernel after its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Kernel,
    /// The suite has no kernel cipher (none of rustls's suites here, but
    /// the provider could change).
    NoKernelCipher,
    /// The kernel lacks this version and cipher in at least one direction.
    KernelLacks {
        version: u16,
        cipher: KernelCipher,
    },
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Kernel => f.write_str("kernel TLS"),
            Decision::NoKernelCipher => f.write_str("a cipher suite kernel TLS has no cipher for"),
            Decision::KernelLacks { version, cipher } => {
                let version = if *version == TLS_1_3 { "TLS 1.3" } else { "TLS 1.2" };
                write!(f, "{version} with {cipher:?}, which this kernel's TLS does not take both ways")
            }
        }
    }
}

impl KernelSupport {
    /// Nothing: kernel TLS off, or no `tls` module.
    pub(crate) const NONE: KernelSupport = KernelSupport(0);

    /// What kernel TLS takes of `versions` in this process, and when that
    /// is nothing, why. The kernel is asked once (`probe`) and the answer
    /// kept: its TLS support does not change within a process's life, and
    /// starts and reloads (under the reload lock) need not wait on sockets.
    pub(crate) fn probed(versions: &[u16]) -> (KernelSupport, Option<&'static str>) {
        static PROBED: OnceLock<(KernelSupport, Option<String>)> = OnceLock::new();
        let (all, why) = PROBED.get_or_init(|| KernelSupport::probe(&[TLS_1_2, TLS_1_3]));
        let mut support = KernelSupport::NONE;
        for &version in versions {
            for cipher in CIPHERS {
                for direction in [Direction::Transmit, Direction::Receive] {
                    if all.has(version, cipher, direction) {
                        support.add(version, cipher, direction);
                    }
                }
            }
        }
        let why = match why {
            _ if support.any() => None,
            Some(why) => Some(why.as_str()),
            None => Some("the kernel's TLS takes none of the versions and ciphers the listener allows"),
        };
        (support, why)
    }

    /// Asks the kernel which of `versions` × the kernel's ciphers it takes,
    /// each on a throwaway connected loopback pair given dummy keys for both
    /// directions; with nothing, why. A kernel without the `tls` module (the
    /// first attach fails) costs one pair.
    fn probe(versions: &[u16]) -> (KernelSupport, Option<String>) {
        let mut support = KernelSupport::NONE;
        let mut why = None;
        for &version in versions {
            for cipher in CIPHERS {
                let (_client, server) = match loopback_pair() {
                    Ok(pair) => pair,
                    Err(e) => {
                        why = Some(format!("a loopback connection to probe it failed ({e})"));
                        continue;
                    }
                };
                if let Err(e) = ktls::attach(server.as_fd()) {
                    if support == KernelSupport::NONE {
                        return (support, Some(format!("the kernel has no TLS module (TCP_ULP \"tls\": {e})")));
                    }
                    continue;
                }
                for direction in [Direction::Transmit, Direction::Receive] {
                    if ktls::set_keys(server.as_fd(), direction, version, 0, &cipher.dummy_keys()).is_ok() {
                        support.add(version, cipher, direction);
                    }
                }
            }
        }
        (support, why.filter(|_| !support.any()))
    }

    pub(crate) fn add(&mut self, version: u16, cipher: KernelCipher, direction: Direction) {
        self.0 |= bit(version, cipher, direction).unwrap_or(0);
    }

    fn has(self, version: u16, cipher: KernelCipher, direction: Direction) -> bool {
        bit(version, cipher, direction).is_some_and(|b| self.0 & b != 0)
    }

    /// Whether any connection could move (reads are then cut at record
    /// boundaries while handshaking).
    pub(crate) fn any(self) -> bool {
        self.0 != 0
    }

    /// Whether a connection that negotiated `version` and cipher suite
    /// `suite` (IANA numbers) moves into the kernel: only when both
    /// directions of that combination were seen to work.
    pub(crate) fn decide(self, version: u16, suite: u16) -> Decision {
        let Some(cipher) = KernelCipher::of_suite(suite) else { return Decision::NoKernelCipher };
        if self.has(version, cipher, Direction::Transmit) && self.has(version, cipher, Direction::Receive) {
            Decision::Kernel
        } else {
            Decision::KernelLacks { version, cipher }
        }
    }
}

/// How long the probe waits for its loopback connection (it is made at
/// once unless something is badly wrong).
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// A connected loopback pair, in at most `PROBE_WAIT` for each step.
fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let client = TcpStream::connect_timeout(&listener.local_addr()?, PROBE_WAIT)?;
    let deadline = Instant::now() + PROBE_WAIT;
    loop {
        match listener.accept() {
            Ok((server, _)) => return Ok((client, server)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(e),
        }
    }
}

/// True the first time (in this process) kernel TLS was asked for and
/// found unusable: said once, not per listener or reload.
pub(crate) fn first_unusable() -> bool {
    static SAID: AtomicBool = AtomicBool::new(false);
    !SAID.swap(true, Ordering::Relaxed)
}

/// True the first time (in this process) `decision` keeps a connection out
/// of the kernel: it is logged once, not per connection.
pub(super) fn first_refusal(decision: Decision) -> bool {
    static SEEN: AtomicU16 = AtomicU16::new(0);
    let mask = match decision {
        Decision::Kernel => return false,
        Decision::NoKernelCipher => 1 << 15,
        Decision::KernelLacks { version, cipher } => bit(version, cipher, Direction::Transmit).unwrap_or(1 << 14),
    };
    SEEN.fetch_or(mask, Ordering::Relaxed) & mask == 0
}

/// What became of a session offered to the kernel.
pub(super) enum Moved {
    /// The kernel does its records now.
    Kernel,
    /// It stays in rustls: the kernel cannot take it now (bytes left over).
    Stays,
    /// It stays in rustls: the kernel does not take its version and cipher.
    Refused(Decision),
}

/// Moves the session in `mode` into the kernel if `support` covers what it
/// negotiated; an error when the move failed halfway (the session is lost
/// and the connection must close).
pub(super) fn take_over(mode: &mut Mode, socket: BorrowedFd<'_>, support: KernelSupport) -> io::Result<Moved> {
    let Mode::User(conn) = mode else { return Ok(Moved::Stays) };
    let Some(version) = conn.protocol_version().map(u16::from) else { return Ok(Moved::Stays) };
    let suite = conn.negotiated_cipher_suite().map_or(0, |s| u16::from(s.suite()));
    let decision = support.decide(version, suite);
    if decision != Decision::Kernel {
        return Ok(Moved::Refused(decision));
    }
    // The tickets of TLS 1.3 are queued now: they go first, whole.
    if !flush(conn, socket)? || conn.process_new_packets().map_or(true, |s| s.plaintext_bytes_to_read() > 0) {
        return Ok(Moved::Stays);
    }
    if ktls::attach(socket).is_err() {
        return Ok(Moved::Stays);
    }
    let Mode::User(conn) = std::mem::replace(mode, Mode::Failed) else { return Ok(Moved::Stays) };
    let secrets = conn.dangerous_extract_secrets().map_err(|e| io::Error::other(e.to_string()))?;
    let (tx_seq, tx) = &secrets.tx;
    let (rx_seq, rx) = &secrets.rx;
    ktls::set_keys(socket, Direction::Transmit, version, *tx_seq, &keys(tx)?)?;
    ktls::set_keys(socket, Direction::Receive, version, *rx_seq, &keys(rx)?)?;
    *mode = Mode::Kernel;
    Ok(Moved::Kernel)
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

/// What one read from a kernel TLS socket found.
#[derive(Debug, PartialEq, Eq)]
enum Record {
    /// `n` bytes of application data.
    Data(usize),
    /// An empty application-data record (TLS allows them): not the end.
    Empty,
    /// The socket's end (no record): without `close_notify`, a truncation.
    End,
    /// The client's `close_notify`: the stream's clean end.
    CloseNotify,
    /// Another alert (its description), fatal here.
    Alert(u8),
    /// A record of another type (a handshake message: a key update), which
    /// kernel TLS does not take.
    Other(u8),
}

/// Reads the kernel's answer: `n` bytes of a record of type `kind` (None:
/// no record), the first of them in `bytes`.
fn classify(n: usize, kind: Option<u8>, bytes: &[u8]) -> Record {
    match kind {
        None => Record::End,
        Some(APPLICATION_DATA) if n == 0 => Record::Empty,
        Some(APPLICATION_DATA) => Record::Data(n),
        // An alert is two bytes: level, description.
        Some(ALERT) if n >= 2 && bytes[1] == CLOSE_NOTIFY => Record::CloseNotify,
        Some(ALERT) => Record::Alert(if n >= 2 { bytes[1] } else { 0 }),
        Some(other) => Record::Other(other),
    }
}

/// The most empty application-data records read in a row, as rustls allows
/// (past it, `TooManyEmptyFragments`): each costs a read and brings nothing,
/// so a client could otherwise hold the worker in one call.
const MAX_EMPTY_RECORDS: u8 = 32;

/// What a kernel TLS session keeps between reads.
#[derive(Debug, Default)]
pub(super) struct KernelRx {
    /// How the stream ended once that is seen (see `recv_records`).
    pub(super) end: Option<PeerEnd>,
    /// Empty records read in a row.
    empty_run: u8,
}

/// Reads decrypted application data from a kernel TLS socket into `buf`.
pub(super) fn recv(socket: BorrowedFd<'_>, buf: &mut [u8], rx: &mut KernelRx) -> io::Result<usize> {
    recv_records(|b, peek| ktls::recv_record(socket, b, peek), buf, rx)
}

/// `recv` over `read` (the kernel's records; `peek`: leave them there). A
/// record of another type comes alone: a data read stops short before it,
/// so a short data read is followed by another (usually `EAGAIN`), and what
/// ends the stream is kept in `rx.end` and reported by the next call: bytes
/// before it go up first, and the caller, seeing its end pending, reads
/// again at once instead of waiting for a readiness event that an alert
/// already queued never raises.
fn recv_records(
    mut read: impl FnMut(&mut [u8], bool) -> io::Result<(usize, Option<u8>)>,
    buf: &mut [u8],
    rx: &mut KernelRx,
) -> io::Result<usize> {
    let mut filled = 0;
    loop {
        if let Some(e) = rx.end {
            return if filled > 0 { Ok(filled) } else { e.result() };
        }
        if filled == buf.len() {
            return Ok(filled);
        }
        // An alert is two bytes: read into less room it would be cut and
        // misread, so there the next record's type is peeked first and only
        // data is read into `buf` (a record is read whole or not at all
        // into `small`: the peeked record is the one read).
        let mut small = [0u8; 2];
        let got = if buf.len() - filled < 2 {
            read(&mut small[..1], true).and_then(|(_, kind)| match kind {
                Some(kind) if kind != APPLICATION_DATA => read(&mut small, false).map(|(n, k)| (n, k, true)),
                _ => read(&mut buf[filled..], false).map(|(n, k)| (n, k, false)),
            })
        } else {
            read(&mut buf[filled..], false).map(|(n, k)| (n, k, false))
        };
        let (n, kind, in_small) = match got {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => return Ok(filled),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let bytes = if in_small { &small[..n] } else { &buf[filled..filled + n] };
        match classify(n, kind, bytes) {
            Record::Data(n) => {
                rx.empty_run = 0;
                filled += n;
            }
            Record::Empty => {
                rx.empty_run += 1;
                if rx.empty_run > MAX_EMPTY_RECORDS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the client sent over {MAX_EMPTY_RECORDS} empty TLS records in a row"),
                    ));
                }
            }
            Record::End => rx.end = Some(PeerEnd::Truncated),
            Record::CloseNotify => rx.end = Some(PeerEnd::Clean),
            Record::Alert(description) => rx.end = Some(PeerEnd::Alert(description)),
            Record::Other(kind) => rx.end = Some(PeerEnd::Unexpected(kind)),
        }
    }
}

/// Sends `close_notify` through the kernel: false when the socket is full
/// (send it again when it is writable).
pub(super) fn close_notify(socket: BorrowedFd<'_>) -> io::Result<bool> {
    match ktls::send_record(socket, ALERT, &[1, CLOSE_NOTIFY]) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AES128_13: u16 = 0x1301;
    const AES256_13: u16 = 0x1302;
    const CHACHA_13: u16 = 0x1303;
    const AES128_12: u16 = 0xc02f;
    const CHACHA_12: u16 = 0xcca9;

    #[test]
    fn nothing_probed_keeps_every_connection_in_user_space() {
        let none = KernelSupport::NONE;
        assert!(!none.any());
        assert_eq!(
            none.decide(TLS_1_3, AES128_13),
            Decision::KernelLacks { version: TLS_1_3, cipher: KernelCipher::Aes128Gcm }
        );
        assert_eq!(none.decide(TLS_1_3, 0x1304), Decision::NoKernelCipher, "TLS_AES_128_CCM_SHA256");
    }

    /// A kernel with the module but not every combination (TLS 1.2 only,
    /// as before 5.1; no ChaCha20 before 5.11; TLS 1.3 sending but not
    /// receiving, as 5.1): only what works both ways moves.
    #[test]
    fn only_combinations_that_work_both_ways_move() {
        let mut old = KernelSupport::NONE;
        for direction in [Direction::Transmit, Direction::Receive] {
            old.add(TLS_1_2, KernelCipher::Aes128Gcm, direction);
            old.add(TLS_1_2, KernelCipher::Aes256Gcm, direction);
        }
        old.add(TLS_1_3, KernelCipher::Aes128Gcm, Direction::Transmit);
        assert!(old.any());
        assert_eq!(old.decide(TLS_1_2, AES128_12), Decision::Kernel);
        assert_eq!(old.decide(TLS_1_2, 0xc030), Decision::Kernel, "ECDHE-RSA-AES256-GCM");
        assert_eq!(
            old.decide(TLS_1_2, CHACHA_12),
            Decision::KernelLacks { version: TLS_1_2, cipher: KernelCipher::Chacha20Poly1305 }
        );
        assert_eq!(
            old.decide(TLS_1_3, AES128_13),
            Decision::KernelLacks { version: TLS_1_3, cipher: KernelCipher::Aes128Gcm },
            "sending only"
        );
        assert_eq!(
            old.decide(TLS_1_3, AES256_13),
            Decision::KernelLacks { version: TLS_1_3, cipher: KernelCipher::Aes256Gcm }
        );
        let mut all = KernelSupport::NONE;
        for version in [TLS_1_2, TLS_1_3] {
            for cipher in CIPHERS {
                for direction in [Direction::Transmit, Direction::Receive] {
                    all.add(version, cipher, direction);
                }
            }
        }
        for (version, suite) in [(TLS_1_3, AES128_13), (TLS_1_3, AES256_13), (TLS_1_3, CHACHA_13), (TLS_1_2, 0xc02b)] {
            assert_eq!(all.decide(version, suite), Decision::Kernel, "{version:04x} {suite:04x}");
        }
        assert_eq!(
            all.decide(0x0302, AES128_12),
            Decision::KernelLacks { version: 0x0302, cipher: KernelCipher::Aes128Gcm }
        );
    }

    /// This machine's kernel: what the probe finds is what `decide` uses;
    /// without the `tls` module, nothing.
    #[test]
    fn the_probe_answers_without_failing() {
        let (support, why) = KernelSupport::probe(&[TLS_1_2, TLS_1_3]);
        assert_eq!(why.is_some(), !support.any(), "{why:?}");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        if ktls::attach(server.as_fd()).is_err() {
            assert_eq!(support, KernelSupport::NONE, "no tls module: nothing moves");
            assert!(why.unwrap().starts_with("the kernel has no TLS module"));
        }
    }

    /// Asked once per process: later starts and reloads get the same answer
    /// (the same reason, not a new one), masked to their versions.
    #[test]
    fn the_probe_runs_once_per_process() {
        let (all, why) = KernelSupport::probed(&[TLS_1_2, TLS_1_3]);
        let (again, why_again) = KernelSupport::probed(&[TLS_1_2, TLS_1_3]);
        assert_eq!(all, again);
        assert!(why.zip(why_again).is_none_or(|(a, b)| std::ptr::eq(a, b)), "kept, not probed again");
        let (tls13, _) = KernelSupport::probed(&[TLS_1_3]);
        assert!(!tls13.has(TLS_1_2, KernelCipher::Aes128Gcm, Direction::Transmit));
        assert_eq!(
            tls13.has(TLS_1_3, KernelCipher::Aes128Gcm, Direction::Receive),
            all.has(TLS_1_3, KernelCipher::Aes128Gcm, Direction::Receive)
        );
        let first = first_unusable();
        assert!(!first_unusable(), "said once");
        let _ = first;
    }

    #[test]
    fn records_are_classified_by_type() {
        assert_eq!(classify(5, Some(23), b"hello"), Record::Data(5));
        assert_eq!(classify(0, Some(23), b""), Record::Empty);
        assert_eq!(classify(0, None, b""), Record::End);
        assert_eq!(classify(2, Some(21), &[1, 0]), Record::CloseNotify);
        assert_eq!(classify(2, Some(21), &[2, 40]), Record::Alert(40));
        assert_eq!(classify(1, Some(21), &[2]), Record::Alert(0));
        assert_eq!(classify(5, Some(22), &[24, 0, 0, 1, 0]), Record::Other(22));
    }

    /// Replays `records` (bytes and type; `None` type: the socket's end; an
    /// empty script: `EAGAIN`) as the kernel would give them.
    /// A peek leaves the record where it was.
    fn script(
        records: Vec<(&'static [u8], Option<u8>)>,
    ) -> impl FnMut(&mut [u8], bool) -> io::Result<(usize, Option<u8>)> {
        let mut records = std::collections::VecDeque::from(records);
        move |buf: &mut [u8], peek: bool| {
            let Some((bytes, kind)) = records.pop_front() else { return Err(io::ErrorKind::WouldBlock.into()) };
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            if peek {
                records.push_front((bytes, kind));
            } else if n < bytes.len() {
                records.push_front((&bytes[n..], kind));
            }
            Ok((n, kind))
        }
    }

    #[test]
    fn empty_records_are_skipped_not_taken_for_the_end() {
        let mut read = script(vec![(b"", Some(23)), (b"", Some(23)), (b"abc", Some(23))]);
        let (mut buf, mut rx) = ([0u8; 16], KernelRx::default());
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        assert!(rx.end.is_none());
        let e = recv_records(&mut read, &mut buf, &mut rx).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "an empty socket, not the end");
    }

    #[test]
    fn close_notify_after_data_is_the_clean_end_without_a_fin() {
        // Data, then close_notify, and no FIN: the bytes first, with the end
        // pending (the caller reads again), then the end.
        let mut read = script(vec![(b"GET /", Some(23)), (&[1, 0], Some(21))]);
        let (mut buf, mut rx) = ([0u8; 64], KernelRx::default());
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap(), 5);
        assert_eq!(rx.end, Some(PeerEnd::Clean), "seen in the same call");
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap(), 0);
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap(), 0, "and stays the end");
    }

    #[test]
    fn a_fin_without_close_notify_is_a_truncation() {
        let mut read = script(vec![(b"abc", Some(23)), (b"", None)]);
        let (mut buf, mut rx) = ([0u8; 64], KernelRx::default());
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap(), 3);
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap(), 0);
        assert_eq!(rx.end, Some(PeerEnd::Truncated));
    }

    #[test]
    fn other_alerts_and_records_are_errors() {
        let mut read = script(vec![(&[2, 20], Some(21))]);
        let (mut buf, mut rx) = ([0u8; 64], KernelRx::default());
        let e = recv_records(&mut read, &mut buf, &mut rx).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        let mut read = script(vec![(b"x", Some(23)), (&[24, 0, 0, 1, 0], Some(22))]);
        let mut rx = KernelRx::default();
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap(), 1);
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_full_buffer_returns_without_reading_on() {
        let mut read = script(vec![(b"abcdef", Some(23))]);
        let (mut buf, mut rx) = ([0u8; 4], KernelRx::default());
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap(), 4);
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap(), 2);
    }

    /// As rustls (`TooManyEmptyFragments`): 32 empty records in a row are
    /// taken, the 33rd ends the session; data between runs starts the count
    /// again, across calls too.
    #[test]
    fn over_32_empty_records_in_a_row_are_an_error() {
        let mut records: Vec<(&'static [u8], Option<u8>)> = vec![(b"", Some(23)); 32];
        records.push((b"abc", Some(23)));
        records.extend(vec![(&b""[..], Some(23)); 20]);
        let mut read = script(records);
        let (mut buf, mut rx) = ([0u8; 16], KernelRx::default());
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap(), 3);
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let mut read = script(vec![(b"", Some(23)); 13]);
        let e = recv_records(&mut read, &mut buf, &mut rx).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }

    /// A `close_notify` (two bytes) read when the room left is one byte (a
    /// streamed body's window nearly full) is the clean end, not a fatal
    /// alert; data into that room still comes byte by byte, none lost.
    #[test]
    fn close_notify_into_a_one_byte_room_is_the_clean_end() {
        let mut read = script(vec![(&[1, 0], Some(21))]);
        let (mut buf, mut rx) = ([0u8; 1], KernelRx::default());
        assert_eq!(recv_records(&mut read, &mut buf, &mut rx).unwrap(), 0);
        assert_eq!(rx.end, Some(PeerEnd::Clean));
        let mut read = script(vec![(b"ab", Some(23)), (&[2, 40], Some(21))]);
        let mut rx = KernelRx::default();
        let mut got = Vec::new();
        while let Ok(n @ 1..) = recv_records(&mut read, &mut buf, &mut rx) {
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!((got.as_slice(), rx.end), (&b"ab"[..], Some(PeerEnd::Alert(40))));
    }

    #[test]
    fn refusals_are_logged_once_per_combination() {
        let lacks = Decision::KernelLacks { version: TLS_1_3, cipher: KernelCipher::Chacha20Poly1305 };
        let first = first_refusal(lacks);
        assert!(!first_refusal(lacks), "the second time is quiet");
        let _ = first;
        assert_eq!(lacks.to_string(), "TLS 1.3 with Chacha20Poly1305, which this kernel's TLS does not take both ways");
        assert!(!first_refusal(Decision::Kernel));
    }
}

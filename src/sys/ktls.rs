//! Kernel TLS (`Documentation/networking/tls.rst`): the `tls` upper-layer
//! protocol on a TCP socket, the record keys handed to it (`TLS_TX`,
//! `TLS_RX`), and records that are not application data read and sent with
//! their type in a control message. The constants and structs are Linux's
//! uapi (`linux/tls.h`); the libc crate does not carry them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const SOL_TLS: libc::c_int = 282;
const TLS_TX: libc::c_int = 1;
const TLS_RX: libc::c_int = 2;
const TLS_SET_RECORD_TYPE: libc::c_int = 1;
const TLS_GET_RECORD_TYPE: libc::c_int = 2;

const TLS_CIPHER_AES_GCM_128: u16 = 51;
const TLS_CIPHER_AES_GCM_256: u16 = 52;
const TLS_CIPHER_CHACHA20_POLY1305: u16 = 54;

/// The record type of application data; alerts are 21, handshake messages 22.
pub(crate) const APPLICATION_DATA: u8 = 23;

/// `struct tls_crypto_info` followed by a cipher's key material, as each
/// `tls12_crypto_info_*` lays it out (all byte arrays: no padding).
#[repr(C)]
struct CryptoInfo<const IV: usize, const KEY: usize, const SALT: usize> {
    version: u16,
    cipher_type: u16,
    iv: [u8; IV],
    key: [u8; KEY],
    salt: [u8; SALT],
    rec_seq: [u8; 8],
}

/// One direction's record protection, in the kernel's terms.
pub(crate) enum RecordKeys<'a> {
    /// AES-128-GCM: a 16-byte key and the 12-byte IV.
    Aes128Gcm { key: &'a [u8], iv: &'a [u8] },
    /// AES-256-GCM: a 32-byte key and the 12-byte IV.
    Aes256Gcm { key: &'a [u8], iv: &'a [u8] },
    /// ChaCha20-Poly1305: a 32-byte key and the 12-byte IV.
    Chacha20Poly1305 { key: &'a [u8], iv: &'a [u8] },
}

/// Which direction `set_keys` configures.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    Transmit,
    Receive,
}

/// Attaches the `tls` upper-layer protocol to a connected TCP socket. Until
/// keys are set it passes bytes through unchanged; `ENOENT` means the kernel
/// has no TLS module.
pub(crate) fn attach(socket: BorrowedFd<'_>) -> io::Result<()> {
    let name = b"tls";
    // SAFETY: `name` is valid for reads of its length for the call; the
    // descriptor is live.
    syscall!(setsockopt(
        socket.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_ULP,
        name.as_ptr().cast(),
        name.len() as libc::socklen_t,
    ))
    .map(drop)
}

/// Hands the kernel one direction's keys: from then on it encrypts what is
/// sent (or decrypts what is read) as TLS `version` (0x0303, 0x0304) records,
/// the next one numbered `seq`. The salt/IV split follows the kernel's: the
/// GCM ciphers take the first 4 IV bytes as salt and the other 8 as IV.
pub(crate) fn set_keys(
    socket: BorrowedFd<'_>,
    direction: Direction,
    version: u16,
    seq: u64,
    keys: &RecordKeys<'_>,
) -> io::Result<()> {
    let option = match direction {
        Direction::Transmit => TLS_TX,
        Direction::Receive => TLS_RX,
    };
    let rec_seq = seq.to_be_bytes();
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "key material of the wrong size");
    match *keys {
        RecordKeys::Aes128Gcm { key, iv } => {
            let mut info = CryptoInfo::<8, 16, 4> {
                version,
                cipher_type: TLS_CIPHER_AES_GCM_128,
                iv: iv.get(4..12).and_then(|s| s.try_into().ok()).ok_or_else(bad)?,
                key: key.try_into().map_err(|_| bad())?,
                salt: iv.get(..4).and_then(|s| s.try_into().ok()).ok_or_else(bad)?,
                rec_seq,
            };
            set_info(socket, option, &mut info)
        }
        RecordKeys::Aes256Gcm { key, iv } => {
            let mut info = CryptoInfo::<8, 32, 4> {
                version,
                cipher_type: TLS_CIPHER_AES_GCM_256,
                iv: iv.get(4..12).and_then(|s| s.try_into().ok()).ok_or_else(bad)?,
                key: key.try_into().map_err(|_| bad())?,
                salt: iv.get(..4).and_then(|s| s.try_into().ok()).ok_or_else(bad)?,
                rec_seq,
            };
            set_info(socket, option, &mut info)
        }
        RecordKeys::Chacha20Poly1305 { key, iv } => {
            let mut info = CryptoInfo::<12, 32, 0> {
                version,
                cipher_type: TLS_CIPHER_CHACHA20_POLY1305,
                iv: iv.try_into().map_err(|_| bad())?,
                key: key.try_into().map_err(|_| bad())?,
                salt: [],
                rec_seq,
            };
            set_info(socket, option, &mut info)
        }
    }
}

/// Hands `info` to the kernel, then wipes it: the keys stay in the kernel
/// only, not in a stack slot the process may later expose.
fn set_info<const IV: usize, const KEY: usize, const SALT: usize>(
    socket: BorrowedFd<'_>,
    option: libc::c_int,
    info: &mut CryptoInfo<IV, KEY, SALT>,
) -> io::Result<()> {
    // SAFETY: `info` is a `#[repr(C)]` struct of the layout `linux/tls.h`
    // gives this cipher, valid for reads of its size for the call.
    let res = syscall!(setsockopt(
        socket.as_raw_fd(),
        SOL_TLS,
        option,
        (info as *const CryptoInfo<IV, KEY, SALT>).cast(),
        std::mem::size_of::<CryptoInfo<IV, KEY, SALT>>() as libc::socklen_t,
    ));
    info.wipe();
    res.map(drop)
}

impl<const IV: usize, const KEY: usize, const SALT: usize> CryptoInfo<IV, KEY, SALT> {
    /// Zeroes the key material with writes the compiler may not drop as dead
    /// stores (what the `zeroize` crate does).
    fn wipe(&mut self) {
        for byte in self.iv.iter_mut().chain(self.key.iter_mut()).chain(self.salt.iter_mut()) {
            // SAFETY: `byte` is a valid, aligned, exclusive reference to a `u8`.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Reads records' bytes from a socket whose receiving side the kernel
/// decrypts: how many, and the type of the first record read (the kernel
/// says it in a control message), or None when no record was read: the end
/// of the stream. A record that is not application data (an alert, a
/// handshake message) comes alone. `peek`: the bytes stay in the socket
/// (`MSG_PEEK`), to learn the next record's type.
pub(crate) fn recv_record(socket: BorrowedFd<'_>, buf: &mut [u8], peek: bool) -> io::Result<(usize, Option<u8>)> {
    // Room for one `cmsghdr` and its one byte, aligned as the kernel writes it.
    let mut control = [0u64; 4];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: zero is a valid `msghdr` (no name, no data, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at one iovec valid for writes of `buf.len()` bytes
    // and at `control`, valid for writes of its size, for the call.
    let flags = if peek { libc::MSG_PEEK } else { 0 };
    let n = syscall!(recvmsg(socket.as_raw_fd(), &mut msg, flags))? as usize;
    let mut record_type = None;
    // SAFETY: the kernel filled `msg.msg_control` with `msg_controllen`
    // bytes of well-formed control messages inside `control`; the CMSG
    // macros walk them without reading past that length.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == SOL_TLS && (*cmsg).cmsg_type == TLS_GET_RECORD_TYPE {
                record_type = Some(*libc::CMSG_DATA(cmsg));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, record_type))
}

/// Sends `bytes` as one record of `record_type` (an alert: 21) on a socket
/// whose sending side the kernel encrypts.
pub(crate) fn send_record(socket: BorrowedFd<'_>, record_type: u8, bytes: &[u8]) -> io::Result<usize> {
    let mut control = [0u64; 4];
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    // SAFETY: zero is a valid `msghdr`.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(1) } as _;
    // SAFETY: `control` holds CMSG_SPACE(1) bytes (checked below), so the
    // first header and its one data byte are inside it.
    unsafe {
        debug_assert!(libc::CMSG_SPACE(1) as usize <= std::mem::size_of_val(&control));
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = SOL_TLS;
        (*cmsg).cmsg_type = TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as _;
        *libc::CMSG_DATA(cmsg) = record_type;
    }
    // SAFETY: `msg` points at one iovec valid for reads of `bytes.len()`
    // bytes and at its control message, for the call; the descriptor is live.
    syscall!(sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)).map(|n| n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn crypto_info_layouts_are_the_kernels() {
        // linux/tls.h: aes_gcm_128 is 40 bytes, aes_gcm_256 56, chacha20_poly1305 56.
        assert_eq!(std::mem::size_of::<CryptoInfo<8, 16, 4>>(), 40);
        assert_eq!(std::mem::size_of::<CryptoInfo<8, 32, 4>>(), 56);
        assert_eq!(std::mem::size_of::<CryptoInfo<12, 32, 0>>(), 56);
    }

    #[test]
    fn key_material_is_wiped() {
        let mut info = CryptoInfo::<8, 16, 4> {
            version: 0x0304,
            cipher_type: 51,
            iv: [7; 8],
            key: [9; 16],
            salt: [5; 4],
            rec_seq: [1; 8],
        };
        info.wipe();
        assert_eq!((info.iv, info.key, info.salt), ([0; 8], [0; 16], [0; 4]));
        assert_eq!((info.version, info.rec_seq), (0x0304, [1; 8]), "what is not secret stays");
    }

    #[test]
    fn keys_of_the_wrong_size_are_refused_before_the_kernel_sees_them() {
        let (socket, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let keys = RecordKeys::Aes128Gcm { key: &[0; 15], iv: &[0; 12] };
        let e = set_keys(socket.as_fd(), Direction::Transmit, 0x0304, 0, &keys).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}

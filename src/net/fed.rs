//! A connection's input as a completion-based loop delivers it: the worker's
//! io_uring loop receives into its own buffers and appends the bytes here;
//! `Stream::recv` then reads from here, not from the socket, so the
//! connection code reads the same way whichever loop drives it. Nothing may
//! read such a socket directly: a receive the kernel holds could complete
//! with bytes that come before the ones a direct read would take.

use std::cell::RefCell;
use std::io;

/// Kept when emptied; a larger buffer (an upload went through) is released.
const KEEP: usize = 16 * 1024;

/// Bytes received for a connection and not read yet, and how its input ended.
#[derive(Default)]
pub(crate) struct Fed {
    inner: RefCell<Inner>,
}

#[derive(Default)]
struct Inner {
    bytes: Vec<u8>,
    start: usize,
    /// The end of the input once the bytes before it are read: `Ok` for the
    /// peer's FIN, an `errno` for a failed receive.
    end: Option<Result<(), i32>>,
}

impl Fed {
    /// Appends bytes received.
    pub fn push(&self, bytes: &[u8]) {
        let mut inner = self.inner.borrow_mut();
        if inner.start == inner.bytes.len() {
            inner.bytes.clear();
            inner.start = 0;
        }
        inner.bytes.extend_from_slice(bytes);
    }

    /// Records the end of the input: the peer's FIN (`None`) or an error.
    pub fn end(&self, error: Option<i32>) {
        let mut inner = self.inner.borrow_mut();
        if inner.end.is_none() {
            inner.end = Some(error.map_or(Ok(()), Err));
        }
    }

    /// Whether the input has ended (bytes may still wait before the end).
    pub fn ended(&self) -> bool {
        self.inner.borrow().end.is_some()
    }

    /// Bytes waiting to be read.
    pub fn len(&self) -> usize {
        let inner = self.inner.borrow();
        inner.bytes.len() - inner.start
    }

    /// What `recv(2)` would do: bytes, `Ok(0)` at the end, `WouldBlock` when
    /// nothing waits.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut inner = self.inner.borrow_mut();
        let available = inner.bytes.len() - inner.start;
        if available == 0 {
            return match inner.end {
                None => Err(io::ErrorKind::WouldBlock.into()),
                Some(Ok(())) => Ok(0),
                Some(Err(code)) => Err(io::Error::from_raw_os_error(code)),
            };
        }
        let n = available.min(buf.len());
        let start = inner.start;
        buf[..n].copy_from_slice(&inner.bytes[start..start + n]);
        inner.start += n;
        if inner.start == inner.bytes.len() {
            inner.start = 0;
            inner.bytes.clear();
            if inner.bytes.capacity() > KEEP {
                inner.bytes = Vec::new();
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_then_would_block_then_the_end() {
        let fed = Fed::default();
        let mut buf = [0u8; 4];
        assert_eq!(fed.recv(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        fed.push(b"hello");
        assert_eq!(fed.recv(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"hell");
        fed.push(b" you");
        fed.end(None);
        assert_eq!(fed.len(), 5);
        assert_eq!(fed.recv(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"o yo");
        assert_eq!(fed.recv(&mut buf).unwrap(), 1);
        assert_eq!(fed.recv(&mut buf).unwrap(), 0);
        let reset = Fed::default();
        reset.end(Some(libc::ECONNRESET));
        assert_eq!(reset.recv(&mut buf).unwrap_err().raw_os_error(), Some(libc::ECONNRESET));
    }
}

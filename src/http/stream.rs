//! Framing a streamed body: chunked for HTTP/1.1 without a length, exactly
//! Content-Length bytes when one was given, close-delimited for HTTP/1.0, and
//! nothing at all for HEAD, 204 and 304.

use crate::http::compose::{BodyLength, Composed};

/// Why a stream call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamError {
    /// More bytes than the declared Content-Length.
    TooLong,
    /// Ended before the declared Content-Length.
    TooShort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length { remaining: u64 },
    UntilClose,
}

/// The framing state of one streamed response body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamOut {
    framing: Framing,
    omit_body: bool,
    /// The head said `Connection: close`.
    pub close_after: bool,
}

impl StreamOut {
    /// The state after a head composed with `length` (as adjusted by the composer).
    pub fn new(length: BodyLength, composed: Composed, minor: u8) -> StreamOut {
        let framing = match length {
            BodyLength::Known(n) => Framing::Length { remaining: n },
            BodyLength::Chunked if minor >= 1 => Framing::Chunked,
            BodyLength::Chunked | BodyLength::UntilClose => Framing::UntilClose,
        };
        StreamOut { framing, omit_body: composed.omit_body, close_after: composed.close }
    }

    /// Bytes still owed under a declared Content-Length.
    pub fn remaining(&self) -> Option<u64> {
        match self.framing {
            Framing::Length { remaining } => Some(remaining),
            _ => None,
        }
    }

    /// Whether body bytes are sent at all.
    pub fn sends_body(&self) -> bool {
        !self.omit_body
    }

    /// Checks `len` more bytes against the declared length and writes the chunk
    /// header (if any) to `out`; the data and `data_suffix` follow.
    pub fn data_prefix(&mut self, len: usize, out: &mut Vec<u8>) -> Result<(), StreamError> {
        if let Framing::Length { remaining } = &mut self.framing {
            if len as u64 > *remaining {
                return Err(StreamError::TooLong);
            }
            *remaining -= len as u64;
        }
        if self.omit_body || len == 0 {
            return Ok(());
        }
        if self.framing == Framing::Chunked {
            let mut hex = [0u8; 16];
            let digits = hex_digits(len, &mut hex);
            out.extend_from_slice(digits);
            out.extend_from_slice(b"\r\n");
        }
        Ok(())
    }

    /// What follows a chunk's data.
    pub fn data_suffix(&self, len: usize) -> &'static [u8] {
        if !self.omit_body && len > 0 && self.framing == Framing::Chunked {
            b"\r\n"
        } else {
            b""
        }
    }

    /// Ends the body: the last chunk, or a check that the length was met.
    /// Returns whether the connection must close to delimit the body.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool, StreamError> {
        match self.framing {
            Framing::Chunked => {
                if !self.omit_body {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                Ok(false)
            }
            Framing::Length { remaining } if remaining > 0 && !self.omit_body => Err(StreamError::TooShort),
            Framing::Length { .. } => Ok(false),
            Framing::UntilClose => Ok(!self.omit_body),
        }
    }
}

fn hex_digits(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Composed = Composed { close: false, omit_body: false };

    #[test]
    fn chunked_frames() {
        let mut s = StreamOut::new(BodyLength::Chunked, OPEN, 1);
        let mut out = Vec::new();
        s.data_prefix(300, &mut out).unwrap();
        assert_eq!(out, b"12c\r\n");
        assert_eq!(s.data_suffix(300), b"\r\n");
        out.clear();
        assert_eq!(s.finish(&mut out), Ok(false));
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn length_is_enforced() {
        let mut s = StreamOut::new(BodyLength::Known(5), OPEN, 1);
        let mut out = Vec::new();
        s.data_prefix(3, &mut out).unwrap();
        assert_eq!(s.data_prefix(3, &mut out), Err(StreamError::TooLong));
        assert_eq!(s.finish(&mut out), Err(StreamError::TooShort));
        s.data_prefix(2, &mut out).unwrap();
        assert_eq!(s.finish(&mut out), Ok(false));
        assert!(out.is_empty());
    }

    #[test]
    fn http10_is_close_delimited() {
        let mut s = StreamOut::new(BodyLength::Chunked, OPEN, 0);
        let mut out = Vec::new();
        s.data_prefix(4, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(s.finish(&mut out), Ok(true));
    }
}

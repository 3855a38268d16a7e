//! An incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! It is fed whatever bytes have arrived and keeps its place between calls, so a
//! large upload is scanned once. Chunk extensions and trailer fields are accepted
//! and discarded. Line endings: CRLF, or a bare LF (the policy of the whole parser,
//! RFC 9112 §2.2); a CR not followed by LF is an error.

/// Longest chunk-size line (hex digits, extensions) or trailer section we accept.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size,
    /// After the digits: whitespace, then a `;` or the line end.
    SizeRest,
    /// After the `;`: extensions, up to the line end.
    Ext,
    /// Saw CR on the size line; LF must follow.
    SizeLf,
    /// Inside chunk data with `remaining` bytes to go.
    Data,
    /// After chunk data: CR or LF.
    DataEnd,
    /// After chunk data and CR: LF.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Saw CR inside or ending a trailer line.
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Why a chunked body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Not valid chunked framing: answer 400 and close.
    Invalid,
    /// The decoded body exceeds the limit: answer 413 and close.
    TooLarge,
}

/// Decoder state for one request body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Chunk size being parsed, then bytes of the current chunk still to copy.
    remaining: u64,
    digits: u32,
    line_len: usize,
    trailer_len: usize,
    decoded: u64,
    max_body: u64,
}

impl ChunkedDecoder {
    /// A decoder for one body that may decode to at most `max_body` bytes.
    pub fn new(max_body: u64) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            remaining: 0,
            digits: 0,
            line_len: 0,
            trailer_len: 0,
            decoded: 0,
            max_body,
        }
    }

    /// Decodes from `input`, appending data to `out`. Returns how many input bytes
    /// were consumed and whether the body (with its trailers) is complete; the bytes
    /// after a complete body belong to the next request.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size => {
                    if let Some(v) = super::percent::hex_value(b) {
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(ChunkError::Invalid);
                        }
                        self.remaining = self.remaining << 4 | v as u64;
                    } else if self.digits == 0 {
                        return Err(ChunkError::Invalid);
                    } else {
                        self.state = State::SizeRest;
                        continue;
                    }
                }
                // Extensions: anything printable after `;`, whitespace before it.
                State::SizeRest | State::Ext => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => self.end_size_line()?,
                    b'\t' | b' ' | b';' | 0x21..=0x7e | 0x80..=0xff => {
                        if b == b';' {
                            self.state = State::Ext;
                        } else if self.state == State::SizeRest && b != b'\t' && b != b' ' {
                            // `5x` is not a chunk size.
                            return Err(ChunkError::Invalid);
                        }
                        self.line_len += 1;
                        if self.line_len > MAX_LINE {
                            return Err(ChunkError::Invalid);
                        }
                    }
                    _ => return Err(ChunkError::Invalid),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Invalid);
                    }
                    self.end_size_line()?;
                }
                State::Data => {
                    let take = (self.remaining as usize).min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    self.remaining -= take as u64;
                    i += take;
                    if self.remaining == 0 {
                        self.state = State::DataEnd;
                    }
                    continue;
                }
                State::DataEnd => match b {
                    b'\r' => self.state = State::DataLf,
                    b'\n' => self.start_size(),
                    _ => return Err(ChunkError::Invalid),
                },
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Invalid);
                    }
                    self.start_size();
                }
                State::TrailerStart | State::TrailerLine => {
                    let empty = self.state == State::TrailerStart;
                    match b {
                        b'\r' => self.state = State::TrailerLf { empty },
                        b'\n' if empty => {
                            self.state = State::Done;
                            return Ok((i + 1, true));
                        }
                        b'\n' => self.state = State::TrailerStart,
                        0 => return Err(ChunkError::Invalid),
                        _ => {
                            self.trailer_len += 1;
                            if self.trailer_len > MAX_TRAILERS {
                                return Err(ChunkError::Invalid);
                            }
                            self.state = State::TrailerLine;
                        }
                    }
                }
                State::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(ChunkError::Invalid);
                    }
                    if empty {
                        self.state = State::Done;
                        return Ok((i + 1, true));
                    }
                    self.state = State::TrailerStart;
                }
                State::Done => return Ok((i, true)),
            }
            i += 1;
        }
        Ok((i, self.state == State::Done))
    }

    fn end_size_line(&mut self) -> Result<(), ChunkError> {
        if self.remaining == 0 {
            self.state = State::TrailerStart;
            return Ok(());
        }
        self.decoded = self.decoded.checked_add(self.remaining).ok_or(ChunkError::TooLarge)?;
        if self.decoded > self.max_body {
            return Err(ChunkError::TooLarge);
        }
        self.state = State::Data;
        Ok(())
    }

    fn start_size(&mut self) {
        self.state = State::Size;
        self.remaining = 0;
        self.digits = 0;
        self.line_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        let (n, done) = d.decode(input, &mut out)?;
        assert!(done, "incomplete");
        Ok((out, n))
    }

    #[test]
    fn decodes_with_extensions_and_trailers() {
        let msg = b"4;ext=1\r\nWiki\r\n5 ; a=\"b\"\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (out, n) = decode_all(msg).unwrap();
        assert_eq!(out, b"Wikipedia");
        assert_eq!(&msg[n..], b"NEXT");
    }

    #[test]
    fn decodes_byte_by_byte() {
        let msg = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new(100);
        let mut out = Vec::new();
        for (i, b) in msg.iter().enumerate() {
            let (n, done) = d.decode(std::slice::from_ref(b), &mut out).unwrap();
            assert_eq!(n, 1);
            assert_eq!(done, i == msg.len() - 1);
        }
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn accepts_bare_lf() {
        assert_eq!(decode_all(b"3\nabc\n0\n\n").unwrap().0, b"abc");
    }

    #[test]
    fn rejects_bad_framing() {
        assert_eq!(decode_all(b"x\r\n").unwrap_err(), ChunkError::Invalid);
        assert_eq!(decode_all(b"\r\n").unwrap_err(), ChunkError::Invalid);
        assert_eq!(decode_all(b"3\r\nabcX\r\n").unwrap_err(), ChunkError::Invalid);
        assert_eq!(decode_all(b"3\rX").unwrap_err(), ChunkError::Invalid);
        assert_eq!(decode_all(b"ffffffffffffffffff\r\n").unwrap_err(), ChunkError::Invalid);
        assert_eq!(decode_all(b"-1\r\n").unwrap_err(), ChunkError::Invalid);
    }

    /// Found by the `chunked` fuzz target: bytes after the size that do not start
    /// an extension made `5x` read as 5.
    #[test]
    fn rejects_junk_after_the_chunk_size() {
        for size_line in [&b"3x"[..], b"3 x", b"3\t=", b"3\x93", b"3\"a\""] {
            let mut msg = size_line.to_vec();
            msg.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
            assert_eq!(decode_all(&msg).unwrap_err(), ChunkError::Invalid, "{}", String::from_utf8_lossy(size_line));
        }
        assert_eq!(decode_all(b"3 \t\r\nabc\r\n0 ;x\r\n\r\n").unwrap().0, b"abc");
        assert_eq!(decode_all(b"3 ; a=\"x y\" ;b\r\nabc\r\n0\r\n\r\n").unwrap().0, b"abc");
    }

    #[test]
    fn enforces_the_limit() {
        let mut d = ChunkedDecoder::new(4);
        assert_eq!(d.decode(b"5\r\nhello", &mut Vec::new()).unwrap_err(), ChunkError::TooLarge);
    }
}

//! The client's frames as tungstenite reads them, with big data frames cut
//! into fragments of at most `PIECE` bytes.
//!
//! tungstenite reserves a frame's whole length in its read buffer as soon as
//! the frame's head arrives (`BytesMut::reserve(len)`): a head promising
//! 1 MiB costs 1 MiB of address space before a byte of it came, and once the
//! frame is read the rest of that buffer stays pinned by the connection while
//! it idles (the message's bytes and the buffer share one allocation). Cut
//! into fragments, a big frame is collected as its bytes arrive (tungstenite
//! grows a fragmented message as its fragments come), and no reservation
//! exceeds `PIECE`: memory follows the bytes, not the promise.
//!
//! Only masked text, binary and continuation frames within the size limit
//! are cut; the message they make is the same (the first fragment keeps the
//! opcode and reserved bits, the last the FIN bit), and so are the errors a
//! broken frame earns (every other frame, and every frame over the limit,
//! passes unchanged, for tungstenite to judge).

use std::io;

use crate::app::upgrade::{UpgradeError, Upgraded};

/// The largest fragment tungstenite is given (a multiple of 4, so that
/// every fragment keeps the frame's mask).
pub const PIECE: usize = 16 * 1024;

/// Bytes read from the connection at once.
const READ: usize = 4096;

/// The longest frame head: 2 bytes, a 64-bit length, the mask.
const MAX_HEAD: usize = 14;

/// The state of the cut between calls.
pub struct Reframe {
    /// Bytes read from the connection not yet passed on (at most `READ`
    /// plus a partial head).
    staged: Vec<u8>,
    start: usize,
    /// A head to pass on before anything else.
    head: [u8; MAX_HEAD],
    head_at: usize,
    head_len: usize,
    /// Payload bytes of the client's current frame not yet passed on.
    left: u64,
    /// The current frame is being cut: its FIN bit, and the bytes left in
    /// the fragment under way.
    cut: Option<Cut>,
    /// Largest frame accepted; a longer one passes unchanged (tungstenite
    /// refuses it by its head, before reserving anything).
    max_frame: u64,
}

#[derive(Clone, Copy)]
struct Cut {
    fin: bool,
    mask: [u8; 4],
    piece_left: usize,
}

/// What a complete head says.
struct Head {
    len: usize,
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: u64,
}

impl Reframe {
    pub fn new(max_frame: usize) -> Reframe {
        Reframe {
            staged: Vec::new(),
            start: 0,
            head: [0; MAX_HEAD],
            head_at: 0,
            head_len: 0,
            left: 0,
            cut: None,
            max_frame: max_frame as u64,
        }
    }

    /// Passes on the connection's bytes, big frames cut, into `out`.
    pub fn read(&mut self, raw: &Upgraded, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.produce(out);
            if n > 0 {
                return Ok(n);
            }
            // Nothing to pass on without more bytes.
            if self.start > 0 {
                self.staged.drain(..self.start);
                self.start = 0;
            }
            let have = self.staged.len();
            if self.staged.capacity() < READ + MAX_HEAD {
                self.staged.reserve_exact(READ + MAX_HEAD - have);
            }
            self.staged.resize(have + READ, 0);
            let got = raw.try_read(&mut self.staged[have..]);
            self.staged.truncate(have + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(UpgradeError::WouldBlock) => {
                    self.release_if_idle();
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Err(UpgradeError::Closed) => return Err(io::ErrorKind::ConnectionReset.into()),
            }
        }
    }

    /// An idle connection keeps no staging buffer.
    fn release_if_idle(&mut self) {
        if self.staged.is_empty() {
            self.staged = Vec::new();
        }
    }

    /// Moves what can be passed on from the staged bytes into `out`.
    fn produce(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            if self.head_at < self.head_len {
                let k = (self.head_len - self.head_at).min(out.len() - n);
                out[n..n + k].copy_from_slice(&self.head[self.head_at..self.head_at + k]);
                self.head_at += k;
                n += k;
                continue;
            }
            let avail = self.staged.len() - self.start;
            if self.left > 0 {
                let mut k = avail.min(out.len() - n).min(usize::try_from(self.left).unwrap_or(usize::MAX));
                if let Some(cut) = &self.cut {
                    k = k.min(cut.piece_left);
                }
                if k == 0 {
                    break;
                }
                out[n..n + k].copy_from_slice(&self.staged[self.start..self.start + k]);
                self.start += k;
                n += k;
                self.left -= k as u64;
                if let Some(cut) = &mut self.cut {
                    cut.piece_left -= k;
                    if self.left == 0 {
                        self.cut = None;
                    } else if cut.piece_left == 0 {
                        let cut = *cut;
                        self.next_piece(cut);
                    }
                }
                continue;
            }
            // At a frame's head.
            let Some(head) = parse_head(&self.staged[self.start..]) else { break };
            let cuttable = matches!(head.opcode, 0..=2)
                && head.mask.is_some()
                && head.payload > PIECE as u64
                && head.payload <= self.max_frame;
            self.left = head.payload;
            if cuttable {
                // The first fragment: the frame's opcode and reserved bits, no FIN.
                let mask = head.mask.unwrap_or_default();
                let first = self.staged[self.start] & 0x7f;
                self.start += head.len;
                self.set_head(first, PIECE, mask);
                self.cut = Some(Cut { fin: head.fin, mask, piece_left: PIECE });
            } else {
                self.head[..head.len].copy_from_slice(&self.staged[self.start..self.start + head.len]);
                self.head_at = 0;
                self.head_len = head.len;
                self.start += head.len;
            }
        }
        n
    }

    /// The next fragment of a frame being cut: a continuation, FIN on the last.
    fn next_piece(&mut self, cut: Cut) {
        let piece = usize::try_from(self.left).unwrap_or(usize::MAX).min(PIECE);
        let last = piece as u64 == self.left;
        let first = if last && cut.fin { 0x80 } else { 0 };
        self.set_head(first, piece, cut.mask);
        self.cut = Some(Cut { piece_left: piece, ..cut });
    }

    fn set_head(&mut self, first: u8, len: usize, mask: [u8; 4]) {
        debug_assert!(len <= 0xffff);
        self.head[0] = first;
        self.head[1] = 0x80 | 126;
        self.head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        self.head[4..8].copy_from_slice(&mask);
        self.head_at = 0;
        self.head_len = 8;
    }
}

/// A complete frame head at the front of `bytes`, or None while incomplete.
fn parse_head(bytes: &[u8]) -> Option<Head> {
    let b0 = *bytes.first()?;
    let b1 = *bytes.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (ext, payload) = match b1 & 0x7f {
        126 => (2, u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as u64),
        127 => (8, u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)),
        n => (0, n as u64),
    };
    let len = 2 + ext + if masked { 4 } else { 0 };
    if bytes.len() < len {
        return None;
    }
    let mask = masked.then(|| bytes[2 + ext..len].try_into().unwrap_or_default());
    Some(Head { len, fin: b0 & 0x80 != 0, opcode: b0 & 0x0f, mask, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(first: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// The frames in `bytes`: (first byte, unmasked payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(h) = parse_head(bytes) {
            let mask = h.mask.expect("masked");
            let end = h.len + h.payload as usize;
            let payload = bytes[h.len..end].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            out.push((bytes[0], payload));
            bytes = &bytes[end..];
        }
        assert!(bytes.is_empty(), "a partial frame left");
        out
    }

    /// Everything `input` becomes, passed on through `out` buffers of `step` bytes.
    fn cut(input: &[u8], step: usize) -> Vec<u8> {
        let mut r = Reframe::new(1 << 20);
        r.staged = input.to_vec();
        let mut got = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = r.produce(&mut buf);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[test]
    fn big_data_frames_become_fragments_of_the_same_message() {
        let mask = [1, 2, 3, 4];
        let big: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut input = frame(0x82, mask, &big);
        input.extend(frame(0x89, mask, b"ping"));
        input.extend(frame(0xc1, mask, b"small, rsv1 kept"));
        input.extend(frame(0x01, mask, &big[..PIECE + 1]));
        input.extend(frame(0x80, mask, &big[..3]));
        for step in [1, 7, 4096, 100_000] {
            let out = frames(&cut(&input, step));
            let firsts: Vec<u8> = out.iter().map(|f| f.0).collect();
            assert_eq!(firsts, [0x02, 0x00, 0x80, 0x89, 0xc1, 0x01, 0x00, 0x80], "step {step}");
            let whole: Vec<u8> = out[..3].iter().flat_map(|f| f.1.clone()).collect();
            assert_eq!(whole, big);
            assert_eq!(out[0].1.len(), PIECE);
            assert_eq!(out[3].1, b"ping");
            assert_eq!(out[6].1.len(), 1, "the last piece of a frame without FIN");
        }
    }

    #[test]
    fn frames_over_the_limit_and_unmasked_ones_pass_unchanged() {
        let mut over = vec![0x82, 0x80 | 127];
        over.extend_from_slice(&(2u64 << 20).to_be_bytes());
        over.extend_from_slice(&[9, 9, 9, 9]);
        assert_eq!(cut(&over, 64), over);
        let mut unmasked = vec![0x82, 126, 0x80, 0x00];
        unmasked.extend(vec![7u8; 0x8000]);
        assert_eq!(cut(&unmasked, 1000), unmasked);
    }
}

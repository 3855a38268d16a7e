//! A connection's pending output: what the socket has not taken yet, as a queue
//! of segments, so that borrowed-with-release bodies go out without a copy and
//! file bodies go out with `sendfile`. Bytes just before a file segment are
//! sent with `MSG_MORE`, so a response head and the first bytes of its file
//! share a packet.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::sync::Arc;

use crate::net::payload::Payload;
use crate::net::stream::Stream;

/// One piece of pending output.
pub(crate) enum Segment {
    /// Bytes the engine owns (composed heads, copied bodies).
    Owned(Vec<u8>),
    /// A caller's buffer, released when written or dropped.
    Payload(Payload),
    /// `remaining` bytes of a file from `offset`, sent with `sendfile`.
    File { file: Arc<File>, offset: u64, remaining: u64 },
}

impl Segment {
    /// The bytes of a byte segment; empty for a file segment.
    fn bytes(&self) -> &[u8] {
        match self {
            Segment::Owned(v) => v,
            Segment::Payload(p) => p.as_ref(),
            Segment::File { .. } => &[],
        }
    }

    fn is_file(&self) -> bool {
        matches!(self, Segment::File { .. })
    }
}

/// Output waiting for the socket, oldest first.
#[derive(Default)]
pub(crate) struct OutQueue {
    segments: VecDeque<Segment>,
    /// Bytes of the front segment already written.
    front_done: usize,
    len: usize,
    /// Bytes written to the socket since `take_written` was last called.
    written: u64,
    /// An owned segment's buffer, written and kept for the next copy, so
    /// that answers queued one batch after another allocate nothing; given
    /// to the worker's pool when the connection goes idle (`take_spare`).
    spare: Vec<u8>,
}

/// Owned segments up to this capacity are kept as `OutQueue::spare`: room
/// for a batch of 16 pipelined small answers (which outgrow 4 KiB).
const SPARE_MAX: usize = 8192;
/// A held answer's queue, pooled by its worker, keeps a buffer only up to
/// this capacity (a pool of such queues stays small).
pub(crate) const HELD_SPARE_MAX: usize = 1024;

/// How many segments one `writev` takes at most.
const MAX_IOVECS: usize = 64;

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes still to write.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends a copy of `bytes`, joining it to an owned tail segment.
    pub fn push_copy(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        if let Some(Segment::Owned(tail)) = self.segments.back_mut() {
            if tail.len() < 64 * 1024 {
                tail.extend_from_slice(bytes);
                return;
            }
        }
        let mut owned = std::mem::take(&mut self.spare);
        owned.extend_from_slice(bytes);
        self.segments.push_back(Segment::Owned(owned));
    }

    /// Takes the kept buffer (the connection is idle: it keeps nothing).
    pub fn take_spare(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.spare)
    }

    /// Gives the queue a buffer for its next copy, when it has none and its
    /// copies do not join an owned tail already: a spare taken while the tail
    /// is being filled would stay, and the tail's buffer would be freed once
    /// written, instead of kept (the pool would drain, a buffer per round).
    pub fn offer_spare(&mut self, spare: impl FnOnce() -> Option<Vec<u8>>) {
        if self.spare.capacity() == 0 && !matches!(self.segments.back(), Some(Segment::Owned(_))) {
            if let Some(v) = spare() {
                self.spare = v;
            }
        }
    }

    /// Appends a caller's buffer; it is released once written or dropped.
    pub fn push_payload(&mut self, payload: Payload) {
        if payload.as_ref().is_empty() {
            return;
        }
        self.len += payload.as_ref().len();
        self.segments.push_back(Segment::Payload(payload));
    }

    /// Appends `len` bytes of `file` from `offset`, sent with `sendfile`.
    pub fn push_file(&mut self, file: Arc<File>, offset: u64, len: u64) {
        if len > 0 {
            self.len += len as usize;
            self.segments.push_back(Segment::File { file, offset, remaining: len });
        }
    }

    /// Writes as much as the socket takes. `Ok(true)` when the queue is empty.
    /// An error (the peer is gone, or a file shrank while being sent) means
    /// the connection must close.
    pub fn flush(&mut self, stream: &Stream) -> io::Result<bool> {
        if self.len == 0 {
            // TLS records of the session's own (handshake, alerts) may wait.
            return stream.flush_tls();
        }
        while self.len > 0 {
            let file_next = self.segments.get(1).is_some_and(Segment::is_file);
            let single = self.segments.len() == 1;
            let step = match self.segments.front_mut() {
                Some(Segment::File { file, offset, remaining }) => {
                    let want = (*remaining).min(1 << 30) as usize;
                    match stream.sendfile(file, offset, want) {
                        Ok(0) => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the file shrank while being sent",
                            ))
                        }
                        Ok(n) => {
                            *remaining -= n as u64;
                            if *remaining == 0 {
                                self.segments.pop_front();
                            }
                            self.len -= n;
                            self.written += n as u64;
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                _ if file_next => {
                    // The head before a file: hold the packet for the file's bytes.
                    let front = &self.segments[0].bytes()[self.front_done..];
                    stream.send(front, true)
                }
                // One segment (the common batch of answers joined in one
                // buffer): a plain send, without filling an iovec array.
                _ if single => {
                    let front = &self.segments[0].bytes()[self.front_done..];
                    stream.send(front, false)
                }
                _ => {
                    let mut slices: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
                    let mut count = 0;
                    for (i, seg) in self.segments.iter().take(MAX_IOVECS).enumerate() {
                        if seg.is_file() {
                            break;
                        }
                        let bytes = if i == 0 { &seg.bytes()[self.front_done..] } else { seg.bytes() };
                        slices[count] = IoSlice::new(bytes);
                        count += 1;
                    }
                    if count == 1 {
                        stream.send(&slices[0], false)
                    } else {
                        stream.send_vectored(&slices[..count])
                    }
                }
            };
            match step {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Bytes written since the last call (for the byte counters).
    pub fn take_written(&mut self) -> u64 {
        std::mem::take(&mut self.written)
    }

    fn advance(&mut self, mut n: usize) {
        self.written += n as u64;
        self.len -= n;
        while n > 0 {
            let Some(front) = self.segments.front() else { break };
            let left = front.bytes().len() - self.front_done;
            if n >= left {
                n -= left;
                self.front_done = 0;
                if let Some(Segment::Owned(mut done)) = self.segments.pop_front() {
                    if done.capacity() <= SPARE_MAX && self.spare.capacity() == 0 {
                        done.clear();
                        self.spare = done;
                    }
                }
            } else {
                self.front_done += n;
                n = 0;
            }
        }
    }

    /// Moves everything queued in `other` (a held answer's queue) to the end
    /// of this one, in order, leaving `other` empty for reuse: small owned
    /// segments are copied, joining this queue's owned tail, and one of their
    /// buffers stays with `other` for its next answer, so that a queue reused
    /// answer after answer allocates nothing; other segments move as they are.
    pub fn append(&mut self, other: &mut OutQueue) {
        debug_assert_eq!(other.front_done, 0, "a held queue is never written from");
        other.len = 0;
        while let Some(segment) = other.segments.pop_front() {
            match segment {
                Segment::Owned(mut bytes) if bytes.capacity() <= SPARE_MAX => {
                    self.push_copy(&bytes);
                    if other.spare.capacity() == 0 && bytes.capacity() <= HELD_SPARE_MAX {
                        bytes.clear();
                        other.spare = bytes;
                    }
                }
                segment => {
                    self.len += match &segment {
                        Segment::File { remaining, .. } => *remaining as usize,
                        bytes => bytes.bytes().len(),
                    };
                    self.segments.push_back(segment);
                }
            }
        }
    }

    /// Drops everything pending (releasing payloads).
    pub fn clear(&mut self) {
        self.segments.clear();
        self.front_done = 0;
        self.len = 0;
    }
}

/// Writes three byte strings in order until done or the socket is full;
/// returns how much of each went out, or None on a write error. Empty parts are
/// left out of the system call, and a single part goes by plain `write`: the
/// common batch of answers costs the kernel no iovec array.
fn writev_parts(stream: &Stream, parts: [&[u8]; 3]) -> Option<[usize; 3]> {
    let mut done = [0usize; 3];
    loop {
        let mut slices = [IoSlice::new(&[]); 3];
        let mut count = 0;
        for (part, sent) in parts.iter().zip(done) {
            if sent < part.len() {
                slices[count] = IoSlice::new(&part[sent..]);
                count += 1;
            }
        }
        let result = match count {
            0 => return Some(done),
            1 => stream.send(&slices[0], false),
            _ => stream.send_vectored(&slices[..count]),
        };
        match result {
            Ok(0) => return None,
            Ok(mut n) => {
                for i in 0..3 {
                    let take = n.min(parts[i].len() - done[i]);
                    done[i] += take;
                    n -= take;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(done),
            Err(_) => return None,
        }
    }
}

/// Sends `bytes` with one bare `send` where nothing is queued before them (the
/// usual batch of answers: the three-part `writev` path costs ~200
/// instructions more), queueing a copy of what the socket does not take.
/// Returns false on a write error.
pub(crate) fn send_or_queue(stream: &Stream, queue: &mut OutQueue, bytes: &[u8]) -> bool {
    if queue.is_empty() {
        loop {
            match stream.send(bytes, false) {
                Ok(n) => {
                    queue.written += n as u64;
                    if n < bytes.len() {
                        queue.push_copy(&bytes[n..]);
                    }
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    queue.push_copy(bytes);
                    return true;
                }
                Err(_) => return false,
            }
        }
    }
    queue.push_copy(bytes);
    queue.flush(stream).is_ok()
}

/// Writes `out`, then `body`, then `trailer` with one `writev` where the queue
/// is empty, queueing what the socket does not take (the body without a copy).
/// Returns false on a write error.
pub(crate) fn write_now_or_queue(
    stream: &Stream,
    queue: &mut OutQueue,
    out: &mut Vec<u8>,
    body: Option<Payload>,
    trailer: &[u8],
) -> bool {
    if body.is_none() && trailer.is_empty() {
        let ok = send_or_queue(stream, queue, out);
        out.clear();
        return ok;
    }
    if queue.is_empty() {
        let body_bytes: &[u8] = body.as_ref().map_or(&[], |p| p.as_ref());
        let Some(done) = writev_parts(stream, [out, body_bytes, trailer]) else {
            out.clear();
            return false;
        };
        queue.written += done.iter().sum::<usize>() as u64;
        let body_left = body_bytes.len() - done[1];
        queue.push_copy(&out[done[0]..]);
        if let Some(p) = body {
            if body_left > 0 {
                queue.push_payload(p.skip(done[1]));
            }
        }
        queue.push_copy(&trailer[done[2]..]);
        out.clear();
        return true;
    }
    queue.push_copy(out);
    out.clear();
    if let Some(p) = body {
        queue.push_payload(p);
    }
    queue.push_copy(trailer);
    queue.flush(stream).is_ok()
}

/// Like `write_now_or_queue` for a borrowed body: what the socket does not take
/// is copied into the queue.
pub(crate) fn write_borrowed(
    stream: &Stream,
    queue: &mut OutQueue,
    out: &mut Vec<u8>,
    body: &[u8],
    suffix: &[u8],
) -> bool {
    if queue.is_empty() {
        let Some(done) = writev_parts(stream, [out, body, suffix]) else {
            out.clear();
            return false;
        };
        queue.written += done.iter().sum::<usize>() as u64;
        queue.push_copy(&out[done[0]..]);
        queue.push_copy(&body[done[1]..]);
        queue.push_copy(&suffix[done[2]..]);
        out.clear();
        return true;
    }
    queue.push_copy(out);
    queue.push_copy(body);
    queue.push_copy(suffix);
    out.clear();
    queue.flush(stream).is_ok()
}

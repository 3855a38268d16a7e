//! An io_uring instance for one worker thread, through the io-uring crate:
//! the only place that pushes submissions (which the crate marks `unsafe`,
//! since the kernel reads and writes the memory they name after the call).
//!
//! What it offers the worker's io_uring loop (`worker::uring`):
//! - multishot receives into a ring of buffers the kernel picks from (one
//!   submission per connection, then one completion per arrival, no call);
//! - sends of copied bytes, queued and submitted together with the next wait,
//!   with `MSG_DONTWAIT`, so that a full socket answers `EAGAIN` in the
//!   completion instead of the kernel arming a poll and sending later;
//! - one-shot polls, cancellations, and one call that submits and waits.
//!
//! Memory the kernel may touch (the buffer ring, the bytes of queued sends)
//! is owned here and outlives every request naming it: send bytes are kept
//! until each of their completions is reaped, the buffer ring until the ring
//! itself is gone (fields drop in declaration order: the ring first).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// The buffer group of the receive buffers.
const BUF_GROUP: u16 = 0;
/// Marks a send's completion (the rest of the word is its slot); the caller's
/// tokens must leave this bit clear.
const SEND_BIT: u64 = 1 << 63;

/// One completion, as the worker sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completion {
    /// The token the request was submitted with.
    pub token: u64,
    /// Bytes done, or a negated `errno`.
    pub result: i32,
    /// The kernel's completion flags (`more`, `buffer`).
    pub flags: u32,
    /// For a send: where its bytes are, to read what was not sent (`unsent`).
    pub send: Option<SendSlot>,
}

impl Completion {
    /// A multishot request goes on after this completion.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The receive buffer this completion filled, if any.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// Where the bytes of a send are: in which staging buffer, from where, how many.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendSlot {
    staging: usize,
    offset: usize,
    len: usize,
}

struct Queued {
    fd: RawFd,
    offset: usize,
    len: usize,
    token: u64,
}

/// An io_uring with a ring of receive buffers.
pub(crate) struct Ring {
    ring: IoUring,
    bufs: BufRing,
    /// Bytes of sends: the last buffer takes new ones; a buffer is frozen
    /// (never written or dropped) while a send submitted from it is pending.
    stagings: Vec<Vec<u8>>,
    /// Sends queued since the last submission.
    queued: Vec<Queued>,
    /// Submitted sends by slot (their token and bytes), until completed.
    sends: Vec<Option<(u64, SendSlot)>>,
    free_slots: Vec<usize>,
    /// Sends submitted and not yet completed.
    pending_sends: usize,
}

impl Ring {
    /// A ring of `entries` submissions whose completions are run only when
    /// this thread waits (`DEFER_TASKRUN`, Linux 6.1, which also means
    /// multishot receives and buffer rings are there), with `buf_count`
    /// receive buffers of `buf_size` bytes. Must be made on the thread that
    /// will use it (`SINGLE_ISSUER`).
    pub fn new(entries: u32, buf_count: u16, buf_size: usize) -> io::Result<Ring> {
        let ring =
            IoUring::builder().setup_single_issuer().setup_defer_taskrun().setup_cqsize(entries * 4).build(entries)?;
        let bufs = BufRing::new(&ring, buf_count, buf_size)?;
        Ok(Ring {
            ring,
            bufs,
            stagings: vec![Vec::with_capacity(64 * 1024)],
            queued: Vec::new(),
            sends: Vec::new(),
            free_slots: Vec::new(),
            pending_sends: 0,
        })
    }

    /// Pushes `entry`, submitting what waits first when the queue is full.
    ///
    /// # Safety
    /// Whatever memory `entry` names stays valid until its completion is reaped.
    unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller's promise, passed on.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Starts a multishot receive on `fd` into the buffer ring: one
    /// completion per arrival, each naming its buffer (`Completion::buffer`,
    /// give it back with `recycle`), until one without `more`.
    pub fn recv_multishot(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        debug_assert!(token & SEND_BIT == 0);
        let entry = opcode::RecvMulti::new(types::Fd(fd.as_raw_fd()), BUF_GROUP).build().user_data(token);
        // SAFETY: the receive writes only into the buffer ring, which lives
        // as long as the ring (see the module's notes).
        unsafe { self.push(entry) }
    }

    /// One completion when `fd` is ready for `events` (`POLLIN`, `POLLOUT`).
    pub fn poll_once(&mut self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        debug_assert!(token & SEND_BIT == 0);
        let entry = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), events).build().user_data(token);
        // SAFETY: a poll names no memory.
        unsafe { self.push(entry) }
    }

    /// Cancels the request submitted with `target`; its own completion
    /// carries `token`.
    pub fn cancel(&mut self, target: u64, token: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target).build().user_data(token);
        // SAFETY: a cancellation names no memory.
        unsafe { self.push(entry) }
    }

    /// Queues a send of a copy of `bytes` on `fd`, submitted with the next
    /// `submit` or `submit_and_wait`.
    pub fn queue_send(&mut self, fd: BorrowedFd<'_>, bytes: &[u8], token: u64) {
        debug_assert!(token & SEND_BIT == 0);
        if self.pending_sends == 0 && self.queued.is_empty() && self.stagings.len() > 1 {
            // Nothing reads the older buffers any more.
            let last = self.stagings.pop().unwrap_or_default();
            self.stagings.clear();
            self.stagings.push(last);
        }
        if self.pending_sends == 0 && self.queued.is_empty() {
            self.stagings.last_mut().map(Vec::clear);
        } else if self.pending_sends > 0 && self.queued.is_empty() {
            // The current buffer is frozen by pending sends: start another.
            self.stagings.push(Vec::with_capacity(bytes.len().max(64 * 1024)));
        }
        let staging = self.stagings.last_mut().expect("one staging buffer at least");
        let offset = staging.len();
        staging.extend_from_slice(bytes);
        self.queued.push(Queued { fd: fd.as_raw_fd(), offset, len: bytes.len(), token });
    }

    /// Pushes the queued sends: from here on their buffer does not change
    /// until each has completed.
    fn push_sends(&mut self) -> io::Result<()> {
        let staging = self.stagings.len() - 1;
        let queued = std::mem::take(&mut self.queued);
        let mut result = Ok(());
        for q in &queued {
            let slot = SendSlot { staging, offset: q.offset, len: q.len };
            let index = match self.free_slots.pop() {
                Some(i) => i,
                None => {
                    self.sends.push(None);
                    self.sends.len() - 1
                }
            };
            self.sends[index] = Some((q.token, slot));
            let ptr = self.stagings[staging][q.offset..].as_ptr();
            let entry = opcode::Send::new(types::Fd(q.fd), ptr, q.len as u32)
                .flags(libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
                .build()
                .user_data(SEND_BIT | index as u64);
            // SAFETY: the bytes stay in `stagings[staging]`, which is neither
            // written nor dropped while `pending_sends` counts this send, i.e.
            // until its completion is reaped in `submit_and_wait`.
            match unsafe { self.push(entry) } {
                Ok(()) => self.pending_sends += 1,
                Err(e) => {
                    self.sends[index] = None;
                    self.free_slots.push(index);
                    result = Err(e);
                }
            }
        }
        let mut queued = queued;
        queued.clear();
        self.queued = queued;
        result
    }

    /// Submits what is queued without waiting, and appends the completions
    /// already posted (sends complete within the call) to `out`.
    pub fn submit(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        self.push_sends()?;
        self.ring.submit()?;
        self.reap(out);
        Ok(())
    }

    /// Submits what is queued, waits up to `timeout` for one completion at
    /// least, and appends every completion there is to `out`.
    pub fn submit_and_wait(&mut self, timeout: Duration, out: &mut Vec<Completion>) -> io::Result<()> {
        self.push_sends()?;
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        self.reap(out);
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        for cqe in self.ring.completion() {
            let user_data = cqe.user_data();
            let mut completion = Completion { token: user_data, result: cqe.result(), flags: cqe.flags(), send: None };
            if user_data & SEND_BIT != 0 {
                let index = (user_data & !SEND_BIT) as usize;
                let Some((token, slot)) = self.sends.get_mut(index).and_then(Option::take) else { continue };
                self.free_slots.push(index);
                self.pending_sends -= 1;
                completion.token = token;
                completion.send = Some(slot);
            }
            out.push(completion);
        }
    }

    /// What a send's completion did not send (all of it after an error).
    /// Valid until the next `queue_send`.
    pub fn unsent(&self, completion: &Completion) -> &[u8] {
        let Some(slot) = completion.send else { return &[] };
        let sent = usize::try_from(completion.result).unwrap_or(0).min(slot.len);
        &self.stagings[slot.staging][slot.offset + sent..slot.offset + slot.len]
    }

    /// The first `len` bytes of receive buffer `id`; give it back with `recycle`.
    pub fn buffer(&self, id: u16, len: usize) -> &[u8] {
        self.bufs.get(id, len)
    }

    /// Gives receive buffer `id` back to the kernel.
    pub fn recycle(&mut self, id: u16) {
        self.bufs.recycle(id);
    }
}

/// The provided-buffer ring: a page-aligned array of entries the kernel
/// reads (shared tail), and the buffers they point at.
struct BufRing {
    entries: *mut types::BufRingEntry,
    count: u16,
    map_len: usize,
    data: Box<[u8]>,
    size: usize,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring, count: u16, size: usize) -> io::Result<BufRing> {
        assert!(count.is_power_of_two(), "the kernel wants a power of two");
        let map_len = usize::from(count) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, no address asked; the result
        // is checked before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut bufs = BufRing {
            entries: addr.cast(),
            count,
            map_len,
            data: vec![0u8; usize::from(count) * size].into_boxed_slice(),
            size,
            tail: 0,
        };
        // SAFETY: the entries are a page-aligned mapping of `count` entries
        // that lives until the ring is dropped (after the io_uring itself).
        unsafe { ring.submitter().register_buf_ring_with_flags(addr as u64, count, BUF_GROUP, 0)? };
        for id in 0..count {
            bufs.add(id);
        }
        bufs.publish();
        Ok(bufs)
    }

    fn add(&mut self, id: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.data[usize::from(id) * self.size..].as_ptr() as u64;
        // SAFETY: `index` is below `count`, inside the mapping; the kernel
        // reads the entry only once the tail is published past it.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr);
        entry.set_len(self.size as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field sits in the first entry of the live mapping,
        // is 2-byte aligned, and is shared with the kernel, hence atomic.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.entries).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }

    fn get(&self, id: u16, len: usize) -> &[u8] {
        let start = usize::from(id) * self.size;
        &self.data[start..start + len.min(self.size)]
    }

    fn recycle(&mut self, id: u16) {
        if id < self.count {
            self.add(id);
            self.publish();
        }
    }
}

// SAFETY: the mapping and the buffers are owned by the `BufRing` alone (no
// other handle points into them but the kernel's, tied to the ring that
// moves with it); moving it to another thread moves that ownership.
unsafe impl Send for BufRing {}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; the io_uring that
        // read it was dropped before (field order in `Ring`).
        unsafe { libc::munmap(self.entries.cast(), self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    fn wait_for(ring: &mut Ring, token: u64) -> Vec<Completion> {
        let mut all = Vec::new();
        for _ in 0..100 {
            ring.submit_and_wait(Duration::from_millis(50), &mut all).unwrap();
            if all.iter().any(|c| c.token == token) {
                return all;
            }
        }
        panic!("no completion for {token}: {all:?}");
    }

    /// A multishot receive reports each arrival in a buffer; a send goes out
    /// within the submitting call.
    #[test]
    fn receives_into_buffers_and_sends() {
        let mut ring = Ring::new(64, 8, 4096).unwrap();
        let (mut client, server) = pair();
        ring.recv_multishot(server.as_fd(), 1).unwrap();
        client.write_all(b"hello").unwrap();
        let done = wait_for(&mut ring, 1);
        let c = done.iter().find(|c| c.token == 1).unwrap();
        assert!(c.more(), "{c:?}");
        assert_eq!(ring.buffer(c.buffer().unwrap(), c.result as usize), b"hello");
        ring.recycle(c.buffer().unwrap());
        ring.queue_send(server.as_fd(), b"world", 2);
        let done = wait_for(&mut ring, 2);
        let c = done.iter().find(|c| c.token == 2).unwrap();
        assert_eq!(c.result, 5);
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"world");
    }

    /// A full socket answers `EAGAIN` in the send's completion, within the
    /// call that submitted it (no poll armed), and `unsent` keeps the bytes.
    #[test]
    fn a_full_socket_fails_the_send_at_once() {
        let mut ring = Ring::new(64, 8, 4096).unwrap();
        let (_client, server) = pair();
        let chunk = vec![7u8; 1 << 20];
        let mut saw_partial_or_again = false;
        for round in 0..64u64 {
            ring.queue_send(server.as_fd(), &chunk, 10 + round);
            let mut out = Vec::new();
            ring.submit(&mut out).unwrap();
            let c = out.iter().find(|c| c.token == 10 + round).expect("completed within the submitting call");
            if c.result == -libc::EAGAIN || (c.result >= 0 && (c.result as usize) < chunk.len()) {
                assert_eq!(ring.unsent(c).len(), chunk.len() - c.result.max(0) as usize);
                saw_partial_or_again = true;
                if c.result == -libc::EAGAIN {
                    break;
                }
            }
        }
        assert!(saw_partial_or_again);
    }
}

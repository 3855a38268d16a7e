//! A connection's pending output: what the socket has not taken yet, in order —
//! bytes, then file segments sent with `sendfile`, then bytes again (the parts of
//! a multipart body, or responses that came after a file). Bytes followed by a
//! file segment go out with `MSG_MORE`, so a response head and the first bytes
//! of its file share a packet.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use crate::sys::sendfile;

enum Part {
    Bytes { buf: Vec<u8>, sent: usize },
    File { file: Arc<File>, offset: u64, remaining: u64 },
}

/// Output waiting for the socket to accept it.
#[derive(Default)]
pub(crate) struct OutQueue {
    parts: VecDeque<Part>,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Bytes still to send.
    pub fn len(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Bytes { buf, sent } => (buf.len() - sent) as u64,
                Part::File { remaining, .. } => *remaining,
            })
            .sum()
    }

    /// Queues bytes after everything already queued.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(Part::Bytes { buf, .. }) = self.parts.back_mut() {
            buf.extend_from_slice(bytes);
        } else {
            self.parts.push_back(Part::Bytes { buf: bytes.to_vec(), sent: 0 });
        }
    }

    /// Queues `len` bytes of `file` from `offset`.
    pub fn push_file(&mut self, file: Arc<File>, offset: u64, len: u64) {
        if len > 0 {
            self.parts.push_back(Part::File { file, offset, remaining: len });
        }
    }

    pub fn clear(&mut self) {
        self.parts.clear();
    }

    /// Sends from the front until everything is sent or the socket is full.
    /// An error (the peer is gone, or a file ended early because it shrank
    /// while being sent) means the connection must close.
    pub fn flush(&mut self, socket: BorrowedFd<'_>) -> io::Result<()> {
        loop {
            let more = matches!(self.parts.get(1), Some(Part::File { .. }));
            let Some(front) = self.parts.front_mut() else { return Ok(()) };
            let done = match front {
                Part::Bytes { buf, sent } => match sendfile::send(socket, &buf[*sent..], more) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        *sent += n;
                        *sent == buf.len()
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                },
                Part::File { file, offset, remaining } => {
                    let want = (*remaining).min(usize::MAX as u64) as usize;
                    match sendfile::sendfile(socket, file.as_fd(), offset, want) {
                        Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while being sent")),
                        Ok(n) => {
                            *remaining -= n as u64;
                            *remaining == 0
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
            };
            if done {
                self.parts.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (server, client)
    }

    fn temp_file(name: &str, bytes: &[u8]) -> (std::path::PathBuf, Arc<File>) {
        let path = std::env::temp_dir().join(format!("warpcore-outq-{name}-{}", std::process::id()));
        std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        (path, file)
    }

    #[test]
    fn sends_bytes_file_bytes_in_order_through_backpressure() {
        let content: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let (path, file) = temp_file("order", &content);
        let (server, mut client) = pair();
        let mut q = OutQueue::default();
        q.extend_from_slice(b"HEAD");
        q.push_file(file.clone(), 0, content.len() as u64);
        q.extend_from_slice(b"MID");
        q.push_file(file, 10, 5);
        q.extend_from_slice(b"TAIL");
        let total = q.len();
        assert_eq!(total, 4 + content.len() as u64 + 3 + 5 + 4);

        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut chunk = [0u8; 8192];
            while got.len() < total as usize {
                // A slow reader: the queue must stop and resume.
                std::thread::sleep(Duration::from_micros(50));
                let n = client.read(&mut chunk).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&chunk[..n]);
            }
            got
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut stalls = 0;
        while !q.is_empty() {
            assert!(Instant::now() < deadline);
            q.flush(server.as_fd()).unwrap();
            if !q.is_empty() {
                stalls += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let got = reader.join().unwrap();
        let mut expected = b"HEAD".to_vec();
        expected.extend_from_slice(&content);
        expected.extend_from_slice(b"MID");
        expected.extend_from_slice(&content[10..15]);
        expected.extend_from_slice(b"TAIL");
        assert!(got == expected, "stream differs");
        assert!(stalls > 0, "the socket filled up at least once");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let (path, file) = temp_file("shrink", b"0123456789");
        let (server, _client) = pair();
        let mut q = OutQueue::default();
        q.push_file(file, 0, 20);
        assert_eq!(q.flush(server.as_fd()).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn empty_pieces_are_not_queued() {
        let (path, file) = temp_file("empty", b"x");
        let mut q = OutQueue::default();
        q.extend_from_slice(b"");
        q.push_file(file, 0, 0);
        assert!(q.is_empty());
        q.extend_from_slice(b"a");
        q.extend_from_slice(b"b");
        assert_eq!(q.len(), 2);
        q.clear();
        assert!(q.is_empty());
        std::fs::remove_file(path).unwrap();
    }
}

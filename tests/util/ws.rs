//! A small hand-written WebSocket client for the conformance tests: it speaks
//! RFC 6455 frame by frame over a plain `TcpStream`, so that a test can send
//! anything — well-formed messages, frames split byte by byte, and frames a
//! conforming client never sends (unmasked, reserved bits, reserved opcodes,
//! lying lengths) — and read back exactly what the server framed.
//!
//! Also `DemoProcess`: the C demo (`build/demo`, or `WARPCORE_DEMO`) as a
//! child process on 127.0.0.1 port 0, killed and reaped when dropped.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::IO_TIMEOUT;

/// Opcodes (RFC 6455 §5.2).
pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// The RFC's example key (§1.3) and its accept value.
pub const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A fixed mask: the tests need no randomness, only masking that is not
/// the identity.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame to send: every field a test may want to get wrong.
#[derive(Debug, Clone)]
pub struct FrameSpec {
    pub fin: bool,
    /// RSV1..3 as the three bits 0b100, 0b010, 0b001.
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
}

impl FrameSpec {
    /// A final, masked frame.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> FrameSpec {
        FrameSpec { fin: true, rsv: 0, opcode, mask: Some(MASK), payload: payload.into() }
    }

    pub fn fin(mut self, fin: bool) -> FrameSpec {
        self.fin = fin;
        self
    }

    pub fn rsv(mut self, rsv: u8) -> FrameSpec {
        self.rsv = rsv;
        self
    }

    pub fn unmasked(mut self) -> FrameSpec {
        self.mask = None;
        self
    }

    /// The frame's bytes on the wire (shortest length encoding).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = frame_header(self.fin, self.rsv, self.opcode, self.mask, self.payload.len() as u64);
        let start = out.len();
        out.extend_from_slice(&self.payload);
        if let Some(mask) = self.mask {
            for (i, b) in out[start..].iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        out
    }
}

/// A frame head promising `len` payload bytes (the payload itself not included).
pub fn frame_header(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.push((fin as u8) << 7 | (rsv & 7) << 4 | (opcode & 0xf));
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
    out
}

/// A close frame's payload: code, then reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A close frame's code (None for an empty close payload).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// An HTTP response head (status, fields) with what followed it.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub fields: Vec<(String, String)>,
}

impl Head {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The handshake request for `path` with `key` and `extra` fields (each
/// ending in CRLF).
pub fn handshake_request(path: &str, key: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{extra}\r\n"
    )
}

/// A client connection: the bytes it read and has not consumed yet are kept.
pub struct WsClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl WsClient {
    /// A TCP connection, nothing sent yet.
    pub fn tcp(port: u16) -> WsClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        WsClient { stream, buf: Vec::new() }
    }

    /// A client over a connected stream (its timeouts set by the caller).
    pub fn from_stream(stream: TcpStream) -> WsClient {
        WsClient { stream, buf: Vec::new() }
    }

    /// A WebSocket on `/ws`, the handshake checked (101, the accept value).
    pub fn connect(port: u16) -> WsClient {
        let mut c = WsClient::tcp(port);
        c.send(handshake_request("/ws", RFC_KEY, "").as_bytes());
        let head = c.read_head();
        assert_eq!(head.status, 101, "the handshake is accepted: {head:?}");
        assert_eq!(head.field("sec-websocket-accept"), Some(RFC_ACCEPT));
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends `bytes` one byte per write (TCP_NODELAY is set: one segment each).
    pub fn send_bytewise(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.stream.write_all(std::slice::from_ref(b)).expect("send a byte");
        }
    }

    pub fn send_frame(&mut self, frame: &FrameSpec) {
        self.send(&frame.encode());
    }

    /// A whole masked message in one frame.
    pub fn send_message(&mut self, opcode: u8, payload: &[u8]) {
        self.send_frame(&FrameSpec::new(opcode, payload));
    }

    pub fn send_close(&mut self, code: u16, reason: &[u8]) {
        self.send_frame(&FrameSpec::new(CLOSE, close_payload(code, reason)));
    }

    /// Reads more bytes (bounded by the socket's timeout); 0 at the end.
    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = vec![0u8; 256 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn fill_or_panic(&mut self, what: &str) {
        match self.fill() {
            Ok(0) => panic!("the connection ended while reading {what} ({} bytes held)", self.buf.len()),
            Ok(_) => {}
            Err(e) => panic!("reading {what} failed: {e} ({} bytes held)", self.buf.len()),
        }
    }

    /// Reads an HTTP response head; what follows it stays buffered.
    pub fn read_head(&mut self) -> Head {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = text.split("\r\n");
                let status = lines.next().unwrap().split(' ').nth(1).expect("a status").parse().expect("a number");
                let fields = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                return Head { status, fields };
            }
            self.fill_or_panic("a response head");
        }
    }

    /// Reads an HTTP response with a Content-Length body.
    pub fn read_response(&mut self) -> (Head, Vec<u8>) {
        let head = self.read_head();
        let len: usize = head.field("content-length").map_or(0, |v| v.parse().expect("a length"));
        while self.buf.len() < len {
            self.fill_or_panic("a response body");
        }
        let body = self.buf.drain(..len).collect();
        (head, body)
    }

    /// The next frame from the server, which must be unmasked.
    pub fn read_frame(&mut self) -> Frame {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return frame;
            }
            self.fill_or_panic("a frame");
        }
    }

    /// The next frame, which must be a whole (unfragmented) data message
    /// of `opcode` carrying `payload`.
    pub fn expect_message(&mut self, opcode: u8, payload: &[u8]) {
        let f = self.read_frame();
        assert_eq!((f.fin, f.rsv, f.opcode), (true, 0, opcode), "a whole message of opcode {opcode}");
        assert_eq!(f.payload.len(), payload.len(), "the echo's length");
        assert!(f.payload == payload, "the echo's bytes differ");
    }

    /// The next frame must be a close with `code` (None: an empty payload),
    /// then the server must close the TCP connection.
    pub fn expect_close(&mut self, code: Option<u16>) -> Frame {
        let f = self.read_frame();
        assert_eq!(f.opcode, CLOSE, "a close frame, not {f:?}");
        assert_eq!(f.close_code(), code, "the close code (payload {:?})", f.payload);
        self.expect_eof();
        f
    }

    /// The server closes the connection (EOF or a reset) within the timeout,
    /// with no further byte.
    pub fn expect_eof(&mut self) {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("the server did not close the connection: {e}"),
            }
            assert!(Instant::now() < deadline, "the server did not close the connection");
        }
        assert!(self.buf.is_empty(), "bytes after the close: {:?}", &self.buf[..self.buf.len().min(64)]);
    }
}

/// Parses one server frame from the front of `buf`: the frame and the bytes
/// it took, or None while incomplete. Server frames must not be masked.
pub fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "the server masked a frame");
    let (len, at) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    let frame = Frame { fin: buf[0] & 0x80 != 0, rsv: buf[0] >> 4 & 7, opcode: buf[0] & 0xf, payload };
    Some((frame, at + len))
}

/// Where the C demo is: `WARPCORE_DEMO`, else the checkout's `build/demo`.
pub fn demo_path() -> PathBuf {
    let path = match std::env::var_os("WARPCORE_DEMO") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build/demo"),
    };
    assert!(path.is_file(), "the C demo is missing at {} (build it with `make`, or set WARPCORE_DEMO)", path.display());
    path
}

/// The C demo running as a child process; killed (by its PID) and reaped when
/// dropped.
pub struct DemoProcess {
    pub child: Child,
    pub port: u16,
}

impl DemoProcess {
    /// Starts the demo on 127.0.0.1 port 0 with `workers` workers and waits
    /// (bounded) for its `listening on` line.
    pub fn start(workers: usize) -> DemoProcess {
        let child = Command::new(demo_path())
            .args(["--host", "127.0.0.1", "--port", "0", "--workers", &workers.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the demo starts");
        let mut demo = DemoProcess { child, port: 0 };
        let stdout = demo.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            lines.for_each(drop);
        });
        let line = rx.recv_timeout(IO_TIMEOUT).expect("the demo prints its address within the timeout");
        let port = line.trim_end().strip_prefix("listening on 127.0.0.1:").and_then(|p| p.parse().ok());
        demo.port = port.unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        demo
    }

    /// Its resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        super::child::rss_kib(self.child.id())
    }

    /// The highest resident memory seen over `window`, sampled every 20 ms.
    pub fn peak_rss_over(&self, window: Duration) -> u64 {
        super::child::peak_rss_kib(self.child.id(), window)
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

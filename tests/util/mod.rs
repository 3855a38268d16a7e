//! Shared helpers for the socket tests: start a server on 127.0.0.1:0 with a
//! handler, talk to it over real TCP, read responses back.
#![allow(dead_code)]

pub mod child;
pub mod tls;
pub mod workers;
pub mod ws;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::Deref;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use warpcore::{Config, Handler, Payload, Request, Response, Server};

/// How long any single socket wait in a test may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1:0, shut down when dropped.
pub struct TestServer {
    pub server: Server,
    pub port: u16,
}

impl TestServer {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }
}

/// Starts a server with `handler`, after `tune` adjusts the config.
pub fn start_with(handler: impl Handler, tune: impl FnOnce(&mut Config)) -> TestServer {
    let mut config =
        Config { listen: "127.0.0.1:0".into(), workers: 1, handler: Some(Arc::new(handler)), ..Config::default() };
    tune(&mut config);
    let server = Server::start(&config).expect("server starts");
    let port = server.port();
    TestServer { server, port }
}

pub fn start(handler: impl Handler) -> TestServer {
    start_with(handler, |_| {})
}

/// The demo's routes in Rust: `GET /` hello, `POST /echo` the body, else 404.
pub fn demo_handler(req: &Request<'_>, res: &mut Response<'_>) {
    let text = [(&b"Content-Type"[..], &b"text/plain"[..])];
    let headers = text.iter().map(|(n, v)| (*n, *v));
    let _ = match (req.method, req.path) {
        (b"GET" | b"HEAD", b"/") => res.respond(200, headers, b"Hello, World!"),
        (b"POST", b"/echo") => res.respond(200, headers, req.body),
        _ => res.respond(404, headers, b"Not Found\n"),
    };
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a `Client` talks through: a TCP or a Unix stream.
pub trait Socket: Read + Write {
    fn half_close(&self);
    fn read_timeout(&self, timeout: Duration);
}

impl Socket for TcpStream {
    fn half_close(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
    fn read_timeout(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).unwrap();
    }
}

impl Socket for UnixStream {
    fn half_close(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
    fn read_timeout(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).unwrap();
    }
}

/// A client connection that reads responses one at a time, keeping any bytes
/// that belong to the next one.
pub struct Client<S: Socket = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, buf: Vec::new() }
    }
}

impl Client<UnixStream> {
    /// Connects to the Unix socket at `path`.
    pub fn connect_unix(path: &Path) -> Client<UnixStream> {
        let stream = UnixStream::connect(path).expect("connect to the Unix socket");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Client { stream, buf: Vec::new() }
    }
}

impl<S: Socket> Client<S> {
    /// A client over a stream already connected (a TLS session, say).
    pub fn over(stream: S) -> Client<S> {
        Client { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends a GET for `path` with a Host header.
    pub fn get(&mut self, path: &str) -> Reply {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.read_response(false)
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Reads one response; `head_request` says it answers a HEAD (no body).
    pub fn read_response(&mut self, head_request: bool) -> Reply {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf).expect("well-formed response") {
                httparse::Status::Complete(head_len) => {
                    let status = resp.code.unwrap();
                    let headers: Vec<(String, String)> = resp
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    self.buf.drain(..head_len);
                    let reply = Reply { status, headers, body: Vec::new() };
                    if (100..200).contains(&status) {
                        return reply;
                    }
                    return self.read_body(reply, head_request);
                }
                httparse::Status::Partial => {
                    if self.fill() == 0 {
                        panic!(
                            "connection closed before a complete response head; got {:?}",
                            String::from_utf8_lossy(&self.buf)
                        );
                    }
                }
            }
        }
    }

    fn read_body(&mut self, mut reply: Reply, head_request: bool) -> Reply {
        if head_request || reply.status == 204 || reply.status == 304 {
            return reply;
        }
        if let Some(len) = reply.header("content-length") {
            let len: usize = len.trim().parse().expect("numeric content-length");
            while self.buf.len() < len {
                if self.fill() == 0 {
                    panic!("closed inside body");
                }
            }
            reply.body = self.buf.drain(..len).collect();
        } else if reply.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            reply.body = self.read_chunked();
        } else {
            while self.fill() > 0 {}
            reply.body = std::mem::take(&mut self.buf);
        }
        reply
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).expect("hex chunk size");
            if size == 0 {
                while !self.read_line().is_empty() {}
                return body;
            }
            while self.buf.len() < size + 2 {
                if self.fill() == 0 {
                    panic!("closed inside chunk");
                }
            }
            body.extend(self.buf.drain(..size));
            assert_eq!(self.buf.drain(..2).collect::<Vec<_>>(), b"\r\n");
        }
    }

    fn read_line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return line;
            }
            if self.fill() == 0 {
                panic!("closed inside a line");
            }
        }
    }

    /// True when the server closes the connection (EOF) within `IO_TIMEOUT`,
    /// after any bytes still buffered.
    pub fn closed_by_server(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + IO_TIMEOUT;
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }

    /// Bytes received but not yet consumed as a response.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }

    pub fn shutdown_write(&self) {
        self.stream.half_close();
    }
}

/// Sends `bytes` on a fresh connection, half-closes, and returns everything the
/// server sends until it closes.
pub fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut c = Client::connect(port);
    c.send(bytes);
    c.shutdown_write();
    let mut out = Vec::new();
    let _ = c.stream.read_to_end(&mut out);
    out
}

impl Client {
    /// Connects with a small receive buffer (set before connecting, so the
    /// window stays small): the server's writes back up quickly.
    pub fn connect_with_rcvbuf(port: u16, bytes: usize) -> Client {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        socket.connect_timeout(&addr.into(), IO_TIMEOUT).expect("connect");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, buf: Vec::new() }
    }
}

impl<S: Socket> Client<S> {
    /// Everything the server sends until it closes, buffered bytes first.
    /// Panics if the server neither sends nor closes within `IO_TIMEOUT`.
    /// A reset after the last byte counts as the end.
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => {
                    panic!("no EOF within {IO_TIMEOUT:?} ({e}); got so far {:?}", String::from_utf8_lossy(&self.buf))
                }
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// One `read` with a short timeout: `Some(bytes)` (empty at EOF) or `None`
    /// when nothing arrived in time. Bytes go straight to the caller, not to the
    /// response buffer.
    pub fn read_once(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        self.stream.read_timeout(timeout);
        let mut chunk = vec![0u8; 1 << 20];
        let r = self.stream.read(&mut chunk);
        self.stream.read_timeout(IO_TIMEOUT);
        match r {
            Ok(n) => Some(chunk[..n].to_vec()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(Vec::new()),
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Parses the complete response at the start of `buf`: the reply and the bytes
/// it used, or `None` when it is incomplete. `head_request` says it answers a
/// HEAD. Bodies delimited by close are not supported (they never are here).
pub fn parse_response(buf: &[u8], head_request: bool) -> Option<(Reply, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf).expect("well-formed response") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let status = resp.code.unwrap();
    let headers: Vec<(String, String)> =
        resp.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
    let mut reply = Reply { status, headers, body: Vec::new() };
    if head_request || reply.status == 204 || reply.status == 304 || (100..200).contains(&reply.status) {
        return Some((reply, head_len));
    }
    let len: usize = reply
        .header("content-length")
        .expect("responses here carry Content-Length")
        .trim()
        .parse()
        .expect("numeric content-length");
    if buf.len() < head_len + len {
        return None;
    }
    reply.body = buf[head_len..head_len + len].to_vec();
    Some((reply, head_len + len))
}

/// Splits a byte stream into complete responses; `heads[i]` says whether the
/// i-th answers a HEAD (missing entries: not). Returns the replies and the
/// bytes left over after the last complete one.
pub fn parse_responses(mut buf: &[u8], heads: &[bool]) -> (Vec<Reply>, Vec<u8>) {
    let mut replies = Vec::new();
    while !buf.is_empty() {
        let head = heads.get(replies.len()).copied().unwrap_or(false);
        match parse_response(buf, head) {
            Some((reply, used)) => {
                replies.push(reply);
                buf = &buf[used..];
            }
            None => break,
        }
    }
    (replies, buf.to_vec())
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A one-way signal between threads: `open` once, and every `wait` returns.
/// For a test thread that must act only after an event another thread sees,
/// instead of sleeping and hoping the event came first.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Waits (without holding the lock) until the gate opens or `timeout`
    /// passes; true when it opened.
    pub fn wait(&self, timeout: Duration) -> bool {
        let open = self.open.lock().unwrap();
        let (open, _) = self.opened.wait_timeout_while(open, timeout, |open| !*open).unwrap();
        *open
    }
}

/// A handler that answers with what it saw: `METHOD PATH BODY` (and, for HEAD,
/// the length GET would have).
pub fn echo_handler(req: &Request<'_>, res: &mut Response<'_>) {
    let mut text = Vec::new();
    text.extend_from_slice(req.method);
    text.push(b' ');
    text.extend_from_slice(req.path);
    text.push(b' ');
    text.extend_from_slice(req.body);
    let _ = res.respond(200, std::iter::empty(), &text);
}

/// A fresh directory `warpcore-{kind}-{name}-{pid}-{n}` under the system temp
/// dir, unique to this test, removed on drop. Derefs to its path.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(kind: &str, name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "warpcore-{kind}-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A payload that counts its release: `released` goes up by one when the
/// library drops it (sent, refused or given back).
pub fn counted(bytes: Vec<u8>, released: &Arc<AtomicUsize>) -> Payload {
    Payload::new(Box::new(Counted { bytes, released: released.clone() }))
}

struct Counted {
    bytes: Vec<u8>,
    released: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.released.fetch_add(1, Ordering::SeqCst);
    }
}

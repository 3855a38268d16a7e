//! One connection's state machine: parse every complete request in the input,
//! call the handler, gather the responses, and remember a request whose body is
//! still arriving.

use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::buffer::InBuf;
use crate::file::FileCtx;
use crate::handler::{Outcome, Request, Response};
use crate::http::chunked::{ChunkError, ChunkedDecoder};
use crate::http::compose::{compose_error, ComposeEnv, RequestMeta};
use crate::http::head::{self, Framing, Reject, MAX_HEADERS};
use crate::http::percent;
use crate::output::OutQueue;
use crate::timer::Deadline;
use crate::worker::WorkerCtx;

/// A request whose head has arrived and whose body has not (yet) all arrived.
struct PartialBody {
    /// `100 Continue` was sent for it.
    continue_sent: bool,
    /// For a chunked body: the decoder and how many raw body bytes it has consumed.
    chunked: Option<(ChunkedDecoder, usize)>,
}

/// The IP address of the peer as text, formatted once per connection.
pub(crate) struct PeerText {
    bytes: [u8; 46],
    len: u8,
}

impl PeerText {
    fn new(addr: &SocketAddr) -> PeerText {
        use std::io::Write;
        let mut bytes = [0u8; 46];
        let mut cursor = std::io::Cursor::new(&mut bytes[..]);
        let _ = write!(cursor, "{}", addr.ip());
        let len = cursor.position() as u8;
        PeerText { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Why processing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// All complete requests were handled; more bytes are needed.
    NeedInput,
    /// Output is backed up; resume when the socket drains.
    Backpressure,
    /// The connection closes once its output is written.
    Close,
}

/// What one pass over the input did.
pub(crate) struct Progress {
    /// Input bytes that belonged to handled requests.
    pub consumed: usize,
    pub stop: Stop,
    /// A request in progress needs this many bytes buffered in all.
    pub need: usize,
}

/// Everything about a connection except its input buffer.
pub(crate) struct ConnState {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub peer_text: PeerText,
    /// Output the socket did not take yet: bytes and file segments.
    pub backlog: OutQueue,
    /// A decoded chunked body.
    body: Vec<u8>,
    partial: Option<PartialBody>,
    /// Send what is queued, then close.
    pub close_after_flush: bool,
    /// Write interest is registered with the poller.
    pub write_registered: bool,
    pub deadline: Deadline,
}

/// A connection: its state and the bytes of a request that did not arrive whole.
/// When idle it owns no buffer: reads land in the worker's scratch buffer first.
pub(crate) struct Conn {
    pub input: InBuf,
    pub state: ConnState,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Conn {
        Conn {
            input: InBuf::default(),
            state: ConnState {
                stream,
                peer_text: PeerText::new(&peer),
                peer,
                backlog: OutQueue::default(),
                body: Vec::new(),
                partial: None,
                close_after_flush: false,
                write_registered: false,
                deadline: Deadline::NONE,
            },
        }
    }
}

impl ConnState {
    /// Whether a request head has been parsed and its body is still arriving.
    pub fn awaiting_body(&self) -> bool {
        self.partial.is_some()
    }

    /// Handles every complete request at the start of `input`, appending the
    /// responses to `out`.
    pub fn process(&mut self, input: &[u8], ctx: &mut WorkerCtx, out: &mut Vec<u8>) -> Progress {
        let mut pos = 0;
        loop {
            if self.close_after_flush {
                return Progress { consumed: pos, stop: Stop::Close, need: 0 };
            }
            if !self.backlog.is_empty() {
                return Progress { consumed: pos, stop: Stop::Backpressure, need: 0 };
            }
            if pos == input.len() {
                return Progress { consumed: pos, stop: Stop::NeedInput, need: 0 };
            }
            match self.handle_one(&input[pos..], ctx, out) {
                Ok(n) => pos += n,
                Err(need) => return Progress { consumed: pos, stop: Stop::NeedInput, need },
            }
        }
    }

    /// Handles the request at the start of `buf`: `Ok(bytes it used)`, or
    /// `Err(bytes needed in all)` when it is incomplete (0 if unknown).
    fn handle_one(&mut self, buf: &[u8], ctx: &mut WorkerCtx, out: &mut Vec<u8>) -> Result<usize, usize> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (req, info) = match head::parse(buf, &mut headers, &ctx.head_limits) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Err(0),
            Err(Reject(status)) => return Ok(self.reject(status, buf.len(), ctx, out)),
        };
        let head_len = info.head_len;
        let (body, used): (&[u8], usize) = match info.framing {
            Framing::Empty => (&[], head_len),
            Framing::Length(n) => {
                if n > ctx.max_body_size {
                    return Ok(self.reject(413, buf.len(), ctx, out));
                }
                let end = head_len + n as usize;
                if buf.len() < end {
                    self.wait_for_body(info.expect_continue, false, out);
                    return Err(end);
                }
                (&buf[head_len..end], end)
            }
            Framing::Chunked => {
                let partial = self.partial.get_or_insert_with(|| PartialBody { continue_sent: false, chunked: None });
                let (decoder, raw_done) =
                    partial.chunked.get_or_insert_with(|| (ChunkedDecoder::new(ctx.max_body_size), 0));
                match decoder.decode(&buf[head_len + *raw_done..], &mut self.body) {
                    Ok((n, done)) => {
                        *raw_done += n;
                        if !done {
                            self.wait_for_body(info.expect_continue, true, out);
                            return Err(0);
                        }
                        let used = head_len + *raw_done;
                        (&self.body[..], used)
                    }
                    Err(ChunkError::Invalid) => return Ok(self.reject(400, buf.len(), ctx, out)),
                    Err(ChunkError::TooLarge) => return Ok(self.reject(413, buf.len(), ctx, out)),
                }
            }
        };

        let target = req.path.unwrap_or("").as_bytes();
        let Some((raw_path, query)) = percent::split_target(target) else {
            return Ok(self.reject(400, buf.len(), ctx, out));
        };
        ctx.path_buf.clear();
        if percent::decode_path_into(raw_path, &mut ctx.path_buf).is_err() {
            return Ok(self.reject(400, buf.len(), ctx, out));
        }
        let headers: &[httparse::Header<'_>] = req.headers;
        let request = Request {
            method: req.method.unwrap_or("").as_bytes(),
            target,
            path: &ctx.path_buf,
            query,
            minor_version: info.minor,
            headers,
            body,
            peer: self.peer,
            peer_ip: self.peer_text.as_bytes(),
            worker_index: ctx.index,
        };
        let env = ComposeEnv { date: ctx.date.get(), server_line: &ctx.server_line };
        let meta = RequestMeta { minor: info.minor, keep_alive: info.keep_alive && !ctx.draining, is_head: info.is_head };
        let file = FileCtx { files: &mut ctx.files, method: request.method, headers };
        let mut response =
            Response { out, backlog: &mut self.backlog, stream: &self.stream, env, meta, outcome: Outcome::Pending, file };
        // A path under a static mount is served by the engine, without the handler.
        if !response.serve_static(raw_path, query) {
            ctx.handler.handle(&request, &mut response);
        }
        let outcome = response.outcome;
        match outcome {
            Outcome::Answered { close } => self.close_after_flush |= close,
            Outcome::Broken => self.close_after_flush = true,
            Outcome::Pending => {
                // Deferred answers arrive with their own mechanism; a handler that
                // neither answered nor deferred is a bug in it, and the client
                // still gets an answer.
                compose_error(out, &env_of(ctx), 500);
                self.close_after_flush = true;
            }
        }
        self.partial = None;
        self.body.clear();
        ctx.requests += 1;
        Ok(used)
    }

    /// Sends `100 Continue` once when the client asked for it.
    fn wait_for_body(&mut self, expect_continue: bool, chunked: bool, out: &mut Vec<u8>) {
        let partial = self.partial.get_or_insert_with(|| PartialBody { continue_sent: false, chunked: None });
        debug_assert!(chunked || partial.chunked.is_none());
        if expect_continue && !partial.continue_sent {
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            partial.continue_sent = true;
        }
    }

    /// Answers a request the engine refuses; nothing after it on this connection
    /// is read as a request.
    fn reject(&mut self, status: u16, rest: usize, ctx: &mut WorkerCtx, out: &mut Vec<u8>) -> usize {
        compose_error(out, &env_of(ctx), status);
        self.close_after_flush = true;
        self.partial = None;
        self.body.clear();
        ctx.parse_errors += 1;
        rest
    }
}

fn env_of(ctx: &WorkerCtx) -> ComposeEnv<'_> {
    ComposeEnv { date: ctx.date.get(), server_line: &ctx.server_line }
}

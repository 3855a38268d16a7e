//! What an application sees: the `Handler` trait, the borrowed `Request` and the
//! `Response` it answers through.

use std::io::{IoSlice, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::file::FileCtx;
use crate::http::compose::{compose_head, BodyLength, ComposeEnv, ComposeError, RequestMeta};
use crate::output::OutQueue;

/// An application. Called on the worker thread that read the request; shared by
/// every worker, hence `Sync`. A handler that blocks holds up its worker's other
/// connections.
pub trait Handler: Send + Sync + 'static {
    /// Answers `req` through `res` (exactly once).
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>);
}

impl<F> Handler for F
where
    F: Fn(&Request<'_>, &mut Response<'_>) + Send + Sync + 'static,
{
    fn handle(&self, req: &Request<'_>, res: &mut Response<'_>) {
        self(req, res)
    }
}

/// A parsed request, borrowed from the connection's buffers for the length of the
/// handler call.
pub struct Request<'a> {
    /// The method token (`GET`, `POST`, …).
    pub method: &'a [u8],
    /// The request target as sent.
    pub target: &'a [u8],
    /// The path, percent-decoded.
    pub path: &'a [u8],
    /// The query, as sent (without `?`).
    pub query: &'a [u8],
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The header fields in the order received.
    pub headers: &'a [httparse::Header<'a>],
    /// The whole body (chunked coding removed).
    pub body: &'a [u8],
    /// The client's address.
    pub peer: SocketAddr,
    /// The peer's IP address as text (`127.0.0.1`, `::1`).
    pub peer_ip: &'a [u8],
    /// Which worker read the request (0-based).
    pub worker_index: usize,
}

impl<'a> Request<'a> {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }
}

/// Why a response call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespondError {
    /// The request was answered already.
    AlreadyAnswered,
    /// The status is not a final status in 200..=599.
    InvalidStatus,
    /// A header name is not a token or a value holds CR, LF or NUL.
    InvalidHeader,
    /// The client is gone; the response was dropped.
    Closed,
    /// `respond_file`: the path is missing, a directory, not a regular file or
    /// not readable; nothing was sent and the request may be answered again.
    FileUnavailable(std::io::ErrorKind),
}

impl From<ComposeError> for RespondError {
    fn from(e: ComposeError) -> Self {
        match e {
            ComposeError::Status => RespondError::InvalidStatus,
            ComposeError::Header => RespondError::InvalidHeader,
        }
    }
}

/// Bodies at least this large are written straight from the caller's buffer with
/// `writev` instead of being copied into the output buffer.
pub const DIRECT_WRITE_MIN: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pending,
    Answered { close: bool },
    /// Writing failed: the connection is to be closed.
    Broken,
}

/// The answer to one request. Responses of pipelined requests are gathered in
/// the worker's output buffer and leave together.
pub struct Response<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) backlog: &'a mut OutQueue,
    pub(crate) stream: &'a TcpStream,
    pub(crate) env: ComposeEnv<'a>,
    pub(crate) meta: RequestMeta,
    pub(crate) outcome: Outcome,
    /// For file answers: the worker's static files and the request's method and fields.
    pub(crate) file: FileCtx<'a>,
}

impl Response<'_> {
    /// Sends a complete response. `headers` are the handler's fields; the engine
    /// adds `Date`, `Server`, `Content-Length` and `Connection`.
    pub fn respond<'h, I>(&mut self, status: u16, headers: I, body: &[u8]) -> Result<(), RespondError>
    where
        I: Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
    {
        match self.outcome {
            Outcome::Pending => {}
            Outcome::Broken => return Err(RespondError::Closed),
            Outcome::Answered { .. } => return Err(RespondError::AlreadyAnswered),
        }
        let start = self.out.len();
        let composed = compose_head(self.out, &self.env, status, headers, BodyLength::Known(body.len() as u64), self.meta)?;
        self.outcome = Outcome::Answered { close: composed.close };
        if composed.omit_body || body.is_empty() {
            return Ok(());
        }
        if body.len() < DIRECT_WRITE_MIN || !self.backlog.is_empty() {
            self.out.extend_from_slice(body);
            return Ok(());
        }
        let _ = start;
        self.write_direct(body)
    }

    /// Whether the request has been answered.
    pub fn is_answered(&self) -> bool {
        !matches!(self.outcome, Outcome::Pending)
    }

    /// Writes what is gathered plus `body` with one `writev`, copying only what
    /// the socket did not take.
    fn write_direct(&mut self, body: &[u8]) -> Result<(), RespondError> {
        let mut head_done = 0;
        let mut body_done = 0;
        loop {
            let slices = [IoSlice::new(&self.out[head_done..]), IoSlice::new(&body[body_done..])];
            match (&*self.stream).write_vectored(&slices) {
                Ok(0) => break,
                Ok(mut n) => {
                    let from_head = n.min(self.out.len() - head_done);
                    head_done += from_head;
                    n -= from_head;
                    body_done += n;
                    if body_done == body.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.out.clear();
                    self.outcome = Outcome::Broken;
                    return Err(RespondError::Closed);
                }
            }
        }
        self.backlog.extend_from_slice(&self.out[head_done..]);
        self.backlog.extend_from_slice(&body[body_done..]);
        self.out.clear();
        Ok(())
    }
}

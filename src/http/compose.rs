//! The response head composer: copies bytes into one reusable buffer.
//!
//! The status line comes from the pre-rendered table, `Date` from the worker's
//! cache, `Server` from a line rendered at start; the engine adds the framing
//! fields (`Content-Length` or `Transfer-Encoding`) and `Connection` itself.

use super::head::is_token_byte;
use super::status::{forbids_body, StatusTable};

/// Per-worker pieces every response shares.
#[derive(Clone, Copy)]
pub struct ComposeEnv<'a> {
    /// The current IMF-fixdate.
    pub date: &'a [u8],
    /// `Server: NAME\r\n`, or empty to send none.
    pub server_line: &'a [u8],
}

/// What the composer needs to know about the request being answered.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The connection may persist after this response.
    pub keep_alive: bool,
    /// The request was HEAD: send no body.
    pub is_head: bool,
}

/// How the body that follows the head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// `Content-Length: n`.
    Known(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 only).
    Chunked,
    /// Delimited by closing the connection (HTTP/1.0 streams).
    UntilClose,
}

/// Why a response could not be composed; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeError {
    /// Not a final status code in 200..=599 (or 1xx where not allowed).
    Status,
    /// A header name that is not a token, or a value with CR, LF or NUL.
    Header,
}

/// What the composed head decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Composed {
    /// The connection closes after this response.
    pub close: bool,
    /// Body bytes must not be sent (HEAD, 204, 304).
    pub omit_body: bool,
}

/// The fields a handler set that the engine would otherwise fill in.
#[derive(Default)]
struct HandlerFields {
    date: bool,
    server: bool,
    close: bool,
    content_length: Option<u64>,
}

/// Appends the status line and header section to `out`. `headers` are the
/// handler's; `Content-Length`, `Transfer-Encoding` and `Connection` among them
/// are replaced by the engine's (a `Connection: close` is honoured).
pub fn compose_head<'h, I>(
    out: &mut Vec<u8>,
    env: &ComposeEnv<'_>,
    status: u16,
    headers: I,
    length: BodyLength,
    req: RequestMeta,
) -> Result<Composed, ComposeError>
where
    I: Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
{
    if !(200..=599).contains(&status) {
        return Err(ComposeError::Status);
    }
    let status_line = StatusTable::get().line(status).ok_or(ComposeError::Status)?;
    let fields = scan(headers.clone())?;
    let no_body_status = forbids_body(status);
    let omit_body = no_body_status || req.is_head;
    // A close-delimited body forces a close; so does a stream the client cannot frame.
    let length = match length {
        BodyLength::Chunked if req.minor == 0 => BodyLength::UntilClose,
        other => other,
    };
    let close = !req.keep_alive || fields.close || (length == BodyLength::UntilClose && !omit_body);

    out.extend_from_slice(status_line);
    if !fields.date {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(env.date);
        out.extend_from_slice(b"\r\n");
    }
    if !fields.server {
        out.extend_from_slice(env.server_line);
    }
    for (name, value) in headers {
        if is_engine_field(name) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !no_body_status {
        match length {
            BodyLength::Known(n) => {
                // A HEAD answer may state the length GET would have without a body.
                let n = match fields.content_length {
                    Some(declared) if req.is_head && n == 0 => declared,
                    _ => n,
                };
                out.extend_from_slice(b"Content-Length: ");
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            BodyLength::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            BodyLength::UntilClose => {}
        }
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if req.minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Composed { close, omit_body })
}

/// Checks handler header fields without composing anything.
pub fn validate_headers<'h>(headers: impl Iterator<Item = (&'h [u8], &'h [u8])>) -> Result<(), ComposeError> {
    scan(headers).map(|_| ())
}

fn scan<'h>(headers: impl Iterator<Item = (&'h [u8], &'h [u8])>) -> Result<HandlerFields, ComposeError> {
    let mut fields = HandlerFields::default();
    for (name, value) in headers {
        if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
            return Err(ComposeError::Header);
        }
        if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(ComposeError::Header);
        }
        if name.eq_ignore_ascii_case(b"date") {
            fields.date = true;
        } else if name.eq_ignore_ascii_case(b"server") {
            fields.server = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            fields.close |= value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // Replaced by the engine's anyway; a HEAD answer may use a valid one.
            fields.content_length = std::str::from_utf8(value.trim_ascii()).ok().and_then(|t| t.parse().ok());
        }
    }
    Ok(fields)
}

fn is_engine_field(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"connection")
}

/// Renders the `Server` line for a configured name (empty: no line).
pub fn server_line(name: &[u8]) -> Vec<u8> {
    if name.is_empty() {
        return Vec::new();
    }
    let mut line = b"Server: ".to_vec();
    line.extend_from_slice(name);
    line.extend_from_slice(b"\r\n");
    line
}

/// A complete error response the engine sends by itself (400, 413, …); always closes.
pub fn compose_error(out: &mut Vec<u8>, env: &ComposeEnv<'_>, status: u16) {
    let reason = super::status::reason(status).unwrap_or("Error");
    let meta = RequestMeta { minor: 1, keep_alive: false, is_head: false };
    let len = reason.len() as u64 + 1;
    let headers = [(&b"Content-Type"[..], &b"text/plain; charset=utf-8"[..])];
    let iter = headers.iter().map(|(n, v)| (*n, *v));
    if compose_head(out, env, status, iter, BodyLength::Known(len), meta).is_ok() {
        out.extend_from_slice(reason.as_bytes());
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> ComposeEnv<'static> {
        ComposeEnv { date: b"Sun, 06 Nov 1994 08:49:37 GMT", server_line: b"Server: t\r\n" }
    }

    fn head(status: u16, headers: &[(&[u8], &[u8])], len: BodyLength, req: RequestMeta) -> (String, Composed) {
        let mut out = Vec::new();
        let c = compose_head(&mut out, &env(), status, headers.iter().map(|(a, b)| (*a, *b)), len, req).unwrap();
        (String::from_utf8(out).unwrap(), c)
    }

    const GET11: RequestMeta = RequestMeta { minor: 1, keep_alive: true, is_head: false };

    #[test]
    fn composes_a_plain_response() {
        let (text, c) = head(200, &[(b"Content-Type", b"text/plain")], BodyLength::Known(13), GET11);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: t\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
        );
        assert!(!c.close && !c.omit_body);
    }

    #[test]
    fn engine_owns_framing_and_connection() {
        let hs: &[(&[u8], &[u8])] = &[(b"content-length", b"99"), (b"Connection", b"close"), (b"Server", b"mine")];
        let (text, c) = head(200, hs, BodyLength::Known(2), GET11);
        assert!(text.contains("Content-Length: 2\r\n") && !text.contains("Content-Length: 99"));
        assert!(text.contains("Connection: close\r\n") && text.contains("Server: mine\r\n") && !text.contains("Server: t"));
        assert!(c.close);
    }

    #[test]
    fn http10_and_head_and_no_body_statuses() {
        let (text, c) = head(200, &[], BodyLength::Known(1), RequestMeta { minor: 0, keep_alive: true, is_head: false });
        assert!(text.contains("Connection: keep-alive\r\n") && !c.close);
        let (text, c) = head(200, &[], BodyLength::Chunked, RequestMeta { minor: 0, keep_alive: true, is_head: false });
        assert!(!text.contains("chunked") && text.contains("Connection: close") && c.close);
        let (text, c) = head(204, &[], BodyLength::Known(5), GET11);
        assert!(!text.contains("Content-Length") && c.omit_body);
        let (text, c) = head(200, &[], BodyLength::Known(5), RequestMeta { is_head: true, ..GET11 });
        assert!(text.contains("Content-Length: 5\r\n") && c.omit_body);
    }

    #[test]
    fn a_handler_content_length_that_is_not_a_number_is_replaced_too() {
        let hs: &[(&[u8], &[u8])] = &[(b"Content-Length", b"lots")];
        let (text, _) = head(200, hs, BodyLength::Known(3), GET11);
        assert!(text.contains("Content-Length: 3\r\n") && !text.contains("lots"));
    }

    #[test]
    fn refuses_bad_input_without_writing() {
        let mut out = Vec::new();
        let bad: &[(&[u8], &[u8])] = &[(b"X", b"a\r\nInjected: 1")];
        let r = compose_head(&mut out, &env(), 200, bad.iter().map(|(a, b)| (*a, *b)), BodyLength::Known(0), GET11);
        assert_eq!(r, Err(ComposeError::Header));
        let bad: &[(&[u8], &[u8])] = &[(b"Bad Name", b"v")];
        let r = compose_head(&mut out, &env(), 200, bad.iter().map(|(a, b)| (*a, *b)), BodyLength::Known(0), GET11);
        assert_eq!(r, Err(ComposeError::Header));
        let r = compose_head(&mut out, &env(), 99, [].into_iter(), BodyLength::Known(0), GET11);
        assert_eq!(r, Err(ComposeError::Status));
        assert!(out.is_empty());
    }
}

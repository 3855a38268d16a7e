//! The response head composer: copies bytes into one reusable buffer.
//!
//! The status line comes from the pre-rendered table, `Date` from the worker's
//! cache, `Server` from a line rendered at start; the engine adds the framing
//! fields (`Content-Length` or `Transfer-Encoding`) and `Connection` itself.

use super::date::{DateCache, DATE_LINE_LEN};
use super::head::is_token;
use super::status::{forbids_body, StatusTable};

/// Per-worker pieces every response shares.
#[derive(Clone, Copy)]
pub struct ComposeEnv<'a> {
    /// `Date: <IMF-fixdate>\r\n` followed by `Server: NAME\r\n` (or nothing):
    /// the worker's `DateCache::common_lines`, copied at once.
    pub common: &'a [u8],
    /// Changes whenever `common` does (`DateCache::compose_env`).
    pub version: u64,
}

impl DateCache {
    /// What the composer takes from the cache: the common lines and their version.
    pub fn compose_env(&self) -> ComposeEnv<'_> {
        ComposeEnv { common: self.common_lines(), version: self.version() }
    }
}

impl ComposeEnv<'_> {
    fn date_line(&self) -> &[u8] {
        &self.common[..DATE_LINE_LEN.min(self.common.len())]
    }

    fn server_line(&self) -> &[u8] {
        &self.common[DATE_LINE_LEN.min(self.common.len())..]
    }
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

/// What the handler's fields said about those the engine would otherwise fill
/// in: found while rendering them, so that they are read once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HandlerFields {
    date: bool,
    server: bool,
    close: bool,
    content_length: Option<u64>,
}

impl HandlerFields {
    /// The handler gave no `Date`, `Server` or `Connection: close`: the
    /// engine's own lines and keep-alive decision stand.
    pub fn leaves_engine_lines(&self) -> bool {
        !self.date && !self.server && !self.close
    }
}

/// A handler field the engine treats specially, recognised by its length first
/// so that most names are compared with nothing.
enum Special {
    Date,
    Server,
    Connection,
    ContentLength,
    TransferEncoding,
}

fn special(name: &[u8]) -> Option<Special> {
    let (field, lower): (Special, &[u8]) = match name.len() {
        4 => (Special::Date, b"date"),
        6 => (Special::Server, b"server"),
        10 => (Special::Connection, b"connection"),
        14 => (Special::ContentLength, b"content-length"),
        17 => (Special::TransferEncoding, b"transfer-encoding"),
        _ => return None,
    };
    name.eq_ignore_ascii_case(lower).then_some(field)
}

/// Validates the handler's `headers` and appends them to `out` as they go on
/// the wire (`Name: value\r\n`), leaving out those the engine replaces
/// (`Content-Length`, `Transfer-Encoding`, `Connection`). On an invalid field
/// `out` is left as it was.
pub fn render_fields<'h>(
    out: &mut Vec<u8>,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
) -> Result<HandlerFields, ComposeError> {
    let start = out.len();
    let mut fields = HandlerFields::default();
    for (name, value) in headers {
        if !is_token(name) || !is_field_value(value) {
            out.truncate(start);
            return Err(ComposeError::Header);
        }
        match special(name) {
            None => {}
            Some(Special::Date) => fields.date = true,
            Some(Special::Server) => fields.server = true,
            Some(Special::Connection) => {
                fields.close |= value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
                continue;
            }
            Some(Special::ContentLength) => {
                // Replaced by the engine's anyway; a HEAD answer may use a valid one.
                fields.content_length = std::str::from_utf8(value.trim_ascii()).ok().and_then(|t| t.parse().ok());
                continue;
            }
            Some(Special::TransferEncoding) => continue,
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    Ok(fields)
}

/// Appends the status line and header section to `out`. `headers` are the
/// handler's; `Content-Length`, `Transfer-Encoding` and `Connection` among them
/// are replaced by the engine's (a `Connection: close` is honoured). On an error
/// nothing is written.
pub fn compose_head<'h>(
    out: &mut Vec<u8>,
    env: &ComposeEnv<'_>,
    status: u16,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    length: BodyLength,
    req: RequestMeta,
) -> Result<Composed, ComposeError> {
    let status_line = status_line(status)?;
    let start = out.len();
    // One pass over the handler's fields: the engine's Date and Server go first
    // and are taken out again in the rare case the handler gave its own.
    out.reserve(status_line.len() + env.common.len() + 128);
    out.extend_from_slice(status_line);
    let date_at = out.len();
    out.extend_from_slice(env.common);
    let fields_at = out.len();
    let fields = match render_fields(out, headers) {
        Ok(fields) => fields,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    let server_at = date_at + env.date_line().len();
    if fields.server {
        out.drain(server_at..fields_at);
    }
    if fields.date {
        out.drain(date_at..server_at);
    }
    Ok(finish_head(out, status, &fields, length, req))
}

/// `compose_head` for fields rendered earlier by `render_fields` (a deferred
/// answer renders them on its own thread).
pub fn compose_head_rendered(
    out: &mut Vec<u8>,
    env: &ComposeEnv<'_>,
    status: u16,
    rendered: &[u8],
    fields: &HandlerFields,
    length: BodyLength,
    req: RequestMeta,
) -> Result<Composed, ComposeError> {
    let status_line = status_line(status)?;
    out.reserve(status_line.len() + env.common.len() + rendered.len() + 64);
    out.extend_from_slice(status_line);
    match (fields.date, fields.server) {
        (false, false) => out.extend_from_slice(env.common),
        (true, false) => out.extend_from_slice(env.server_line()),
        (false, true) => out.extend_from_slice(env.date_line()),
        (true, true) => {}
    }
    out.extend_from_slice(rendered);
    Ok(finish_head(out, status, fields, length, req))
}

/// Appends a `101 Switching Protocols` head: the engine's `Date` and
/// `Server` (unless the handler gave its own), the handler's fields rendered
/// by `render_fields` (which left out `Connection`, `Content-Length` and
/// `Transfer-Encoding`: a 101 has no body), and `Connection: Upgrade`.
pub fn compose_switching(out: &mut Vec<u8>, env: &ComposeEnv<'_>, rendered: &[u8], fields: &HandlerFields) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    match (fields.date, fields.server) {
        (false, false) => out.extend_from_slice(env.common),
        (true, false) => out.extend_from_slice(env.server_line()),
        (false, true) => out.extend_from_slice(env.date_line()),
        (true, true) => {}
    }
    out.extend_from_slice(rendered);
    out.extend_from_slice(b"Connection: Upgrade\r\n\r\n");
}

/// Whether `headers` name the protocol switched to (`Upgrade`), which a 101
/// must (RFC 9110 §15.2.2).
pub fn names_upgrade<'h>(headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>) -> bool {
    headers.into_iter().any(|(name, value)| name.eq_ignore_ascii_case(b"upgrade") && !value.trim_ascii().is_empty())
}

/// The longest reason phrase an application may give (`valid_reason`).
pub const MAX_REASON: usize = 8192;

/// Whether `reason` may stand in a status line (RFC 9112 §4: tabs, spaces,
/// visible ASCII and bytes from 0x80; no CR, LF or other control byte), and
/// is at most `MAX_REASON` bytes.
pub fn valid_reason(reason: &[u8]) -> bool {
    reason.len() <= MAX_REASON && reason.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Puts `reason` (checked by `valid_reason`) in place of the reason phrase
/// of the status line composed at `at` in `out` (`HTTP/1.1 NNN phrase\r\n`):
/// the application's own, for the rare answer that has one.
pub fn replace_reason(out: &mut Vec<u8>, at: usize, reason: &[u8]) {
    let start = at + b"HTTP/1.1 200 ".len();
    let Some(end) = out.get(start..).and_then(|rest| rest.iter().position(|&b| b == b'\r')) else { return };
    out.splice(start..start + end, reason.iter().copied());
}

/// The status line for `status` (200..=599), from the pre-rendered table.
pub fn status_line(status: u16) -> Result<&'static [u8], ComposeError> {
    if status == 200 {
        // The common answer, as a constant the copy is inlined for.
        return Ok(b"HTTP/1.1 200 OK\r\n");
    }
    if !(200..=599).contains(&status) {
        return Err(ComposeError::Status);
    }
    StatusTable::get().line(status).ok_or(ComposeError::Status)
}

/// The framing and `Connection` fields and the blank line.
fn finish_head(
    out: &mut Vec<u8>,
    status: u16,
    fields: &HandlerFields,
    length: BodyLength,
    req: RequestMeta,
) -> Composed {
    let no_body_status = forbids_body(status);
    let omit_body = no_body_status || req.is_head;
    // A close-delimited body forces a close; so does a stream the client cannot frame.
    let length = match length {
        BodyLength::Chunked if req.minor == 0 => BodyLength::UntilClose,
        other => other,
    };
    let close = !req.keep_alive || fields.close || (length == BodyLength::UntilClose && !omit_body);
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
    Composed { close, omit_body }
}

/// A field value may hold anything but CR, LF and NUL (no header injection).
fn is_field_value(value: &[u8]) -> bool {
    // Eight bytes at a time: a word has a zero byte iff
    // `(w - 0x01…01) & !w & 0x80…80` is not zero; CR and LF become zero by XOR.
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS != 0;
    let mut words = value.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_ne_bytes(word.try_into().unwrap_or_default());
        if has_zero(w) || has_zero(w ^ (ONES * b'\r' as u64)) || has_zero(w ^ (ONES * b'\n' as u64)) {
            return false;
        }
    }
    !words.remainder().iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
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
        ComposeEnv { common: b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: t\r\n", version: 0 }
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
        assert!(
            text.contains("Connection: close\r\n") && text.contains("Server: mine\r\n") && !text.contains("Server: t")
        );
        assert!(c.close);
    }

    #[test]
    fn http10_and_head_and_no_body_statuses() {
        let (text, c) =
            head(200, &[], BodyLength::Known(1), RequestMeta { minor: 0, keep_alive: true, is_head: false });
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
    fn field_values_refuse_exactly_cr_lf_and_nul() {
        for len in 1..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut value = vec![b'a'; len];
                    value[at] = b;
                    assert_eq!(is_field_value(&value), !matches!(b, b'\r' | b'\n' | 0), "{len} {at} {b:#x}");
                }
            }
        }
    }

    #[test]
    fn a_handler_date_or_server_replaces_the_engines_in_place() {
        let hs: &[(&[u8], &[u8])] = &[(b"X-A", b"1"), (b"date", b"D"), (b"SERVER", b"S"), (b"X-B", b"2")];
        let (text, _) = head(200, hs, BodyLength::Known(0), GET11);
        assert_eq!(text, "HTTP/1.1 200 OK\r\nX-A: 1\r\ndate: D\r\nSERVER: S\r\nX-B: 2\r\nContent-Length: 0\r\n\r\n");
        let (text, _) = head(200, &[(b"Date", b"D")], BodyLength::Known(0), GET11);
        assert_eq!(text, "HTTP/1.1 200 OK\r\nServer: t\r\nDate: D\r\nContent-Length: 0\r\n\r\n");
    }

    #[test]
    fn rendered_fields_compose_the_same_head() {
        let hs: &[(&[u8], &[u8])] = &[(b"Content-Type", b"a"), (b"Connection", b"x, close"), (b"Server", b"s")];
        let mut rendered = Vec::new();
        let fields = render_fields(&mut rendered, hs.iter().map(|(a, b)| (*a, *b))).unwrap();
        let mut out = Vec::new();
        let c = compose_head_rendered(&mut out, &env(), 200, &rendered, &fields, BodyLength::Known(1), GET11).unwrap();
        let (text, composed) = head(200, hs, BodyLength::Known(1), GET11);
        assert_eq!(String::from_utf8(out).unwrap(), text);
        assert_eq!(c, composed);
        assert!(c.close);
    }

    #[test]
    fn an_applications_reason_phrase_replaces_the_tables() {
        let mut out = b"earlier".to_vec();
        let at = out.len();
        head(404, &[], BodyLength::Known(0), GET11);
        compose_head(&mut out, &env(), 404, [], BodyLength::Known(0), GET11).unwrap();
        replace_reason(&mut out, at, b"Nothing \x80here\t!");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("earlierHTTP/1.1 404 Nothing \u{fffd}here\t!\r\nDate: "), "{text}");
        replace_reason(&mut out, at, b"");
        assert!(out.starts_with(b"earlierHTTP/1.1 404 \r\nDate: "));
        assert!(valid_reason(b"") && valid_reason(b"Fine \t\xff") && valid_reason(&[b'a'; MAX_REASON]));
        for bad in [&b"a\rb"[..], b"a\nb", b"\0", b"\x7f", b"\x1b[31m"] {
            assert!(!valid_reason(bad), "{bad:?}");
        }
        assert!(!valid_reason(&[b'a'; MAX_REASON + 1]));
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
        let r = compose_head(&mut out, &env(), 99, [], BodyLength::Known(0), GET11);
        assert_eq!(r, Err(ComposeError::Status));
        assert!(out.is_empty());
    }
}

//! Parsing a request head with httparse and deciding how its body is framed and
//! whether the connection persists (RFC 9112 §6, §9.3).
//!
//! Strict where leniency lets requests be smuggled: Content-Length together with
//! Transfer-Encoding, differing or malformed Content-Length values, codings other
//! than a final `chunked`, a missing or repeated Host in HTTP/1.1 are all refused.

use std::mem::MaybeUninit;

/// How many header fields one request may carry; more is answered 431.
pub const MAX_HEADERS: usize = 100;

/// Parser limits taken from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// The request line and header fields together, in bytes.
    pub max_head_bytes: usize,
    /// The request line alone (method, target, version), in bytes.
    pub max_request_line: usize,
    /// How many header fields.
    pub max_header_count: usize,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
}

/// What the engine needs to know about a parsed head, without borrowing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadInfo {
    /// Bytes of the request line and header section, blank line included.
    pub head_len: usize,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection persists after this request, as the client asked.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// The method is HEAD: the response carries no body.
    pub is_head: bool,
}

/// A request that must be refused with this status; the connection then closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject(pub u16);

/// Parses the head at the start of `buf` into `headers`.
/// `Ok(None)` means more bytes are needed.
pub fn parse<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    limits: &HeadLimits,
) -> Result<Option<(httparse::Request<'h, 'b>, HeadInfo)>, Reject> {
    let count = limits.max_header_count.min(headers.len());
    let mut req = httparse::Request::new(&mut headers[..count]);
    let status = req.parse(buf);
    finish(buf, req, status, limits)
}

/// `parse` into header slots that need no initialisation: the connection code
/// makes a fresh array per request, and filling 100 `EMPTY_HEADER`s (3.2 KB)
/// cost about as much as parsing a wrk GET (benches/parse.rs).
#[inline(always)]
pub fn parse_uninit<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [MaybeUninit<httparse::Header<'b>>],
    limits: &HeadLimits,
) -> Result<Option<(httparse::Request<'h, 'b>, HeadInfo)>, Reject> {
    let count = limits.max_header_count.min(headers.len());
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, &mut headers[..count]);
    finish(buf, req, status, limits)
}

/// Header slots for `parse_uninit`; creating them writes nothing.
pub fn uninit_headers<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [MaybeUninit::uninit(); MAX_HEADERS]
}

#[inline(always)]
fn finish<'b, 'h>(
    buf: &'b [u8],
    req: httparse::Request<'h, 'b>,
    status: httparse::Result<usize>,
    limits: &HeadLimits,
) -> Result<Option<(httparse::Request<'h, 'b>, HeadInfo)>, Reject> {
    let head_len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            check_partial(buf, limits)?;
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Reject(431)),
        Err(httparse::Error::Version) => return Err(reject_version(buf)),
        Err(_) => return Err(Reject(400)),
    };
    // The request line is part of the head: only a long head needs measuring it.
    if head_len > limits.max_request_line && request_line(buf).len() > limits.max_request_line {
        return Err(Reject(414));
    }
    if head_len > limits.max_head_bytes {
        return Err(Reject(431));
    }
    let info = inspect(&req, head_len)?;
    Ok(Some((req, info)))
}

/// A partial head already past its limits is refused now, not when it completes.
fn check_partial(buf: &[u8], limits: &HeadLimits) -> Result<(), Reject> {
    if request_line(buf).len() > limits.max_request_line {
        Err(Reject(414))
    } else if buf.len() > limits.max_head_bytes {
        Err(Reject(431))
    } else {
        Ok(())
    }
}

/// The request line as far as it has arrived, without its line end and after
/// the empty lines that httparse skips before it (RFC 9112 §2.2), so that
/// neither leading CRLFs nor the CR of a CRLF count toward the limit.
fn request_line(buf: &[u8]) -> &[u8] {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let rest = &buf[start..];
    let line = rest.iter().position(|&b| b == b'\n').map_or(rest, |end| &rest[..end]);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// httparse reports any version but 1.0 and 1.1 as one error: a well-formed
/// `HTTP/x.y` gets 505, anything else is simply malformed.
fn reject_version(buf: &[u8]) -> Reject {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let buf = &buf[start..];
    let line_end = buf.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end];
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    let well_formed = version.len() == 8
        && version.starts_with(b"HTTP/")
        && version[5].is_ascii_digit()
        && version[6] == b'.'
        && version[7].is_ascii_digit();
    Reject(if well_formed { 505 } else { 400 })
}

#[inline(always)]
fn inspect(req: &httparse::Request<'_, '_>, head_len: usize) -> Result<HeadInfo, Reject> {
    let minor = req.version.unwrap_or(1);
    let method = req.method.unwrap_or("");
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut saw_transfer_encoding = false;
    let mut hosts = 0;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;

    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        // By length first: most fields are compared with nothing.
        match name.len() {
            4 if is_field(name, b"host") => hosts += 1,
            6 if is_field(name, b"expect") => {
                if trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    return Err(Reject(417));
                }
            }
            10 if is_field(name, b"connection") => {
                for token in h.value.split(|&b| b == b',') {
                    let token = trim(token);
                    conn_close |= token.eq_ignore_ascii_case(b"close");
                    conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            14 if is_field(name, b"content-length") => {
                let value = parse_content_length(h.value).ok_or(Reject(400))?;
                if content_length.is_some_and(|v| v != value) {
                    return Err(Reject(400));
                }
                content_length = Some(value);
            }
            17 if is_field(name, b"transfer-encoding") => {
                if saw_transfer_encoding && chunked {
                    // `chunked` must be the last coding; anything after it is invalid.
                    return Err(Reject(400));
                }
                saw_transfer_encoding = true;
                chunked = transfer_coding_is_chunked(h.value)?;
            }
            _ => {}
        }
    }

    if minor == 1 && hosts != 1 || hosts > 1 {
        return Err(Reject(400));
    }
    let framing = if saw_transfer_encoding {
        if content_length.is_some() || minor == 0 {
            return Err(Reject(400));
        }
        Framing::Chunked
    } else {
        match content_length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let keep_alive = if minor == 1 { !conn_close } else { conn_keep_alive && !conn_close };
    Ok(HeadInfo {
        head_len,
        minor,
        framing,
        keep_alive,
        expect_continue: expect_continue && minor == 1 && framing != Framing::Empty,
        is_head: method == "HEAD",
    })
}

/// Content-Length is 1*DIGIT; a list of identical values (`5, 5`) is allowed by
/// RFC 9110 §8.6 and accepted when every element is the same.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut result = None;
    for part in value.split(|&b| b == b',') {
        let digits = trim(part);
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = digits.iter().fold(0u64, |acc, &d| acc * 10 + (d - b'0') as u64);
        if result.is_some_and(|r| r != n) {
            return None;
        }
        result = Some(n);
    }
    result
}

/// Accepts exactly one coding, `chunked`. Any other coding is one we do not
/// implement (501); an empty or malformed list is a bad request (400).
fn transfer_coding_is_chunked(value: &[u8]) -> Result<bool, Reject> {
    let mut codings = value.split(|&b| b == b',').map(trim);
    let first = codings.next().unwrap_or(b"");
    if first.is_empty() {
        return Err(Reject(400));
    }
    let only_one = codings.next().is_none();
    if first.eq_ignore_ascii_case(b"chunked") && only_one {
        Ok(true)
    } else if is_token(first) {
        Err(Reject(501))
    } else {
        Err(Reject(400))
    }
}

/// Whether the field name `name` is `lower` (lowercase letters and `-`),
/// ignoring case. Setting bit 5 maps a letter's two cases onto its lowercase
/// and nothing else onto it; onto `-` it maps only CR besides, which is no
/// tchar, so for a name httparse accepted this is exact. No early exit: names
/// are short, and the loop unrolls for the constant length.
#[inline(always)]
fn is_field(name: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower.iter().all(|&b| b.is_ascii_lowercase() || b == b'-'), "{lower:?}");
    name.len() == lower.len() && name.iter().zip(lower).fold(0, |diff, (&a, &b)| diff | ((a | 0x20) ^ b)) == 0
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |i| i + 1);
    &s[start..end]
}

/// A token of RFC 9110 §5.6.2: one or more tchars (a header field name, a method, a coding).
pub fn is_token(s: &[u8]) -> bool {
    // Without an early exit the loop vectorises; names are short.
    !s.is_empty() && s.iter().fold(true, |ok, &b| ok & TCHAR[b as usize])
}

/// Which bytes are tchars (RFC 9110 §5.6.2), as a table: a lookup per byte instead of a search.
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
            | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits { max_head_bytes: 8192, max_request_line: 4096, max_header_count: 100 };

    fn info(raw: &[u8]) -> Result<Option<HeadInfo>, Reject> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let initialised = parse(raw, &mut headers, &LIMITS).map(|r| r.map(|(_, i)| i));
        let mut slots = uninit_headers();
        let uninit = parse_uninit(raw, &mut slots, &LIMITS).map(|r| r.map(|(_, i)| i));
        assert_eq!(initialised, uninit, "{}", String::from_utf8_lossy(raw));
        initialised
    }

    #[test]
    fn uninit_slots_see_the_same_fields() {
        let raw = b"GET /a?b HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nX-Two:  2 \r\n\r\n";
        let mut slots = uninit_headers();
        let (req, info) = parse_uninit(raw, &mut slots, &LIMITS).unwrap().unwrap();
        assert_eq!(info.head_len, raw.len());
        let fields: Vec<(&str, &[u8])> = req.headers.iter().map(|h| (h.name, h.value)).collect();
        assert_eq!(fields, [("Host", &b"a"[..]), ("X-One", b"1"), ("X-Two", b"2")]);
        let few = HeadLimits { max_header_count: 2, ..LIMITS };
        assert_eq!(parse_uninit(raw, &mut slots, &few).map(|r| r.map(|(_, i)| i)), Err(Reject(431)));
    }

    #[test]
    fn field_names_compare_as_ignoring_ascii_case_does() {
        let names: [&[u8]; 5] = [b"host", b"expect", b"connection", b"content-length", b"transfer-encoding"];
        for lower in names {
            // Every tchar at every position, in a name that is otherwise `lower` in upper case.
            for at in 0..lower.len() {
                for b in (0..=255u8).filter(|&b| is_token(&[b])) {
                    let mut name = lower.to_ascii_uppercase();
                    name[at] = b;
                    assert_eq!(is_field(&name, lower), name.eq_ignore_ascii_case(lower), "{:?}", String::from_utf8_lossy(&name));
                }
            }
            assert!(!is_field(&lower[1..], lower));
        }
    }

    #[test]
    fn tokens_are_exactly_the_tchars() {
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_token(&[b]), tchar, "{b:#x}");
            assert_eq!(is_token(&[b'a', b, b'z']), tchar, "{b:#x}");
        }
        assert!(!is_token(b""));
    }

    #[test]
    fn persistent_connection_defaults() {
        let i = info(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().unwrap();
        assert!(i.keep_alive);
        assert_eq!(i.framing, Framing::Empty);
        let i = info(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap().unwrap();
        assert!(!i.keep_alive);
        let i = info(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!i.keep_alive);
        let i = info(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(i.keep_alive);
    }

    #[test]
    fn framing() {
        let i = info(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(i.framing, Framing::Length(5));
        let i = info(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(i.framing, Framing::Length(5));
        let i = info(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(i.framing, Framing::Chunked);
    }

    #[test]
    fn refuses_smuggling_shapes() {
        let cases: &[(&[u8], u16)] = &[
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            (b"\r\n\nGET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\nHost: a\r\n x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            (b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            assert_eq!(info(raw), Err(Reject(*status)), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn limits() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(5000));
        assert_eq!(info(long_line.as_bytes()), Err(Reject(414)));
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "b".repeat(9000));
        assert_eq!(info(big.as_bytes()), Err(Reject(431)));
        assert_eq!(info(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    }

    /// Leading empty lines hid a long request line from the limit, and the CR of
    /// a CRLF counted toward it, so a line exactly at the limit got 414.
    #[test]
    fn request_line_limit_is_exact_and_not_bypassed() {
        let limits = HeadLimits { max_head_bytes: 8192, max_request_line: 64, max_header_count: 100 };
        let parse_with = |raw: &[u8]| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            parse(raw, &mut headers, &limits).map(|r| r.map(|(_, i)| i.head_len))
        };
        // `GET /… HTTP/1.1` of exactly 64 bytes passes, 65 fails, whatever the line end.
        let line = |len: usize| format!("GET /{} HTTP/1.1", "a".repeat(len - 14));
        for eol in ["\r\n", "\n"] {
            let at = format!("{}{eol}Host: a{eol}{eol}", line(64));
            assert_eq!(parse_with(at.as_bytes()), Ok(Some(at.len())), "{at:?}");
            let over = format!("{}{eol}Host: a{eol}{eol}", line(65));
            assert_eq!(parse_with(over.as_bytes()), Err(Reject(414)), "{over:?}");
            // Still arriving: the line at the limit waits, one over is refused now.
            assert_eq!(parse_with(format!("{}\r", line(64)).as_bytes()), Ok(None));
            assert_eq!(parse_with(line(65).as_bytes()), Err(Reject(414)));
            // Empty lines before the request line do not hide it.
            let hidden = format!("\r\n\n{over}");
            assert_eq!(parse_with(hidden.as_bytes()), Err(Reject(414)), "{hidden:?}");
            assert_eq!(parse_with(format!("\r\n{}", line(65)).as_bytes()), Err(Reject(414)));
        }
    }
}

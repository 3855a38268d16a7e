//! Parsing a request head with httparse and deciding how its body is framed and
//! whether the connection persists (RFC 9112 §6, §9.3).
//!
//! Strict where leniency lets requests be smuggled: Content-Length together with
//! Transfer-Encoding, differing or malformed Content-Length values, codings other
//! than a final `chunked`, a missing or repeated Host in HTTP/1.1 are all refused.
//! So are request lines and Host values outside their grammar (RFC 9112 §3,
//! RFC 9110 §7.2), which httparse lets through: a Host that is no
//! `uri-host [ ":" port ]`, a space inside the target, `*` for another method than
//! OPTIONS, a `#` in the target, userinfo in an absolute-form target.

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
    /// `Connection` names `upgrade` in an HTTP/1.1 request: the client may
    /// accept a switch of protocol (the `Upgrade` field says to which).
    pub upgrade: bool,
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
    let (req, status) = match status {
        // httparse hands the slots back when it fails.
        Err(httparse::Error::Version) => parse_other_version(buf, std::mem::take(&mut req.headers))?,
        _ => (req, status),
    };
    finish(buf, req, status, limits)
}

/// `parse` into header slots that need no initialisation: the connection code
/// makes a fresh set per request, and filling 100 `EMPTY_HEADER`s (3.2 KB)
/// cost about as much as parsing a wrk GET (benches/parse.rs).
#[inline(always)]
pub fn parse_uninit<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
    limits: &HeadLimits,
) -> Result<Option<(httparse::Request<'h, 'b>, HeadInfo)>, Reject> {
    let count = limits.max_header_count.min(MAX_HEADERS);
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, &mut slots.fresh[..count]);
    let (req, status) = match status {
        Err(httparse::Error::Version) => parse_other_version_into_spare(buf, &mut slots.spare, count)?,
        _ => (req, status),
    };
    finish(buf, req, status, limits)
}

/// Header slots for `parse_uninit`; creating them writes next to nothing.
pub struct HeaderSlots<'b> {
    /// Where httparse parses every head; never initialised up front.
    fresh: [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS],
    /// Filled only for a head that httparse stopped at for its version
    /// (`HTTP/1.2`, read as 1.1): `fresh` stays borrowed by the failed call,
    /// and uninitialised slots cannot become headers without `unsafe`, but a
    /// whole array written at once can. Not an `Option`: `None` was a 3.2 KB
    /// memset per request (scripts/callgrind.sh).
    spare: MaybeUninit<[httparse::Header<'b>; MAX_HEADERS]>,
}

/// Header slots for `parse_uninit`.
#[inline]
pub fn uninit_headers<'b>() -> HeaderSlots<'b> {
    HeaderSlots { fresh: [MaybeUninit::uninit(); MAX_HEADERS], spare: MaybeUninit::uninit() }
}

#[inline(always)]
fn finish<'b, 'h>(
    buf: &'b [u8],
    req: httparse::Request<'h, 'b>,
    status: httparse::Result<usize>,
    limits: &HeadLimits,
) -> Result<Option<(httparse::Request<'h, 'b>, HeadInfo)>, Reject> {
    match status {
        Ok(httparse::Status::Complete(head_len)) => complete(buf, req, head_len, limits),
        Ok(httparse::Status::Partial) => {
            check_partial(buf, limits)?;
            Ok(None)
        }
        Err(httparse::Error::TooManyHeaders) => Err(Reject(431)),
        Err(_) => Err(Reject(400)),
    }
}

/// The checks of a complete head: its limits, then its fields.
#[inline(always)]
fn complete<'b, 'h>(
    buf: &'b [u8],
    req: httparse::Request<'h, 'b>,
    head_len: usize,
    limits: &HeadLimits,
) -> Result<Option<(httparse::Request<'h, 'b>, HeadInfo)>, Reject> {
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

/// What httparse would have made of a head it stopped at for its version.
type Reparsed<'h, 'b> = Result<(httparse::Request<'h, 'b>, httparse::Result<usize>), Reject>;

/// httparse knows HTTP/1.0 and 1.1 only, and stops at any other version after
/// reading the method and the target. A higher minor version of HTTP/1 is read
/// as HTTP/1.1 (RFC 9110 §2.5): the request line is taken apart here, the
/// header section is left to httparse, and the outcome goes through the same
/// checks as any other head. Another well-formed `HTTP/x.y` is answered 505;
/// anything else where the version should be is a malformed request line,
/// 400, a space inside the target included (`GET / x HTTP/1.1`).
#[cold]
#[inline(never)]
fn parse_other_version<'b, 'h>(buf: &'b [u8], slots: &'h mut [httparse::Header<'b>]) -> Reparsed<'h, 'b> {
    let partial = |slots| Ok((httparse::Request::new(slots), Ok(httparse::Status::Partial)));
    // What httparse read: the empty lines it skips, a method and a target,
    // each ended by one space.
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let line = &buf[start..];
    let mut spaces = line.iter().enumerate().filter(|&(_, &b)| b == b' ').map(|(i, _)| i);
    let (Some(method_end), Some(target_end)) = (spaces.next(), spaces.next()) else {
        return Err(Reject(400));
    };
    let after = &line[target_end + 1..];
    let version_len = after.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(after.len());
    let version = &after[..version_len];
    let ended = version_len < after.len();
    if !is_version_prefix(version) || ended && version.len() < 8 {
        return Err(Reject(400));
    }
    if version.len() < 8 {
        // `HTTP/2` may still become `HTTP/2.0`: the verdict waits for it.
        return partial(slots);
    }
    if version[5] != b'1' {
        return Err(Reject(505));
    }
    // CRLF or a bare LF, as httparse takes a line end.
    let line_end = match &after[version_len..] {
        [b'\n', ..] => 1,
        [b'\r', b'\n', ..] => 2,
        [] | [b'\r'] => return partial(slots),
        _ => return Err(Reject(400)),
    };
    let (Ok(method), Ok(target)) =
        (std::str::from_utf8(&line[..method_end]), std::str::from_utf8(&line[method_end + 1..target_end]))
    else {
        return Err(Reject(400));
    };
    let fields_start = start + target_end + 1 + version_len + line_end;
    let (status, count) = match httparse::parse_headers(&buf[fields_start..], &mut *slots) {
        Ok(httparse::Status::Complete((n, fields))) => (Ok(httparse::Status::Complete(fields_start + n)), fields.len()),
        other => (other.map(|_| httparse::Status::Partial), 0),
    };
    // httparse stops at 1.0 and 1.1 itself, so the minor version here is 2 to 9.
    let minor = (version[7] - b'0').min(1);
    let req = httparse::Request {
        method: Some(method),
        path: Some(target),
        version: Some(minor),
        headers: &mut slots[..count],
    };
    Ok((req, status))
}

/// `parse_other_version` for `parse_uninit`, into slots it fills first.
#[cold]
#[inline(never)]
fn parse_other_version_into_spare<'b, 'h>(
    buf: &'b [u8],
    spare: &'h mut MaybeUninit<[httparse::Header<'b>; MAX_HEADERS]>,
    count: usize,
) -> Reparsed<'h, 'b> {
    let slots = spare.write([httparse::EMPTY_HEADER; MAX_HEADERS]);
    parse_other_version(buf, &mut slots[..count])
}

/// Whether `v` is `HTTP/DIGIT.DIGIT` (RFC 9112 §2.3) or the start of one.
fn is_version_prefix(v: &[u8]) -> bool {
    v.len() <= 8
        && v.iter().enumerate().all(|(i, &b)| match i {
            5 | 7 => b.is_ascii_digit(),
            6 => b == b'.',
            _ => b == b"HTTP/"[i],
        })
}

#[inline(always)]
fn inspect(req: &httparse::Request<'_, '_>, head_len: usize) -> Result<HeadInfo, Reject> {
    let minor = req.version.unwrap_or(1);
    let method = req.method.unwrap_or("");
    check_target(method.as_bytes(), req.path.unwrap_or("").as_bytes())?;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut saw_transfer_encoding = false;
    let mut hosts = 0;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut conn_upgrade = false;
    let mut expect_continue = false;

    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        // By length first: most fields are compared with nothing.
        match name.len() {
            4 if is_field(name, b"host") => {
                hosts += 1;
                if !is_host(h.value) {
                    return Err(Reject(400));
                }
            }
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
                    conn_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
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
                saw_transfer_encoding = true;
                if let Some(coding) = only_coding(h.value)? {
                    if chunked {
                        // `chunked` must be the last coding; anything after it is invalid.
                        return Err(Reject(400));
                    }
                    if !coding.eq_ignore_ascii_case(b"chunked") {
                        return Err(Reject(501));
                    }
                    chunked = true;
                }
            }
            _ => {}
        }
    }

    if minor == 1 && hosts != 1 || hosts > 1 {
        return Err(Reject(400));
    }
    let framing = if saw_transfer_encoding {
        // No coding at all leaves the body's end unknown (RFC 9112 §6.3).
        if !chunked || content_length.is_some() || minor == 0 {
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
        upgrade: conn_upgrade && minor == 1,
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

/// The one coding a Transfer-Encoding field names: `None` if it names none,
/// 501 for a list of several (we implement `chunked` alone), 400 for an element
/// that is no token. Empty elements (`, chunked`) are list syntax that a
/// recipient must accept and does not count (RFC 9110 §5.6.1.2).
fn only_coding(value: &[u8]) -> Result<Option<&[u8]>, Reject> {
    let mut codings = value.split(|&b| b == b',').map(trim).filter(|c| !c.is_empty());
    let Some(first) = codings.next() else { return Ok(None) };
    if !is_token(first) {
        Err(Reject(400))
    } else if codings.next().is_some() {
        Err(Reject(501))
    } else {
        Ok(Some(first))
    }
}

/// The request-target's form must fit the method (RFC 9112 §3.2): `*` only for
/// OPTIONS, no fragment (`#`) in any form, and the authority of an absolute-form
/// target a host and port, without userinfo (RFC 9110 §4.2.4).
#[inline(always)]
fn check_target(method: &[u8], target: &[u8]) -> Result<(), Reject> {
    let valid = match target {
        [b'/', ..] => true,
        b"*" => method == b"OPTIONS",
        _ => absolute_form_authority(target).is_none_or(is_host),
    };
    if valid && !target.contains(&b'#') {
        Ok(())
    } else {
        Err(Reject(400))
    }
}

/// The authority of `scheme://authority/…`, or `None` for a target of no such shape.
fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    let colon = target.iter().position(|&b| b == b':')?;
    let rest = target[colon + 1..].strip_prefix(b"//")?;
    let end = rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Whether a Host value is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986
/// §3.2.2): a reg-name (unreserved bytes, sub-delims, `%XX`; IPv4 addresses are
/// among these) or a bracketed IP-literal, then an optional port of digits.
/// Empty is valid (RFC 9110 §7.2: a target without authority). No userinfo:
/// `@` is no host byte. This runs for every request: the common shape, plain
/// bytes and a port, is one table lookup per byte without early exits, and
/// anything else (`%XX`, brackets, or an invalid value) takes the full check.
#[inline]
fn is_host(value: &[u8]) -> bool {
    // A port is short and last: the first byte from the end that is no digit
    // ends the name, and is the port's colon if there is one.
    let name = match value.iter().rposition(|b| !b.is_ascii_digit()) {
        Some(at) if value[at] == b':' => &value[..at],
        _ => value,
    };
    name.iter().fold(true, |ok, &b| ok & REG_NAME[b as usize]) || is_host_in_full(value)
}

/// `is_host` by the whole grammar, for what its quick check did not pass.
#[cold]
#[inline(never)]
fn is_host_in_full(value: &[u8]) -> bool {
    let port = if let [b'[', literal @ ..] = value {
        let Some(close) = literal.iter().position(|&b| b == b']') else { return false };
        if !is_ip_literal(&literal[..close]) {
            return false;
        }
        &literal[close + 1..]
    } else {
        let mut i = 0;
        loop {
            while i < value.len() && REG_NAME[value[i] as usize] {
                i += 1;
            }
            match value[i..] {
                [] => return true,
                [b':', ..] => break &value[i..],
                [b'%', hi, lo, ..] if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        }
    };
    match port {
        [] => true,
        [b':', digits @ ..] => is_port(digits),
        _ => false,
    }
}

/// `port = *DIGIT` (RFC 3986 §3.2.3).
#[inline(always)]
fn is_port(digits: &[u8]) -> bool {
    digits.iter().fold(true, |ok, b| ok & b.is_ascii_digit())
}

/// Between the brackets of an IP-literal: an IPv6 address or `v1.…` (IPvFuture,
/// RFC 3986 §3.2.2). Rare enough to use the standard library's IPv6 parser,
/// which takes RFC 4291's text forms and no zone.
fn is_ip_literal(inner: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inner {
        let hex = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        return match rest[hex..] {
            [b'.', ref tail @ ..] => {
                hex > 0 && !tail.is_empty() && tail.iter().all(|&b| REG_NAME[b as usize] || b == b':')
            }
            _ => false,
        };
    }
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// The bytes of a reg-name besides `%XX` (RFC 3986 §3.2.2): unreserved and sub-delims.
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let unreserved = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        let sub_delim = matches!(c, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=');
        table[b] = unreserved || sub_delim;
        b += 1;
    }
    table
};

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
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
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
                    assert_eq!(
                        is_field(&name, lower),
                        name.eq_ignore_ascii_case(lower),
                        "{:?}",
                        String::from_utf8_lossy(&name)
                    );
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
            (b"GET / HTTP/3.1\r\nHost: a\r\n\r\n", 505),
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
    fn host_is_uri_host_and_port() {
        let valid = "a example.com example.com:80 example.com: :80 127.0.0.1:8080 999.1.1.1 a-b_c~d.e %41b \
            !$&'()*+,;= [::1] [::1]:8080 [2001:db8::1]: [::ffff:1.2.3.4] [v1.a:b] [V1F.x]";
        for host in valid.split_whitespace().chain([""]) {
            assert!(is_host(host.as_bytes()), "{host:?}");
        }
        let invalid = "x/y /x a@x u:p@x x:abc x:80:90 [::1 [::1]x [::1]:a [] [::g] [1.2.3.4] [fe80::1%25eth0] \
            [v1.] [v.x] [vz.x] ::1 %4 %zz x% x?y x#y x\" x\u{7f}";
        let invalid =
            invalid.split_whitespace().map(str::as_bytes).chain([&b"x y"[..], b"x, y", b"0 x", b"x:8 0", b"\x80"]);
        for host in invalid {
            assert!(!is_host(host), "{:?}", String::from_utf8_lossy(host));
            let mut raw = b"GET / HTTP/1.1\r\nHost: ".to_vec();
            raw.extend_from_slice(host);
            raw.extend_from_slice(b"\r\n\r\n");
            assert_eq!(info(&raw), Err(Reject(400)), "{:?}", String::from_utf8_lossy(&raw));
        }
        // HTTP/1.0 may omit Host, but one it sends must be valid too.
        assert_eq!(info(b"GET / HTTP/1.0\r\nHost: x y\r\n\r\n"), Err(Reject(400)));
        assert!(info(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").unwrap().is_some());
        assert!(info(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn request_target_fits_its_form() {
        let ok: &[&[u8]] = &[
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a?b=c/d HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a@b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://a:80/x@y?z@w HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://[::1]:80 HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for raw in ok {
            assert!(info(raw).unwrap().is_some(), "{}", String::from_utf8_lossy(raw));
        }
        let refused: &[&[u8]] = &[
            b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"HEAD * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"options * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /# HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://a/#b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://u:p@a:80/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://u@a HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://a:b/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for raw in refused {
            assert_eq!(info(raw), Err(Reject(400)), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn a_space_inside_the_target_is_400_not_505() {
        let cases: &[&[u8]] = &[
            b"GET / x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a b c HTTP/2.0\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.2 x\r\nHost: a\r\n\r\n",
            b"GET / x",
        ];
        for raw in cases {
            assert_eq!(info(raw), Err(Reject(400)), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn a_higher_minor_version_is_http11() {
        let raw = b"GET /a?b HTTP/1.2\r\nHost: a\r\nX-One: 1\r\n\r\nNEXT";
        let i = info(raw).unwrap().unwrap();
        assert_eq!((i.minor, i.keep_alive, i.head_len), (1, true, raw.len() - 4));
        let mut slots = uninit_headers();
        let (req, _) = parse_uninit(raw, &mut slots, &LIMITS).unwrap().unwrap();
        assert_eq!((req.method, req.path, req.version), (Some("GET"), Some("/a?b"), Some(1)));
        let fields: Vec<(&str, &[u8])> = req.headers.iter().map(|h| (h.name, h.value)).collect();
        assert_eq!(fields, [("Host", &b"a"[..]), ("X-One", b"1")]);

        // Everything HTTP/1.1 asks of a request still holds.
        let post = b"\r\nPOST / HTTP/1.9\nHost: a\nTransfer-Encoding: chunked\n\n";
        assert_eq!(info(post).unwrap().unwrap().framing, Framing::Chunked);
        assert_eq!(info(b"GET / HTTP/1.2\r\n\r\n"), Err(Reject(400)));
        assert_eq!(info(b"GET / HTTP/1.2\r\nHost: a\r\nHost: a\r\n\r\n"), Err(Reject(400)));
        assert_eq!(info(b"GET / HTTP/1.2\r\nHost: a\r\n x\r\n\r\n"), Err(Reject(400)));
        let few = HeadLimits { max_header_count: 1, ..LIMITS };
        let two = b"GET / HTTP/1.2\r\nHost: a\r\nX: 1\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert_eq!(parse(two, &mut headers, &few).map(|r| r.map(|(_, i)| i)), Err(Reject(431)));
        assert_eq!(parse_uninit(two, &mut uninit_headers(), &few).map(|r| r.map(|(_, i)| i)), Err(Reject(431)));

        // Each prefix waits for the rest.
        for len in 0..raw.len() - 4 {
            assert_eq!(info(&raw[..len]), Ok(None), "{:?}", String::from_utf8_lossy(&raw[..len]));
        }
        // Other versions, and malformed ones.
        assert_eq!(info(b"GET / HTTP/2"), Ok(None));
        assert_eq!(info(b"GET / HTTP/2.0"), Err(Reject(505)));
        assert_eq!(info(b"GET / HTTP/0.9\r\nHost: a\r\n\r\n"), Err(Reject(505)));
        let malformed: &[&[u8]] =
            &[b"GET / HTTP/1.2x\r\n\r\n", b"GET / HTTP/1.22\r\n", b"GET / HTTP/1.2\rX", b"GET / HTTP/1.\r\n"];
        for raw in malformed {
            assert_eq!(info(raw), Err(Reject(400)), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn empty_transfer_coding_elements_are_ignored() {
        for value in ["chunked", ", chunked", "chunked ,", " ,, chunked , ,"] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(info(raw.as_bytes()).unwrap().unwrap().framing, Framing::Chunked, "{value:?}");
        }
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: ,\r\n\r\n";
        assert_eq!(info(raw).unwrap().unwrap().framing, Framing::Chunked);
        let cases: &[(&str, u16)] =
            &[("", 400), (",", 400), (" , ", 400), (", gzip", 501), ("gzip, , chunked", 501), (", x y", 400)];
        for (value, status) in cases {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(info(raw.as_bytes()), Err(Reject(*status)), "{value:?}");
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

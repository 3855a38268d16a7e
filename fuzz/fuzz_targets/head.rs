//! Arbitrary bytes into `head::parse`, under the default limits and under small
//! ones (so the 414/431 paths are reached by short inputs).
//!
//! Besides "never panics", every input checks:
//! - a complete head is no longer than the input, ends with LF, and parses
//!   identically alone and when followed by garbage;
//! - growing the input never changes a verdict: a complete head stays the same
//!   head and a refused one stays refused, whatever follows (the server re-parses
//!   the head as bytes arrive, so this is what makes it split-independent);
//! - what was accepted respects the limits and the framing rules, checked from
//!   the parsed fields rather than by re-running the parser's own logic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warpcore::http::head::{self, Framing, HeadInfo, HeadLimits, Reject, MAX_HEADERS};

/// What one parse said, owned so that two parses can be compared.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Partial,
    Refused(u16),
    Complete(Head),
}

#[derive(Debug, Clone, PartialEq)]
struct Head {
    info: HeadInfo,
    method: Vec<u8>,
    target: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

fn parse(buf: &[u8], limits: &HeadLimits) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match head::parse(buf, &mut headers, limits) {
        Ok(None) => Verdict::Partial,
        Err(Reject(status)) => Verdict::Refused(status),
        Ok(Some((req, info))) => Verdict::Complete(Head {
            info,
            method: req.method.unwrap_or("").as_bytes().to_vec(),
            target: req.path.unwrap_or("").as_bytes().to_vec(),
            headers: req.headers.iter().map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec())).collect(),
        }),
    }
}

fn default_limits() -> HeadLimits {
    let c = warpcore::Config::default();
    HeadLimits { max_head_bytes: c.max_head_size, max_request_line: c.max_request_line, max_header_count: c.max_header_count }
}

const SMALL: HeadLimits = HeadLimits { max_head_bytes: 256, max_request_line: 64, max_header_count: 4 };

fn check(data: &[u8], limits: &HeadLimits) {
    let verdict = parse(data, limits);
    match &verdict {
        Verdict::Partial => {}
        Verdict::Refused(status) => {
            assert!([400, 414, 417, 431, 501, 505].contains(status), "unexpected status {status}");
            if *status == 414 {
                let line = request_line(data);
                assert!(line.len() > limits.max_request_line, "414 for a request line of {} bytes", line.len());
            }
        }
        Verdict::Complete(h) => check_complete(data, h, limits),
    }
    check_prefixes(data, &verdict, limits);
}

fn check_complete(data: &[u8], h: &Head, limits: &HeadLimits) {
    let n = h.info.head_len;
    assert!(n > 0 && n <= data.len(), "head_len {n} outside the input ({})", data.len());
    assert_eq!(data[n - 1], b'\n', "a head ends with its blank line");

    // The same head alone, and followed by garbage, parses identically.
    let alone = parse(&data[..n], limits);
    assert_eq!(alone, Verdict::Complete(h.clone()), "the head alone parses differently");
    let mut followed = data[..n].to_vec();
    followed.extend_from_slice(b"\x00\xff\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(parse(&followed, limits), Verdict::Complete(h.clone()), "garbage after the head changed it");

    // Limits, from the parsed fields: `METHOD SP TARGET SP HTTP/1.x`.
    let line = h.method.len() + 1 + h.target.len() + 1 + 8;
    assert!(line <= limits.max_request_line, "request line of {line} bytes accepted");
    assert!(n <= limits.max_head_bytes, "head of {n} bytes accepted");
    assert!(h.headers.len() <= limits.max_header_count, "{} header fields accepted", h.headers.len());

    // Field syntax that httparse guarantees and the engine relies on.
    for (name, value) in &h.headers {
        assert!(head::is_token(name), "bad field name {name:?}");
        assert!(!value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n'), "NUL/CR/LF in a value");
    }
    assert!(head::is_token(&h.method), "bad method");

    // Framing and Host, from the fields.
    let named = |want: &'static str| h.headers.iter().filter(move |(name, _)| name.eq_ignore_ascii_case(want.as_bytes()));
    let hosts = named("host").count();
    let te: Vec<_> = named("transfer-encoding").collect();
    let cl: Vec<_> = named("content-length").collect();
    if h.info.minor == 1 {
        assert_eq!(hosts, 1, "HTTP/1.1 accepted with {hosts} Host fields");
    } else {
        assert!(hosts <= 1, "HTTP/1.0 accepted with {hosts} Host fields");
    }
    let cl_value = |v: &[u8]| -> u64 {
        let s = std::str::from_utf8(v).expect("accepted Content-Length is ASCII");
        let mut values = s.split(',').map(|p| p.trim_matches([' ', '\t']));
        let first = values.next().unwrap();
        assert!(!first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()), "Content-Length {s:?} accepted");
        let n: u64 = first.parse().expect("accepted Content-Length fits in u64");
        assert!(values.all(|p| p.parse::<u64>().ok() == Some(n) && p.bytes().all(|b| b.is_ascii_digit())));
        n
    };
    match h.info.framing {
        Framing::Chunked => {
            assert!(cl.is_empty(), "chunked together with Content-Length");
            // Empty list elements do not count (RFC 9110 §5.6.1.2): all fields
            // together name one coding, `chunked`.
            let codings: Vec<&[u8]> =
                te.iter().flat_map(|(_, v)| v.split(|&b| b == b',')).map(trim).filter(|c| !c.is_empty()).collect();
            assert!(
                codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked"),
                "framing chunked from {te:?}"
            );
            assert_eq!(h.info.minor, 1, "chunked accepted in HTTP/1.0");
        }
        Framing::Length(len) => {
            assert!(te.is_empty() && !cl.is_empty() && len > 0);
            assert!(cl.iter().all(|(_, v)| cl_value(v) == len), "Content-Length values differ from {len}");
        }
        Framing::Empty => {
            assert!(te.is_empty());
            assert!(cl.iter().all(|(_, v)| cl_value(v) == 0));
        }
    }
    assert_eq!(h.info.is_head, h.method == b"HEAD");
    // Host is `uri-host [ ":" port ]` and the target one of the four forms:
    // neither has whitespace, userinfo or a fragment, `*` is for OPTIONS.
    for (_, v) in named("host") {
        assert!(!v.iter().any(|b| b" \t/@?#".contains(b)), "Host {v:?} accepted");
    }
    assert!(!h.target.contains(&b'#'), "a fragment in the target accepted");
    assert!(h.target != b"*" || h.method == b"OPTIONS", "* accepted for {:?}", h.method);
    let has_token = |want: &'static str| {
        named("connection").any(|(_, v)| v.split(|&b| b == b',').any(|t| trim(t).eq_ignore_ascii_case(want.as_bytes())))
    };
    let expected_keep_alive = !has_token("close") && (h.info.minor == 1 || has_token("keep-alive"));
    assert_eq!(h.info.keep_alive, expected_keep_alive, "keep_alive");
    if h.info.expect_continue {
        assert!(h.info.minor == 1 && h.info.framing != Framing::Empty && named("expect").count() > 0);
    }
}

/// The request line as far as it has arrived: after the empty lines that may
/// precede it (RFC 9112 §2.2), without its line end.
fn request_line(data: &[u8]) -> &[u8] {
    let start = data.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(data.len());
    let rest = &data[start..];
    let line = rest.iter().position(|&b| b == b'\n').map_or(rest, |end| &rest[..end]);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// A verdict on a prefix must survive the rest of the input arriving.
fn check_prefixes(data: &[u8], full: &Verdict, limits: &HeadLimits) {
    let step = (data.len() / 64).max(1);
    for len in (0..data.len()).step_by(step) {
        match parse(&data[..len], limits) {
            Verdict::Partial => {}
            Verdict::Refused(status) => assert!(
                matches!(full, Verdict::Refused(_)),
                "the first {len} bytes are refused with {status} but the whole input gives {full:?}"
            ),
            complete => assert_eq!(&complete, full, "a complete head changed when more bytes followed"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, &default_limits());
    check(data, &SMALL);
});

//! Arbitrary bytes into `ChunkedDecoder`, fed in splits chosen by the input.
//!
//! Input layout: `[limit] [cuts] [style] [cuts × u16 LE] [payload…]`; missing
//! bytes read as zero. Every input checks:
//! - the payload decoded in one call, byte by byte, and in the chosen pieces
//!   (fed as the server feeds it: everything received and not yet consumed)
//!   gives the same output, the same consumed count and the same verdict;
//! - consumed never exceeds the input, a finished decoder takes nothing more;
//! - the one-call verdict agrees with `reference`, a plain whole-buffer
//!   decoder written from RFC 9112 §7.1 and the policies stated in chunked.rs;
//! - the payload, cut into chunks and encoded by `encode` in the style the
//!   input picks, decodes back to itself and stops exactly at the body's end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warpcore::http::chunked::{ChunkError, ChunkedDecoder};

/// The decoder's private limits, restated: longest size-line remainder and
/// the most trailer bytes.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The body ended after `consumed` bytes.
    Done { out: Vec<u8>, consumed: usize },
    /// Everything was consumed and more is needed.
    NeedMore { out: Vec<u8> },
    Invalid,
    TooLarge,
}

impl Outcome {
    fn verdict(&self) -> (&'static str, Option<usize>) {
        match self {
            Outcome::Done { consumed, .. } => ("done", Some(*consumed)),
            Outcome::NeedMore { .. } => ("need more", None),
            Outcome::Invalid => ("invalid", None),
            Outcome::TooLarge => ("too large", None),
        }
    }
}

fn from_result(r: Result<(usize, bool), ChunkError>, out: Vec<u8>, len: usize) -> Outcome {
    match r {
        Ok((n, true)) => {
            assert!(n <= len, "consumed {n} of {len}");
            Outcome::Done { out, consumed: n }
        }
        Ok((n, false)) => {
            assert_eq!(n, len, "an unfinished body leaves input unconsumed");
            Outcome::NeedMore { out }
        }
        Err(ChunkError::Invalid) => Outcome::Invalid,
        Err(ChunkError::TooLarge) => Outcome::TooLarge,
    }
}

fn one_call(input: &[u8], max_body: u64) -> Outcome {
    let mut d = ChunkedDecoder::new(max_body);
    let mut out = Vec::new();
    let r = d.decode(input, &mut out);
    let outcome = from_result(r, out, input.len());
    if let Outcome::Done { consumed, .. } = outcome {
        // Finished: the rest belongs to the next request and is left alone.
        let mut more = Vec::new();
        assert_eq!(d.decode(&input[consumed..], &mut more), Ok((0, true)));
        assert_eq!(d.decode(b"0\r\n\r\n", &mut more), Ok((0, true)));
        assert!(more.is_empty());
    }
    outcome
}

/// Feeds `input` as if it arrived in pieces ending at `cuts` (sorted): each
/// call sees every byte received so far that was not yet consumed, as
/// `conn.rs` does.
fn in_pieces(input: &[u8], cuts: &[usize], max_body: u64) -> Outcome {
    let mut d = ChunkedDecoder::new(max_body);
    let mut out = Vec::new();
    let mut consumed = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        if end <= consumed {
            continue;
        }
        match d.decode(&input[consumed..end], &mut out) {
            Ok((n, done)) => {
                assert!(n <= end - consumed, "consumed {n} of {}", end - consumed);
                consumed += n;
                if done {
                    return Outcome::Done { out, consumed };
                }
                assert_eq!(consumed, end, "an unfinished body leaves input unconsumed");
            }
            Err(ChunkError::Invalid) => return Outcome::Invalid,
            Err(ChunkError::TooLarge) => return Outcome::TooLarge,
        }
    }
    Outcome::NeedMore { out }
}

/// A whole-buffer decoder, independent of the state machine: chunk-size is 1 to
/// 15 hex digits; then optional whitespace and, after a `;`, any visible bytes,
/// whitespace or obs-text (extensions are not interpreted); line ends are CRLF
/// or a bare LF; trailer lines are anything but NUL and a CR not ending the
/// line. A verdict is reached as soon as the bytes seen make it certain.
fn reference(input: &[u8], max_body: u64) -> Outcome {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut total: u64 = 0;
    loop {
        // chunk-size
        let rest = &input[pos..];
        let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits > 15 {
            return Outcome::Invalid;
        }
        if digits == rest.len() {
            return Outcome::NeedMore { out };
        }
        if digits == 0 {
            return Outcome::Invalid;
        }
        let size = u64::from_str_radix(std::str::from_utf8(&rest[..digits]).unwrap(), 16).unwrap();
        pos += digits;

        // [ BWS ] [ ";" extensions ] line end
        let (content, line_end) = match line(&input[pos..]) {
            Line::Complete { content, len } => (content, Some(len)),
            Line::Partial { content } => (content, None),
            Line::BadCr => return Outcome::Invalid,
        };
        if content.len() > MAX_LINE || !valid_size_rest(content) {
            return Outcome::Invalid;
        }
        let Some(len) = line_end else { return Outcome::NeedMore { out } };
        pos += len;

        if size == 0 {
            break;
        }
        total = match total.checked_add(size) {
            Some(t) if t <= max_body => t,
            _ => return Outcome::TooLarge,
        };

        // chunk-data, then its line end
        let available = input.len() - pos;
        if (available as u64) < size {
            out.extend_from_slice(&input[pos..]);
            return Outcome::NeedMore { out };
        }
        let size = size as usize;
        out.extend_from_slice(&input[pos..pos + size]);
        pos += size;
        match line(&input[pos..]) {
            Line::Complete { content: [], len } => pos += len,
            Line::Partial { content: [] } => return Outcome::NeedMore { out },
            _ => return Outcome::Invalid,
        }
    }

    // trailer-section, then the empty line
    let mut trailer_bytes = 0;
    loop {
        let (content, line_end) = match line(&input[pos..]) {
            Line::Complete { content, len } => (content, Some(len)),
            Line::Partial { content } => (content, None),
            Line::BadCr => return Outcome::Invalid,
        };
        trailer_bytes += content.len();
        if content.contains(&0) || trailer_bytes > MAX_TRAILERS {
            return Outcome::Invalid;
        }
        let Some(len) = line_end else { return Outcome::NeedMore { out } };
        pos += len;
        if content.is_empty() {
            return Outcome::Done { out, consumed: pos };
        }
    }
}

enum Line<'a> {
    /// A line and its ending: `len` bytes in all.
    Complete { content: &'a [u8], len: usize },
    /// No line end yet (a final lone CR is left out of `content`).
    Partial { content: &'a [u8] },
    /// A CR not followed by LF.
    BadCr,
}

fn line(buf: &[u8]) -> Line<'_> {
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'\n' => return Line::Complete { content: &buf[..i], len: i + 1 },
            b'\r' => {
                return match buf.get(i + 1) {
                    Some(b'\n') => Line::Complete { content: &buf[..i], len: i + 2 },
                    Some(_) => Line::BadCr,
                    None => Line::Partial { content: &buf[..i] },
                }
            }
            _ => {}
        }
    }
    Line::Partial { content: buf }
}

fn valid_size_rest(content: &[u8]) -> bool {
    let ws = |b: &u8| *b == b' ' || *b == b'\t';
    let after_ws = &content[content.iter().take_while(|b| ws(b)).count()..];
    match after_ws.split_first() {
        None => true,
        Some((b';', ext)) => ext.iter().all(|&b| ws(&b) || (0x21..=0x7e).contains(&b) || b >= 0x80),
        Some(_) => false,
    }
}

/// Encodes `chunks` (empty ones skipped: they would end the body) in a style
/// picked by the bits of `style`.
fn encode(chunks: &[&[u8]], style: u8) -> Vec<u8> {
    let eol: &[u8] = if style & 1 != 0 { b"\n" } else { b"\r\n" };
    let mut body = Vec::new();
    for (i, chunk) in chunks.iter().filter(|c| !c.is_empty()).enumerate() {
        let size = match (style >> 1) & 3 {
            0 => format!("{:x}", chunk.len()),
            1 => format!("{:X}", chunk.len()),
            2 => format!("{:015x}", chunk.len()),
            _ => format!("{:x} \t", chunk.len()),
        };
        body.extend_from_slice(size.as_bytes());
        if style & 8 != 0 {
            body.extend_from_slice(format!(" ; n{i}=\"v {i}\";flag").as_bytes());
        }
        body.extend_from_slice(eol);
        body.extend_from_slice(chunk);
        body.extend_from_slice(eol);
    }
    body.extend_from_slice(if style & 16 != 0 { b"0;last" } else { b"0" });
    body.extend_from_slice(eol);
    if style & 32 != 0 {
        body.extend_from_slice(b"X-Checksum: 1\r\nX-Other:\tx y\n");
    }
    body.extend_from_slice(eol);
    body
}

fuzz_target!(|data: &[u8]| {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    // Small limits reach TooLarge; the rest use the server's default.
    let max_body = if byte(0) < 64 { byte(0) as u64 * 4 } else { warpcore::Config::default().max_body_size };
    let ncuts = (byte(1) % 17) as usize;
    let style = byte(2);
    let payload = data.get(3 + 2 * ncuts..).unwrap_or(&[]);
    let mut cuts: Vec<usize> = (0..ncuts)
        .map(|i| u16::from_le_bytes([byte(3 + 2 * i), byte(4 + 2 * i)]) as usize % (payload.len() + 1))
        .collect();
    cuts.sort_unstable();

    // Raw bytes: every way of feeding them agrees, and agrees with the reference.
    let whole = one_call(payload, max_body);
    let bytewise: Vec<usize> = (1..payload.len()).collect();
    assert_eq!(in_pieces(payload, &bytewise, max_body), whole, "byte by byte differs from one call");
    assert_eq!(in_pieces(payload, &cuts, max_body), whole, "pieces {cuts:?} differ from one call");
    let expected = reference(payload, max_body);
    assert_eq!(whole.verdict(), expected.verdict(), "decoder and reference disagree");
    if let (Outcome::Done { out: a, .. } | Outcome::NeedMore { out: a }, Outcome::Done { out: b, .. } | Outcome::NeedMore { out: b }) =
        (&whole, &expected)
    {
        assert_eq!(a, b, "decoder and reference decode different bytes");
    }

    // Round trip: the payload cut into chunks at `cuts`, encoded, then decoded in
    // pieces cut at the same offsets of the encoding, followed by a next request.
    let mut chunks = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&payload.len())) {
        chunks.push(&payload[start..end]);
        start = end;
    }
    let body = encode(&chunks, style);
    let mut stream = body.clone();
    stream.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let stream_cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    let decoded = in_pieces(&stream, &stream_cuts, u64::MAX);
    assert_eq!(decoded, Outcome::Done { out: payload.to_vec(), consumed: body.len() }, "round trip of {body:?}");
});

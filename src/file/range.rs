//! Range requests (RFC 9110 §14): parsing `Range: bytes=…` against a file's
//! size, and laying out a `multipart/byteranges` body.

/// At most this many ranges are served in one response; a request for more is
/// answered with the whole file (§14.2 allows ignoring such a Range).
pub const MAX_RANGES: usize = 32;

/// One satisfiable byte range: `len` bytes (at least one) from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub len: u64,
}

impl ByteRange {
    /// The last byte's offset.
    pub fn last(&self) -> u64 {
        self.start + self.len - 1
    }
}

/// What a `Range` field asks for, given the representation's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// Malformed, another unit, too many ranges or an empty file: send it all (200).
    Ignore,
    /// No range overlaps the file: 416 with `Content-Range: bytes */SIZE`.
    Unsatisfiable,
    /// One or more satisfiable ranges, in the order asked unless overlapping or
    /// adjacent ones were merged (then sorted).
    Satisfiable(Vec<ByteRange>),
}

/// Parses a `Range` field value for a representation of `size` bytes.
pub fn parse(value: &[u8], size: u64) -> Ranges {
    let value = value.trim_ascii();
    let Some(eq) = value.iter().position(|&b| b == b'=') else { return Ranges::Ignore };
    if !value[..eq].trim_ascii().eq_ignore_ascii_case(b"bytes") {
        return Ranges::Ignore;
    }
    if size == 0 {
        return Ranges::Ignore;
    }
    let mut ranges = Vec::new();
    let mut specs = 0;
    for spec in value[eq + 1..].split(|&b| b == b',') {
        let spec = spec.trim_ascii();
        if spec.is_empty() {
            continue;
        }
        specs += 1;
        if specs > MAX_RANGES {
            return Ranges::Ignore;
        }
        let Some(dash) = spec.iter().position(|&b| b == b'-') else { return Ranges::Ignore };
        let (first, last) = (&spec[..dash], &spec[dash + 1..]);
        if first.is_empty() {
            // Suffix: the last N bytes.
            let Some(n) = number(last) else { return Ranges::Ignore };
            if n > 0 {
                let len = n.min(size);
                ranges.push(ByteRange { start: size - len, len });
            }
        } else {
            let Some(first) = number(first) else { return Ranges::Ignore };
            let last = if last.is_empty() {
                u64::MAX
            } else {
                match number(last) {
                    Some(l) if l >= first => l,
                    _ => return Ranges::Ignore,
                }
            };
            if first < size {
                ranges.push(ByteRange { start: first, len: last.min(size - 1) - first + 1 });
            }
        }
    }
    if specs == 0 {
        return Ranges::Ignore;
    }
    if ranges.is_empty() {
        return Ranges::Unsatisfiable;
    }
    Ranges::Satisfiable(coalesce(ranges))
}

/// Digits only; values past u64 saturate (a huge last-pos simply means "to the end").
fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n.saturating_mul(10).saturating_add((d - b'0') as u64)))
}

/// Merges overlapping or adjacent ranges (§14.3 allows it), so that a body is never
/// larger than the file plus part headers.
fn coalesce(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    if ranges.len() < 2 {
        return ranges;
    }
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|r| r.start);
    let touching = sorted.windows(2).any(|w| w[1].start <= w[0].last() + 1);
    if !touching {
        return ranges;
    }
    ranges.clear();
    for r in sorted {
        match ranges.last_mut() {
            Some(prev) if r.start <= prev.last() + 1 => {
                let end = prev.last().max(r.last());
                prev.len = end - prev.start + 1;
            }
            _ => ranges.push(r),
        }
    }
    ranges
}

/// Appends `bytes START-LAST/SIZE` (a `Content-Range` value) to `out`.
pub fn content_range(out: &mut Vec<u8>, r: &ByteRange, size: u64) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"bytes ");
    out.extend_from_slice(n.format(r.start).as_bytes());
    out.push(b'-');
    out.extend_from_slice(n.format(r.last()).as_bytes());
    out.push(b'/');
    out.extend_from_slice(n.format(size).as_bytes());
}

/// Appends `bytes */SIZE` (the `Content-Range` of a 416) to `out`.
pub fn unsatisfied_range(out: &mut Vec<u8>, size: u64) {
    out.extend_from_slice(b"bytes */");
    out.extend_from_slice(itoa::Buffer::new().format(size).as_bytes());
}

/// A piece of a `multipart/byteranges` body: literal bytes, or a range of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Bytes(Vec<u8>),
    File(ByteRange),
}

/// Lays out a `multipart/byteranges` body (§14.6) for `ranges` of a file of
/// `size` bytes and type `content_type`, parts separated by `boundary`.
/// Returns the pieces and the body's total length.
pub fn multipart(ranges: &[ByteRange], size: u64, content_type: &[u8], boundary: &[u8]) -> (Vec<Piece>, u64) {
    let mut pieces = Vec::with_capacity(ranges.len() * 2 + 1);
    let mut total = 0u64;
    for (i, r) in ranges.iter().enumerate() {
        let mut head = Vec::with_capacity(96 + boundary.len() + content_type.len());
        if i > 0 {
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"--");
        head.extend_from_slice(boundary);
        head.extend_from_slice(b"\r\nContent-Type: ");
        head.extend_from_slice(content_type);
        head.extend_from_slice(b"\r\nContent-Range: ");
        content_range(&mut head, r, size);
        head.extend_from_slice(b"\r\n\r\n");
        total += head.len() as u64 + r.len;
        pieces.push(Piece::Bytes(head));
        pieces.push(Piece::File(*r));
    }
    let mut tail = b"\r\n--".to_vec();
    tail.extend_from_slice(boundary);
    tail.extend_from_slice(b"--\r\n");
    total += tail.len() as u64;
    pieces.push(Piece::Bytes(tail));
    (pieces, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, len: u64) -> ByteRange {
        ByteRange { start, len }
    }

    fn sat(v: &[ByteRange]) -> Ranges {
        Ranges::Satisfiable(v.to_vec())
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(parse(b"bytes=0-499", 1000), sat(&[r(0, 500)]));
        assert_eq!(parse(b"bytes=500-", 1000), sat(&[r(500, 500)]));
        assert_eq!(parse(b"bytes=-200", 1000), sat(&[r(800, 200)]));
        assert_eq!(parse(b"Bytes = 10-10", 1000), sat(&[r(10, 1)]));
    }

    #[test]
    fn clips_to_the_file() {
        assert_eq!(parse(b"bytes=900-5000", 1000), sat(&[r(900, 100)]));
        assert_eq!(parse(b"bytes=-5000", 1000), sat(&[r(0, 1000)]));
        assert_eq!(parse(b"bytes=0-99999999999999999999999", 10), sat(&[r(0, 10)]));
        assert_eq!(parse(b"bytes=1000-,5-5", 1000), sat(&[r(5, 1)]));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(parse(b"bytes=1000-", 1000), Ranges::Unsatisfiable);
        assert_eq!(parse(b"bytes=1000-2000, 5000-", 1000), Ranges::Unsatisfiable);
        assert_eq!(parse(b"bytes=-0", 1000), Ranges::Unsatisfiable);
        assert_eq!(parse(b"bytes=99999999999999999999999-", 1000), Ranges::Unsatisfiable);
    }

    #[test]
    fn ignored_ranges() {
        for bad in
            [&b"bytes=5-1"[..], b"items=0-1", b"bytes=a-b", b"bytes=", b"bytes=1", b"0-1", b"bytes=--1", b"bytes=1-2-3"]
        {
            assert_eq!(parse(bad, 1000), Ranges::Ignore, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"bytes=0-1", 0), Ranges::Ignore);
        let many: String = (0..=MAX_RANGES).map(|i| format!("{}-{},", i * 10, i * 10)).collect();
        assert_eq!(parse(format!("bytes={many}").as_bytes(), 10_000), Ranges::Ignore);
    }

    #[test]
    fn several_ranges_keep_their_order_unless_they_touch() {
        assert_eq!(parse(b"bytes=500-599, 0-99", 1000), sat(&[r(500, 100), r(0, 100)]));
        assert_eq!(parse(b"bytes=0-99,50-149,,400-", 1000), sat(&[r(0, 150), r(400, 600)]));
        assert_eq!(parse(b"bytes=10-19,0-9", 1000), sat(&[r(0, 20)]));
        assert_eq!(parse(b"bytes=0-0,0-0,0-0,0-0", 1000), sat(&[r(0, 1)]));
    }

    #[test]
    fn content_range_values() {
        let mut out = Vec::new();
        content_range(&mut out, &r(0, 500), 1000);
        assert_eq!(out, b"bytes 0-499/1000");
        out.clear();
        unsatisfied_range(&mut out, 1000);
        assert_eq!(out, b"bytes */1000");
    }

    #[test]
    fn multipart_layout_and_length() {
        let (pieces, total) = multipart(&[r(0, 2), r(8, 2)], 10, b"text/plain", b"B");
        let file = b"0123456789";
        let mut body = Vec::new();
        for p in &pieces {
            match p {
                Piece::Bytes(b) => body.extend_from_slice(b),
                Piece::File(r) => body.extend_from_slice(&file[r.start as usize..][..r.len as usize]),
            }
        }
        let expected = "--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\
                        \r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\
                        \r\n--B--\r\n";
        assert_eq!(String::from_utf8(body.clone()).unwrap(), expected);
        assert_eq!(total, body.len() as u64);
    }
}

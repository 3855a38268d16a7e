//! The planner: turns a request (method, header fields) and what its path was
//! found to be into a plan — the status, the header fields to send besides the
//! engine's own, and a body that is nothing, fixed text, one range of the file,
//! or the pieces of a `multipart/byteranges` body. It does no I/O: the caller
//! opens the file only when the plan needs its bytes.

use super::conditional::{self, Precondition};
use super::info::FileInfo;
use super::range::{self, ByteRange, Piece, Ranges};
use super::validator::Check;
use super::Fields;

/// The fields the planner reads: `If-*` (conditionals, `If-Range`) and `Range`.
pub(super) fn wanted(name: &str) -> bool {
    let b = name.as_bytes();
    (b.len() > 3 && b[..3].eq_ignore_ascii_case(b"if-")) || name.eq_ignore_ascii_case("range")
}

/// The request as the planner sees it.
pub(crate) struct FileRequest<'a> {
    pub method: &'a [u8],
    pub fields: Fields<'a>,
    /// The connection takes a pre-rendered keep-alive answer
    /// (`KeepAliveImage::fits`: HTTP/1.1, staying open, not HEAD).
    pub image_fits: bool,
}

impl FileRequest<'_> {
    pub fn is_get(&self) -> bool {
        self.method == b"GET"
    }

    pub fn is_head(&self) -> bool {
        self.method == b"HEAD"
    }

    /// A GET without preconditions or `Range`, on a connection that takes a
    /// pre-rendered answer: its answer to a 200 is the plain whole file.
    pub fn is_plain_get(&self) -> bool {
        self.image_fits && self.is_get() && !self.fields.any_name(wanted)
    }
}

/// Most header fields a plan carries (Content-Type, Last-Modified, ETag,
/// Accept-Ranges, Content-Range, Location, Allow).
const MAX_FIELDS: usize = 8;

/// Header fields rendered into one buffer, handed to the composer as pairs.
#[derive(Default)]
pub(crate) struct HeadFields {
    buf: Vec<u8>,
    /// (name start, name end = value start, value end) into `buf`.
    spans: [(usize, usize, usize); MAX_FIELDS],
    len: usize,
}

impl HeadFields {
    fn push(&mut self, name: &[u8], value: &[u8]) {
        self.push_with(name, |out| out.extend_from_slice(value));
    }

    fn push_with(&mut self, name: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
        debug_assert!(self.len < MAX_FIELDS);
        if self.len == MAX_FIELDS {
            return;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(name);
        let mid = self.buf.len();
        value(&mut self.buf);
        self.spans[self.len] = (start, mid, self.buf.len());
        self.len += 1;
    }

    /// The fields as (name, value) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.spans[..self.len].iter().map(|&(a, b, c)| (&self.buf[a..b], &self.buf[b..c]))
    }

    /// `given` (a handler's own fields) followed by those of these fields that
    /// `given` does not name: a handler's field replaces the engine's.
    pub fn after<'a>(
        &'a self,
        given: &'a [(&'a [u8], &'a [u8])],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone {
        let ours = self.iter().filter(move |(name, _)| !given.iter().any(|(g, _)| g.eq_ignore_ascii_case(name)));
        given.iter().copied().chain(ours)
    }

    #[cfg(test)]
    /// The value of the field `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }
}

/// What follows the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    Empty,
    /// A short fixed text (error pages).
    Text(&'static [u8]),
    /// One range of the file (the whole file for a 200).
    File(ByteRange),
    /// A `multipart/byteranges` body.
    Parts(Vec<Piece>),
}

/// A response decided but not yet sent.
pub(crate) struct Plan {
    pub status: u16,
    pub fields: HeadFields,
    pub body: Body,
    /// The body's length: `Content-Length`, also for HEAD.
    pub length: u64,
}

impl Plan {
    /// Whether sending the body needs the file open.
    pub fn needs_file(&self) -> bool {
        matches!(self.body, Body::File(_) | Body::Parts(_))
    }
}

/// A short text response (`404 Not Found` …) the engine sends by itself.
pub(crate) fn error(status: u16) -> Plan {
    let text: &'static [u8] = match status {
        400 => b"Bad Request\n",
        403 => b"Forbidden\n",
        404 => b"Not Found\n",
        405 => b"Method Not Allowed\n",
        412 => b"Precondition Failed\n",
        416 => b"Range Not Satisfiable\n",
        503 => b"Service Unavailable\n",
        _ => b"Internal Server Error\n",
    };
    let mut fields = HeadFields::default();
    fields.push(b"Content-Type", b"text/plain; charset=utf-8");
    Plan { status, fields, body: Body::Text(text), length: text.len() as u64 }
}

/// `405` with `Allow: GET, HEAD`.
pub(crate) fn method_not_allowed() -> Plan {
    let mut plan = error(405);
    plan.fields.push(b"Allow", b"GET, HEAD");
    plan
}

/// `301` to `location`.
pub(crate) fn redirect(location: &[u8]) -> Plan {
    const TEXT: &[u8] = b"Moved Permanently\n";
    let mut fields = HeadFields::default();
    fields.push(b"Location", location);
    fields.push(b"Content-Type", b"text/plain; charset=utf-8");
    Plan { status: 301, fields, body: Body::Text(TEXT), length: TEXT.len() as u64 }
}

/// The plan for answering `req` with the file `info` and `status`.
///
/// For a 200 the preconditions are evaluated against `check` and a `Range` is
/// honoured (GET only, §14.2); any other status sends the whole file as it is.
/// `content_type` is the type sent (also in each part of a multipart body),
/// `now` the current time in seconds since the epoch, `boundary` the multipart
/// boundary.
pub(crate) fn file(
    req: &FileRequest<'_>,
    status: u16,
    info: &FileInfo,
    check: &Check<'_>,
    content_type: &[u8],
    now: u64,
    boundary: &[u8],
) -> Plan {
    let size = info.stat.size;
    let whole = ByteRange { start: 0, len: size };
    let whole_body = if size == 0 { Body::Empty } else { Body::File(whole) };
    let mut fields = HeadFields::default();
    if status != 200 {
        fields.push(b"Content-Type", content_type);
        return Plan { status, fields, body: whole_body, length: size };
    }
    let v = &info.validators;
    match conditional::evaluate(&req.fields, req.is_get() || req.is_head(), check, now) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            fields.push(b"ETag", v.etag());
            fields.push(b"Last-Modified", v.last_modified());
            return Plan { status: 304, fields, body: Body::Empty, length: 0 };
        }
        Precondition::Failed => return error(412),
    }

    let ranges = match single_value(&req.fields, "range") {
        Some(value) if req.is_get() => {
            let if_range_ok = match single_value(&req.fields, "if-range") {
                Some(ir) => conditional::if_range_holds(ir, check),
                None => !req.fields.has("if-range"),
            };
            if if_range_ok {
                range::parse(value, size)
            } else {
                Ranges::Ignore
            }
        }
        _ => Ranges::Ignore,
    };

    let validators = |fields: &mut HeadFields| {
        fields.push(b"Last-Modified", v.last_modified());
        fields.push(b"ETag", v.etag());
        fields.push(b"Accept-Ranges", b"bytes");
    };
    match ranges {
        Ranges::Ignore => {
            fields.push(b"Content-Type", content_type);
            validators(&mut fields);
            Plan { status: 200, fields, body: whole_body, length: size }
        }
        Ranges::Unsatisfiable => {
            let mut plan = error(416);
            plan.fields.push_with(b"Content-Range", |out| range::unsatisfied_range(out, size));
            plan
        }
        Ranges::Satisfiable(list) if list.len() == 1 => {
            let r = list[0];
            fields.push(b"Content-Type", content_type);
            validators(&mut fields);
            fields.push_with(b"Content-Range", |out| range::content_range(out, &r, size));
            Plan { status: 206, fields, body: Body::File(r), length: r.len }
        }
        Ranges::Satisfiable(list) => {
            let (pieces, total) = range::multipart(&list, size, content_type, boundary);
            fields.push_with(b"Content-Type", |out| {
                out.extend_from_slice(b"multipart/byteranges; boundary=");
                out.extend_from_slice(boundary);
            });
            validators(&mut fields);
            Plan { status: 206, fields, body: Body::Parts(pieces), length: total }
        }
    }
}

/// The value of a field sent exactly once (a repeated Range or If-Range is
/// ignored, as a list makes no sense for either).
fn single_value<'a>(fields: &Fields<'a>, name: &str) -> Option<&'a [u8]> {
    let mut values = fields.values(name);
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::validator::Validators;
    use crate::sys::fs::{FileKind, Stat};

    const NOW: u64 = 800_000_000;
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn info(size: u64) -> FileInfo {
        let stat = Stat { dev: 1, ino: 2, size, mtime: 784_111_777, mtime_nsec: 0, kind: FileKind::Regular };
        FileInfo { stat, validators: Validators::of(&stat, NOW), content_type: "text/plain; charset=utf-8" }
    }

    fn plan(method: &str, status: u16, pairs: &[(&'static str, &str)], size: u64) -> Plan {
        let headers: Vec<_> = pairs.iter().map(|(n, v)| httparse::Header { name: n, value: v.as_bytes() }).collect();
        let req = FileRequest { method: method.as_bytes(), fields: Fields::new(&headers), image_fits: false };
        let i = info(size);
        file(&req, status, &i, &i.validators.check(), i.content_type.as_bytes(), NOW, b"BOUND")
    }

    fn field<'p>(p: &'p Plan, name: &str) -> Option<&'p str> {
        p.fields.get(name).map(|v| std::str::from_utf8(v).unwrap())
    }

    fn etag() -> String {
        String::from_utf8(info(1000).validators.etag().to_vec()).unwrap()
    }

    #[test]
    fn a_plain_get_sends_the_whole_file_with_validators() {
        let p = plan("GET", 200, &[], 1000);
        assert_eq!((p.status, p.length), (200, 1000));
        assert_eq!(p.body, Body::File(ByteRange { start: 0, len: 1000 }));
        assert_eq!(field(&p, "content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(field(&p, "last-modified"), Some(LM));
        assert_eq!(field(&p, "etag"), Some(etag().as_str()));
        assert_eq!(field(&p, "accept-ranges"), Some("bytes"));
        assert!(p.needs_file());
        let empty = plan("GET", 200, &[], 0);
        assert_eq!((empty.body, empty.length), (Body::Empty, 0));
    }

    #[test]
    fn conditionals_lead_to_304_and_412() {
        let e = etag();
        let p = plan("GET", 200, &[("If-None-Match", &e)], 1000);
        assert_eq!((p.status, &p.body), (304, &Body::Empty));
        assert_eq!(field(&p, "etag"), Some(e.as_str()));
        assert!(!p.needs_file());
        assert_eq!(plan("HEAD", 200, &[("If-Modified-Since", LM)], 1000).status, 304);
        assert_eq!(plan("GET", 200, &[("If-Match", "\"x\"")], 1000).status, 412);
        assert_eq!(plan("GET", 200, &[("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT")], 1000).status, 412);
        // Not for other statuses: a handler's 404 page is sent as it is.
        assert_eq!(plan("GET", 404, &[("If-None-Match", &e)], 1000).status, 404);
    }

    #[test]
    fn ranges_give_206_416_or_multipart() {
        let p = plan("GET", 200, &[("Range", "bytes=10-19")], 1000);
        assert_eq!((p.status, p.length), (206, 10));
        assert_eq!(p.body, Body::File(ByteRange { start: 10, len: 10 }));
        assert_eq!(field(&p, "content-range"), Some("bytes 10-19/1000"));

        let p = plan("GET", 200, &[("Range", "bytes=5000-")], 1000);
        assert_eq!(p.status, 416);
        assert_eq!(field(&p, "content-range"), Some("bytes */1000"));

        let p = plan("GET", 200, &[("Range", "bytes=0-0,-1")], 1000);
        assert_eq!(p.status, 206);
        assert_eq!(field(&p, "content-type"), Some("multipart/byteranges; boundary=BOUND"));
        let Body::Parts(pieces) = &p.body else { panic!("multipart") };
        assert_eq!(pieces.len(), 5);

        // HEAD, a bad Range, a repeated Range: the whole file.
        for (m, h) in [("HEAD", "bytes=0-0"), ("GET", "bytes=x")] {
            assert_eq!(plan(m, 200, &[("Range", h)], 1000).status, 200);
        }
        assert_eq!(plan("GET", 200, &[("Range", "bytes=0-0"), ("Range", "bytes=1-1")], 1000).status, 200);
    }

    #[test]
    fn if_range_decides_between_part_and_whole() {
        let e = etag();
        assert_eq!(plan("GET", 200, &[("Range", "bytes=0-0"), ("If-Range", &e)], 1000).status, 206);
        assert_eq!(plan("GET", 200, &[("Range", "bytes=0-0"), ("If-Range", LM)], 1000).status, 206);
        assert_eq!(plan("GET", 200, &[("Range", "bytes=0-0"), ("If-Range", "\"old\"")], 1000).status, 200);
        let old = "Sun, 06 Nov 1994 08:49:36 GMT";
        assert_eq!(plan("GET", 200, &[("Range", "bytes=0-0"), ("If-Range", old)], 1000).status, 200);
    }

    #[test]
    fn fixed_answers() {
        let p = method_not_allowed();
        assert_eq!((p.status, field(&p, "allow")), (405, Some("GET, HEAD")));
        let p = redirect(b"/static/dir/?q=1");
        assert_eq!((p.status, field(&p, "location")), (301, Some("/static/dir/?q=1")));
        let p = error(404);
        assert_eq!((p.body, p.length), (Body::Text(b"Not Found\n"), 10));
    }
}

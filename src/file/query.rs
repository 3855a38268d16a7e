//! What a file answer needs of its request after the request's buffers are
//! gone (a deferred answer): the method and the header fields that
//! conditionals and ranges read. Captured when a response is deferred; most
//! requests carry none of these fields, and then nothing is allocated.

use super::serve::{wanted, FileRequest};
use super::Fields;

#[derive(Debug, Default)]
pub(crate) struct FileQuery {
    /// `GET`, `HEAD`, or empty for any other method (the planner tells only these apart).
    method: &'static [u8],
    bytes: Vec<u8>,
    /// (start, name length, value length) into `bytes`.
    spans: Vec<(usize, usize, usize)>,
}

impl FileQuery {
    pub fn capture(method: &[u8], headers: &[httparse::Header<'_>]) -> FileQuery {
        let method: &'static [u8] = match method {
            b"GET" => b"GET",
            b"HEAD" => b"HEAD",
            _ => b"",
        };
        let mut query = FileQuery { method, ..FileQuery::default() };
        for h in headers.iter().filter(|h| wanted(h.name)) {
            let start = query.bytes.len();
            query.bytes.extend_from_slice(h.name.as_bytes());
            query.bytes.extend_from_slice(h.value);
            query.spans.push((start, h.name.len(), h.value.len()));
        }
        query
    }

    /// Runs `f` with the request as the planner sees it.
    pub fn with_request<R>(&self, f: impl FnOnce(&FileRequest<'_>) -> R) -> R {
        let headers: Vec<httparse::Header<'_>> = self
            .spans
            .iter()
            .map(|&(start, n, v)| httparse::Header {
                // Names were `&str` when captured.
                name: std::str::from_utf8(&self.bytes[start..start + n]).unwrap_or(""),
                value: &self.bytes[start + n..start + n + v],
            })
            .collect();
        f(&FileRequest { method: self.method, fields: Fields::new(&headers), image_fits: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_what_the_planner_reads() {
        let headers = [
            httparse::Header { name: "Host", value: b"x" },
            httparse::Header { name: "If-None-Match", value: b"\"a\"" },
            httparse::Header { name: "range", value: b"bytes=0-1" },
            httparse::Header { name: "If", value: b"no" },
        ];
        let q = FileQuery::capture(b"GET", &headers);
        q.with_request(|r| {
            assert!(r.is_get());
            assert_eq!(r.fields.values("if-none-match").collect::<Vec<_>>(), [&b"\"a\""[..]]);
            assert_eq!(r.fields.values("Range").collect::<Vec<_>>(), [&b"bytes=0-1"[..]]);
            assert!(!r.fields.has("host") && !r.fields.has("if"));
        });
        assert!(FileQuery::capture(b"POST", &headers[..1]).bytes.is_empty());
        FileQuery::capture(b"POST", &[]).with_request(|r| assert!(!r.is_get() && !r.is_head()));
    }
}

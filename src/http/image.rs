//! A prepared response rendered whole for its common case: an HTTP/1.1
//! request on a persistent connection that is not HEAD. Sending it is three
//! copies — the status line, the worker's `Date`/`Server` lines, the rest —
//! instead of composing the head field by field per request; a worker keeps
//! the few it sends most with its current lines in place, which makes it one.

use std::sync::atomic::{AtomicU64, Ordering};

use super::compose::{status_line, ComposeEnv, HandlerFields, RequestMeta};
use super::status::forbids_body;

/// Tells images apart for `ImageCache`: never reused, unlike an address.
static NEXT_IMAGE_ID: AtomicU64 = AtomicU64::new(1);

/// The wire bytes of one response but for its `Date` and `Server` lines,
/// which the worker supplies per request (the date changes every second, the
/// name on reload). Immutable; shared by every thread that sends it.
#[derive(Debug)]
pub struct KeepAliveImage {
    /// The status line, then the header fields, `Content-Length`, the blank
    /// line and the body.
    bytes: Box<[u8]>,
    /// Where the status line ends and the `Date`/`Server` lines go.
    fields_at: usize,
    body_len: u64,
    id: u64,
}

impl KeepAliveImage {
    /// The image of a response with this status, fields (rendered by
    /// `compose::render_fields`) and body, or None when the response needs the
    /// general composer even in the common case: a status without a body (or
    /// not a final one), a handler's own `Date` or `Server`, a
    /// `Connection: close`, or a body large enough to be written from its own
    /// buffer (`body_limit`).
    pub fn new(
        status: u16,
        rendered: &[u8],
        fields: &HandlerFields,
        body: &[u8],
        body_limit: usize,
    ) -> Option<KeepAliveImage> {
        if forbids_body(status) || !fields.leaves_engine_lines() || body.len() >= body_limit {
            return None;
        }
        let status_line = status_line(status).ok()?;
        let mut length = itoa::Buffer::new();
        let length = length.format(body.len());
        let mut bytes = Vec::with_capacity(status_line.len() + rendered.len() + 24 + length.len() + body.len());
        bytes.extend_from_slice(status_line);
        let fields_at = bytes.len();
        bytes.extend_from_slice(rendered);
        bytes.extend_from_slice(b"Content-Length: ");
        bytes.extend_from_slice(length.as_bytes());
        bytes.extend_from_slice(b"\r\n\r\n");
        bytes.extend_from_slice(body);
        let id = NEXT_IMAGE_ID.fetch_add(1, Ordering::Relaxed);
        Some(KeepAliveImage { bytes: bytes.into_boxed_slice(), fields_at, body_len: body.len() as u64, id })
    }

    /// Whether the image answers a request with this meta: HTTP/1.1, the
    /// connection stays open, and the body is sent.
    pub fn fits(req: &RequestMeta) -> bool {
        req.minor == 1 && req.keep_alive && !req.is_head
    }

    /// Appends the response to `out`; the caller checked `fits`.
    pub fn compose(&self, out: &mut Vec<u8>, env: &ComposeEnv<'_>) {
        out.reserve(self.bytes.len() + env.common.len());
        out.extend_from_slice(&self.bytes[..self.fields_at]);
        out.extend_from_slice(env.common);
        out.extend_from_slice(&self.bytes[self.fields_at..]);
    }

    /// Body bytes the response carries.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// The body the response carries.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.bytes.len() - self.body_len as usize..]
    }

    /// The bytes the image holds (all of it but the `Date` and `Server` lines).
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}

/// How many images a worker keeps complete, and up to what size: enough for
/// the handful of answers an application sends most, bounded in memory.
const CACHED_IMAGES: usize = 4;
const CACHED_IMAGE_MAX: usize = 4096;

/// A worker's complete copies of the images it sent last, each with the
/// `Date`/`Server` lines of the version it was made with. Direct-mapped by
/// image: a miss re-renders into the slot's buffer, which keeps its capacity,
/// so a warm worker allocates nothing here.
#[derive(Default)]
pub struct ImageCache {
    slots: [CachedImage; CACHED_IMAGES],
}

#[derive(Default)]
struct CachedImage {
    /// The image's id; 0 for an empty slot (ids start at 1).
    id: u64,
    version: u64,
    bytes: Vec<u8>,
}

impl ImageCache {
    /// Appends `image` with `env`'s lines to `out`, as `KeepAliveImage::compose`.
    pub fn compose(&mut self, image: &KeepAliveImage, env: &ComposeEnv<'_>, out: &mut Vec<u8>) {
        if image.bytes.len() > CACHED_IMAGE_MAX {
            return image.compose(out, env);
        }
        let slot = &mut self.slots[image.id as usize % CACHED_IMAGES];
        if slot.id != image.id || slot.version != env.version {
            slot.bytes.clear();
            image.compose(&mut slot.bytes, env);
            slot.id = image.id;
            slot.version = env.version;
        }
        out.extend_from_slice(&slot.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::compose::{compose_head, render_fields, BodyLength};

    const COMMON: &[u8] = b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: t\r\n";

    fn image(status: u16, headers: &[(&[u8], &[u8])], body: &[u8]) -> Option<KeepAliveImage> {
        let mut rendered = Vec::new();
        let fields = render_fields(&mut rendered, headers.iter().map(|(n, v)| (*n, *v))).unwrap();
        KeepAliveImage::new(status, &rendered, &fields, body, 32 * 1024)
    }

    /// The image is byte for byte what the general composer writes.
    #[test]
    fn matches_the_composer() {
        let env = ComposeEnv { common: COMMON, version: 0 };
        let meta = RequestMeta { minor: 1, keep_alive: true, is_head: false };
        type Case<'a> = (u16, &'a [(&'a [u8], &'a [u8])], &'a [u8]);
        let cases: &[Case] = &[
            (200, &[(b"Content-Type", b"text/plain")], b"Hello, World!"),
            (404, &[], b""),
            (200, &[(b"X-A", b"1"), (b"Content-Length", b"99")], b"abc"),
        ];
        for (status, headers, body) in cases {
            let mut expected = Vec::new();
            let iter = headers.iter().map(|(n, v)| (*n, *v));
            compose_head(&mut expected, &env, *status, iter, BodyLength::Known(body.len() as u64), meta).unwrap();
            expected.extend_from_slice(body);
            let image = image(*status, headers, body).unwrap();
            assert_eq!(image.body_len(), body.len() as u64);
            assert_eq!(image.body(), *body);
            let mut out = b"before".to_vec();
            image.compose(&mut out, &env);
            assert_eq!(String::from_utf8_lossy(&out[6..]), String::from_utf8_lossy(&expected));
        }
    }

    /// A cached copy follows the lines' version (a new second, a reload's
    /// server name) and never answers for another image in its slot.
    #[test]
    fn cached_copies_follow_the_version() {
        let images: Vec<KeepAliveImage> =
            (0..2 * CACHED_IMAGES).map(|i| image(200, &[], format!("body {i}").as_bytes()).unwrap()).collect();
        let mut cache = ImageCache::default();
        let lines = [&b"Date: one\r\n"[..], b"Date: two\r\nServer: s\r\n"];
        for round in 0..3 {
            for (version, common) in lines.iter().enumerate() {
                let env = ComposeEnv { common, version: version as u64 };
                for (i, image) in images.iter().enumerate().rev().skip(round) {
                    let (mut direct, mut cached) = (Vec::new(), b"x".to_vec());
                    image.compose(&mut direct, &env);
                    cache.compose(image, &env, &mut cached);
                    assert_eq!(cached[1..], direct[..], "image {i}, version {version}");
                    assert!(direct.ends_with(format!("body {i}").as_bytes()));
                }
            }
        }
    }

    #[test]
    fn only_for_the_common_case() {
        assert!(image(204, &[], b"").is_none());
        assert!(image(304, &[], b"").is_none());
        assert!(image(600, &[], b"").is_none());
        assert!(image(200, &[(b"Date", b"x")], b"").is_none());
        assert!(image(200, &[(b"server", b"x")], b"").is_none());
        assert!(image(200, &[(b"Connection", b"close")], b"").is_none());
        assert!(image(200, &[], &vec![b'a'; 32 * 1024]).is_none());
        assert!(image(200, &[(b"Connection", b"keep-alive")], b"").is_some());
        let fits = |minor, keep_alive, is_head| KeepAliveImage::fits(&RequestMeta { minor, keep_alive, is_head });
        assert!(fits(1, true, false));
        assert!(!fits(0, true, false) && !fits(1, false, false) && !fits(1, true, true));
    }
}

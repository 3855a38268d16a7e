//! Static mounts (`/static` → a directory) and the safe mapping of a request
//! path to a path relative to a mount.
//!
//! The path is taken as sent, percent-decoded once, and refused (400) when an
//! escape decodes to `/`, `\` or NUL, when it holds a `\`, or when a segment is
//! `.` or `..` (literal or encoded): what remains is a plain relative path of
//! non-empty segments. Symlinks are the kernel's business: files are opened with
//! `RESOLVE_BENEATH` (see `sys::fs`), so a link that leads outside the mount is
//! refused at open time.
//!
//! A mount's directory is named by its canonical path, resolved once when the
//! server starts (or reloads), and opened by that path at each lookup: a
//! directory renamed over it is served from then on, while a symlink switched
//! in a path given to the mount (`current -> release-N`) is followed by a reload.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};
use crate::http::percent::hex_value;
use crate::sys::fs;

/// One static mount as configured: requests under `url_prefix` are served from
/// the files under `directory`, by the engine, without calling the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// The URL path prefix, decoded (`/static`, or `/` for everything); no
    /// trailing slash except for `/`.
    pub url_prefix: Vec<u8>,
    /// The directory served; resolved to its canonical path when the server starts.
    pub directory: PathBuf,
}

impl MountSpec {
    /// Checks and normalises a prefix (a trailing `/` is dropped). The directory
    /// is checked when the server starts.
    pub fn new(url_prefix: &[u8], directory: impl Into<PathBuf>) -> Result<MountSpec, Error> {
        let invalid = |m: &str| Error::new(ErrorKind::InvalidArgument, format!("static prefix: {m}"));
        if url_prefix.first() != Some(&b'/') {
            return Err(invalid("must start with '/'"));
        }
        if url_prefix.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\' || b == b'?' || b == b'#') {
            return Err(invalid("must not contain control characters, '\\', '?' or '#'"));
        }
        let trimmed = match url_prefix.len() {
            1 => url_prefix,
            n if url_prefix[n - 1] == b'/' => &url_prefix[..n - 1],
            _ => url_prefix,
        };
        if trimmed.len() > 1 && trimmed[1..].split(|&b| b == b'/').any(|s| s.is_empty() || s == b"." || s == b"..") {
            return Err(invalid("must not contain empty, '.' or '..' segments"));
        }
        let directory = directory.into();
        if directory.as_os_str().is_empty() {
            return Err(Error::new(ErrorKind::InvalidArgument, "static directory is empty"));
        }
        Ok(MountSpec { url_prefix: trimmed.to_vec(), directory })
    }
}

/// A mount ready to serve: its directory was found and its canonical path is
/// known. No descriptor of it is kept: each lookup opens the directory at that
/// path again and resolves the file beneath it, so a directory swapped in at
/// the path (`mv www www.old; mv www.new www`) is served at once, as nginx
/// serves its `root`.
pub(crate) struct Mount {
    pub prefix: Vec<u8>,
    /// The canonical path of the directory.
    pub root: PathBuf,
    /// The directory's (device, inode) when the mount was opened.
    identity: (u64, u64),
}

/// Every mount of a server, longest prefix first. Shared read-only by the workers.
pub(crate) struct Mounts {
    list: Vec<Mount>,
}

/// Where a request path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// No mount covers the path: the handler answers.
    NoMount,
    /// A mount covers it but the path is refused (traversal, encoded separator): 400.
    Bad,
    /// Mount `mount`, relative path left in the caller's buffer. `dir_form`: the
    /// path ends with `/` (or is the mount itself with its slash), so it names a
    /// directory and its `index.html` is wanted.
    Found { mount: usize, dir_form: bool },
}

impl Mounts {
    /// Opens every mount's directory. Errors name the mount at fault.
    pub fn open(specs: &[MountSpec]) -> Result<Mounts, Error> {
        let mut list = Vec::with_capacity(specs.len());
        for spec in specs {
            let fail = |e: std::io::Error| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "static directory '{}' for '{}': {e}",
                        spec.directory.display(),
                        String::from_utf8_lossy(&spec.url_prefix)
                    ),
                )
            };
            let root = std::fs::canonicalize(&spec.directory).map_err(fail)?;
            let dir = fs::open_dir(&root).map_err(fail)?;
            let st = fs::stat(&dir).map_err(fail)?;
            list.push(Mount { prefix: spec.url_prefix.clone(), root, identity: (st.dev, st.ino) });
        }
        // Longest prefix first; among equals the first configured wins (stable sort).
        list.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        Ok(Mounts { list })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Same prefixes, in the same order, served from the same directories.
    pub fn same_as(&self, other: &Mounts) -> bool {
        self.list.len() == other.list.len()
            && self
                .list
                .iter()
                .zip(&other.list)
                .all(|(a, b)| a.prefix == b.prefix && a.root == b.root && a.identity == b.identity)
    }

    pub fn get(&self, index: usize) -> &Mount {
        &self.list[index]
    }

    /// Maps the request path `raw` (as sent, before any decoding) to a mount and
    /// a relative path, written to `rel` (no leading slash; empty for the mount's
    /// own directory). `decoded` is scratch space.
    pub fn route(&self, raw: &[u8], decoded: &mut Vec<u8>, rel: &mut Vec<u8>) -> Route {
        if self.list.is_empty() {
            return Route::NoMount;
        }
        decoded.clear();
        let clean = decode_strict(raw, decoded);
        let Some((index, mount)) = self.list.iter().enumerate().find(|(_, m)| covers(&m.prefix, decoded)) else {
            return Route::NoMount;
        };
        if !clean {
            return Route::Bad;
        }
        let rest = if mount.prefix == b"/" { &decoded[..] } else { &decoded[mount.prefix.len()..] };
        match normalise(rest, rel) {
            Some(dir_form) => Route::Found { mount: index, dir_form },
            None => Route::Bad,
        }
    }
}

/// Whether `prefix` covers `path` at a segment boundary.
fn covers(prefix: &[u8], path: &[u8]) -> bool {
    if prefix == b"/" {
        return path.first() == Some(&b'/');
    }
    path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/')
}

/// Percent-decodes `raw` into `out`; false when it must be refused: a malformed
/// escape, an escape that decodes to `/`, `\` or NUL, or a literal `\`. The
/// decoded text is complete either way, so the mount can still be found.
fn decode_strict(raw: &[u8], out: &mut Vec<u8>) -> bool {
    // Most paths have nothing to decode or refuse: copied at once.
    let plain = raw.iter().position(|&b| b == b'%' || b == b'\\' || b == 0).unwrap_or(raw.len());
    out.extend_from_slice(&raw[..plain]);
    let mut clean = true;
    let mut i = plain;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            match (raw.get(i + 1).and_then(|&c| hex_value(c)), raw.get(i + 2).and_then(|&c| hex_value(c))) {
                (Some(hi), Some(lo)) => {
                    let d = hi << 4 | lo;
                    clean &= !matches!(d, b'/' | b'\\' | 0);
                    out.push(d);
                    i += 3;
                }
                _ => {
                    clean = false;
                    out.push(b);
                    i += 1;
                }
            }
        } else {
            clean &= b != b'\\' && b != 0;
            out.push(b);
            i += 1;
        }
    }
    clean
}

/// Writes the non-empty segments of `rest` (what follows the mount prefix) to
/// `rel`, joined by `/`. `None` for a `.` or `..` segment; otherwise whether the
/// path ends with `/`.
fn normalise(rest: &[u8], rel: &mut Vec<u8>) -> Option<bool> {
    rel.clear();
    for segment in rest.split(|&b| b == b'/') {
        if segment.is_empty() {
            continue;
        }
        if segment == b"." || segment == b".." {
            return None;
        }
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(segment);
    }
    Some(rest.last() == Some(&b'/'))
}

/// Whether the mount-relative path `rel` (normalised: decoded, no empty, `.`
/// or `..` segment) names a dotfile or lies below one: a segment starts with
/// `.`. Such files are left out of static mounts by default — version-control
/// data (`.git/`), secrets (`.env`, `.htpasswd`), editor files — as nginx
/// configurations and most static servers do. `.well-known` as the first
/// segment of the request path (`at_root`: the mount's prefix is `/`) is the
/// exception: RFC 8615 puts ACME challenges, `security.txt` and the like there.
/// A dotfile below it is still hidden.
pub(crate) fn hidden(rel: &[u8], at_root: bool) -> bool {
    let rest = match rel.strip_prefix(b".well-known") {
        Some(rest) if at_root && (rest.is_empty() || rest[0] == b'/') => rest,
        _ => rel,
    };
    rest.split(|&b| b == b'/').any(|s| s.first() == Some(&b'.'))
}

/// Appends the URL of a mount-relative directory with its trailing slash
/// (`/static/a%20b/`), for the `Location` of a redirect: built from the
/// normalised path, never from the request's bytes, so it cannot turn into a
/// `//host` reference.
pub(crate) fn directory_url(out: &mut Vec<u8>, prefix: &[u8], rel: &[u8]) {
    let start = out.len();
    encode_path(out, prefix);
    if !rel.is_empty() {
        if out.last() != Some(&b'/') {
            out.push(b'/');
        }
        encode_path(out, rel);
    }
    if out.len() == start || out.last() != Some(&b'/') {
        out.push(b'/');
    }
}

fn encode_path(out: &mut Vec<u8>, path: &[u8]) {
    for &b in path {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if keep {
            out.push(b);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

/// The canonical root of mount `m` joined with `rel`, for inotify watches.
pub(crate) fn join(root: &Path, rel: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(prefixes: &[&str]) -> (Mounts, PathBuf) {
        let dir = std::env::temp_dir().join(format!("warpcore-mount-{}-{}", std::process::id(), prefixes.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let specs: Vec<_> = prefixes.iter().map(|p| MountSpec::new(p.as_bytes(), &dir).unwrap()).collect();
        (Mounts::open(&specs).unwrap(), dir)
    }

    fn route(m: &Mounts, raw: &str) -> (Route, String) {
        let (mut d, mut r) = (Vec::new(), Vec::new());
        let route = m.route(raw.as_bytes(), &mut d, &mut r);
        (route, String::from_utf8(r).unwrap())
    }

    #[test]
    fn specs_are_checked_and_normalised() {
        assert_eq!(MountSpec::new(b"/static/", "/tmp").unwrap().url_prefix, b"/static");
        assert_eq!(MountSpec::new(b"/", "/tmp").unwrap().url_prefix, b"/");
        for bad in [&b"static"[..], b"", b"/a//b", b"/a/../b", b"/a/./b", b"/a\r\n", b"/a?b", b"/a\\b"] {
            assert!(MountSpec::new(bad, "/tmp").is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(MountSpec::new(b"/x", "").is_err());
        let missing = MountSpec::new(b"/x", "/nonexistent/warpcore/dir").unwrap();
        assert!(Mounts::open(&[missing]).is_err());
    }

    #[test]
    fn routes_to_the_longest_prefix_at_a_segment_boundary() {
        let (m, dir) = mounts(&["/static", "/static/deep", "/"]);
        let deep = m.list.iter().position(|x| x.prefix == b"/static/deep").unwrap();
        let st = m.list.iter().position(|x| x.prefix == b"/static").unwrap();
        let root = m.list.iter().position(|x| x.prefix == b"/").unwrap();
        assert_eq!(route(&m, "/static/deep/x"), (Route::Found { mount: deep, dir_form: false }, "x".into()));
        assert_eq!(route(&m, "/static/a/b.css"), (Route::Found { mount: st, dir_form: false }, "a/b.css".into()));
        assert_eq!(route(&m, "/staticx/a"), (Route::Found { mount: root, dir_form: false }, "staticx/a".into()));
        assert_eq!(route(&m, "/static"), (Route::Found { mount: st, dir_form: false }, "".into()));
        assert_eq!(route(&m, "/static/"), (Route::Found { mount: st, dir_form: true }, "".into()));
        assert_eq!(route(&m, "/"), (Route::Found { mount: root, dir_form: true }, "".into()));
        assert_eq!(route(&m, "/static//a///b/"), (Route::Found { mount: st, dir_form: true }, "a/b".into()));
        assert_eq!(route(&m, "/static/a%20b"), (Route::Found { mount: st, dir_form: false }, "a b".into()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_traversal_and_encoded_separators() {
        let (m, dir) = mounts(&["/static"]);
        for bad in [
            "/static/../etc/passwd",
            "/static/a/../../x",
            "/static/%2e%2e/x",
            "/static/%2E%2E/x",
            "/static/.%2e/x",
            "/static/..",
            "/static/./a",
            "/static/a%2f..%2f..%2fx",
            "/static/a%2Fb",
            "/static/a%5cb",
            "/static/a\\b",
            "/static/a%00.txt",
            "/static/a%zz",
            "/static/a%2",
        ] {
            assert_eq!(route(&m, bad).0, Route::Bad, "{bad}");
        }
        assert_eq!(route(&m, "/other/../static").0, Route::NoMount);
        assert_eq!(route(&m, "/static%2f..").0, Route::Bad);
        assert_eq!(route(&m, "/static/..a/b..").1, "..a/b..");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dotfiles_are_hidden_except_well_known_at_the_root() {
        for (rel, at_root, is_hidden) in [
            ("", false, false),
            ("a/b.txt", false, false),
            ("a.b/c..d", true, false),
            (".env", false, true),
            (".git/config", true, true),
            ("sub/.hidden", false, true),
            ("sub/.hidden/x", true, true),
            ("..a", false, true),
            (".well-known", true, false),
            (".well-known/acme-challenge/tok", true, false),
            (".well-known/.secret", true, true),
            (".well-knownx/a", true, true),
            (".well-known/a", false, true),
            ("a/.well-known/x", true, true),
        ] {
            assert_eq!(hidden(rel.as_bytes(), at_root), is_hidden, "{rel} at_root={at_root}");
        }
        // Encoded dots are decoded before the check.
        let (m, dir) = mounts(&["/"]);
        for raw in ["/%2eenv", "/%2Egit/config", "/sub/%2ehidden"] {
            let (route, rel) = route(&m, raw);
            assert!(matches!(route, Route::Found { .. }), "{raw}");
            assert!(hidden(rel.as_bytes(), true), "{raw} -> {rel}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn directory_urls_are_encoded_and_never_protocol_relative() {
        let url = |p: &[u8], r: &[u8]| {
            let mut out = Vec::new();
            directory_url(&mut out, p, r);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(url(b"/static", b"a b/c"), "/static/a%20b/c/");
        assert_eq!(url(b"/static", b""), "/static/");
        assert_eq!(url(b"/", b"evil.com"), "/evil.com/");
        assert_eq!(url(b"/", b""), "/");
        assert_eq!(url(b"/s", b"\xff?#"), "/s/%FF%3F%23/");
    }
}

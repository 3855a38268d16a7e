//! Small files in memory: the bytes of a file up to [`SMALL_FILE_MAX`] and its
//! whole `200` answer, rendered once, so that a plain GET of it costs a copy
//! into the output buffer and no system call of its own (no `pread`, no
//! `sendfile`, no descriptor). Small files are what Mighttpd's caches were
//! built for: their answers are mostly head and system calls.
//!
//! An entry hangs on its path's file-info entry (`info_cache`) and lives
//! exactly as long: it goes the moment inotify reports a change on the path,
//! when the info expires (1 s by default), and with a reload that changes the
//! mounts. Its bytes were read through a descriptor whose file had the
//! identity (device, inode, size, modification time) of the info's stat both
//! before and after the read, and the path was watched before the stat: a
//! change during or after the read is reported and drops the entry.
//!
//! Bounded per worker: at most [`SMALL_CACHE_MAX`] bytes of answers (bodies
//! and their pre-rendered heads). A file that does not fit makes the cache
//! drop its expired entries; when that is not enough the file is served from
//! its descriptor, as larger files are, until entries expire and make room
//! (the files asked for most are then the first to come back).

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::fd_cache::FileId;
use super::info::FileInfo;
use super::serve::{self, FileRequest};
use super::Fields;
use crate::http::compose::render_fields;
use crate::http::image::KeepAliveImage;
use crate::sys::fs;

/// Files up to this size are kept in memory. Their bodies are copied into the
/// output buffer with the head and leave in the batch's one write; larger
/// files go with `sendfile`. Measured (layout (a), requests per server
/// CPU-second, the same binary with and without this cache, 2 rounds on a
/// quiet 2-core machine): 1.31× at 1 KiB, 1.15–1.20× at 4 KiB, 1.04–1.20× at
/// 8 KiB, but 0.85–0.97× at 16 KiB, where the copies (into the output
/// buffer, then into the worker's held answers) cost more than `sendfile`
/// with its second system call.
pub(crate) const SMALL_FILE_MAX: u64 = 8 * 1024;

/// The most bytes of small-file answers a worker keeps (bodies and heads).
pub(crate) const SMALL_CACHE_MAX: usize = 4 * 1024 * 1024;

/// Bytes an entry is counted for besides its image (the allocations' own).
const ENTRY_OVERHEAD: usize = 64;

/// One small file's bytes and its whole `200` answer but for the `Date` and
/// `Server` lines. Immutable once loaded.
#[derive(Debug)]
pub(crate) struct SmallFile {
    id: FileId,
    image: KeepAliveImage,
}

impl SmallFile {
    /// Reads the file `fi` describes from `file` and renders its answer. None
    /// when the file is not small, cannot be read whole, or is no longer the
    /// file of `fi` (rewritten, grown or shrunk since its stat).
    pub fn load(file: &File, fi: &FileInfo, now: u64) -> Option<SmallFile> {
        if fi.stat.size > SMALL_FILE_MAX {
            return None;
        }
        let mut body = vec![0; fi.stat.size as usize];
        file.read_exact_at(&mut body, 0).ok()?;
        let id = FileId::of(&fi.stat);
        if fs::stat(file).ok().map(|st| FileId::of(&st)) != Some(id) {
            return None;
        }
        // The fields the planner gives a plain GET, rendered as it would.
        let req = FileRequest { method: b"GET", fields: Fields::new(&[]), image_fits: false };
        let plan = serve::file(&req, 200, fi, &fi.validators.check(), fi.content_type.as_bytes(), now, b"");
        let mut rendered = Vec::with_capacity(160);
        let fields = render_fields(&mut rendered, plan.fields.iter()).ok()?;
        let image = KeepAliveImage::new(200, &rendered, &fields, &body, usize::MAX)?;
        Some(SmallFile { id, image })
    }

    /// The file's identity when it was read.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// The whole `200` answer to a plain GET.
    pub fn image(&self) -> &KeepAliveImage {
        &self.image
    }

    /// The file's bytes.
    pub fn body(&self) -> &[u8] {
        self.image.body()
    }

    /// What the entry counts for against [`SMALL_CACHE_MAX`].
    pub fn cost(&self) -> usize {
        self.image.size() + ENTRY_OVERHEAD
    }

    /// What an entry for a file of `size` bytes will about cost, before it is
    /// read (its head is not rendered yet).
    pub fn estimated_cost(size: u64) -> usize {
        size as usize + 256 + ENTRY_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::validator::Validators;
    use crate::http::compose::{compose_head, BodyLength, ComposeEnv, RequestMeta};

    fn info_of(file: &File) -> FileInfo {
        let stat = fs::stat(file).unwrap();
        FileInfo {
            stat,
            validators: Validators::of(&stat, crate::file::unix_now()),
            content_type: "text/plain; charset=utf-8",
        }
    }

    #[test]
    fn the_image_is_what_the_planner_and_the_composer_send() {
        let path = std::env::temp_dir().join(format!("warpcore-small-{}", std::process::id()));
        std::fs::write(&path, b"small body").unwrap();
        let file = File::open(&path).unwrap();
        let fi = info_of(&file);
        let now = crate::file::unix_now();
        let small = SmallFile::load(&file, &fi, now).unwrap();
        assert_eq!(small.body(), b"small body");
        assert!(small.cost() > 10 && small.cost() <= SmallFile::estimated_cost(10));

        let env = ComposeEnv { common: b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n", version: 0 };
        let meta = RequestMeta { minor: 1, keep_alive: true, is_head: false };
        let req = FileRequest { method: b"GET", fields: Fields::new(&[]), image_fits: true };
        let plan = serve::file(&req, 200, &fi, &fi.validators.check(), fi.content_type.as_bytes(), now, b"");
        let mut expected = Vec::new();
        compose_head(&mut expected, &env, 200, plan.fields.iter(), BodyLength::Known(10), meta).unwrap();
        expected.extend_from_slice(b"small body");
        let mut out = Vec::new();
        small.image().compose(&mut out, &env);
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&expected));

        // Changed since the stat: not loaded.
        std::fs::write(&path, b"longer small body").unwrap();
        assert!(SmallFile::load(&file, &fi, now).is_none());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn only_small_files() {
        let path = std::env::temp_dir().join(format!("warpcore-small-big-{}", std::process::id()));
        std::fs::write(&path, vec![b'x'; SMALL_FILE_MAX as usize + 1]).unwrap();
        let file = File::open(&path).unwrap();
        assert!(SmallFile::load(&file, &info_of(&file), crate::file::unix_now()).is_none());
        std::fs::write(&path, vec![b'y'; SMALL_FILE_MAX as usize]).unwrap();
        let file = File::open(&path).unwrap();
        let small = SmallFile::load(&file, &info_of(&file), crate::file::unix_now()).unwrap();
        assert_eq!(small.body().len(), SMALL_FILE_MAX as usize);
        std::fs::remove_file(&path).unwrap();
    }
}

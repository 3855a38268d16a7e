//! inotify(7): the kernel reports changes in watched directories, so the file
//! caches can drop an entry the moment its file is written, replaced or removed
//! instead of trusting a stat for its whole lifetime.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What a directory watch reports: any change to an entry's content, metadata
/// or name, and the directory itself going away.
pub(crate) const DIR_EVENTS: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// The event queue overflowed: some events were lost.
pub(crate) const OVERFLOW: u32 = libc::IN_Q_OVERFLOW;
/// The watch was removed (its directory is gone).
pub(crate) const IGNORED: u32 = libc::IN_IGNORED;
/// The watched directory itself was deleted or moved.
pub(crate) const SELF_GONE: u32 = libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;
/// The watched directory itself was moved: the kernel keeps the watch on it at
/// its new path, so the watch must be removed to stop it reporting there.
pub(crate) const MOVED_SELF: u32 = libc::IN_MOVE_SELF;
/// An entry of the watched directory appeared under its name or left it.
pub(crate) const NAME_CHANGED: u32 = libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;
/// The event's entry is a directory.
pub(crate) const IS_DIR: u32 = libc::IN_ISDIR;

/// A non-blocking inotify instance.
pub(crate) struct Inotify {
    file: File,
}

impl Inotify {
    pub fn new() -> io::Result<Inotify> {
        // SAFETY: plain call with flags; returns a new descriptor or -1.
        let fd = syscall!(inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC))?;
        // SAFETY: the descriptor is new and owned by nothing else.
        Ok(Inotify { file: File::from(unsafe { OwnedFd::from_raw_fd(fd) }) })
    }

    /// Watches the directory at `path` (symlinks in it followed); the same
    /// directory watched twice gives the same descriptor.
    pub fn add_watch(&self, path: &CStr, mask: u32) -> io::Result<i32> {
        // SAFETY: `path` is NUL-terminated and the descriptor is live.
        syscall!(inotify_add_watch(self.file.as_raw_fd(), path.as_ptr(), mask))
    }

    /// Stops the watch `wd`; an `IGNORED` event for it follows. Failure (the
    /// watch already gone) is of no consequence and not reported.
    pub fn rm_watch(&self, wd: i32) {
        // SAFETY: plain call on a live descriptor; an unknown `wd` is EINVAL.
        let _ = syscall!(inotify_rm_watch(self.file.as_raw_fd(), wd));
    }

    /// Reads queued events into `buf`; `WouldBlock` when there are none.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// One event: the watch it came from, what happened, and the entry's name
/// (empty for events about the watched directory itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event<'a> {
    pub wd: i32,
    pub mask: u32,
    pub name: &'a [u8],
}

/// The events in a buffer filled by `Inotify::read` (`struct inotify_event`
/// records, each followed by its NUL-padded name).
pub(crate) fn events(buf: &[u8]) -> impl Iterator<Item = Event<'_>> {
    const HEAD: usize = 16;
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < HEAD {
            return None;
        }
        let word = |i: usize| u32::from_ne_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let wd = word(0) as i32;
        let mask = word(4);
        let len = word(12) as usize;
        let end = (HEAD + len).min(rest.len());
        let raw = &rest[HEAD..end];
        let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
        let event = Event { wd, mask, name };
        rest = &rest[end..];
        Some(event)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn reports_writes_and_renames_in_a_watched_directory() {
        let dir = std::env::temp_dir().join(format!("warpcore-inotify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ino = Inotify::new().unwrap();
        let mut buf = [0u8; 4096];
        assert_eq!(ino.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let wd = ino.add_watch(&CString::new(dir.as_os_str().as_bytes()).unwrap(), DIR_EVENTS).unwrap();
        assert_eq!(ino.add_watch(&CString::new(dir.as_os_str().as_bytes()).unwrap(), DIR_EVENTS).unwrap(), wd);

        std::fs::write(dir.join("a"), b"1").unwrap();
        std::fs::write(dir.join("b.tmp"), b"2").unwrap();
        std::fs::rename(dir.join("b.tmp"), dir.join("b")).unwrap();
        let n = ino.read(&mut buf).unwrap();
        let seen: Vec<_> = events(&buf[..n]).collect();
        assert!(seen.iter().all(|e| e.wd == wd));
        assert!(seen.iter().any(|e| e.name == b"a" && e.mask & libc::IN_MODIFY != 0));
        assert!(seen.iter().any(|e| e.name == b"b" && e.mask & libc::IN_MOVED_TO != 0));

        std::fs::remove_dir_all(&dir).unwrap();
        let n = ino.read(&mut buf).unwrap();
        assert!(events(&buf[..n]).any(|e| e.mask & SELF_GONE != 0 || e.mask & IGNORED != 0));
    }

    #[test]
    fn parses_records_with_padded_names() {
        let mut buf = Vec::new();
        for (wd, mask, name) in [(1i32, 2u32, &b"x.html"[..]), (3, 4, b"")] {
            let padded = if name.is_empty() { 0 } else { 16 };
            buf.extend_from_slice(&wd.to_ne_bytes());
            buf.extend_from_slice(&mask.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&(padded as u32).to_ne_bytes());
            let mut n = name.to_vec();
            n.resize(padded, 0);
            buf.extend_from_slice(&n);
        }
        let got: Vec<_> = events(&buf).collect();
        assert_eq!(got, vec![Event { wd: 1, mask: 2, name: b"x.html" }, Event { wd: 3, mask: 4, name: b"" }]);
    }
}

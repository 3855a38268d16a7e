//! The watcher: one inotify instance per worker, watching every directory that
//! holds (or leads to) a cached path, so that a change drops the affected
//! file-info entries at once. This is what lets the caches be on by default and
//! still never serve a stale file: a rewrite, a rename over the file, a delete
//! or a create is reported before the request that follows it is read.
//!
//! The instance is created on first use and registered with the worker's poller;
//! the worker drains it (`drain`) before handling the other events of a wakeup.
//! When inotify is unavailable (no registry, the per-user instance or watch limit
//! reached, a directory that cannot be watched), `watch` says so and the caller
//! does not cache what lies there: it stats on every request instead.
//!
//! inotify watches inodes, and the caches are keyed by paths. A watch speaks
//! for its path only while its directory stands there: when the directory is
//! moved away, deleted, or another one takes its name in a watched parent, the
//! entries below the path are dropped and the watch is forgotten with every
//! watch below it, so that the next lookup watches whatever directory is at the
//! path by then. Watches are added before the lookup they cover (see
//! `StaticFiles::lookup`), so a swap between the two is reported too.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::sys::inotify::{self, Inotify};

/// Most directories watched per worker.
const MAX_WATCHES: usize = 8192;

/// The outcome of asking for a directory to be watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// Changes in it will be reported.
    Watched,
    /// It does not exist (or is not a directory): nothing below it can exist either.
    Missing,
    /// It cannot be watched: do not cache what lies below it.
    Unwatched,
}

/// What a batch of events invalidates.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    /// This key and every key below it.
    Below(&'a [u8]),
    /// Events were lost: everything.
    All,
}

enum State {
    NotStarted,
    Active(Inotify),
    Unavailable,
}

pub(crate) struct Watcher {
    state: State,
    registry: Option<Registry>,
    token: Token,
    /// Directory key → watch descriptor.
    dirs: HashMap<Box<[u8]>, i32>,
    /// Watch descriptor → the directory keys it stands for (one inode may be
    /// reached through several paths).
    by_wd: HashMap<i32, Vec<Box<[u8]>>>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl Watcher {
    /// A watcher that registers its instance with `registry` under `token`;
    /// without a registry nothing is ever watched.
    pub fn new(registry: Option<Registry>, token: Token) -> Watcher {
        Watcher {
            state: State::NotStarted,
            registry,
            token,
            dirs: HashMap::new(),
            by_wd: HashMap::new(),
            buf: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Makes sure the directory `key`, at `path()`, is watched.
    pub fn watch(&mut self, key: &[u8], path: impl FnOnce() -> PathBuf) -> Watch {
        if self.dirs.contains_key(key) {
            return Watch::Watched;
        }
        if self.dirs.len() >= MAX_WATCHES {
            return Watch::Unwatched;
        }
        let Some(inotify) = self.instance() else { return Watch::Unwatched };
        let Ok(cpath) = CString::new(path().into_os_string().into_vec()) else { return Watch::Unwatched };
        match inotify.add_watch(&cpath, inotify::DIR_EVENTS) {
            Ok(wd) => {
                self.dirs.insert(key.into(), wd);
                self.by_wd.entry(wd).or_default().push(key.into());
                Watch::Watched
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => Watch::Missing,
            Err(_) => Watch::Unwatched,
        }
    }

    /// Forgets every watch: the instance is closed (its watches go with it)
    /// and a new one starts on the next `watch`.
    pub fn reset(&mut self) {
        if let State::Active(inotify) = &self.state {
            if let Some(registry) = &self.registry {
                let _ = registry.deregister(&mut SourceFd(&inotify.raw_fd()));
            }
        }
        self.state = State::NotStarted;
        self.dirs.clear();
        self.by_wd.clear();
    }

    fn instance(&mut self) -> Option<&Inotify> {
        if let State::NotStarted = self.state {
            self.state = match (&self.registry, Inotify::new()) {
                (Some(registry), Ok(inotify)) => {
                    let fd = inotify.raw_fd();
                    match registry.register(&mut SourceFd(&fd), self.token, Interest::READABLE) {
                        Ok(()) => State::Active(inotify),
                        Err(_) => State::Unavailable,
                    }
                }
                _ => State::Unavailable,
            };
        }
        match &self.state {
            State::Active(inotify) => Some(inotify),
            _ => None,
        }
    }

    #[cfg(test)]
    /// Whether the inotify instance is running.
    pub fn is_active(&self) -> bool {
        matches!(self.state, State::Active(_))
    }

    /// Reads every pending event and reports what each one invalidates.
    ///
    /// inotify watches inodes, not paths, and a watch is kept under the key of
    /// the path it was made for. When the directory at a key leaves its path —
    /// moved away (`mv dir dir.old`), deleted, or replaced under its name in a
    /// watched parent (`mv dir.new dir`) — its watch, and every watch below it,
    /// no longer speaks for that path: they are forgotten (and removed from the
    /// kernel unless another key still uses them), so the next lookup watches
    /// whatever directory stands at the path by then.
    pub fn drain(&mut self, mut on_change: impl FnMut(Change<'_>)) {
        let State::Active(inotify) = &self.state else { return };
        if self.buf.len() < 64 * 1024 {
            self.buf.resize(64 * 1024, 0);
        }
        let mut lost = false;
        let mut moved: Vec<Box<[u8]>> = Vec::new();
        loop {
            let n = match inotify.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    lost = true;
                    break;
                }
            };
            for event in inotify::events(&self.buf[..n]) {
                if event.mask & inotify::OVERFLOW != 0 {
                    lost = true;
                    continue;
                }
                if event.mask & (inotify::SELF_GONE | inotify::IGNORED) != 0 {
                    // The directory itself left its path (or is gone).
                    let Some(keys) = self.by_wd.remove(&event.wd) else { continue };
                    if event.mask & inotify::MOVED_SELF != 0 {
                        inotify.rm_watch(event.wd);
                    }
                    for key in keys {
                        on_change(Change::Below(&key));
                        forget_below(&mut self.dirs, &mut self.by_wd, inotify, &key);
                    }
                    continue;
                }
                let Some(keys) = self.by_wd.get(&event.wd) else { continue };
                for key in keys {
                    if event.name.is_empty() {
                        on_change(Change::Below(key));
                        continue;
                    }
                    self.scratch.clear();
                    self.scratch.extend_from_slice(key);
                    self.scratch.push(b'/');
                    self.scratch.extend_from_slice(event.name);
                    on_change(Change::Below(&self.scratch));
                    if event.mask & inotify::IS_DIR != 0 && event.mask & inotify::NAME_CHANGED != 0 {
                        // A directory came or went under this name.
                        moved.push(self.scratch.as_slice().into());
                    }
                }
                for key in moved.drain(..) {
                    forget_below(&mut self.dirs, &mut self.by_wd, inotify, &key);
                }
            }
        }
        if lost {
            // Any event may have been lost, a directory's move too: nothing
            // cached and no watch can be trusted.
            on_change(Change::All);
            self.reset();
        }
    }
}

/// Forgets the watch of the directory `prefix` and of every directory below
/// it; a watch no other key uses is removed from the kernel.
fn forget_below(
    dirs: &mut HashMap<Box<[u8]>, i32>,
    by_wd: &mut HashMap<i32, Vec<Box<[u8]>>>,
    inotify: &Inotify,
    prefix: &[u8],
) {
    let below = |k: &[u8]| k.starts_with(prefix) && (k.len() == prefix.len() || k[prefix.len()] == b'/');
    if !dirs.keys().any(|k| below(k)) {
        return;
    }
    let gone: Vec<(Box<[u8]>, i32)> = dirs.iter().filter(|(k, _)| below(k)).map(|(k, &wd)| (k.clone(), wd)).collect();
    for (key, wd) in gone {
        dirs.remove(&key);
        if let Some(keys) = by_wd.get_mut(&wd) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                by_wd.remove(&wd);
                inotify.rm_watch(wd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(w: &mut Watcher) -> Vec<String> {
        let mut seen = Vec::new();
        w.drain(|c| {
            seen.push(match c {
                Change::Below(k) => String::from_utf8(k.to_vec()).unwrap(),
                Change::All => "*".into(),
            })
        });
        seen.sort();
        seen.dedup();
        seen
    }

    #[test]
    fn reports_changes_below_watched_directories() {
        let dir = std::env::temp_dir().join(format!("warpcore-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let poll = mio::Poll::new().unwrap();
        let mut w = Watcher::new(Some(poll.registry().try_clone().unwrap()), Token(7));
        assert_eq!(w.watch(b"T", || dir.clone()), Watch::Watched);
        assert_eq!(w.watch(b"T/sub", || dir.join("sub")), Watch::Watched);
        assert_eq!(w.watch(b"T/none", || dir.join("none")), Watch::Missing);
        assert!(w.is_active());
        assert!(collect(&mut w).is_empty());

        std::fs::write(dir.join("sub/a.txt"), b"1").unwrap();
        std::fs::write(dir.join("b.tmp"), b"1").unwrap();
        std::fs::rename(dir.join("b.tmp"), dir.join("b")).unwrap();
        assert_eq!(collect(&mut w), ["T/b", "T/b.tmp", "T/sub/a.txt"]);

        std::fs::remove_dir_all(dir.join("sub")).unwrap();
        let seen = collect(&mut w);
        assert!(seen.contains(&"T/sub".to_string()), "{seen:?}");
        // The removed directory's watch is forgotten: it can be watched anew.
        std::fs::create_dir(dir.join("sub")).unwrap();
        assert_eq!(w.watch(b"T/sub", || dir.join("sub")), Watch::Watched);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_swapped_under_its_path_is_forgotten_with_everything_below() {
        let dir = std::env::temp_dir().join(format!("warpcore-watch-swap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub/deep")).unwrap();
        std::fs::create_dir_all(dir.join("sub.new/deep")).unwrap();
        let poll = mio::Poll::new().unwrap();
        let mut w = Watcher::new(Some(poll.registry().try_clone().unwrap()), Token(7));
        for (key, rel) in [("T", ""), ("T/sub", "sub"), ("T/sub/deep", "sub/deep")] {
            assert_eq!(w.watch(key.as_bytes(), || dir.join(rel)), Watch::Watched);
        }
        std::fs::rename(dir.join("sub"), dir.join("sub.old")).unwrap();
        std::fs::rename(dir.join("sub.new"), dir.join("sub")).unwrap();
        let seen = collect(&mut w);
        assert!(seen.contains(&"T/sub".to_string()), "{seen:?}");
        let mut left: Vec<_> = w.dirs.keys().map(|k| String::from_utf8(k.to_vec()).unwrap()).collect();
        left.sort();
        assert_eq!(left, ["T"], "the watches at and below the moved path are forgotten");
        assert_eq!(w.by_wd.values().map(Vec::len).sum::<usize>(), 1);

        // Watched again, the path means the new directory; the old one is silent.
        assert_eq!(w.watch(b"T/sub", || dir.join("sub")), Watch::Watched);
        assert_eq!(w.watch(b"T/sub/deep", || dir.join("sub/deep")), Watch::Watched);
        std::fs::write(dir.join("sub.old/a"), b"1").unwrap();
        std::fs::write(dir.join("sub.old/deep/b"), b"1").unwrap();
        assert!(collect(&mut w).is_empty(), "the old tree's watches are gone");
        std::fs::write(dir.join("sub/deep/b"), b"1").unwrap();
        assert_eq!(collect(&mut w), ["T/sub/deep/b"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reset_forgets_every_watch() {
        let dir = std::env::temp_dir().join(format!("warpcore-watch-reset-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let poll = mio::Poll::new().unwrap();
        let mut w = Watcher::new(Some(poll.registry().try_clone().unwrap()), Token(7));
        assert_eq!(w.watch(b"T", || dir.clone()), Watch::Watched);
        w.reset();
        assert!(!w.is_active());
        std::fs::write(dir.join("a"), b"1").unwrap();
        assert!(collect(&mut w).is_empty(), "a reset watcher reports nothing");
        // Watching again starts a new instance that sees changes.
        assert_eq!(w.watch(b"U", || dir.clone()), Watch::Watched);
        std::fs::write(dir.join("b"), b"1").unwrap();
        assert_eq!(collect(&mut w), ["U/b"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_a_registry_nothing_is_watched() {
        let mut w = Watcher::new(None, Token(0));
        assert_eq!(w.watch(b"T", std::env::temp_dir), Watch::Unwatched);
        assert!(!w.is_active());
    }
}

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
    pub fn drain(&mut self, mut on_change: impl FnMut(Change<'_>)) {
        let State::Active(inotify) = &self.state else { return };
        if self.buf.len() < 64 * 1024 {
            self.buf.resize(64 * 1024, 0);
        }
        loop {
            let n = match inotify.read(&mut self.buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    on_change(Change::All);
                    return;
                }
            };
            for event in inotify::events(&self.buf[..n]) {
                if event.mask & inotify::OVERFLOW != 0 {
                    on_change(Change::All);
                    continue;
                }
                let Some(keys) = self.by_wd.get(&event.wd) else { continue };
                for key in keys {
                    if event.mask & (inotify::SELF_GONE | inotify::IGNORED) != 0 || event.name.is_empty() {
                        on_change(Change::Below(key));
                    } else {
                        self.scratch.clear();
                        self.scratch.extend_from_slice(key);
                        self.scratch.push(b'/');
                        self.scratch.extend_from_slice(event.name);
                        on_change(Change::Below(&self.scratch));
                    }
                }
                if event.mask & inotify::IGNORED != 0 {
                    if let Some(keys) = self.by_wd.remove(&event.wd) {
                        for key in keys {
                            self.dirs.remove(&key);
                        }
                    }
                }
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

//! The fd cache: open files kept per worker and reused, so that a file served
//! a thousand times is opened once (Warp's first bottleneck was `open`/`close`
//! per request).
//!
//! Entries are keyed by the file's identity — device, inode, size and
//! modification time — not by its path. A request reaches an entry only through
//! a fresh (or freshly watched) stat of the path, so a file replaced by a rename
//! (new inode) or rewritten in place (new size or mtime) can never be served
//! from an old descriptor: its identity no longer matches and it is reopened.
//! That is the staleness Warp's fd cache had (its issue #210) designed out. The
//! same holds for a directory swapped on the path (`mv dir.new dir`): the file
//! now at the path is another inode, so a descriptor opened from the old
//! directory never answers for it.

use std::collections::HashMap;

use foldhash::quality::RandomState;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sys::fs::Stat;

/// What makes two stats the same file contents as far as serving goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: u32,
}

impl FileId {
    pub fn of(st: &Stat) -> FileId {
        FileId { dev: st.dev, ino: st.ino, size: st.size, mtime: st.mtime, mtime_nsec: st.mtime_nsec }
    }
}

struct Entry {
    /// Shared with connections still sending from it: closing waits for them.
    file: Arc<File>,
    used: Instant,
}

/// At most this many descriptors per worker, so that caching cannot starve
/// `accept` of descriptors; the least recently used goes first.
const MAX_OPEN: usize = 512;

pub(crate) struct FdCache {
    /// foldhash, seeded per map: SipHash cost ~230 instructions per static
    /// request; a random seed still keeps crafted colliding paths out.
    map: HashMap<FileId, Entry, RandomState>,
    lifetime: Duration,
}

impl FdCache {
    /// Files unused for `lifetime` are closed by `sweep`; zero disables the cache.
    pub fn new(lifetime: Duration) -> FdCache {
        FdCache { map: HashMap::default(), lifetime }
    }

    pub fn get(&mut self, id: &FileId, now: Instant) -> Option<Arc<File>> {
        let entry = self.map.get_mut(id)?;
        entry.used = now;
        Some(entry.file.clone())
    }

    pub fn insert(&mut self, id: FileId, file: Arc<File>, now: Instant) {
        if self.lifetime.is_zero() {
            return;
        }
        if self.map.len() >= MAX_OPEN && !self.map.contains_key(&id) {
            self.sweep(now);
            if self.map.len() >= MAX_OPEN {
                if let Some(oldest) = self.map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| *k) {
                    self.map.remove(&oldest);
                }
            }
        }
        self.map.insert(id, Entry { file, used: now });
    }

    /// Applies from the next sweep; zero stops caching (and the sweep closes all).
    pub fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    /// Closes files unused for the lifetime.
    pub fn sweep(&mut self, now: Instant) {
        let lifetime = self.lifetime;
        self.map.retain(|_, e| now.saturating_duration_since(e.used) < lifetime);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fs::FileKind;

    fn id(ino: u64, size: u64) -> FileId {
        FileId::of(&Stat { dev: 1, ino, size, mtime: 5, mtime_nsec: 6, kind: FileKind::Regular })
    }

    fn file() -> Arc<File> {
        Arc::new(File::open("/dev/null").unwrap())
    }

    #[test]
    fn hits_by_identity_and_expires_when_unused() {
        let t0 = Instant::now();
        let mut c = FdCache::new(Duration::from_secs(10));
        c.insert(id(1, 10), file(), t0);
        assert!(c.get(&id(1, 10), t0 + Duration::from_secs(9)).is_some());
        assert!(c.get(&id(1, 11), t0).is_none(), "same inode, new size: another file");
        assert!(c.get(&id(2, 10), t0).is_none(), "new inode: another file");
        // Used at 9 s, so still there at 18 s, gone at 19 s.
        c.sweep(t0 + Duration::from_secs(18));
        assert_eq!(c.len(), 1);
        c.sweep(t0 + Duration::from_secs(19));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_file_in_use_outlives_its_entry() {
        let t0 = Instant::now();
        let mut c = FdCache::new(Duration::from_secs(1));
        c.insert(id(1, 1), file(), t0);
        let held = c.get(&id(1, 1), t0).unwrap();
        c.sweep(t0 + Duration::from_secs(5));
        assert_eq!(c.len(), 0);
        assert!(held.metadata().is_ok());
    }

    #[test]
    fn zero_disables_and_the_count_is_bounded() {
        let t0 = Instant::now();
        let mut off = FdCache::new(Duration::ZERO);
        off.insert(id(1, 1), file(), t0);
        assert_eq!(off.len(), 0);
        let mut c = FdCache::new(Duration::from_secs(100));
        let f = file();
        for i in 0..MAX_OPEN as u64 + 5 {
            c.insert(id(i, 1), f.clone(), t0 + Duration::from_millis(i));
        }
        assert_eq!(c.len(), MAX_OPEN);
        assert!(c.get(&id(0, 1), t0).is_none(), "the least recently used went first");
    }
}

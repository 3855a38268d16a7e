//! The file-info cache: what a path is — a file with its stat, validators and
//! type, a directory, nothing, or something refused — kept per worker for a short
//! lifetime (default 1 s), so that `stat` is not called on every request (the
//! second bottleneck Warp found). Misses are cached too (negative entries).
//!
//! Lifetime alone would serve a stale stat until the entry expires; the watcher
//! (`watch.rs`) drops entries the moment their directory reports a change, and an
//! entry is only cached when that watch is in place.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::validator::Validators;
use crate::sys::fs::Stat;

/// A regular file's metadata, as sent in its response heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub stat: Stat,
    pub validators: Validators,
    pub content_type: &'static str,
}

/// What a path was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Info {
    File(FileInfo),
    Directory,
    /// Nothing there (or a path through a non-directory): 404.
    Missing,
    /// There, but not to be served: a device, fifo or socket, no permission (403).
    Refused,
    /// Resolving it would leave the mount (a symlink pointing out, a loop): 404.
    Outside,
}

struct Entry {
    info: Info,
    expires: Instant,
}

/// At most this many entries per worker; a full cache drops what has expired,
/// and everything when that is not enough.
const MAX_ENTRIES: usize = 16 * 1024;

/// Path key → info, with a lifetime. Keys are opaque bytes (see `StaticFiles`):
/// a tag for the mount, then the path with a leading `/`.
pub(crate) struct InfoCache {
    map: HashMap<Box<[u8]>, Entry>,
    lifetime: Duration,
}

impl InfoCache {
    /// A lifetime of zero disables the cache.
    pub fn new(lifetime: Duration) -> InfoCache {
        InfoCache { map: HashMap::new(), lifetime }
    }

    pub fn get(&self, key: &[u8], now: Instant) -> Option<Info> {
        self.map.get(key).filter(|e| now < e.expires).map(|e| e.info)
    }

    pub fn insert(&mut self, key: &[u8], info: Info, now: Instant) {
        if self.lifetime.is_zero() {
            return;
        }
        if self.map.len() >= MAX_ENTRIES && !self.map.contains_key(key) {
            self.sweep(now);
            if self.map.len() >= MAX_ENTRIES {
                self.map.clear();
            }
        }
        let entry = Entry { info, expires: now + self.lifetime };
        match self.map.get_mut(key) {
            Some(e) => *e = entry,
            None => {
                self.map.insert(key.into(), entry);
            }
        }
    }

    /// Drops the entry `prefix` and every entry below it (`prefix/…`).
    pub fn invalidate(&mut self, prefix: &[u8]) {
        self.map.retain(|k, _| !(k.starts_with(prefix) && (k.len() == prefix.len() || k[prefix.len()] == b'/')));
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// For entries inserted from now on.
    pub fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    /// Drops expired entries.
    pub fn sweep(&mut self, now: Instant) {
        self.map.retain(|_, e| now < e.expires);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_zero_disables() {
        let t0 = Instant::now();
        let mut c = InfoCache::new(Duration::from_secs(1));
        c.insert(b"k", Info::Missing, t0);
        assert_eq!(c.get(b"k", t0), Some(Info::Missing));
        assert_eq!(c.get(b"k", t0 + Duration::from_millis(999)), Some(Info::Missing));
        assert_eq!(c.get(b"k", t0 + Duration::from_secs(1)), None);
        c.insert(b"k", Info::Directory, t0 + Duration::from_secs(1));
        assert_eq!(c.get(b"k", t0 + Duration::from_secs(1)), Some(Info::Directory));
        c.sweep(t0 + Duration::from_secs(5));
        assert_eq!(c.len(), 0);

        let mut off = InfoCache::new(Duration::ZERO);
        off.insert(b"k", Info::Missing, t0);
        assert_eq!(off.get(b"k", t0), None);
    }

    #[test]
    fn invalidation_takes_a_whole_subtree_at_segment_boundaries() {
        let t0 = Instant::now();
        let mut c = InfoCache::new(Duration::from_secs(10));
        for k in ["m/a", "m/a/b", "m/a/b/c", "m/ab", "m/x"] {
            c.insert(k.as_bytes(), Info::Missing, t0);
        }
        c.invalidate(b"m/a");
        let mut left: Vec<_> = c.map.keys().map(|k| String::from_utf8(k.to_vec()).unwrap()).collect();
        left.sort();
        assert_eq!(left, ["m/ab", "m/x"]);
        c.invalidate(b"m");
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_full_cache_makes_room() {
        let t0 = Instant::now();
        let mut c = InfoCache::new(Duration::from_secs(10));
        for i in 0..MAX_ENTRIES + 10 {
            c.insert(format!("k{i}").as_bytes(), Info::Missing, t0);
            assert!(c.len() <= MAX_ENTRIES);
        }
    }
}

//! The file-info cache: what a path is — a file with its stat, validators and
//! type, a directory, nothing, or something refused — kept per worker for a short
//! lifetime (default 1 s), so that `stat` is not called on every request (the
//! second bottleneck Warp found). Misses are cached too (negative entries).
//!
//! Lifetime alone would serve a stale stat until the entry expires; the watcher
//! (`watch.rs`) drops entries the moment their directory reports a change, and an
//! entry is only cached when that watch is in place.
//!
//! A small file's entry may also hold its bytes and pre-rendered answer
//! (`small.rs`), which come and go with the entry; the cache keeps their total
//! under `SMALL_CACHE_MAX`.

use std::collections::HashMap;

use foldhash::quality::RandomState;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fd_cache::FileId;
use super::info::Info;
use super::small::{SmallFile, SMALL_CACHE_MAX};

struct Entry {
    info: Info,
    expires: Instant,
    small: Option<Arc<SmallFile>>,
}

impl Entry {
    fn small_cost(&self) -> usize {
        self.small.as_ref().map_or(0, |s| s.cost())
    }
}

/// At most this many entries per worker; a full cache drops what has expired,
/// and everything when that is not enough.
const MAX_ENTRIES: usize = 16 * 1024;

/// Path key → info, with a lifetime. Keys are opaque bytes (see `StaticFiles`):
/// a tag for the mount, then the path with a leading `/`.
pub(crate) struct InfoCache {
    /// foldhash, seeded per map: SipHash cost ~230 instructions per static
    /// request; a random seed still keeps crafted colliding paths out.
    map: HashMap<Box<[u8]>, Entry, RandomState>,
    lifetime: Duration,
    /// What the small files held by entries cost in all.
    small_bytes: usize,
}

impl InfoCache {
    /// A lifetime of zero disables the cache.
    pub fn new(lifetime: Duration) -> InfoCache {
        InfoCache { map: HashMap::default(), lifetime, small_bytes: 0 }
    }

    /// The info of `key`, and the small file it holds, if any.
    pub fn get(&self, key: &[u8], now: Instant) -> Option<(&Info, Option<&Arc<SmallFile>>)> {
        self.map.get(key).filter(|e| now < e.expires).map(|e| (&e.info, e.small.as_ref()))
    }

    /// Caches `info` for `key`; false when the cache is off (lifetime zero).
    pub fn insert(&mut self, key: &[u8], info: Info, now: Instant) -> bool {
        if self.lifetime.is_zero() {
            return false;
        }
        if self.map.len() >= MAX_ENTRIES && !self.map.contains_key(key) {
            self.sweep(now);
            if self.map.len() >= MAX_ENTRIES {
                self.clear();
            }
        }
        let entry = Entry { info, expires: now + self.lifetime, small: None };
        match self.map.get_mut(key) {
            Some(e) => {
                self.small_bytes -= e.small_cost();
                *e = entry;
            }
            None => {
                self.map.insert(key.into(), entry);
            }
        }
        true
    }

    /// Whether a small file of `cost` bytes would fit now, once expired
    /// entries are dropped if they must be.
    pub fn has_room(&mut self, cost: usize, now: Instant) -> bool {
        if self.small_bytes + cost > SMALL_CACHE_MAX {
            self.sweep(now);
        }
        self.small_bytes + cost <= SMALL_CACHE_MAX
    }

    /// Gives the live entry `key` its file's bytes, when it describes that
    /// very file (same identity) and there is room; false otherwise.
    pub fn attach(&mut self, key: &[u8], small: Arc<SmallFile>, now: Instant) -> bool {
        let cost = small.cost();
        if !self.has_room(cost, now) {
            return false;
        }
        match self.map.get_mut(key) {
            Some(e) if now < e.expires && e.small.is_none() => match e.info {
                Info::File(fi) if FileId::of(&fi.stat) == small.id() => {
                    e.small = Some(small);
                    self.small_bytes += cost;
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Drops the entry `prefix` and every entry below it (`prefix/…`).
    pub fn invalidate(&mut self, prefix: &[u8]) {
        let freed = &mut self.small_bytes;
        self.map.retain(|k, e| {
            let keep = !(k.starts_with(prefix) && (k.len() == prefix.len() || k[prefix.len()] == b'/'));
            if !keep {
                *freed -= e.small_cost();
            }
            keep
        });
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.small_bytes = 0;
    }

    /// For entries inserted from now on.
    pub fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    /// Drops expired entries.
    pub fn sweep(&mut self, now: Instant) {
        let freed = &mut self.small_bytes;
        self.map.retain(|_, e| {
            let keep = now < e.expires;
            if !keep {
                *freed -= e.small_cost();
            }
            keep
        });
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// What the small files held cost in all.
    #[cfg(test)]
    pub fn small_bytes(&self) -> usize {
        debug_assert_eq!(self.small_bytes, self.map.values().map(Entry::small_cost).sum::<usize>());
        self.small_bytes
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
        let info = |c: &InfoCache, at| c.get(b"k", at).map(|(info, _)| *info);
        assert_eq!(info(&c, t0), Some(Info::Missing));
        assert_eq!(info(&c, t0 + Duration::from_millis(999)), Some(Info::Missing));
        assert_eq!(info(&c, t0 + Duration::from_secs(1)), None);
        c.insert(b"k", Info::Directory, t0 + Duration::from_secs(1));
        assert_eq!(info(&c, t0 + Duration::from_secs(1)), Some(Info::Directory));
        c.sweep(t0 + Duration::from_secs(5));
        assert_eq!(c.len(), 0);

        let mut off = InfoCache::new(Duration::ZERO);
        off.insert(b"k", Info::Missing, t0);
        assert!(off.get(b"k", t0).is_none());
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

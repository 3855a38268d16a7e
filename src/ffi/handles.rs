//! Where response handles live: a table of slots kept for the life of the
//! process, and the tokens C holds for them.
//!
//! A `warpcore_response *` is not an address: it is a token, a slot's index
//! in its low 32 bits and the slot's generation (one per request the slot
//! served) in its high 32. Slots are never freed, so any token leads to a
//! live slot, whenever and from whichever thread it is used, the server
//! freed or not; the slot tells a token of its current request from a stale
//! one by the generation. A slot whose generation would wrap is retired
//! (never handed out again), so no token ever names two requests.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The first chunk holds `1 << FIRST_BITS` slots; chunk `k` holds twice as
/// many as chunk `k - 1`, so 27 chunks cover every 32-bit index and a slot
/// never moves once made.
const FIRST_BITS: u32 = 6;
const FIRST: u64 = 1 << FIRST_BITS;
const CHUNKS: usize = (33 - FIRST_BITS) as usize;

/// A table of `T`s that are made once and never freed or moved: an index
/// always leads to the same `T`.
pub(crate) struct Table<T: 'static> {
    chunks: [AtomicPtr<T>; CHUNKS],
    free: Mutex<Free>,
    make: fn() -> T,
}

struct Free {
    /// The first index never handed out.
    next: u64,
    /// Indexes given back, to be handed out again.
    indexes: Vec<u32>,
}

/// Which chunk holds `index`, and where in it.
#[inline]
fn place(index: u32) -> (usize, usize) {
    let j = index as u64 + FIRST;
    let k = 63 - j.leading_zeros() - FIRST_BITS;
    (k as usize, (j - (FIRST << k)) as usize)
}

impl<T: 'static> Table<T> {
    pub const fn new(make: fn() -> T) -> Table<T> {
        Table {
            chunks: [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS],
            free: Mutex::new(Free { next: 0, indexes: Vec::new() }),
            make,
        }
    }

    /// The entry at `index`, or None when no entry that far was ever made
    /// (an index no token of this table holds).
    #[inline]
    pub fn get(&'static self, index: u32) -> Option<&'static T> {
        let (k, offset) = place(index);
        let chunk = self.chunks[k].load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        // SAFETY: a non-NULL chunk `k` was made by `take` with `FIRST << k`
        // entries, all initialised, and is never freed; `offset` is below
        // that by `place`.
        Some(unsafe { &*chunk.add(offset) })
    }

    /// An entry nobody uses (one given back, or a new one) and its index.
    pub fn take(&'static self) -> (u32, &'static T) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let index = match free.indexes.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(free.next).expect("2^32 response handles outstanding at once");
                let (k, offset) = place(index);
                if offset == 0 {
                    let chunk: Box<[T]> = (0..FIRST << k).map(|_| (self.make)()).collect();
                    self.chunks[k].store(Box::leak(chunk).as_mut_ptr(), Ordering::Release);
                }
                free.next += 1;
                index
            }
        };
        drop(free);
        (index, self.get(index).expect("a handed-out index has its chunk"))
    }

    /// Gives `index` back, to be handed out again.
    pub fn give_back(&self, index: u32) {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).indexes.push(index);
    }
}

/// A slot for handles that the caller frees (`warpcore_upgraded`,
/// `warpcore_websocket`): the generation of the handle it serves now (0: none
/// given out yet) and that handle's object while it is live. Freeing moves
/// nothing but the object out; the slot's next handle gets the next
/// generation, so a freed token never reaches a later object.
pub(crate) struct TokenSlot<E: 'static> {
    state: Mutex<SlotState<E>>,
    /// Told when a handle being made is in its slot (or failed).
    published: Condvar,
}

struct SlotState<E> {
    generation: u64,
    entry: Option<Arc<E>>,
    /// The handle of `generation` is being made: its calls wait for it.
    publishing: bool,
}

impl<E> TokenSlot<E> {
    pub const fn new() -> TokenSlot<E> {
        TokenSlot {
            state: Mutex::new(SlotState { generation: 0, entry: None, publishing: false }),
            published: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState<E>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state once the handle of `generation` is made (if it is being
    /// made): a call with another generation (a stale token) never waits.
    fn lock_published(&self, generation: u64) -> MutexGuard<'_, SlotState<E>> {
        let mut state = self.lock();
        while state.publishing && state.generation == generation {
            state = self.published.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state
    }
}

/// Puts a handle being made in its slot (None: it was not made) and wakes
/// the calls waiting for it.
struct Published<E: 'static> {
    slot: &'static TokenSlot<E>,
    entry: Option<Arc<E>>,
}

impl<E> Drop for Published<E> {
    fn drop(&mut self) {
        let mut state = self.slot.lock();
        state.publishing = false;
        state.entry = self.entry.take();
        drop(state);
        self.slot.published.notify_all();
    }
}

/// The last generation a token slot serves; then it is retired, so that
/// tokens (32 bits of generation) never repeat.
const LAST_TOKEN_GENERATION: u64 = u32::MAX as u64;

fn token_bits(index: u32, generation: u64) -> usize {
    (generation << 32 | index as u64) as usize
}

impl<E> Table<TokenSlot<E>> {
    /// Makes a handle: `make` is given its token and builds the object (or
    /// fails, and the slot goes back). Calls with the token made meanwhile
    /// (by a callback that fired first) wait until the object is in the
    /// slot instead of finding nothing; the slot is not locked meanwhile, so
    /// a stale token of it (which `make` may wait for: an upgrade from
    /// another thread waits for the handler call) is told so at once.
    pub fn publish<R>(&'static self, make: impl FnOnce(usize) -> Result<E, R>) -> Result<usize, R> {
        let (index, slot) = self.take();
        let generation = {
            let mut state = slot.lock();
            state.generation += 1;
            state.publishing = true;
            state.generation
        };
        // Ends the making however `make` ends (a panic too: the token is dead).
        let mut done = Published { slot, entry: None };
        match make(token_bits(index, generation)) {
            Ok(entry) => {
                done.entry = Some(Arc::new(entry));
                drop(done);
                Ok(token_bits(index, generation))
            }
            Err(e) => {
                drop(done);
                if generation < LAST_TOKEN_GENERATION {
                    self.give_back(index);
                }
                Err(e)
            }
        }
    }

    /// The live object of `token`, or None for a freed or unknown one.
    pub fn resolve(&'static self, token: usize) -> Option<Arc<E>> {
        let bits = token as u64;
        let (index, generation) = (bits as u32, bits >> 32);
        let state = self.get(index)?.lock_published(generation);
        match &state.entry {
            Some(entry) if state.generation == generation && generation != 0 => Some(entry.clone()),
            _ => None,
        }
    }

    /// Ends `token`: its object, once (None for a freed or unknown token).
    pub fn free(&'static self, token: usize) -> Option<Arc<E>> {
        let bits = token as u64;
        let (index, generation) = (bits as u32, bits >> 32);
        let slot = self.get(index)?;
        let mut state = slot.lock_published(generation);
        if state.generation != generation || generation == 0 {
            return None;
        }
        let entry = state.entry.take();
        drop(state);
        if entry.is_some() && generation < LAST_TOKEN_GENERATION {
            self.give_back(index);
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn indexes_fill_each_chunk_then_the_next_twice_as_large() {
        assert_eq!(place(0), (0, 0));
        assert_eq!(place(63), (0, 63));
        assert_eq!(place(64), (1, 0));
        assert_eq!(place(191), (1, 127));
        assert_eq!(place(192), (2, 0));
        assert_eq!(place(u32::MAX), (CHUNKS - 1, (u32::MAX as u64 + FIRST - (FIRST << (CHUNKS - 1))) as usize));
    }

    static TABLE: Table<AtomicU32> = Table::new(|| AtomicU32::new(7));

    #[test]
    fn entries_stay_where_they_are_and_are_handed_out_again_once_given_back() {
        assert!(TABLE.get(0).is_none());
        let taken: Vec<_> = (0..200).map(|_| TABLE.take()).collect();
        for (i, (index, entry)) in taken.iter().enumerate() {
            assert_eq!(*index, i as u32);
            assert!(std::ptr::eq(*entry, TABLE.get(*index).unwrap()));
            assert_eq!(entry.load(Ordering::Relaxed), 7);
            entry.store(i as u32, Ordering::Relaxed);
        }
        assert!(TABLE.get(200).is_some(), "the third chunk is made whole");
        assert!(TABLE.get(448).is_none());
        TABLE.give_back(5);
        let (index, entry) = TABLE.take();
        assert_eq!(index, 5);
        assert_eq!(entry.load(Ordering::Relaxed), 5, "the same entry, as it was left");
        assert_eq!(TABLE.take().0, 200);
    }
}

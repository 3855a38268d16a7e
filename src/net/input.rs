//! `InBuf`: a read buffer whose bytes are all initialised, so the socket can read
//! into its spare part without `unsafe` and without zeroing on every read.

/// Received bytes live in `data[..filled]`; `data[filled..]` is spare room.
#[derive(Default)]
pub(crate) struct InBuf {
    data: Vec<u8>,
    filled: usize,
}

impl InBuf {
    pub fn with_capacity(n: usize) -> InBuf {
        InBuf { data: vec![0; n], filled: 0 }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.filled]
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Room to read into.
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.data[self.filled..]
    }

    /// Records `n` bytes read into `spare()`.
    pub fn advance(&mut self, n: usize) {
        self.filled += n;
    }

    /// Drops the first `n` bytes, moving the rest to the front.
    pub fn consume(&mut self, n: usize) {
        self.data.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    /// Grows the buffer so it holds at least `total` bytes.
    pub fn grow_to(&mut self, total: usize) {
        if self.data.len() < total {
            self.data.resize(total, 0);
        }
    }

    /// Grows the buffer so it holds at least `total` bytes, unless the memory
    /// is refused: false then, and the buffer is unchanged.
    pub fn try_grow_to(&mut self, total: usize) -> bool {
        if self.data.len() >= total {
            return true;
        }
        if self.data.try_reserve_exact(total - self.data.len()).is_err() {
            return false;
        }
        self.data.resize(total, 0);
        true
    }

    /// Room for more of a request that did not arrive whole, for a buffer
    /// that is full: toward `need` bytes in all (0 when unknown), but never
    /// past twice what has arrived (and at least 4 KiB), so that a
    /// Content-Length promised in a head, or bytes trickled in one at a time,
    /// cost no more than what came. Each step doubles what arrived, so
    /// copying stays linear. False when the memory is refused.
    pub fn make_room(&mut self, need: usize, limit: usize) -> bool {
        let step = (self.filled * 2).clamp(4096, limit.max(4096));
        let target = if need > self.filled { step.min(need) } else { step };
        self.try_grow_to(target.max(self.filled + 1))
    }

    /// Appends bytes, growing as needed.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.grow_to(self.filled + bytes.len());
        self.data[self.filled..self.filled + bytes.len()].copy_from_slice(bytes);
        self.filled += bytes.len();
    }

    pub fn clear(&mut self) {
        self.filled = 0;
    }

    /// Returns the memory of a buffer that grew past `keep` and holds no more
    /// than `keep` bytes now (they are moved to a buffer of `keep`), so a
    /// connection that waits (for an answer) costs little.
    pub fn release_excess(&mut self, keep: usize) {
        if self.data.len() > keep && self.filled <= keep {
            let mut kept = vec![0; keep];
            kept[..self.filled].copy_from_slice(&self.data[..self.filled]);
            self.data = kept;
        }
    }

    /// Empties the buffer and returns its memory when it grew large, so an idle
    /// connection costs little.
    pub fn clear_and_shrink(&mut self, keep: usize) {
        self.filled = 0;
        if self.data.len() > keep {
            self.data = Vec::new();
        }
    }
}

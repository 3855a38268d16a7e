//! `Payload`: bytes handed to the engine without a copy, released exactly once
//! when sent or when the connection is gone.

/// A body buffer the engine reads from until it is sent, then drops. Dropping
/// runs the owner's release (for the C API, the release callback).
pub struct Payload {
    bytes: Box<dyn AsRef<[u8]> + Send>,
    offset: usize,
}

impl Payload {
    /// Wraps an owner of bytes; its `Drop` is the release.
    pub fn new(bytes: Box<dyn AsRef<[u8]> + Send>) -> Payload {
        Payload { bytes, offset: 0 }
    }

    /// The same payload without its first `n` bytes.
    pub(crate) fn skip(mut self, n: usize) -> Payload {
        self.offset += n;
        self
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Payload {
        Payload::new(Box::new(v))
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        &(*self.bytes).as_ref()[self.offset..]
    }
}

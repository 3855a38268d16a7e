//! What a path was found to be, and a regular file's metadata as sent in its
//! response heads: what the info cache (`info_cache`) keeps per path.

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

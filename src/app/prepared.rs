//! `PreparedAnswer`: a complete response checked and rendered once (a C API
//! prepared response), shared by reference count so that a deferred answer
//! posts a reference to the worker instead of a copy, and the worker sends
//! its image as an answer inside the handler call would.

use std::sync::Arc;

use super::head::OwnedHead;
use crate::http::image::KeepAliveImage;

/// Immutable once made; any thread may send it, several at once.
pub(crate) struct PreparedAnswer {
    pub status: u16,
    /// The header fields as they go on the wire, then the body.
    pub head: OwnedHead,
    /// The whole response for an HTTP/1.1 keep-alive GET, when it has one.
    pub image: Option<KeepAliveImage>,
}

impl PreparedAnswer {
    pub fn new(status: u16, head: OwnedHead, image: Option<KeepAliveImage>) -> Arc<PreparedAnswer> {
        Arc::new(PreparedAnswer { status, head, image })
    }
}

//! Why a response call was refused.

use crate::http::compose::ComposeError;

/// Why a response call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespondError {
    /// The request was answered already.
    AlreadyAnswered,
    /// The status is not a final status in 200..=599.
    InvalidStatus,
    /// A header name is not a token or a value holds CR, LF or NUL.
    InvalidHeader,
    /// The client is gone; the response was dropped.
    Closed,
    /// A stream call on a response that has not started streaming.
    NotStreaming,
    /// A stream broke its declared Content-Length; the connection is closed.
    LengthMismatch,
    /// A [`Deferred`](crate::Deferred) write on a worker thread found the stream's queue over
    /// its high-water mark: waiting there could block the worker for good, so
    /// nothing was sent and the stream goes on (see [`Deferred::write`](crate::Deferred::write)).
    WouldBlock,
    /// `upgrade`: the request did not ask to switch protocols (HTTP/1.1 with
    /// `Connection: upgrade` and an `Upgrade` field, and no streaming body).
    NotUpgradable,
    /// `upgrade`: the handler's fields name no `Upgrade` protocol.
    NoUpgradeField,
    /// `respond_file`: the path is missing, a directory, not a regular file or
    /// not readable; nothing was sent and the request may be answered again.
    FileUnavailable(std::io::ErrorKind),
}

impl From<ComposeError> for RespondError {
    fn from(e: ComposeError) -> Self {
        match e {
            ComposeError::Status => RespondError::InvalidStatus,
            ComposeError::Header => RespondError::InvalidHeader,
        }
    }
}

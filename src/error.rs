//! The engine's error type: a kind the C API maps to a result code, and a message.

use std::fmt;

/// What went wrong, in categories an embedder can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// An argument or setting is out of range or malformed.
    InvalidArgument,
    /// The listen address could not be parsed or resolved.
    InvalidAddress,
    /// The listen address is already in use.
    AddressInUse,
    /// Another operating-system error (socket, thread, poll).
    Io,
    /// The server is shutting down or stopped.
    ShuttingDown,
    /// The call does not fit the object's state (a worker run twice, …).
    InvalidState,
    /// A certificate, key or other TLS setting is unusable (unreadable,
    /// malformed, a key that does not match its certificate).
    Tls,
}

/// An error with a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The category.
    pub kind: ErrorKind,
    /// What happened, for people.
    pub message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }

    pub(crate) fn io(context: &str, err: std::io::Error) -> Error {
        let kind = if err.kind() == std::io::ErrorKind::AddrInUse { ErrorKind::AddressInUse } else { ErrorKind::Io };
        Error::new(kind, format!("{context}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

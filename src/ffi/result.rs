//! Result codes, their descriptions, and the message of the last error.

use std::cell::RefCell;
use std::ffi::{c_char, CStr};

use crate::app::handler::RespondError;
use crate::error::{Error, ErrorKind};

symbol_versions!();

/// What a fallible call did. `WARPCORE_RESULT_OK` is 0; the numbers are stable.
/// Every other code comes with a message for the calling thread, readable with
/// `warpcore_last_error_message`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum warpcore_result {
    /// Success.
    Ok = 0,
    /// An argument is out of range or malformed.
    InvalidArgument = 1,
    /// A required pointer argument is NULL.
    NullArgument = 2,
    /// The listen address is not `HOST:PORT` or does not resolve.
    InvalidAddress = 3,
    /// The listen address is already in use.
    AddressInUse = 4,
    /// An operating-system call failed (socket, thread, poll).
    IoError = 5,
    /// The server is shutting down or has stopped.
    ShuttingDown = 6,
    /// The call does not fit the object's state (a worker index run twice, …).
    InvalidState = 7,
    /// The request has already been answered.
    AlreadyAnswered = 8,
    /// The client has gone away; the response was dropped.
    Closed = 9,
    /// The status code is not a final status in 200..=599.
    InvalidStatus = 10,
    /// A header name is not a token, or a value contains CR, LF or NUL.
    InvalidHeader = 11,
    /// The library caught an internal panic; the call did nothing.
    Panic = 12,
    /// A streamed body broke its declared Content-Length; the connection is closed.
    LengthMismatch = 13,
    /// The call would have to wait and may not: a stream or connection write
    /// over its high-water mark, or a read with nothing to read, on a worker
    /// thread (which never waits) or a non-blocking handle. Nothing was done;
    /// the handle stays the caller's.
    WouldBlock = 14,
    /// The caller's buffer is too small for what the call returns; nothing
    /// was taken, and the size needed was written (`warpcore_websocket_recv`).
    BufferTooSmall = 15,
    /// A certificate, key or other TLS setting is unusable: a file that
    /// cannot be read, PEM that holds no certificate or key, a key that is
    /// not the certificate's, a TLS listener without a certificate. The
    /// message names the file and the reason.
    Tls = 16,
}

impl warpcore_result {
    fn describe(self) -> &'static CStr {
        match self {
            warpcore_result::Ok => c"success",
            warpcore_result::InvalidArgument => c"invalid argument",
            warpcore_result::NullArgument => c"a required pointer argument is NULL",
            warpcore_result::InvalidAddress => c"invalid listen address",
            warpcore_result::AddressInUse => c"address already in use",
            warpcore_result::IoError => c"operating-system error",
            warpcore_result::ShuttingDown => c"the server is shutting down",
            warpcore_result::InvalidState => c"the call does not fit the object's state",
            warpcore_result::AlreadyAnswered => c"the request has already been answered",
            warpcore_result::Closed => c"the client has gone away",
            warpcore_result::InvalidStatus => c"invalid status code",
            warpcore_result::InvalidHeader => c"invalid header name or value",
            warpcore_result::Panic => c"internal panic caught",
            warpcore_result::LengthMismatch => c"the stream broke its declared Content-Length",
            warpcore_result::WouldBlock => c"the call would have to wait, and this one may not",
            warpcore_result::BufferTooSmall => c"the buffer is too small; the size needed was written",
            warpcore_result::Tls => c"a certificate, key or TLS setting is unusable",
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as the calling thread's last error and returns `code`.
pub(crate) fn fail(code: warpcore_result, message: impl Into<String>) -> warpcore_result {
    let message = message.into();
    LAST_ERROR.with(|m| *m.borrow_mut() = message);
    code
}

impl From<Error> for warpcore_result {
    fn from(e: Error) -> Self {
        let code = match e.kind {
            ErrorKind::InvalidArgument => warpcore_result::InvalidArgument,
            ErrorKind::InvalidAddress => warpcore_result::InvalidAddress,
            ErrorKind::AddressInUse => warpcore_result::AddressInUse,
            ErrorKind::Io => warpcore_result::IoError,
            ErrorKind::ShuttingDown => warpcore_result::ShuttingDown,
            ErrorKind::InvalidState => warpcore_result::InvalidState,
            ErrorKind::Tls => warpcore_result::Tls,
        };
        fail(code, e.message)
    }
}

impl From<RespondError> for warpcore_result {
    fn from(e: RespondError) -> Self {
        let (code, message) = match e {
            RespondError::AlreadyAnswered => (warpcore_result::AlreadyAnswered, "the request has already been answered"),
            RespondError::InvalidStatus => (warpcore_result::InvalidStatus, "status must be a final status in 200..=599"),
            RespondError::InvalidHeader => {
                (warpcore_result::InvalidHeader, "header names must be tokens and values must not contain CR, LF or NUL")
            }
            RespondError::Closed => (warpcore_result::Closed, "the client has gone away"),
            RespondError::NotStreaming => {
                (warpcore_result::InvalidState, "the response has not been started with warpcore_response_start")
            }
            RespondError::FileUnavailable(kind) => {
                return fail(warpcore_result::IoError, format!("the file cannot be served: {kind}"));
            }
            RespondError::LengthMismatch => (
                warpcore_result::LengthMismatch,
                "the stream broke its declared Content-Length; the connection is closed",
            ),
            RespondError::NotUpgradable => (
                warpcore_result::InvalidState,
                "the request did not ask to switch protocols (HTTP/1.1, Connection: upgrade, an Upgrade field, no streaming body)",
            ),
            RespondError::NoUpgradeField => {
                (warpcore_result::InvalidHeader, "a 101 answer must name its protocol in an Upgrade field")
            }
            RespondError::WouldBlock => (
                warpcore_result::WouldBlock,
                "the stream is over its high-water mark and this is a worker thread, which never waits: nothing was sent",
            ),
        };
        fail(code, message)
    }
}

/// A static, NUL-terminated description of `result`; never NULL (unknown codes
/// get "unknown result code"). Thread-safe; the string must not be freed.
#[no_mangle]
pub extern "C" fn warpcore_result_str(result: u32) -> *const c_char {
    ALL.get(result as usize).map_or(c"unknown result code", |code| code.describe()).as_ptr()
}

const ALL: [warpcore_result; 17] = [
    warpcore_result::Ok,
    warpcore_result::InvalidArgument,
    warpcore_result::NullArgument,
    warpcore_result::InvalidAddress,
    warpcore_result::AddressInUse,
    warpcore_result::IoError,
    warpcore_result::ShuttingDown,
    warpcore_result::InvalidState,
    warpcore_result::AlreadyAnswered,
    warpcore_result::Closed,
    warpcore_result::InvalidStatus,
    warpcore_result::InvalidHeader,
    warpcore_result::Panic,
    warpcore_result::LengthMismatch,
    warpcore_result::WouldBlock,
    warpcore_result::BufferTooSmall,
    warpcore_result::Tls,
];

/// Copies the calling thread's last error message into `buf` (at most `len`
/// bytes including a terminating NUL, which is always written when `len > 0`)
/// and returns the message's full length without the NUL. The message describes
/// the last call on this thread that did not return `WARPCORE_RESULT_OK`; it is
/// empty when there was none. `buf` may be NULL when `len` is 0, to ask the length.
#[no_mangle]
pub extern "C" fn warpcore_last_error_message(buf: *mut c_char, len: usize) -> usize {
    let r = std::panic::catch_unwind(|| {
        LAST_ERROR.with(|m| {
            let m = m.borrow();
            if len > 0 && !buf.is_null() {
                let n = m.len().min(len - 1);
                // SAFETY: the caller provides `len` writable bytes at `buf`; we write n + 1 <= len.
                unsafe {
                    std::ptr::copy_nonoverlapping(m.as_ptr().cast::<c_char>(), buf, n);
                    *buf.add(n) = 0;
                }
            }
            m.len()
        })
    });
    r.unwrap_or(0)
}

//! The access log and the error log, as C callbacks.

use std::ffi::c_void;

use crate::observe::log::{AccessLogSink, ErrorLog, Level};

/// Receives a batch of complete access-log lines (Apache combined format, each
/// ending in `\n`), `len` bytes at `lines`, valid during the call. Called from
/// worker threads, at least once a second while requests are logged and at
/// shutdown; several workers may call it at once.
pub type warpcore_access_log_cb = Option<unsafe extern "C" fn(userdata: *mut c_void, lines: *const u8, len: usize)>;

/// Receives one error-log message (`len` bytes at `message`, no newline, valid
/// during the call) with its level (a `warpcore_log_level`): accept failures,
/// listener errors, contained panics. Called from whichever thread saw the
/// event; must be thread-safe and must not call back into the server.
pub type warpcore_error_log_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, level: u32, message: *const u8, len: usize)>;

/// How serious an error-log message is.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum warpcore_log_level {
    /// Something failed and was contained (a panic, a listener error).
    Error = 0,
    /// Something degraded (accepting paused for lack of descriptors).
    Warning = 1,
    /// For information.
    Info = 2,
}

pub(crate) struct CAccessLog {
    pub callback: unsafe extern "C" fn(*mut c_void, *const u8, usize),
    pub userdata: *mut c_void,
}

// SAFETY: the callback is documented to be called from several worker threads
// at once; the embedder makes it and its userdata thread-safe.
unsafe impl Send for CAccessLog {}
// SAFETY: as above.
unsafe impl Sync for CAccessLog {}

impl AccessLogSink for CAccessLog {
    fn write(&self, lines: &[u8]) {
        // SAFETY: the callback matches this signature; `lines` lives for the call.
        unsafe { (self.callback)(self.userdata, lines.as_ptr(), lines.len()) }
    }
}

pub(crate) struct CErrorLog {
    pub callback: unsafe extern "C" fn(*mut c_void, u32, *const u8, usize),
    pub userdata: *mut c_void,
}

// SAFETY: documented as called from any thread; the embedder makes it thread-safe.
unsafe impl Send for CErrorLog {}
// SAFETY: as above.
unsafe impl Sync for CErrorLog {}

impl ErrorLog for CErrorLog {
    fn log(&self, level: Level, message: &str) {
        // SAFETY: the callback matches this signature; `message` lives for the call.
        unsafe { (self.callback)(self.userdata, level as u32, message.as_ptr(), message.len()) }
    }
}

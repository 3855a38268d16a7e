//! The panic boundary: the body of every exported function runs inside it.

/// Runs `$body` (which yields a `warpcore_result`); a panic becomes
/// `WARPCORE_RESULT_PANIC` with its message recorded.
macro_rules! ffi_boundary {
    ($body:block) => {{
        match $crate::ffi::panic::quiet(|| {
            ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| -> $crate::ffi::result::warpcore_result {
                $body
            }))
        }) {
            Ok(result) => result,
            Err(payload) => $crate::ffi::panic::record_panic(payload),
        }
    }};
}

/// `ffi_boundary!` for a call on a response handle. A call the handler makes
/// on its own handle runs inside the worker loop, whose panics are quiet
/// already, so it skips the thread-local that marks the thread quiet (a
/// `__tls_get_addr` call in a shared object, on every answer).
macro_rules! response_boundary {
    ($handle:expr, $body:block) => {{
        if $crate::ffi::response::in_call_here($handle) {
            match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
                || -> $crate::ffi::result::warpcore_result { $body },
            )) {
                Ok(result) => result,
                Err(payload) => $crate::ffi::panic::record_panic(payload),
            }
        } else {
            ffi_boundary!($body)
        }
    }};
}

/// Like `ffi_boundary!` for functions that return a plain value: a panic yields `$default`.
macro_rules! ffi_boundary_or {
    ($default:expr, $body:block) => {{
        match $crate::ffi::panic::quiet(|| ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body))) {
            Ok(value) => value,
            Err(payload) => {
                $crate::ffi::panic::record_panic(payload);
                $default
            }
        }
    }};
}

/// The value of an `Ok`, or returns the `warpcore_result` of an `Err` from the
/// enclosing boundary body: the one shape every pointer check has.
macro_rules! ok_or_return {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return e,
        }
    };
}

pub(crate) fn record_panic(payload: Box<dyn std::any::Any + Send>) -> super::result::warpcore_result {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    super::result::fail(super::result::warpcore_result::Panic, format!("internal panic: {text}"))
}

/// Runs an API call with panic printing suppressed (it is reported instead).
pub(crate) fn quiet<R>(f: impl FnOnce() -> R) -> R {
    crate::server::quiet_panic::quietly(f)
}

//! The library's version at run time. The header's `WARPCORE_VERSION_*` macros
//! (written by tests/header.rs from Cargo.toml) give the version a program was
//! compiled against; `warpcore_version` gives the one it runs with.

use std::ffi::c_char;

symbol_versions!();

/// The version of the library as loaded, a static NUL-terminated string
/// `"MAJOR.MINOR.PATCH"`: the same as `WARPCORE_VERSION` when the program runs
/// with the library its header came from. Programs linked against
/// `libwarpcore.so.MAJOR` load any release with that major version, so MINOR
/// and PATCH may be newer than the header's. Thread-safe; never NULL; the string
/// must not be freed.
#[no_mangle]
pub extern "C" fn warpcore_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

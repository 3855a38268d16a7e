//! Typed helpers for turning C pointers into Rust references and slices.

use super::result::{fail, warpcore_result};

/// A shared reference from a pointer that may be NULL.
///
/// The caller of the C function promises the pointer came from this library and
/// is still live; NULL is reported, not dereferenced.
pub(crate) fn try_ref<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, warpcore_result> {
    // SAFETY: non-NULL pointers passed to the API point to live objects of this
    // type, as every function's documentation requires.
    unsafe { ptr.as_ref() }.ok_or_else(|| null(what))
}

/// A mutable reference from a pointer that may be NULL.
pub(crate) fn try_mut<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, warpcore_result> {
    // SAFETY: as for `try_ref`; the API documents that the object is not used
    // from two threads at once where it hands out `&mut`.
    unsafe { ptr.as_mut() }.ok_or_else(|| null(what))
}

/// A byte slice from `(ptr, len)`; NULL is allowed when `len` is 0.
pub(crate) fn try_slice<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], warpcore_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null(what));
    }
    if len > isize::MAX as usize {
        return Err(fail(warpcore_result::InvalidArgument, format!("{what}: length {len} is too large")));
    }
    // SAFETY: the caller promises `len` readable bytes at `ptr` for the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A writable byte slice from `(ptr, len)`; NULL is allowed when `len` is 0.
pub(crate) fn try_slice_mut<'a>(ptr: *mut u8, len: usize, what: &str) -> Result<&'a mut [u8], warpcore_result> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(null(what));
    }
    if len > isize::MAX as usize {
        return Err(fail(warpcore_result::InvalidArgument, format!("{what}: length {len} is too large")));
    }
    // SAFETY: the caller promises `len` writable bytes at `ptr`, used by no
    // one else, for the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// `try_slice` for an argument whose name must be built (`headers[3].value`):
/// the name is formatted only when the slice is refused, so checking costs no
/// allocation on the request path.
pub(crate) fn try_slice_named<'a>(
    ptr: *const u8,
    len: usize,
    what: impl FnOnce() -> String,
) -> Result<&'a [u8], warpcore_result> {
    try_slice(ptr, len, "").or_else(|_| try_slice(ptr, len, &what()))
}

/// A slice of `T` from `(ptr, count)`; NULL is allowed when `count` is 0.
pub(crate) fn try_array<'a, T>(ptr: *const T, count: usize, what: &str) -> Result<&'a [T], warpcore_result> {
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null(what));
    }
    if count > (isize::MAX as usize) / std::mem::size_of::<T>().max(1) {
        return Err(fail(warpcore_result::InvalidArgument, format!("{what}: count {count} is too large")));
    }
    // SAFETY: the caller promises `count` initialised elements at `ptr`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// Writes `value` to an output pointer checked non-NULL.
pub(crate) fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: callers check `out` for NULL before computing `value`.
    unsafe { out.write(value) }
}

fn null(what: &str) -> warpcore_result {
    fail(warpcore_result::NullArgument, format!("{what} is NULL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        let mut buf = [0 as std::ffi::c_char; 128];
        let n = super::super::result::warpcore_last_error_message(buf.as_mut_ptr(), buf.len());
        let bytes: Vec<u8> = buf[..n.min(127)].iter().map(|&c| c as u8).collect();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn named_slice_builds_its_name_only_when_refused() {
        let data = b"abc";
        let ok = try_slice_named(data.as_ptr(), 3, || unreachable!("named on success"));
        assert_eq!(ok, Ok(&data[..]));
        assert_eq!(try_slice_named(std::ptr::null(), 0, || unreachable!("named on success")), Ok(&[][..]));

        let refused = try_slice_named(std::ptr::null(), 5, || "headers[2].value".to_string());
        assert_eq!(refused, Err(warpcore_result::NullArgument));
        assert_eq!(last_error(), "headers[2].value is NULL");
    }
}

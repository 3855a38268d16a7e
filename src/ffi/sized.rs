//! Structs the caller allocates and the library fills (`warpcore_stats`,
//! `warpcore_file_cache_stats`, `warpcore_shutdown_report`) grow at the end
//! from one release to the next, so each starts with `size_t size`: the
//! caller sets it to the size of the struct it was compiled with (the
//! header's `WARPCORE_*_INIT` macros do), and the library
//! - refuses a size smaller than the struct's first version
//!   (`WARPCORE_RESULT_INVALID_ARGUMENT`, nothing written);
//! - writes only the fields that end within `size`, never a part of one, so a
//!   program built against an older header is never overrun by a newer library;
//! - sets `size` to the bytes it wrote, so a program built against a newer
//!   header sees which of its fields an older library left alone (as Linux's
//!   `sched_getattr` does).

use std::mem::size_of;

use super::result::{fail, warpcore_result};

/// A caller-allocated struct that begins with `size: usize`.
///
/// # Safety
/// The type is `#[repr(C)]`, has `size: usize` at offset 0, and `FIELD_ENDS`
/// lists the end offset of every field in order, the last one being the
/// struct's size (no trailing padding): `write_sized` copies byte prefixes of
/// it that end on those offsets.
pub(crate) unsafe trait Growable: Copy {
    /// The struct's C name, for error messages.
    const NAME: &'static str;
    /// The end of the first version's last field: the smallest `size` accepted.
    const FIRST_SIZE: usize;
    /// Where each field ends, in order, from `size` to the last one.
    const FIELD_ENDS: &'static [usize];
    /// Sets the leading `size` field.
    fn set_size(&mut self, size: usize);
}

/// The offset just past field `$field` of `$t`.
macro_rules! field_end {
    ($t:ty, $field:ident) => {{
        const fn size_of_pointee<F>(_: *const F) -> usize {
            ::std::mem::size_of::<F>()
        }
        let value = ::std::mem::MaybeUninit::<$t>::uninit();
        // SAFETY: only the field's address is computed; nothing is read.
        ::std::mem::offset_of!($t, $field) + size_of_pointee(unsafe { ::std::ptr::addr_of!((*value.as_ptr()).$field) })
    }};
}

/// Implements `Growable` for `$t`: `first` names the last field of its first
/// version, `fields` every field after `size`, in order. A compile-time check
/// keeps the list complete: its last field must end where the struct does.
macro_rules! growable {
    ($t:ident, first = $first:ident, fields = [$($field:ident),+ $(,)?]) => {
        // SAFETY: `$t` is `#[repr(C)]` with `size: usize` first (checked
        // below), and FIELD_ENDS is computed from the fields themselves.
        unsafe impl $crate::ffi::sized::Growable for $t {
            const NAME: &'static str = stringify!($t);
            const FIRST_SIZE: usize = field_end!($t, $first);
            const FIELD_ENDS: &'static [usize] = &[field_end!($t, size), $(field_end!($t, $field)),+];
            fn set_size(&mut self, size: usize) {
                self.size = size;
            }
        }
        const _: () = {
            use $crate::ffi::sized::Growable;
            assert!(::std::mem::offset_of!($t, size) == 0);
            let ends = <$t as Growable>::FIELD_ENDS;
            assert!(ends[ends.len() - 1] == ::std::mem::size_of::<$t>(), "list every field of the struct");
            let mut i = 1;
            while i < ends.len() {
                assert!(ends[i - 1] < ends[i], "list the fields in order");
                i += 1;
            }
        };
    };
}

/// Checks the caller's struct at `out` before anything is computed: not NULL,
/// aligned, its `size` at least the first version's. Gives the number of bytes
/// to write: the end of the last field within `size`.
pub(crate) fn sized_len<T: Growable>(out: *mut T) -> Result<usize, warpcore_result> {
    if out.is_null() {
        return Err(fail(warpcore_result::NullArgument, "out is NULL"));
    }
    if !out.is_aligned() {
        return Err(fail(warpcore_result::InvalidArgument, format!("out is not aligned for {}", T::NAME)));
    }
    // SAFETY: `out` is non-NULL and aligned; every version of the struct, and
    // so the caller's, starts with an initialised `size_t size` (the caller
    // promises that, as the documentation of each struct requires).
    let size = unsafe { out.cast::<usize>().read() };
    if size < T::FIRST_SIZE {
        return Err(fail(
            warpcore_result::InvalidArgument,
            format!(
                "{}.size is {size}, less than its first version's {} bytes: set it to sizeof(the struct)",
                T::NAME,
                T::FIRST_SIZE
            ),
        ));
    }
    Ok(T::FIELD_ENDS.iter().copied().take_while(|&end| end <= size).last().unwrap_or(size_of::<usize>()))
}

/// Writes the first `len` bytes of `value` (from `sized_len`) to `out`, with
/// `size` set to `len`.
pub(crate) fn write_sized<T: Growable>(out: *mut T, mut value: T, len: usize) {
    debug_assert!(len <= size_of::<T>() && T::FIELD_ENDS.contains(&len));
    value.set_size(len);
    // SAFETY: `sized_len` checked `out`; the caller's struct has at least
    // `size` ≥ `len` writable bytes, and `len` ≤ size_of::<T>() ends on a field
    // boundary of `value`, so only whole, initialised fields are copied.
    unsafe { std::ptr::copy_nonoverlapping((&value as *const T).cast::<u8>(), out.cast::<u8>(), len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A struct as a later release might have it: `c` was added after the
    /// first version, which ended with `b`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct grown {
        size: usize,
        a: u64,
        b: u64,
        c: u64,
    }
    growable!(grown, first = b, fields = [a, b, c]);

    const FULL: grown = grown { size: 0, a: 1, b: 2, c: 3 };

    /// Fills a buffer of `words` u64s, whose first word is `size`, the rest
    /// 0xEE..; gives the result and the buffer.
    fn fill(size: usize, words: usize) -> (Result<(), warpcore_result>, Vec<u64>) {
        let mut buf = vec![0xEEEE_EEEE_EEEE_EEEE_u64; words];
        buf[0] = size as u64;
        let out = buf.as_mut_ptr().cast::<grown>();
        let result = sized_len(out).map(|len| write_sized(out, FULL, len));
        (result, buf)
    }

    const E: u64 = 0xEEEE_EEEE_EEEE_EEEE;

    #[test]
    fn an_older_callers_smaller_struct_gets_only_its_fields() {
        assert_eq!(<grown as Growable>::FIRST_SIZE, 24);
        assert_eq!(fill(24, 4), (Ok(()), vec![24, 1, 2, E]));
    }

    #[test]
    fn a_newer_callers_larger_struct_learns_what_was_written() {
        assert_eq!(fill(48, 6), (Ok(()), vec![32, 1, 2, 3, E, E]));
    }

    #[test]
    fn a_field_that_does_not_fit_whole_is_not_written() {
        assert_eq!(fill(30, 4), (Ok(()), vec![24, 1, 2, E]));
    }

    #[test]
    fn a_size_below_the_first_version_is_refused_and_nothing_written() {
        for size in [0, 8, 16, 23] {
            assert_eq!(fill(size, 4), (Err(warpcore_result::InvalidArgument), vec![size as u64, E, E, E]));
        }
        assert_eq!(sized_len::<grown>(std::ptr::null_mut()), Err(warpcore_result::NullArgument));
    }
}

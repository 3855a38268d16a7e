//! Files: answering with a file, and the file caches' counters. (Static
//! mounts are a setting: `warpcore_config_add_static` in `config.rs`.)

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::cast::{try_ref, try_slice};
use super::request::warpcore_header;
use super::response::{check_headers, perform, warpcore_response, Call};
use super::result::{fail, warpcore_result};
use super::server::warpcore_server;
use super::sized::{sized_len, write_sized};

symbol_versions!();

/// Answers the request with the file at `path` (`path_len` bytes; an absolute
/// path is best, a relative one is taken from the process's working directory)
/// and `status`, handled as a static mount handles its files: `Content-Type` by
/// extension, `Last-Modified`, `ETag`, `Accept-Ranges`, and for a `200` the
/// conditional requests (`304`, `412`) and ranges (`206`, `416`,
/// `multipart/byteranges`); any other status sends the whole file. The
/// library adds `Date`, `Server`, `Content-Length` and `Connection` as for
/// `warpcore_respond`. A field in `headers` named like one the library adds for
/// files (`Content-Type`, `ETag`, `Last-Modified`, `Accept-Ranges`) replaces it;
/// a given `ETag` or `Last-Modified` is then what preconditions are checked
/// against. The file is opened during the call and sent after it returns;
/// `headers` and `path` are only read during the call. Inside the handler call
/// the file goes through the worker's descriptor and file-information caches;
/// on a deferred handle (any thread, after the handler returned) it is looked
/// up and opened on the calling thread, and the worker sends it the same way.
/// As for static mounts, the first file a worker thread sends with `sendfile`
/// blocks `SIGPIPE` on that thread.
///
/// Errors: `WARPCORE_RESULT_IO_ERROR` when the file is missing, a directory,
/// not a regular file or unreadable (nothing is sent; the request may be
/// answered again, for instance with a `404`), and those of `warpcore_respond`.
#[no_mangle]
pub extern "C" fn warpcore_respond_file(
    response: *mut warpcore_response,
    status: u16,
    headers: *const warpcore_header,
    header_count: usize,
    path: *const u8,
    path_len: usize,
) -> warpcore_result {
    response_boundary!(response, {
        let fields = ok_or_return!(check_headers(headers, header_count));
        let path = match try_slice(path, path_len, "path") {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => return fail(warpcore_result::InvalidArgument, "path is empty"),
            Err(e) => return e,
        };
        perform(response, Call::File { status, headers: fields, path: Path::new(OsStr::from_bytes(path)) })
    })
}

/// Hit and miss counts of a server's file caches, summed over its workers.
/// Allocated by the caller, with `size` set (`WARPCORE_FILE_CACHE_STATS_INIT`);
/// later releases may add fields at the end.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct warpcore_file_cache_stats {
    /// The size of the struct as the caller's program knows it, set by the
    /// caller before the call: `WARPCORE_FILE_CACHE_STATS_INIT` or `sizeof(struct warpcore_file_cache_stats)`.
    /// The library writes only the fields that end within it (none for a
    /// size below this first version's, which is refused) and sets it to the
    /// number of bytes it wrote.
    pub size: usize,
    /// Requests whose file information (stat, ETag, Last-Modified) came from the cache.
    pub info_hits: u64,
    /// Requests that looked their path up on disk.
    pub info_misses: u64,
    /// File bodies sent without opening their file: from an already open
    /// descriptor or, for a small file, from its bytes kept in memory.
    pub fd_hits: u64,
    /// File bodies that had to open their file.
    pub fd_misses: u64,
}
growable!(warpcore_file_cache_stats, first = fd_misses, fields = [info_hits, info_misses, fd_hits, fd_misses]);

/// Writes the server's file cache counters to `*out`: the fields that fit in
/// `out->size` bytes, and `out->size` set to the bytes written. Thread-safe;
/// the counts are read without stopping the workers, so they may lag by a
/// request or two. Errors: `WARPCORE_RESULT_INVALID_ARGUMENT` when `out->size`
/// is smaller than this first version of the struct (nothing is written).
#[no_mangle]
pub extern "C" fn warpcore_server_file_cache_stats(
    server: *const warpcore_server,
    out: *mut warpcore_file_cache_stats,
) -> warpcore_result {
    ffi_boundary!({
        let server = ok_or_return!(try_ref(server, "server"));
        let len = ok_or_return!(sized_len(out));
        let s = server.inner.file_cache_stats();
        write_sized(
            out,
            warpcore_file_cache_stats {
                size: 0,
                info_hits: s.info_hits,
                info_misses: s.info_misses,
                fd_hits: s.fd_hits,
                fd_misses: s.fd_misses,
            },
            len,
        );
        warpcore_result::Ok
    })
}

//! Listeners: the addresses a server accepts connections on (TCP addresses,
//! Unix socket paths, listening descriptors handed in), added to a config and
//! read back from a running server.

use std::ffi::c_char;

use super::cast::{try_mut, try_ref, try_slice, write_out};
use super::config::{update, warpcore_config};
use super::result::{fail, warpcore_result};
use super::server::warpcore_server;
use crate::config::DEFAULT_LISTEN;

symbol_versions!();

/// Adds a listener to `config`: `len` bytes at `address` (no NUL needed), one of
/// - `HOST:PORT`, `[V6]:PORT`: TCP; port 0 picks a free port (with several
///   workers, each worker has its own `SO_REUSEPORT` socket on it);
/// - `unix:/path/to.sock`: a Unix stream socket, made when the server starts
///   (with the mode and owner of `warpcore_config_set_unix_socket_mode`). A
///   stale socket file there (one nobody listens on) is replaced; a live one
///   is `WARPCORE_RESULT_ADDRESS_IN_USE` and a file that is not a socket
///   `WARPCORE_RESULT_INVALID_ADDRESS` at start. The file is removed when the
///   server stops or a reload drops it, if it is still the same file;
/// - `fd://N`: a listening stream socket (TCP or Unix) the embedder opened
///   (systemd, a supervisor). The server owns descriptor N once it has
///   started (or reloaded) with it, and closes it at the end or when a reload
///   drops it; a start or reload that fails leaves it open. One that is not
///   an open listening stream socket, or that is already one of the server's
///   own listening sockets, is `WARPCORE_RESULT_INVALID_ADDRESS` at start
///   (or reload).
///
/// The form is checked here (`WARPCORE_RESULT_INVALID_ADDRESS`); a host name
/// is resolved at start. Listeners are kept in the order added, after the
/// address of `warpcore_config_set_listen` if that was called; otherwise the
/// `127.0.0.1:8080` default is no longer used once a listener is added. A Unix
/// path or descriptor named twice is `WARPCORE_RESULT_INVALID_ARGUMENT` at start.
#[no_mangle]
pub extern "C" fn warpcore_config_add_listener(
    config: *mut warpcore_config,
    address: *const u8,
    len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let config = ok_or_return!(try_mut(config, "config"));
        let bytes = ok_or_return!(try_slice(address, len, "address"));
        let Ok(text) = std::str::from_utf8(bytes) else {
            return fail(warpcore_result::InvalidAddress, "listen address is not UTF-8");
        };
        let mut candidate = config.inner.clone();
        if let Err(e) = candidate.add_listener(text) {
            return e.into();
        }
        if !config.listen_explicit {
            candidate.listen.clear();
        }
        config.inner = candidate;
        warpcore_result::Ok
    })
}

/// Removes every listener from `config`: those added (TLS ones included) and the address of
/// `warpcore_config_set_listen`, so that it listens on `127.0.0.1:8080` unless
/// listeners are added again (for a config that is reloaded with a new set).
#[no_mangle]
pub extern "C" fn warpcore_config_clear_listeners(config: *mut warpcore_config) -> warpcore_result {
    ffi_boundary!({
        let config = ok_or_return!(try_mut(config, "config"));
        config.inner.listen = DEFAULT_LISTEN.to_owned();
        config.inner.listeners.clear();
        config.inner.proxy_protocol.listeners.clear();
        config.inner.tls.clear();
        config.listen_explicit = false;
        warpcore_result::Ok
    })
}

/// Sets the mode (permission bits, such as `0660`, at most `07777`) and the
/// owner (`uid`, `gid`; -1 leaves either unchanged) of the Unix socket files
/// the server makes, applied before the socket listens. Without this call a
/// socket file has the mode the process's umask gives. Changing the owner
/// needs the privilege to (`WARPCORE_RESULT_IO_ERROR` at start otherwise).
/// Errors: `WARPCORE_RESULT_INVALID_ARGUMENT` for a mode over `07777` or an
/// id out of range (not -1 or 0 to 4294967294).
#[no_mangle]
pub extern "C" fn warpcore_config_set_unix_socket_mode(
    config: *mut warpcore_config,
    mode: u32,
    uid: i64,
    gid: i64,
) -> warpcore_result {
    ffi_boundary!({
        let id = |v: i64, what: &str| match v {
            -1 => Ok(None),
            0..=0xFFFF_FFFE => Ok(Some(v as u32)),
            _ => Err(fail(warpcore_result::InvalidArgument, format!("{what} must be -1 or 0 to 4294967294"))),
        };
        let uid = ok_or_return!(id(uid, "uid"));
        let gid = ok_or_return!(id(gid, "gid"));
        update(config, |c| c.unix_perms = crate::UnixPerms { mode: Some(mode), uid, gid })
    })
}

/// systemd socket activation: when `LISTEN_PID` is this process, adds
/// descriptors 3 to 3 + `LISTEN_FDS` - 1 as `fd://N` listeners (see
/// `warpcore_config_add_listener`), writes how many to `*count` (may be NULL)
/// and removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the
/// environment, as `sd_listen_fds(1)` does (call it before starting threads
/// that read the environment). When the variables are not set or name
/// another process, adds nothing, writes 0 and returns `WARPCORE_RESULT_OK`.
/// Errors: `WARPCORE_RESULT_INVALID_ARGUMENT` when `LISTEN_FDS` is not a
/// number (the variables are removed and nothing is added).
#[no_mangle]
pub extern "C" fn warpcore_config_add_systemd_listeners(
    config: *mut warpcore_config,
    count: *mut u32,
) -> warpcore_result {
    ffi_boundary!({
        let config = ok_or_return!(try_mut(config, "config"));
        let mut candidate = config.inner.clone();
        let added = match candidate.add_systemd_listeners() {
            Ok(n) => n,
            Err(e) => return e.into(),
        };
        if added > 0 {
            if !config.listen_explicit {
                candidate.listen.clear();
            }
            config.inner = candidate;
        }
        if !count.is_null() {
            write_out(count, added as u32);
        }
        warpcore_result::Ok
    })
}

/// How many listeners the server has (as started, or as the last reload left
/// them); 0 when `server` is NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn warpcore_server_listener_count(server: *const warpcore_server) -> u32 {
    ffi_boundary_or!(0, { try_ref(server, "server").map_or(0, |s| s.inner.listeners().len() as u32) })
}

/// Writes the address listener `index` listens on, as text
/// (`127.0.0.1:39211`, `[::1]:80`, `unix:/run/app.sock`; a descriptor handed
/// in shows its socket's address), NUL-terminated, into `buf` (`cap` bytes),
/// and its length without the NUL to `*needed` (may be NULL). Listeners are
/// numbered from 0 in the config's order. Errors:
/// `WARPCORE_RESULT_INVALID_ARGUMENT` for an index past the last listener;
/// `WARPCORE_RESULT_BUFFER_TOO_SMALL` when the text and its NUL do not fit
/// (`*needed` is written, `buf` is not: call with `buf` NULL and `cap` 0 to
/// learn the size). Thread-safe.
#[no_mangle]
pub extern "C" fn warpcore_server_listener_address(
    server: *const warpcore_server,
    index: u32,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> warpcore_result {
    ffi_boundary!({
        let server = ok_or_return!(try_ref(server, "server"));
        let listeners = server.inner.listeners();
        let Some(listener) = listeners.get(index as usize) else {
            return fail(
                warpcore_result::InvalidArgument,
                format!("listener {index} does not exist (the server has {})", listeners.len()),
            );
        };
        let text = listener.address.as_bytes();
        if !needed.is_null() {
            write_out(needed, text.len());
        }
        if cap < text.len() + 1 {
            if cap > 0 && buf.is_null() {
                return fail(warpcore_result::NullArgument, "buf is NULL");
            }
            return fail(
                warpcore_result::BufferTooSmall,
                format!("the address is {} bytes with its NUL, the buffer {cap}", text.len() + 1),
            );
        }
        let out = ok_or_return!(super::cast::try_slice_mut(buf.cast::<u8>(), cap, "buf"));
        out[..text.len()].copy_from_slice(text);
        out[text.len()] = 0;
        warpcore_result::Ok
    })
}

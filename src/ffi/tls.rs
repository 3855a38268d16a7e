//! `warpcore_tls`: how a listener speaks TLS (certificates, ALPN, client
//! certificates, session tickets, kernel TLS, the lowest version), and the
//! call that adds a TLS listener to a config.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::cast::{try_array, try_mut, try_ref, try_slice, try_slice_named, write_out};
use super::config::warpcore_config;
use super::request::warpcore_str;
use super::result::{fail, warpcore_result};
use crate::tls::{ClientAuth, TlsSetup};

symbol_versions!();

/// How a TLS listener speaks TLS: its certificates (at least one), ALPN,
/// client certificates, session tickets, kernel TLS and the lowest version.
/// Defaults: ALPN `http/1.1`, no client certificates, session tickets on,
/// kernel TLS on where the kernel has it, TLS 1.2 and 1.3.
///
/// Owned by the caller: made by `warpcore_tls_new`, released by
/// `warpcore_tls_free`. `warpcore_config_add_tls_listener` copies it, so it
/// may be changed, reused or freed right after. Not thread-safe: do not use
/// one from two threads at once.
pub struct warpcore_tls {
    inner: TlsSetup,
}

/// Whether a TLS listener asks clients for certificates, for
/// `warpcore_tls_set_client_auth_pem` and `_file`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum warpcore_tls_client_auth {
    /// None is asked for (the default).
    None = 0,
    /// One is asked for; a client without one is served too (the request
    /// view then shows no certificate). One that is presented must verify.
    Optional = 1,
    /// One that verifies is required: the handshake fails without it.
    Required = 2,
}

/// Makes a TLS setup with the defaults and no certificate, and writes it to `*out`.
#[no_mangle]
pub extern "C" fn warpcore_tls_new(out: *mut *mut warpcore_tls) -> warpcore_result {
    ffi_boundary!({
        if out.is_null() {
            return fail(warpcore_result::NullArgument, "out is NULL");
        }
        write_out(out, Box::into_raw(Box::new(warpcore_tls { inner: TlsSetup::new() })));
        warpcore_result::Ok
    })
}

/// Frees a TLS setup made by `warpcore_tls_new`. NULL is ignored. Configs it
/// was added to keep their copies.
#[no_mangle]
pub extern "C" fn warpcore_tls_free(tls: *mut warpcore_tls) {
    let _ = ffi_boundary!({
        if !tls.is_null() {
            // SAFETY: a non-NULL setup came from `Box::into_raw` in
            // `warpcore_tls_new`; the caller gives up its ownership here.
            drop(unsafe { Box::from_raw(tls) });
        }
        warpcore_result::Ok
    });
}

fn path(ptr: *const u8, len: usize, what: &str) -> Result<PathBuf, warpcore_result> {
    let bytes = try_slice(ptr, len, what)?;
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(fail(warpcore_result::InvalidArgument, format!("{what} is empty or contains NUL")));
    }
    Ok(PathBuf::from(OsStr::from_bytes(bytes)))
}

/// Adds a certificate chain and its private key from PEM files: the paths
/// are `chain_len` bytes at `chain_path` and `key_len` bytes at `key_path`
/// (no NUL needed). The chain file holds the server's certificate first,
/// then any intermediates; the key file one private key (PKCS#8, PKCS#1 RSA
/// or SEC1 EC). Both are read and checked now, and read again at every
/// `warpcore_server_start` and `warpcore_server_reload`: replacing the files
/// and reloading installs the new certificate for new connections, while
/// open ones go on with theirs.
///
/// The first certificate added is the default; the others are chosen by the
/// name a client asks for (SNI), matched against their DNS names
/// (subjectAltName, `*.example.com` covering one label).
///
/// Errors: `WARPCORE_RESULT_TLS` for a file that cannot be read, PEM without
/// a certificate or key, a key that is not the certificate's (the message
/// names the file); `WARPCORE_RESULT_NULL_ARGUMENT`,
/// `WARPCORE_RESULT_INVALID_ARGUMENT` for an empty path.
#[no_mangle]
pub extern "C" fn warpcore_tls_add_cert_files(
    tls: *mut warpcore_tls,
    chain_path: *const u8,
    chain_len: usize,
    key_path: *const u8,
    key_len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let tls = ok_or_return!(try_mut(tls, "tls"));
        let chain = ok_or_return!(path(chain_path, chain_len, "chain_path"));
        let key = ok_or_return!(path(key_path, key_len, "key_path"));
        match tls.inner.add_cert_files(chain, key) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => e.into(),
        }
    })
}

/// Adds a certificate chain and its private key given as PEM text in
/// memory (`chain_len` bytes at `chain_pem`, `key_len` at `key_pem`),
/// parsed and checked now; the library keeps what it parsed, not the text.
/// As `warpcore_tls_add_cert_files` otherwise (the first is the default,
/// the others chosen by SNI). Errors: `WARPCORE_RESULT_TLS`,
/// `WARPCORE_RESULT_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_tls_add_cert_pem(
    tls: *mut warpcore_tls,
    chain_pem: *const u8,
    chain_len: usize,
    key_pem: *const u8,
    key_len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let tls = ok_or_return!(try_mut(tls, "tls"));
        let chain = ok_or_return!(try_slice(chain_pem, chain_len, "chain_pem"));
        let key = ok_or_return!(try_slice(key_pem, key_len, "key_pem"));
        match tls.inner.add_cert_pem(chain, key) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => e.into(),
        }
    })
}

/// Sets the protocols offered by ALPN, in order of preference: `count`
/// strings at `protocols`. Only `http/1.1` is served for now (`h2` is
/// refused until the library speaks it); an empty list (`count` 0) turns
/// ALPN off. A client that offers ALPN without any of them fails its
/// handshake (`no_application_protocol`, RFC 7301). Errors:
/// `WARPCORE_RESULT_INVALID_ARGUMENT`, `WARPCORE_RESULT_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_tls_set_alpn(
    tls: *mut warpcore_tls,
    protocols: *const warpcore_str,
    count: usize,
) -> warpcore_result {
    ffi_boundary!({
        let tls = ok_or_return!(try_mut(tls, "tls"));
        let list = ok_or_return!(try_array(protocols, count, "protocols"));
        let mut names = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            names.push(ok_or_return!(try_slice_named(p.ptr, p.len, || format!("protocols[{i}]"))));
        }
        match tls.inner.set_alpn(&names) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => e.into(),
        }
    })
}

fn client_auth(mode: u32) -> Result<ClientAuth, warpcore_result> {
    match mode {
        x if x == warpcore_tls_client_auth::None as u32 => Ok(ClientAuth::None),
        x if x == warpcore_tls_client_auth::Optional as u32 => Ok(ClientAuth::Optional),
        x if x == warpcore_tls_client_auth::Required as u32 => Ok(ClientAuth::Required),
        other => Err(fail(warpcore_result::InvalidArgument, format!("unknown client certificate mode {other}"))),
    }
}

/// Asks clients for certificates: `mode` is a `warpcore_tls_client_auth`
/// value; they are checked against the CA certificates in the PEM text
/// `ca_pem` (`ca_len` bytes; ignored, and may be NULL, for
/// `WARPCORE_TLS_CLIENT_AUTH_NONE`). The handler sees a verified client's
/// chain in the request view (`tls_peer_certs`). Errors:
/// `WARPCORE_RESULT_INVALID_ARGUMENT` for an unknown mode,
/// `WARPCORE_RESULT_TLS` for PEM without a usable CA certificate,
/// `WARPCORE_RESULT_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_tls_set_client_auth_pem(
    tls: *mut warpcore_tls,
    mode: u32,
    ca_pem: *const u8,
    ca_len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let tls = ok_or_return!(try_mut(tls, "tls"));
        let mode = ok_or_return!(client_auth(mode));
        let ca = if mode == ClientAuth::None { &[][..] } else { ok_or_return!(try_slice(ca_pem, ca_len, "ca_pem")) };
        match tls.inner.set_client_auth_pem(mode, ca) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => e.into(),
        }
    })
}

/// `warpcore_tls_set_client_auth_pem` with the CA certificates in a PEM
/// file (`path_len` bytes at `ca_path`), read and checked now and read
/// again at every start and reload. Errors as there, and
/// `WARPCORE_RESULT_TLS` for a file that cannot be read.
#[no_mangle]
pub extern "C" fn warpcore_tls_set_client_auth_file(
    tls: *mut warpcore_tls,
    mode: u32,
    ca_path: *const u8,
    path_len: usize,
) -> warpcore_result {
    ffi_boundary!({
        let tls = ok_or_return!(try_mut(tls, "tls"));
        let mode = ok_or_return!(client_auth(mode));
        if mode == ClientAuth::None {
            tls.inner.set_client_auth_pem(mode, &[]).expect("no CA is needed");
            return warpcore_result::Ok;
        }
        let ca = ok_or_return!(path(ca_path, path_len, "ca_path"));
        match tls.inner.set_client_auth_file(mode, ca) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => e.into(),
        }
    })
}

/// Whether clients may resume sessions with tickets (TLS 1.3, and TLS 1.2's
/// RFC 5077 tickets), which spare the next handshake its key exchange and
/// signature. Default true. The ticket keys are the listener's, rotated
/// every few hours, and kept across reloads unless the reload changes who
/// may authenticate (client certificates asked for or not, other CA
/// certificates): then sessions from before are not resumed. Without
/// tickets, TLS 1.3 clients never resume, and TLS 1.2 clients may still
/// resume by session ID from a per-listener cache.
#[no_mangle]
pub extern "C" fn warpcore_tls_set_session_tickets(tls: *mut warpcore_tls, on: bool) -> warpcore_result {
    ffi_boundary!({
        ok_or_return!(try_mut(tls, "tls")).inner.set_session_tickets(on);
        warpcore_result::Ok
    })
}

/// Whether connections move to kernel TLS (Linux kTLS) after their
/// handshake, where the kernel takes the negotiated version and cipher
/// (AES-GCM, ChaCha20-Poly1305) both ways, as probed when the listener
/// starts or reloads: the kernel then encrypts and decrypts the records,
/// and files are sent with `sendfile` without passing through the process.
/// Elsewhere the library encrypts (a file is read and encrypted, one copy).
/// Default true. Such a connection ends on a TLS 1.3 key update from its
/// client, which kernel TLS does not take here.
#[no_mangle]
pub extern "C" fn warpcore_tls_set_ktls(tls: *mut warpcore_tls, on: bool) -> warpcore_result {
    ffi_boundary!({
        ok_or_return!(try_mut(tls, "tls")).inner.set_ktls(on);
        warpcore_result::Ok
    })
}

/// Whether a client must ask (SNI) for a name one of the certificates has
/// (their DNS names, `*.example.com` covering one label). `on` true: a
/// client that asks for another name, or for none (as clients connecting to
/// an IP address do), fails its handshake with an `unrecognized_name` alert
/// (RFC 6066), counted in `tls_handshake_failures`. Default false: such a
/// client gets the first certificate (which it then usually refuses).
/// Errors: `WARPCORE_RESULT_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_tls_set_require_sni_match(tls: *mut warpcore_tls, on: bool) -> warpcore_result {
    ffi_boundary!({
        ok_or_return!(try_mut(tls, "tls")).inner.set_require_sni_match(on);
        warpcore_result::Ok
    })
}

/// The lowest TLS version accepted: `0x0303` (TLS 1.2, the default) or
/// `0x0304` (TLS 1.3 only). Errors: `WARPCORE_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn warpcore_tls_set_min_version(tls: *mut warpcore_tls, version: u16) -> warpcore_result {
    ffi_boundary!({
        let tls = ok_or_return!(try_mut(tls, "tls"));
        match tls.inner.set_min_version(version) {
            Ok(()) => warpcore_result::Ok,
            Err(e) => e.into(),
        }
    })
}

/// Adds a listener that speaks TLS as `tls` says (copied: `tls` may be
/// freed after): `len` bytes at `address`, any form of
/// `warpcore_config_add_listener` (TLS over a Unix socket or a descriptor
/// handed in works too). An address that is a listener already (that of
/// `warpcore_config_set_listen`, or one added before) becomes TLS, or has
/// its TLS setup replaced, and is not added twice. A reload with a config whose TLS listener keeps its address keeps
/// its socket and reads its certificate files again. Errors:
/// `WARPCORE_RESULT_TLS` when `tls` has no certificate,
/// `WARPCORE_RESULT_INVALID_ADDRESS`, `WARPCORE_RESULT_NULL_ARGUMENT`;
/// certificate files that can no longer be read are
/// `WARPCORE_RESULT_TLS` at start or reload.
#[no_mangle]
pub extern "C" fn warpcore_config_add_tls_listener(
    config: *mut warpcore_config,
    address: *const u8,
    len: usize,
    tls: *const warpcore_tls,
) -> warpcore_result {
    ffi_boundary!({
        let config = ok_or_return!(try_mut(config, "config"));
        let bytes = ok_or_return!(try_slice(address, len, "address"));
        let tls = ok_or_return!(try_ref(tls, "tls"));
        let Ok(text) = std::str::from_utf8(bytes) else {
            return fail(warpcore_result::InvalidAddress, "listen address is not UTF-8");
        };
        let mut candidate = config.inner.clone();
        match candidate.add_tls_listener(text, tls.inner.clone()) {
            Ok(true) if !config.listen_explicit => candidate.listen.clear(),
            Ok(_) => {}
            Err(e) => return e.into(),
        }
        config.inner = candidate;
        warpcore_result::Ok
    })
}

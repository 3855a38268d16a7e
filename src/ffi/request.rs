//! `warpcore_request`: a plain struct view of a request, readable in one go by
//! ctypes `Structure` or Haskell `peek`.

use std::cell::RefCell;

use crate::app::handler::Request;

/// A byte string: `len` bytes at `ptr`, not NUL-terminated. `ptr` may be NULL
/// only when `len` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct warpcore_str {
    /// The first byte.
    pub ptr: *const u8,
    /// How many bytes.
    pub len: usize,
}

impl warpcore_str {
    pub(crate) fn of(bytes: &[u8]) -> warpcore_str {
        warpcore_str { ptr: bytes.as_ptr(), len: bytes.len() }
    }
}

/// One header field: its name as sent (compare case-insensitively) and its value
/// without surrounding whitespace.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct warpcore_header {
    /// The field name.
    pub name: warpcore_str,
    /// The field value.
    pub value: warpcore_str,
}

/// A request, as the handler sees it.
///
/// Borrowed: the struct and every byte it points to belong to the library and
/// are valid only until the handler returns. Copy what must outlive the call.
/// Later releases may add fields at the end (never move one): read it through
/// the library's pointer, never allocate or copy a whole one.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct warpcore_request {
    /// The method (`GET`, `POST`, …).
    pub method: warpcore_str,
    /// The request target as sent (`/a%20b?x=1`).
    pub target: warpcore_str,
    /// The path, percent-decoded (`/a b`). For an absolute-form target, the path part.
    pub path: warpcore_str,
    /// The query without `?`, not decoded; empty when there is none.
    pub query: warpcore_str,
    /// The header fields in the order received.
    pub headers: *const warpcore_header,
    /// How many header fields `headers` holds.
    pub header_count: usize,
    /// The whole request body, chunked coding removed; empty when there is
    /// none, and when `body_follows` (the body then streams).
    pub body: warpcore_str,
    /// The client's IP address as text (`127.0.0.1`, `::1`); `unix:` for a
    /// client of a Unix socket (as nginx's `$remote_addr`).
    pub peer_ip: warpcore_str,
    /// The client's port; 0 for a client of a Unix socket.
    pub peer_port: u16,
    /// The HTTP major version: always 1.
    pub version_major: u8,
    /// The HTTP minor version: 0 or 1.
    pub version_minor: u8,
    /// The index of the worker that read the request (0-based).
    pub worker_index: u32,
    /// True when the body is larger than the whole-body maximum
    /// (`warpcore_config_set_whole_body_max`) and did not arrive with the head:
    /// `body` is empty and the body is read as it arrives, through
    /// `warpcore_response_body`. (Added in 0.2: the struct only grows at its end.)
    pub body_follows: bool,
    /// True when the connection speaks TLS (a listener added with
    /// `warpcore_config_add_tls_listener`). The `tls_` fields were added in
    /// 0.3; on a plain connection they are 0, empty and NULL.
    pub tls: bool,
    /// The TLS session was resumed (a ticket or session ID) rather than made
    /// by a full handshake.
    pub tls_resumed: bool,
    /// The TLS version: `0x0303` (TLS 1.2) or `0x0304` (TLS 1.3).
    pub tls_version: u16,
    /// The cipher suite's IANA number (`0x1301` is TLS_AES_128_GCM_SHA256,
    /// `0xC02B` TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256).
    pub tls_cipher: u16,
    /// The host name the client asked for (SNI), in lowercase (the TLS
    /// library lowercases it: `Example.COM` reads `example.com`); empty
    /// when it named none (a client that connects to an IP address).
    pub tls_sni: warpcore_str,
    /// The protocol agreed by ALPN (`http/1.1`); empty when the client
    /// offered none.
    pub tls_alpn: warpcore_str,
    /// The client's certificate chain (DER, its own certificate first),
    /// verified against the CA of `warpcore_tls_set_client_auth_pem`;
    /// NULL when it presented none.
    pub tls_peer_certs: *const warpcore_str,
    /// How many certificates `tls_peer_certs` holds.
    pub tls_peer_cert_count: usize,
}

/// Builds the C view of `req`, with its header views in `cell` (the thread's),
/// and passes it to `f`.
pub(crate) fn with_view<R>(
    cell: &RefCell<Vec<warpcore_header>>,
    req: &Request<'_>,
    f: impl FnOnce(&warpcore_request) -> R,
) -> R {
    // A handler that starts a nested server call on this thread would find
    // the cell borrowed; fall back to a fresh vector then.
    let mut owned;
    let mut borrowed;
    let views: &mut Vec<warpcore_header> = match cell.try_borrow_mut() {
        Ok(b) => {
            borrowed = b;
            &mut borrowed
        }
        Err(_) => {
            owned = Vec::new();
            &mut owned
        }
    };
    views.clear();
    views.extend(
        req.headers
            .iter()
            .map(|h| warpcore_header { name: warpcore_str::of(h.name.as_bytes()), value: warpcore_str::of(h.value) }),
    );
    // The client's chain, when there is one (mutual TLS): on the stack for
    // the usual few certificates.
    let tls = req.tls;
    let peer_certs = tls.map_or(&[][..], |t| &t.peer_certs[..]);
    let mut few = [warpcore_str::of(&[]); 8];
    let many: Vec<warpcore_str>;
    let certs: &[warpcore_str] = if peer_certs.len() <= few.len() {
        for (slot, cert) in few.iter_mut().zip(peer_certs) {
            *slot = warpcore_str::of(cert);
        }
        &few[..peer_certs.len()]
    } else {
        many = peer_certs.iter().map(|c| warpcore_str::of(c)).collect();
        &many
    };
    let view = warpcore_request {
        method: warpcore_str::of(req.method),
        target: warpcore_str::of(req.target),
        path: warpcore_str::of(req.path),
        query: warpcore_str::of(req.query),
        headers: views.as_ptr(),
        header_count: views.len(),
        body: warpcore_str::of(req.body),
        peer_ip: warpcore_str::of(req.peer_ip),
        peer_port: req.peer.port(),
        version_major: 1,
        version_minor: req.minor_version,
        worker_index: req.worker_index as u32,
        body_follows: req.body_follows,
        tls: tls.is_some(),
        tls_resumed: tls.is_some_and(|t| t.resumed),
        tls_version: tls.map_or(0, |t| t.version),
        tls_cipher: tls.map_or(0, |t| t.cipher),
        tls_sni: warpcore_str::of(tls.map_or(&b""[..], |t| t.sni.as_bytes())),
        tls_alpn: warpcore_str::of(tls.map_or(&b""[..], |t| &t.alpn[..])),
        tls_peer_certs: if certs.is_empty() { std::ptr::null() } else { certs.as_ptr() },
        tls_peer_cert_count: certs.len(),
    };
    f(&view)
}

//! `TlsInfo`: what a handler may learn of its connection's TLS, captured
//! once when the handshake completes (the session itself may move into the
//! kernel after that).

use rustls::pki_types::CertificateDer;
use rustls::server::ServerConnection;

/// A TLS connection's negotiated parameters.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// The protocol version: `0x0303` (TLS 1.2) or `0x0304` (TLS 1.3).
    pub version: u16,
    /// The IANA number of the cipher suite (`0x1301` is TLS_AES_128_GCM_SHA256).
    pub cipher: u16,
    /// The host name the client asked for (SNI), lowercase (rustls
    /// lowercases it); empty when it named none.
    pub sni: Box<str>,
    /// The protocol agreed by ALPN (`http/1.1`); empty when none was.
    pub alpn: Box<[u8]>,
    /// The client's certificate chain, DER, its own certificate first; empty
    /// when it presented none.
    pub peer_certs: Box<[CertificateDer<'static>]>,
    /// The session was resumed (a ticket or session ID), not a full handshake.
    pub resumed: bool,
    /// The kernel encrypts and decrypts the connection's records (kTLS).
    pub kernel: bool,
}

impl TlsInfo {
    /// Reads the parameters of a connection whose handshake has completed.
    pub(crate) fn of(conn: &ServerConnection) -> TlsInfo {
        TlsInfo {
            version: conn.protocol_version().map_or(0, u16::from),
            cipher: conn.negotiated_cipher_suite().map_or(0, |s| u16::from(s.suite())),
            sni: conn.server_name().unwrap_or("").into(),
            alpn: conn.alpn_protocol().unwrap_or(b"").into(),
            peer_certs: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            resumed: matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
            kernel: false,
        }
    }
}

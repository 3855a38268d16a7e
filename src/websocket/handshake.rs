//! The server's half of the opening handshake (RFC 6455 §4.2): whether a
//! request is a WebSocket handshake, and its `Sec-WebSocket-Accept`.

use sha1::{Digest, Sha1};

use crate::app::upgrade::UpgradeRequest;

/// The GUID RFC 6455 appends to the client's key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a request is not a WebSocket handshake the server can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a GET with `Connection: upgrade` and `Upgrade: websocket`.
    NotWebSocket,
    /// `Sec-WebSocket-Version` is not 13: answer `426` with
    /// `Sec-WebSocket-Version: 13`.
    Version,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes in base64: answer `400`.
    Key,
}

impl HandshakeError {
    /// A sentence for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            HandshakeError::NotWebSocket => {
                "not a WebSocket handshake (a GET with Connection: upgrade and Upgrade: websocket)"
            }
            HandshakeError::Version => "Sec-WebSocket-Version is not 13 (answer 426 with Sec-WebSocket-Version: 13)",
            HandshakeError::Key => "Sec-WebSocket-Key is missing or not 16 bytes in base64 (answer 400)",
        }
    }
}

/// Checks the handshake and returns the `Sec-WebSocket-Accept` value.
pub fn accept_value(request: Option<&UpgradeRequest>) -> Result<[u8; 28], HandshakeError> {
    let request = request.ok_or(HandshakeError::NotWebSocket)?;
    if !request.is_get || !request.offers(b"websocket") {
        return Err(HandshakeError::NotWebSocket);
    }
    if request.websocket_version.as_deref() != Some(b"13") {
        return Err(HandshakeError::Version);
    }
    let key = request.websocket_key.as_deref().ok_or(HandshakeError::Key)?;
    if !is_base64_of_16_bytes(key) {
        return Err(HandshakeError::Key);
    }
    Ok(accept_key(key))
}

/// base64(SHA-1(key + GUID)), 28 characters.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let digest: [u8; 20] = sha.finalize().into();
    let mut out = [b'='; 28];
    for (i, chunk) in digest.chunks(3).enumerate() {
        let n = chunk.iter().enumerate().fold(0u32, |n, (j, &b)| n | (b as u32) << (16 - 8 * j));
        for k in 0..=chunk.len() {
            out[i * 4 + k] = ALPHABET[(n >> (18 - 6 * k) & 63) as usize];
        }
    }
    out
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// 16 bytes in base64 are 22 characters and `==`; the last character carries
/// 2 bits, so its low 4 must be zero (`A`, `Q`, `g` or `w`).
fn is_base64_of_16_bytes(key: &[u8]) -> bool {
    key.len() == 24
        && key[22..] == *b"=="
        && key[..22].iter().all(|b| ALPHABET.contains(b))
        && ALPHABET.iter().position(|&a| a == key[21]).is_some_and(|v| v & 15 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_key_gives_its_accept_value() {
        // RFC 6455 §1.3.
        assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn keys_must_be_sixteen_bytes_in_base64() {
        assert!(is_base64_of_16_bytes(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_base64_of_16_bytes(b"dGhlIHNhbXBsZSBub25jZR=="), "stray low bits");
        assert!(!is_base64_of_16_bytes(b"dGhlIHNhbXBsZSBub25j"));
        assert!(!is_base64_of_16_bytes(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_base64_of_16_bytes(b"dGhlIHNhbXBsZSBub2*jZQ=="));
    }
}

//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in front
//! of the server opens each connection with a header that says whose it is,
//! and that client's address becomes the connection's peer. A listener takes
//! it as nginx's `proxy_protocol` and Warp's `setProxyProtocol*` do:
//!
//! - `None`: no header is expected (bytes that look like one are HTTP);
//! - `Required`: every connection must start with a header, or it is closed;
//! - `Optional`: a header is taken when the connection starts with one (only
//!   for listeners every client of which is trusted: any client may claim any
//!   address with it).
//!
//! Bounded: a version 1 header is at most 107 bytes (the specification's
//! limit); a version 2 header at most the head limit it is given (the 16
//! bytes of its fixed part and what its length field announces, refused as
//! soon as that length is read); a header that does not arrive whole within
//! the header timeout closes the connection like a slow request head.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};

/// Whether a listener's connections start with a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(u8)]
pub enum ProxyProtocol {
    /// No header is expected (the default).
    #[default]
    None = 0,
    /// Every connection must start with one; one without, or with a malformed
    /// one, is closed before anything else is read.
    Required = 1,
    /// A connection may start with one; one that does not is plain HTTP.
    Optional = 2,
}

impl ProxyProtocol {
    /// The mode for a number of the C API (`warpcore_proxy_protocol`).
    pub fn from_u32(n: u32) -> Option<ProxyProtocol> {
        match n {
            0 => Some(ProxyProtocol::None),
            1 => Some(ProxyProtocol::Required),
            2 => Some(ProxyProtocol::Optional),
            _ => None,
        }
    }
}

/// The PROXY protocol settings of a config: a mode for every listener, and
/// modes of their own for listeners named by their address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyProtocols {
    /// The mode of listeners not named in `listeners`.
    pub default: ProxyProtocol,
    /// Listeners with a mode of their own, by the address the config names them with.
    pub listeners: Vec<(String, ProxyProtocol)>,
}

impl ProxyProtocols {
    /// The mode of the listener the config names `address`.
    pub fn mode_for(&self, address: &str) -> ProxyProtocol {
        self.listeners.iter().rev().find(|(a, _)| a == address).map_or(self.default, |(_, m)| *m)
    }
}

/// A listener's mode as the workers read it at each accept; the server sets
/// it at start and on every reload (so a reload may change it for a listener
/// it keeps).
#[derive(Debug, Default)]
pub(crate) struct ProxySetting(AtomicU8);

impl ProxySetting {
    pub fn get(&self) -> ProxyProtocol {
        match self.0.load(Ordering::Relaxed) {
            1 => ProxyProtocol::Required,
            2 => ProxyProtocol::Optional,
            _ => ProxyProtocol::None,
        }
    }

    pub fn set(&self, mode: ProxyProtocol) {
        self.0.store(mode as u8, Ordering::Relaxed);
    }
}

/// The longest version 1 header, CRLF included (the specification's bound).
pub(crate) const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;

/// What the start of a connection's input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// Not enough bytes to tell: at least this many are needed in all (0
    /// when unknown).
    Incomplete(usize),
    /// A header of `len` bytes; `peer` is the client it names (None: keep
    /// the socket's, for `UNKNOWN`, `LOCAL` and non-TCP families).
    Found { len: usize, peer: Option<SocketAddr> },
    /// No header, in `Optional` mode: the bytes are HTTP.
    Absent,
    /// A malformed header, or none where one is required: close.
    Invalid(&'static str),
}

/// Reads the header at the start of `input` for a listener in `mode` (not
/// `None`); a version 2 header longer than `max` bytes is invalid.
pub(crate) fn parse(input: &[u8], mode: ProxyProtocol, max: usize) -> Header {
    if input.starts_with(V1_PREFIX) {
        return parse_v1(input);
    }
    if input.starts_with(V2_SIGNATURE) {
        return parse_v2(input, max);
    }
    if V1_PREFIX.starts_with(input) || V2_SIGNATURE.starts_with(input) {
        return Header::Incomplete(0);
    }
    match mode {
        ProxyProtocol::Optional => Header::Absent,
        _ => Header::Invalid("the connection did not start with a PROXY protocol header"),
    }
}

fn parse_v1(input: &[u8]) -> Header {
    let window = &input[..input.len().min(V1_MAX)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        return if input.len() >= V1_MAX {
            Header::Invalid("a PROXY v1 header longer than 107 bytes")
        } else {
            Header::Incomplete(0)
        };
    };
    let len = cr + 2;
    let Ok(line) = std::str::from_utf8(&input[V1_PREFIX.len()..cr]) else {
        return Header::Invalid("a PROXY v1 header that is not ASCII");
    };
    let mut parts = line.split(' ');
    let peer = match parts.next() {
        Some("UNKNOWN") => return Header::Found { len, peer: None },
        Some("TCP4") => v1_addresses(&mut parts, |s| s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)),
        Some("TCP6") => v1_addresses(&mut parts, |s| s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)),
        _ => None,
    };
    match peer {
        Some(peer) if parts.next().is_none() => Header::Found { len, peer: Some(peer) },
        _ => Header::Invalid("a malformed PROXY v1 header"),
    }
}

/// `SRC DST SRCPORT DSTPORT` of a v1 header: the source address and port.
fn v1_addresses<'a>(
    parts: &mut impl Iterator<Item = &'a str>,
    ip: impl Fn(&str) -> Option<IpAddr>,
) -> Option<SocketAddr> {
    let src = ip(parts.next()?)?;
    ip(parts.next()?)?;
    let src_port = v1_port(parts.next()?)?;
    v1_port(parts.next()?)?;
    Some(SocketAddr::new(src, src_port))
}

/// A port in decimal, without a sign or a leading zero.
fn v1_port(text: &str) -> Option<u16> {
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    plain.then(|| text.parse().ok()).flatten()
}

fn parse_v2(input: &[u8], max: usize) -> Header {
    if input.len() < V2_FIXED {
        return Header::Incomplete(V2_FIXED);
    }
    let (version_command, family) = (input[12], input[13]);
    let len = V2_FIXED + u16::from_be_bytes([input[14], input[15]]) as usize;
    let local = match version_command {
        0x20 => true,
        0x21 => false,
        _ => return Header::Invalid("a PROXY v2 header with an unknown version or command"),
    };
    // Address block sizes by family (RFC-like table of the specification).
    // LOCAL ignores the family and its block, whatever they are (the
    // specification: the receiver must accept the connection as valid).
    let needs = match family {
        _ if local => 0,
        0x00 => 0,
        0x11 | 0x12 => 12,
        0x21 | 0x22 => 36,
        0x31 | 0x32 => 216,
        _ => return Header::Invalid("a PROXY v2 header with an unknown address family"),
    };
    if len > max {
        return Header::Invalid("a PROXY v2 header longer than the head limit");
    }
    if len - V2_FIXED < needs {
        return Header::Invalid("a PROXY v2 header too short for its addresses");
    }
    if input.len() < len {
        return Header::Incomplete(len);
    }
    let body = &input[V2_FIXED..len];
    let peer = match family {
        _ if local => None,
        0x11 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([body[8], body[9]])))
        }
        0x21 => {
            let octets: [u8; 16] = body[..16].try_into().unwrap_or([0; 16]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), u16::from_be_bytes([body[32], body[33]])))
        }
        // UNSPEC, datagrams and Unix sockets: the socket's own peer stands.
        _ => None,
    };
    Header::Found { len, peer }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 32 * 1024;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[command, family]);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn version_1_forms() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(h, ProxyProtocol::Required, MAX),
            Header::Found { len: 45, peer: Some("192.0.2.1:56324".parse().unwrap()) }
        );
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
        assert_eq!(
            parse(h, ProxyProtocol::Optional, MAX),
            Header::Found { len: h.len(), peer: Some("[2001:db8::1]:1".parse().unwrap()) }
        );
        let h = b"PROXY UNKNOWN ffff::1 whatever\r\n";
        assert_eq!(parse(h, ProxyProtocol::Required, MAX), Header::Found { len: h.len(), peer: None });
        for bad in [
            &b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n"[..],
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 x\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 065535 1\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 1\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 1\r\n",
            b"PROXY TCP4  192.0.2.1 198.51.100.2 1 1\r\n",
            b"PROXY TCP4 192.000.2.1 198.51.100.2 1 1\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.2 1 1\r\n",
            b"PROXY \xff\r\n",
        ] {
            assert!(matches!(parse(bad, ProxyProtocol::Required, MAX), Header::Invalid(_)), "{bad:?}");
        }
        // No CRLF within 107 bytes: refused without waiting for more.
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 100]].concat();
        assert!(matches!(parse(&long, ProxyProtocol::Required, MAX), Header::Invalid(_)));
        assert_eq!(parse(&long[..60], ProxyProtocol::Required, MAX), Header::Incomplete(0));
    }

    #[test]
    fn version_2_forms() {
        let mut v4 = vec![192, 0, 2, 1, 198, 51, 100, 2];
        v4.extend_from_slice(&56324u16.to_be_bytes());
        v4.extend_from_slice(&443u16.to_be_bytes());
        let h = v2(0x21, 0x11, &v4);
        assert_eq!(
            parse(&h, ProxyProtocol::Required, MAX),
            Header::Found { len: 28, peer: Some("192.0.2.1:56324".parse().unwrap()) }
        );
        // TLVs after the addresses are skipped.
        let mut with_tlv = v4.clone();
        with_tlv.extend_from_slice(&[0xEA, 0, 3, b'v', b'p', b'c']);
        let h = v2(0x21, 0x11, &with_tlv);
        assert_eq!(
            parse(&h, ProxyProtocol::Required, MAX),
            Header::Found { len: 34, peer: Some("192.0.2.1:56324".parse().unwrap()) }
        );
        let mut v6 = vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        v6.extend_from_slice(&[0; 16]);
        v6.extend_from_slice(&8080u16.to_be_bytes());
        v6.extend_from_slice(&80u16.to_be_bytes());
        let h = v2(0x21, 0x21, &v6);
        assert_eq!(
            parse(&h, ProxyProtocol::Required, MAX),
            Header::Found { len: 52, peer: Some("[2001:db8::1]:8080".parse().unwrap()) }
        );
        // LOCAL (a health check of the balancer's own) and UNSPEC keep the socket's peer.
        assert_eq!(parse(&v2(0x20, 0x00, &[]), ProxyProtocol::Required, MAX), Header::Found { len: 16, peer: None });
        // LOCAL with a family no PROXY command may carry, and a block too
        // short for the one it names: both ignored, as the specification says.
        assert_eq!(
            parse(&v2(0x20, 0x44, &[9; 3]), ProxyProtocol::Required, MAX),
            Header::Found { len: 19, peer: None }
        );
        assert_eq!(parse(&v2(0x20, 0x11, &[]), ProxyProtocol::Required, MAX), Header::Found { len: 16, peer: None });
        assert!(matches!(parse(&v2(0x21, 0x44, &[]), ProxyProtocol::Required, MAX), Header::Invalid(_)));
        assert_eq!(parse(&v2(0x20, 0x11, &v4), ProxyProtocol::Required, MAX), Header::Found { len: 28, peer: None });
        assert_eq!(
            parse(&v2(0x21, 0x00, &[1, 2]), ProxyProtocol::Required, MAX),
            Header::Found { len: 18, peer: None }
        );
        assert_eq!(
            parse(&v2(0x21, 0x31, &[0; 216]), ProxyProtocol::Required, MAX),
            Header::Found { len: 232, peer: None }
        );
        for bad in [
            v2(0x22, 0x11, &v4),
            v2(0x11, 0x11, &v4),
            v2(0x21, 0x13, &v4),
            v2(0x21, 0x11, &v4[..11]),
            v2(0x21, 0x21, &v4),
        ] {
            assert!(matches!(parse(&bad, ProxyProtocol::Required, MAX), Header::Invalid(_)), "{bad:?}");
        }
        // A length past the limit is refused as soon as it is read.
        let big = v2(0x21, 0x11, &vec![0; 5000]);
        assert!(matches!(parse(&big[..16], ProxyProtocol::Required, 4096), Header::Invalid(_)));
        assert_eq!(parse(&big[..100], ProxyProtocol::Required, MAX), Header::Incomplete(5016));
        assert_eq!(parse(&h[..15], ProxyProtocol::Required, MAX), Header::Incomplete(16));
    }

    #[test]
    fn absent_or_partial() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n", ProxyProtocol::Optional, MAX), Header::Absent);
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n", ProxyProtocol::Required, MAX), Header::Invalid(_)));
        for partial in [&b""[..], b"P", b"PROXY", b"\r\n\r\n\0\r\nQUI"] {
            assert_eq!(parse(partial, ProxyProtocol::Optional, MAX), Header::Incomplete(0), "{partial:?}");
        }
        // An HTTP request with leading empty lines is not a v2 signature.
        assert_eq!(parse(b"\r\nGET / HTTP/1.1\r\n", ProxyProtocol::Optional, MAX), Header::Absent);
    }

    #[test]
    fn modes_by_listener() {
        let p = ProxyProtocols {
            default: ProxyProtocol::Optional,
            listeners: vec![("127.0.0.1:0".into(), ProxyProtocol::Required), ("unix:/a".into(), ProxyProtocol::None)],
        };
        assert_eq!(p.mode_for("127.0.0.1:0"), ProxyProtocol::Required);
        assert_eq!(p.mode_for("unix:/a"), ProxyProtocol::None);
        assert_eq!(p.mode_for("fd://3"), ProxyProtocol::Optional);
        let s = ProxySetting::default();
        assert_eq!(s.get(), ProxyProtocol::None);
        s.set(ProxyProtocol::Optional);
        assert_eq!(s.get(), ProxyProtocol::Optional);
        assert_eq!(ProxyProtocol::from_u32(3), None);
    }
}

//! Who is at the other end of a connection: an IP address and port, or a
//! process on a Unix socket (which has no address worth showing: clients of
//! a listening Unix socket are unnamed).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// A connection's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A TCP client's address and port.
    Ip(SocketAddr),
    /// A client of a Unix socket.
    Unix,
}

impl Peer {
    /// The client's port; 0 on a Unix socket.
    pub fn port(&self) -> u16 {
        match self {
            Peer::Ip(addr) => addr.port(),
            Peer::Unix => 0,
        }
    }

    /// The client's IP address; None on a Unix socket.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Ip(addr) => Some(addr.ip()),
            Peer::Unix => None,
        }
    }

    /// The client's address and port; None on a Unix socket.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Peer::Ip(addr) => Some(*addr),
            Peer::Unix => None,
        }
    }

    /// Whether the client came through a Unix socket.
    pub fn is_unix(&self) -> bool {
        matches!(self, Peer::Unix)
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        Peer::Ip(addr)
    }
}

impl fmt::Display for Peer {
    /// `127.0.0.1:4711`, `[::1]:4711`, or `unix:` (as nginx's `$remote_addr`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(addr) => addr.fmt(f),
            Peer::Unix => f.write_str("unix:"),
        }
    }
}

/// The peer's IP address as text (`127.0.0.1`, `::1`, or `unix:`), formatted
/// once per connection for the C view and the access log.
pub(crate) struct PeerText {
    bytes: [u8; 46],
    len: u8,
}

impl PeerText {
    pub fn new(peer: &Peer) -> PeerText {
        use std::io::Write;
        let mut bytes = [0u8; 46];
        let mut cursor = std::io::Cursor::new(&mut bytes[..]);
        let _ = match peer {
            Peer::Ip(addr) => write!(cursor, "{}", addr.ip()),
            Peer::Unix => cursor.write_all(b"unix:"),
        };
        let len = cursor.position() as u8;
        PeerText { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_each_kind() {
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        assert_eq!(PeerText::new(&Peer::Ip(v6)).as_bytes(), b"2001:db8::1");
        let v4: SocketAddr = "127.0.0.1:5".parse().unwrap();
        assert_eq!(PeerText::new(&v4.into()).as_bytes(), b"127.0.0.1");
        assert_eq!(PeerText::new(&Peer::Unix).as_bytes(), b"unix:");
        assert_eq!((Peer::Unix.port(), Peer::Unix.to_string()), (0, "unix:".to_owned()));
        // The longest IPv6 text fits.
        let long: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:1".parse().unwrap();
        assert_eq!(PeerText::new(&long.into()).as_bytes(), long.ip().to_string().as_bytes());
    }
}

//! Listening sockets. A server has one or more listeners, each from an address:
//!
//! - `HOST:PORT` (`[V6]:PORT`): TCP, one `SO_REUSEPORT` socket per worker, so
//!   the kernel spreads connections over the workers;
//! - `unix:PATH`: a Unix stream socket (see `unix_path`);
//! - `fd://N`: a listening socket the embedder hands in (systemd, a supervisor).
//!
//! The last two are one socket, which every worker polls with `EPOLLEXCLUSIVE`
//! (see `sys::epoll`), so that a connection wakes one worker, not all.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use super::proxy_protocol::ProxySetting;
use super::unix_path::{SocketFile, UnixPerms};
use crate::error::{Error, ErrorKind};

/// The longest Unix socket path (`sun_path` holds 108 bytes with its NUL).
const MAX_UNIX_PATH: usize = 107;

/// A listen address, parsed (not yet resolved or bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenSpec {
    /// `HOST:PORT`, resolved when bound.
    Tcp(String),
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `fd://N`.
    Fd(RawFd),
}

impl ListenSpec {
    /// Checks the form of `text` (a host name is resolved only when bound).
    pub fn parse(text: &str) -> Result<ListenSpec, Error> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() || path.len() > MAX_UNIX_PATH || path.contains('\0') {
                return Err(Error::new(
                    ErrorKind::InvalidAddress,
                    format!("'{text}': a Unix socket path is 1 to {MAX_UNIX_PATH} bytes without NUL"),
                ));
            }
            return Ok(ListenSpec::Unix(PathBuf::from(path)));
        }
        if let Some(number) = text.strip_prefix("fd://") {
            let fd = number.parse::<RawFd>().ok().filter(|fd| *fd >= 0 && number.bytes().all(|b| b.is_ascii_digit()));
            return fd.map(ListenSpec::Fd).ok_or_else(|| {
                Error::new(ErrorKind::InvalidAddress, format!("'{text}': fd://N takes a descriptor number"))
            });
        }
        if text.parse::<SocketAddr>().is_ok() {
            return Ok(ListenSpec::Tcp(text.to_owned()));
        }
        let bad = || {
            Error::new(
                ErrorKind::InvalidAddress,
                format!("listen address '{text}' is not HOST:PORT, [V6]:PORT, unix:PATH or fd://N"),
            )
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || host.contains(['[', ']', ':', '/', ' ']) || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        Ok(ListenSpec::Tcp(text.to_owned()))
    }
}

/// Resolves `HOST:PORT` (IPv6 hosts in brackets) to one address.
pub(crate) fn resolve(listen: &str) -> Result<SocketAddr, Error> {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = || Error::new(ErrorKind::InvalidAddress, format!("listen address '{listen}' is not HOST:PORT"));
    listen
        .to_socket_addrs()
        .map_err(|e| Error::new(ErrorKind::InvalidAddress, format!("cannot resolve '{listen}': {e}")))?
        .next()
        .ok_or_else(bad)
}

/// What binding needs besides the address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BindOptions {
    pub workers: usize,
    pub backlog: u32,
    pub share_port: bool,
    pub unix: UnixPerms,
}

/// A bound listener: its sockets, and what to show of it.
pub(crate) struct Listener {
    /// The address as the config gave it.
    pub requested: String,
    /// The address it listens on, as text (`127.0.0.1:39211`, `unix:/run/a.sock`).
    pub address: String,
    /// The bound address of a TCP listener (an inherited one included).
    pub tcp_addr: Option<SocketAddr>,
    /// The socket file this listener made, removed with it (before the
    /// socket closes: see `SocketFile`).
    _file: Option<SocketFile>,
    /// One socket per worker (TCP), or one that every worker polls.
    sockets: Vec<Socket>,
    /// Accepted connections are TCP (they get `TCP_NODELAY`).
    tcp: bool,
    /// Handed in by the embedder: left open if a start or reload fails.
    inherited: bool,
    /// Whether its connections start with a PROXY protocol header (set by
    /// the server from each config it starts or reloads with).
    pub proxy: ProxySetting,
}

impl Listener {
    /// Binds (or, for `fd://N`, checks) the listener `text` asks for;
    /// `owned` are the descriptors the server already has as listeners,
    /// which `fd://N` may not name again.
    pub fn bind(text: &str, options: &BindOptions, owned: &[RawFd]) -> Result<Listener, Error> {
        match ListenSpec::parse(text)? {
            ListenSpec::Tcp(host_port) => {
                let addr = resolve(&host_port)?;
                let sockets = bind_tcp(addr, options.workers.max(1), options.backlog, options.share_port)?;
                let bound = local_addr(&sockets[0])?;
                Ok(Listener {
                    requested: text.to_owned(),
                    address: bound.to_string(),
                    tcp_addr: Some(bound),
                    sockets,
                    tcp: true,
                    inherited: false,
                    _file: None,
                    proxy: ProxySetting::default(),
                })
            }
            ListenSpec::Unix(path) => {
                let (socket, file) = super::unix_path::bind(&path, options.backlog, &options.unix)?;
                Ok(Listener {
                    requested: text.to_owned(),
                    address: format!("unix:{}", path.display()),
                    tcp_addr: None,
                    sockets: vec![socket],
                    tcp: false,
                    inherited: false,
                    _file: Some(file),
                    proxy: ProxySetting::default(),
                })
            }
            ListenSpec::Fd(fd) if owned.contains(&fd) => Err(Error::new(
                ErrorKind::InvalidAddress,
                format!("{text}: the server already has this descriptor as a listener"),
            )),
            ListenSpec::Fd(fd) => inherit(text, fd),
        }
    }

    /// The descriptors of the listener's sockets.
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.sockets.iter().map(|s| s.as_raw_fd())
    }

    /// The socket worker `index` accepts from, and whether other workers
    /// share it.
    pub fn socket_for(&self, index: usize) -> (&Socket, bool) {
        if self.sockets.len() == 1 {
            (&self.sockets[0], self.shared())
        } else {
            (&self.sockets[index % self.sockets.len()], false)
        }
    }

    /// Worker `index` will never accept again (it died): its own socket of a
    /// TCP address stops listening (`shutdown` takes it out of the
    /// `SO_REUSEPORT` group), so the kernel sends connections to the other
    /// workers' sockets only; a shared socket stays, for the others.
    pub fn retire(&self, index: usize) {
        let (socket, shared) = self.socket_for(index);
        if !shared {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Whether every worker polls the same socket (not per-worker TCP sockets).
    fn shared(&self) -> bool {
        !self.tcp || self.inherited
    }

    /// Whether accepted connections are TCP.
    pub fn is_tcp(&self) -> bool {
        self.tcp
    }

    /// Whether this listener serves `text`, an address of a new config: the
    /// same text, or a TCP address that resolves to the one bound (a reload
    /// that names the port `0` picked keeps it).
    pub fn serves(&self, text: &str) -> bool {
        if self.requested == text {
            return true;
        }
        match (ListenSpec::parse(text), self.tcp_addr) {
            (Ok(ListenSpec::Tcp(host_port)), Some(bound)) if !self.inherited => {
                resolve(&host_port).is_ok_and(|addr| addr == bound)
            }
            _ => false,
        }
    }

    /// Gives up a listener that never served (a start or reload that failed):
    /// a descriptor handed in stays open, the embedder's again.
    pub fn abandon(mut self) {
        if self.inherited {
            for socket in self.sockets.drain(..) {
                let _ = socket.into_raw_fd();
            }
        }
    }
}

/// Binds every address in `texts`; on an error, what was bound is given up
/// again (see `Listener::abandon`) and the error names the address.
/// `current` are the server's listeners (a reload's): an `fd://N` naming one
/// of their sockets, or one bound here, is refused, since the server would
/// own it twice (and close it twice, the second time whatever reused its
/// number).
pub(crate) fn bind_all<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    options: &BindOptions,
    current: &[Arc<Listener>],
) -> Result<Vec<Listener>, Error> {
    let mut bound: Vec<Listener> = Vec::new();
    let mut owned: Vec<RawFd> = current.iter().flat_map(|l| l.fds()).collect();
    for text in texts {
        match Listener::bind(text, options, &owned) {
            Ok(l) => {
                owned.extend(l.fds());
                bound.push(l);
            }
            Err(e) => {
                bound.into_iter().for_each(Listener::abandon);
                return Err(e);
            }
        }
    }
    Ok(bound)
}

/// Takes a listening socket handed in as descriptor `fd`, after checking
/// that it is one (a stream socket that listens, TCP or Unix).
fn inherit(text: &str, fd: RawFd) -> Result<Listener, Error> {
    let not = |why: String| Error::new(ErrorKind::InvalidAddress, format!("{text}: {why}"));
    let checked = crate::sys::inherited::inspect(fd, |borrowed| {
        let socket = socket2::SockRef::from(&borrowed);
        let ty = socket.r#type().map_err(|e| format!("not a socket ({e})"))?;
        if ty != Type::STREAM {
            return Err("not a stream socket".to_owned());
        }
        if !socket.is_listener().map_err(|e| format!("cannot tell whether it listens ({e})"))? {
            return Err("the socket is not listening (call listen() first)".to_owned());
        }
        let domain = socket.domain().map_err(|e| e.to_string())?;
        if domain != Domain::IPV4 && domain != Domain::IPV6 && domain != Domain::UNIX {
            return Err("not a TCP or Unix socket".to_owned());
        }
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        Ok((domain, local))
    })
    .map_err(|e| not(format!("not an open descriptor ({e})")))?;
    let (domain, local) = checked.map_err(not)?;
    let owned = crate::sys::inherited::adopt(fd).map_err(|e| not(e.to_string()))?;
    let socket = Socket::from(owned);
    let setup = socket.set_nonblocking(true).and_then(|()| socket.set_cloexec(true));
    if let Err(e) = setup {
        let _ = socket.into_raw_fd();
        return Err(Error::io(text, e));
    }
    let tcp_addr = local.as_socket();
    let address = match (tcp_addr, local.as_pathname()) {
        (Some(addr), _) => addr.to_string(),
        (None, Some(path)) => format!("unix:{}", path.display()),
        (None, None) => text.to_owned(),
    };
    Ok(Listener {
        requested: text.to_owned(),
        address,
        tcp_addr,
        sockets: vec![socket],
        tcp: domain != Domain::UNIX,
        inherited: true,
        _file: None,
        proxy: ProxySetting::default(),
    })
}

/// Binds `count` listeners that share `addr` through `SO_REUSEPORT`, so the
/// kernel spreads connections over the workers. Unless `share` is set, a port
/// already in use is an error even when its owner also set `SO_REUSEPORT`: the
/// address is first claimed by a plain socket. With `share`, other processes
/// (of the same user) listening with `SO_REUSEPORT` on the address are joined.
fn bind_tcp(addr: SocketAddr, count: usize, backlog: u32, share: bool) -> Result<Vec<Socket>, Error> {
    let mut bound = addr;
    if !share {
        let probe = new_socket(addr, false).map_err(|e| Error::io("socket", e))?;
        probe.bind(&addr.into()).map_err(|e| Error::io(&format!("cannot bind {addr}"), e))?;
        bound = local_addr(&probe)?;
    }

    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = new_socket(bound, true).map_err(|e| Error::io("socket", e))?;
        socket.bind(&bound.into()).map_err(|e| Error::io(&format!("cannot bind {bound}"), e))?;
        // Port 0 is resolved by the first bind; the others join that port.
        bound = local_addr(&socket)?;
        socket.listen(backlog as i32).map_err(|e| Error::io(&format!("cannot listen on {bound}"), e))?;
        listeners.push(socket);
    }
    Ok(listeners)
}

fn local_addr(socket: &Socket) -> Result<SocketAddr, Error> {
    socket
        .local_addr()
        .map_err(|e| Error::io("local address", e))?
        .as_socket()
        .ok_or_else(|| Error::new(ErrorKind::Io, "bound address is not an IP address"))
}

fn new_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        for good in ["127.0.0.1:0", "[::1]:80", "localhost:8080", "unix:/tmp/a.sock", "unix:rel.sock", "fd://3"] {
            assert!(ListenSpec::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "nonsense",
            "127.0.0.1",
            ":80",
            "127.0.0.1:99999",
            "unix:",
            "fd://",
            "fd://-1",
            "fd://x",
            "fd://+3",
            "a b:80",
            "[::1:80",
        ] {
            let e = ListenSpec::parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidAddress, "{bad}");
        }
        let long = format!("unix:/{}", "a".repeat(MAX_UNIX_PATH));
        assert!(ListenSpec::parse(&long).is_err());
    }

    #[test]
    fn an_inherited_descriptor_is_checked_and_given_back_on_failure() {
        let options = BindOptions { workers: 2, backlog: 16, share_port: false, unix: UnixPerms::default() };
        let file = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsRawFd;
        let e = Listener::bind(&format!("fd://{}", file.as_raw_fd()), &options, &[]).err().unwrap();
        assert!(e.message.contains("not a socket"), "{e}");
        let unbound = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = Listener::bind(&format!("fd://{}", unbound.as_raw_fd()), &options, &[]).err().unwrap();
        assert!(e.message.contains("stream"), "{e}");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = listener.into_raw_fd();
        let l = Listener::bind(&format!("fd://{fd}"), &options, &[]).unwrap();
        assert_eq!(l.sockets.len(), 1);
        assert!(l.is_tcp() && l.socket_for(1).1, "shared by the workers");
        l.abandon();
        // Still open: ours to close.
        crate::sys::inherited::inspect(fd, |_| ()).unwrap();
        drop(crate::sys::inherited::adopt(fd).unwrap());
    }
}

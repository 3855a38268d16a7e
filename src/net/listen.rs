//! Listening sockets: one `SO_REUSEPORT` listener per worker on the same
//! address, so the kernel spreads connections over the workers.

use std::net::{SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, ErrorKind};

/// Resolves `HOST:PORT` (IPv6 hosts in brackets) to one address.
pub(crate) fn resolve(listen: &str) -> Result<SocketAddr, Error> {
    let bad = || Error::new(ErrorKind::InvalidAddress, format!("listen address '{listen}' is not HOST:PORT"));
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = listen.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    listen
        .to_socket_addrs()
        .map_err(|e| Error::new(ErrorKind::InvalidAddress, format!("cannot resolve '{listen}': {e}")))?
        .next()
        .ok_or_else(bad)
}

/// Binds `count` listeners that share `addr` through `SO_REUSEPORT`, so the
/// kernel spreads connections over the workers. Unless `share` is set, a port
/// already in use is an error even when its owner also set `SO_REUSEPORT`: the
/// address is first claimed by a plain socket. With `share`, other processes
/// (of the same user) listening with `SO_REUSEPORT` on the address are joined.
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
    share: bool,
) -> Result<Vec<mio::net::TcpListener>, Error> {
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
        listeners.push(mio::net::TcpListener::from_std(socket.into()));
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

"""Listening sockets made once by the arbiter (the master process) and
handed to every worker it forks as ``fd://N`` listeners.

Made once, they outlive every worker: a worker that stops (a reload, a
recycled or hung worker) leaves the connections queued on the socket to the
others or to its replacement, so a restart never refuses one. (With
``SO_REUSEPORT`` sockets, one per process, the connections queued on a
closing process's socket are reset.) It is also the only way several
processes can serve one Unix socket path.

Addresses, as gunicorn takes them: ``HOST:PORT``, ``[V6]:PORT``, ``HOST``
(port 8000), ``:PORT`` (every IPv4 address), ``tcp://HOST:PORT``,
``unix:PATH`` or ``unix://PATH`` and ``fd://N`` (a listening socket the
process inherited). :func:`systemd_fds` gives the sockets of systemd's
socket activation (``LISTEN_FDS``).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import List, Optional

__all__ = ["Listener", "normalize", "open_listener", "systemd_fds", "inherit"]

DEFAULT_PORT = 8000
#: The largest descriptor number (a C int); LISTEN_FDS counts at most this many.
FD_MAX = 2**31 - 1
#: The first descriptor systemd passes (SD_LISTEN_FDS_START).
SD_LISTEN_FDS_START = 3
#: The most descriptors LISTEN_FDS may count (the library's limit, a u16).
LISTEN_FDS_MAX = 65535


class AddressError(ValueError):
    """An address that cannot be listened on, with the reason."""


def normalize(address: str) -> str:
    """``address`` in the form the library takes (``HOST:PORT``,
    ``[V6]:PORT``, ``unix:/abs/path``, ``fd://N``); raises AddressError."""
    a = address.strip()
    if a.startswith("unix:"):
        path = a[len("unix://") :] if a.startswith("unix://") else a[len("unix:") :]
        if not path:
            raise AddressError(f"{address!r}: a Unix socket address needs a path (unix:/run/app.sock)")
        return "unix:" + os.path.abspath(path)
    if a.startswith("fd://"):
        n = a[len("fd://") :]
        if not (n.isascii() and n.isdigit()) or int(n) > FD_MAX:
            raise AddressError(f"{address!r}: fd:// wants a descriptor number (fd://3)")
        return f"fd://{int(n)}"
    if a.startswith("tcp://"):
        a = a[len("tcp://") :]
    if a.startswith("["):
        host, sep, rest = a[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise AddressError(f"{address!r}: an IPv6 address wants [V6]:PORT")
        port = rest[1:] if rest else str(DEFAULT_PORT)
        bracket = True
    else:
        host, sep, port = a.rpartition(":")
        if not sep:
            host, port = a, str(DEFAULT_PORT)
        if ":" in host:
            raise AddressError(f"{address!r}: write an IPv6 address in brackets ([::1]:8000)")
        bracket = False
        if not host:
            host = "0.0.0.0"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise AddressError(f"{address!r}: {port!r} is not a port number (0 to 65535)")
    if not host:
        raise AddressError(f"{address!r}: no host")
    return (f"[{host}]" if bracket else host.lower()) + f":{int(port)}"


class Listener:
    """A listening socket the arbiter holds: ``spec`` as asked for,
    ``address`` as it is (the port a 0 got), ``fd`` to hand to workers."""

    def __init__(self, spec: str, sock: socket.socket, created_path: Optional[str] = None) -> None:
        self.spec = spec
        self.sock = sock
        self.fd = sock.fileno()
        # A Unix socket file this process made: removed at the end if it is
        # still the same file (another server may have replaced it since).
        self._path = created_path
        self._inode = _file_id(os.lstat(created_path)) if created_path else None
        self.address = _address_of(sock)

    def close(self) -> None:
        """Closes the socket; removes the Unix socket file this process
        created, if that file is still ours (not another file, nor a link
        to ours, put in its place)."""
        if self._path is not None:
            try:
                if _file_id(os.lstat(self._path)) == self._inode:
                    os.unlink(self._path)
            except OSError:
                pass
            self._path = None
        self.sock.close()

    def __repr__(self) -> str:
        return f"<Listener {self.address} fd={self.fd}>"


def _file_id(st: os.stat_result) -> "tuple[int, int]":
    return st.st_dev, st.st_ino


def _address_of(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return "unix:" + (os.fsdecode(name) if name else "")
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    return f"{name[0]}:{name[1]}"


def open_listener(spec: str, backlog: int = 2048) -> Listener:
    """A listening socket for a normalized address (see :func:`normalize`)."""
    if spec.startswith("fd://"):
        return inherit(int(spec[len("fd://") :]), spec)
    if spec.startswith("unix:"):
        return _unix(spec, spec[len("unix:") :], backlog)
    return _tcp(spec, backlog)


def _tcp(spec: str, backlog: int) -> Listener:
    host, _, port = spec.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AddressError(f"{spec}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise AddressError(f"{spec}: {exc.strerror}") from None
    return Listener(spec, sock)


def _unix(spec: str, path: str, backlog: int) -> Listener:
    _replace_stale(spec, path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise AddressError(f"{spec}: {exc.strerror}") from None
    return Listener(spec, sock, created_path=path)


def _replace_stale(spec: str, path: str) -> None:
    """Removes a socket file nobody listens on (a server that died left
    it); refuses a live one and a file that is not a socket. The file is
    held open (O_PATH) while it is probed, so that its inode number cannot
    go to another file meanwhile: it is removed only if it is still the one
    that refused (another server starting at once may have replaced it)."""
    try:
        held = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        st = os.fstat(held)
        if not stat.S_ISSOCK(st.st_mode):
            raise AddressError(f"{spec}: {path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise AddressError(f"{spec}: {path}: {exc.strerror}") from None
            try:
                now = os.lstat(path)
            except FileNotFoundError:
                return
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise AddressError(f"{spec}: {path} was replaced meanwhile (another server starting?)") from None
            try:
                os.unlink(path)  # stale: nobody accepts on it
            except FileNotFoundError:
                pass
            return
        finally:
            probe.close()
        raise AddressError(f"{spec}: another server listens on {path}")
    finally:
        os.close(held)


def inherit(fd: int, spec: Optional[str] = None) -> Listener:
    """A listening stream socket this process already has at ``fd``."""
    spec = spec or f"fd://{fd}"
    if not 0 <= fd <= FD_MAX:
        raise AddressError(f"{spec}: not a descriptor number")
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise AddressError(f"{spec}: {exc.strerror}") from None
    try:
        if sock.type != socket.SOCK_STREAM:
            raise AddressError(f"{spec}: not a stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise AddressError(f"{spec}: the socket does not listen")
    except AddressError:
        sock.detach()  # the descriptor stays the caller's
        raise
    return Listener(spec, sock)


def systemd_fds() -> List[int]:
    """The descriptors of systemd's socket activation, when ``LISTEN_PID`` is
    this process (then ``LISTEN_PID``, ``LISTEN_FDS`` and ``LISTEN_FDNAMES``
    are removed from the environment, as ``sd_listen_fds(1)`` does, so that
    the processes this one starts do not take them for theirs); else [].
    AddressError for a count over 65535 (the library's limit)."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if pid != os.getpid() or count <= 0:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count > LISTEN_FDS_MAX:
        # The library's limit too: a count no service manager passes.
        raise AddressError(f"LISTEN_FDS={count} is not a count of descriptors passed (at most {LISTEN_FDS_MAX})")
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))

"""``Request`` and ``Headers``: a request as a handler sees it.

The library lends the handler a ``warpcore_request`` struct that is valid only
during the call. The struct is read in one go (``struct.unpack_from`` on a
memoryview that spans the address space), and each field's bytes are copied
the first time the handler asks for them, as slices of that view: no foreign
call per field. When the handler returns, a request it kept a reference to
(in a thread, a generator, a list) has its remaining fields copied before the
memory goes back to the library, so a kept request stays readable.

Another thread may read a request while its handler returns: every read of
the library's memory and the copy at the end take one lock (``_GATE``) and
check ``_live`` under it, so a read either sees the memory still lent or the
copy, never memory already reused for the next request.
"""

from __future__ import annotations

import ctypes
import json as _json
import struct
import sys
import threading
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple, Union
from urllib.parse import parse_qs

from . import _ffi
from . import _websocket
from ._body import BodyReader, reader_for

__all__ = ["Request", "Headers", "BodyReader", "TLSInfo"]

# All of the address space as one byte view: a slice of it copies the bytes at
# an address with no foreign call (ctypes.string_at is a foreign call, several
# times dearer). Only addresses the library hands us are ever read.
_MEM = memoryview((ctypes.c_char * sys.maxsize).from_address(0)).cast("B")



# The whole view at once: method ptr/len, target, path, query, headers
# ptr/count, body, peer_ip, then peer_port u16, version_major u8,
# version_minor u8, worker_index u32, body_follows bool, tls bool (what the
# WSGI adapter reads); the TLS details after them are read when asked for.
_VIEW = struct.Struct("@14QHBBI??2x")
assert _VIEW.size == _ffi.warpcore_request.tls_version.offset, "warpcore_request layout changed"
_unpack_view = _VIEW.unpack_from

_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


def _read(ptr: int, length: int) -> bytes:
    return _MEM[ptr : ptr + length].tobytes() if length else b""


_header_structs: Dict[int, struct.Struct] = {}


def read_headers(ptr: int, count: int) -> List[Tuple[bytes, bytes]]:
    """Copies ``count`` ``warpcore_header`` fields at ``ptr`` as (name, value)
    bytes pairs. A few fields are read one by one; with more, one copy of the
    block they sit in (the receive buffer) is cut up."""
    if not count:
        return []
    st = _header_structs.get(count)
    if st is None:
        st = _header_structs[count] = struct.Struct(f"@{4 * count}Q")
    flat = st.unpack_from(_MEM, ptr)  # name ptr, name len, value ptr, value len, ...
    short = _SHORT
    if count <= 4:
        out = []
        for i in range(0, 4 * count, 4):
            np, nl, vp, vl = flat[i : i + 4]
            out.append(
                (
                    short[nl](_MEM, np)[0] if nl < 64 else _MEM[np : np + nl].tobytes(),
                    short[vl](_MEM, vp)[0] if vl < 64 else _MEM[vp : vp + vl].tobytes(),
                )
            )
        return out
    ptrs = flat[0::2]
    lens = flat[1::2]
    lo = min(ptrs)
    hi = max(map(int.__add__, ptrs, lens))
    # ": " and CRLF between fields: a contiguous block is barely larger than
    # its fields. Anything else is read field by field (never across a gap
    # that might not be mapped).
    if hi - lo <= sum(lens) + 4 * count + 64:
        block = _MEM[lo:hi].tobytes()
        cut = [block[p - lo : p - lo + n] for p, n in zip(ptrs, lens)]
    else:
        cut = [_read(p, n) for p, n in zip(ptrs, lens)]
    return list(zip(cut[0::2], cut[1::2]))


class Headers(Mapping[str, str]):
    """Request header fields: case-insensitive, several values per name.

    ``headers["Content-Type"]`` and ``headers.get(...)`` give the first value;
    ``headers.get_all(name)`` gives every value in order; iterating gives the
    names (lower-cased, once each); ``headers.items()`` gives (name, value)
    for every field as received, in order. Names and values are ``str``
    decoded as ISO-8859-1 (bytes in, bytes out).
    """

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: Union[None, Mapping[str, str], List[Tuple[str, str]]] = None) -> None:
        if fields is None:
            self._fields: List[Tuple[str, str]] = []
        elif isinstance(fields, Mapping):
            self._fields = [(str(k), str(v)) for k, v in fields.items()]
        else:
            self._fields = [(str(k), str(v)) for k, v in fields]
        self._index: Optional[Dict[str, List[str]]] = None

    @classmethod
    def _from_raw(cls, raw: List[Tuple[bytes, bytes]]) -> "Headers":
        h = cls.__new__(cls)
        h._fields = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]
        h._index = None
        return h

    def _idx(self) -> Dict[str, List[str]]:
        index = self._index
        if index is None:
            index = {}
            for n, v in self._fields:
                index.setdefault(n.lower(), []).append(v)
            self._index = index
        return index

    def __getitem__(self, name: str) -> str:
        return self._idx()[name.lower()][0]

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        values = self._idx().get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> List[str]:
        """Every value of ``name``, in the order received (empty if absent)."""
        return list(self._idx().get(name.lower(), ()))

    getall = get_all

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._idx()

    def __iter__(self) -> Iterator[str]:
        return iter(self._idx())

    def __len__(self) -> int:
        return len(self._idx())

    def items(self) -> List[Tuple[str, str]]:  # type: ignore[override]
        """Every field as (name as sent, value), in order, repeats included."""
        return list(self._fields)

    def raw(self) -> List[Tuple[str, str]]:
        return list(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


_UNSET: Any = object()

# Held while the library's memory behind a live request is read, and while a
# kept request is copied and marked dead as its handler returns. Never held
# across a foreign call or anything that waits.
_GATE = threading.Lock()


# Offsets of the fields of warpcore_request (checked against ctypes at import).
_OFF_METHOD, _OFF_TARGET, _OFF_PATH, _OFF_QUERY = 0, 16, 32, 48
_OFF_HEADERS, _OFF_BODY, _OFF_PEER, _OFF_TAIL, _OFF_TLS = 64, 80, 96, 112, 120
for _name, _off in (("method", 0), ("target", 16), ("path", 32), ("query", 48), ("headers", 64),
                    ("body", 80), ("peer_ip", 96), ("peer_port", 112)):
    assert getattr(_ffi.warpcore_request, _name).offset == _off, f"warpcore_request.{_name} moved"
_pair = struct.Struct("@QQ").unpack_from  # (ptr, len) of one warpcore_str
_method_target_path = struct.Struct("@6Q").unpack_from  # method, target, path: (ptr, len) each
# peer_port, version_major, version_minor, worker_index, body_follows
_tail = struct.Struct("@HBBI?").unpack_from
assert _ffi.warpcore_request.body_follows.offset == _OFF_TAIL + 8, "warpcore_request.body_follows moved"

# body_follows, tls, tls_resumed, tls_version, tls_cipher, tls_sni (ptr, len),
# tls_alpn (ptr, len), tls_peer_certs, tls_peer_cert_count.
_TLS_VIEW = struct.Struct("@???xHH6Q")
assert _ffi.warpcore_request.tls_peer_cert_count.offset == _OFF_TLS + _TLS_VIEW.size - 8
assert ctypes.sizeof(_ffi.warpcore_request) == _OFF_TLS + _TLS_VIEW.size, "warpcore_request layout changed"


class TLSInfo(NamedTuple):
    """What a TLS connection negotiated (``Request.tls``)."""

    #: ``"TLSv1.2"`` or ``"TLSv1.3"``.
    version: str
    #: The cipher suite's IANA number (``0x1301`` is TLS_AES_128_GCM_SHA256).
    cipher: int
    #: The host name the client asked for (SNI), or ``""``.
    server_name: str
    #: The protocol agreed by ALPN (``"http/1.1"``), or ``""``.
    alpn: str
    #: The session was resumed from a ticket or session ID.
    resumed: bool
    #: The client's certificate chain, DER, its own first (empty without one).
    peer_certs: Tuple[bytes, ...]

    @property
    def cipher_name(self) -> str:
        """The cipher suite's OpenSSL name (``TLS_AES_128_GCM_SHA256``,
        ``ECDHE-ECDSA-AES128-GCM-SHA256``: what ``ssl.SSLSocket.cipher()``
        and mod_ssl's ``SSL_CIPHER`` say), or ``0xNNNN`` for one not known here."""
        return _CIPHER_NAMES.get(self.cipher) or f"0x{self.cipher:04X}"


# The cipher suites rustls offers, by IANA number, with OpenSSL's names.
_CIPHER_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
}


def _read_tls(a: int) -> Optional[TLSInfo]:
    _, tls, resumed, version, cipher, sp, sl, ap, al, cp, cn = _TLS_VIEW.unpack_from(_MEM, a + _OFF_TLS)
    if not tls:
        return None
    certs = tuple(_read(*_pair(_MEM, cp + 16 * i)) for i in range(cn))
    name = {0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}.get(version, f"0x{version:04x}")
    return TLSInfo(name, cipher, _read(sp, sl).decode("ascii", "replace"), _read(ap, al).decode("ascii", "replace"), resumed, certs)


# Bytes of a short field come out of one struct call (cheaper than a memoryview
# slice); longer ones are sliced.
_SHORT = [struct.Struct(f"{n}s").unpack_from for n in range(256)]


# "GET /a%20b?x=1" (method, space, target: as they sit in the receive buffer)
# -> ("GET", "/a b"), the method and the engine's decoded path: a server sees
# few distinct request lines, and one dict hit replaces two reads and two
# decodings. Bounded: cleared when full.
_LINES: Dict[bytes, Tuple[str, str]] = {}
_LINES_MAX = 1024


def _read_method_path(line: Optional[bytes], mp: int, ml: int, pp: int, pl: int) -> Tuple[str, str]:
    """(method, path) read from their spans; remembered in ``_LINES`` under
    ``line`` (the method-space-target span) unless that is None."""
    method = _SHORT[ml](_MEM, mp)[0] if ml < 64 else _MEM[mp : mp + ml].tobytes()
    path = _SHORT[pl](_MEM, pp)[0] if pl < 256 else _MEM[pp : pp + pl].tobytes()
    pair = (_METHODS.get(method) or method.decode("latin-1"), path.decode("utf-8", "surrogateescape"))
    if line is not None:
        if len(_LINES) >= _LINES_MAX:
            _LINES.clear()
        _LINES[line] = pair
    return pair


def _bytes_at(view_field: int) -> bytes:
    p, n = _pair(_MEM, view_field)
    if n < 64:
        return _SHORT[n](_MEM, p)[0] if n else b""
    return _MEM[p : p + n].tobytes()


def _read_peer(a: int) -> Tuple[str, int]:
    return (_bytes_at(a + _OFF_PEER).decode("ascii"), _tail(_MEM, a + _OFF_TAIL)[0])


#: How each lazily read field of a live request is read from its view (at
#: address a). ``_bytes_at`` is looked up when called: tests wrap it.
_READERS = {
    "_target": lambda a: _bytes_at(a + _OFF_TARGET).decode("latin-1"),
    "_query": lambda a: _bytes_at(a + _OFF_QUERY).decode("latin-1"),
    "_headers": lambda a: Headers._from_raw(read_headers(*_pair(_MEM, a + _OFF_HEADERS))),
    "_body": lambda a: _bytes_at(a + _OFF_BODY),
    "_tail": lambda a: _tail(_MEM, a + _OFF_TAIL),
    "_peer": _read_peer,
    "_tls": _read_tls,
}


class Request:
    """One HTTP request.

    Attributes (read on first use): ``method`` (``"GET"``), ``target`` (as
    sent, ``"/a%20b?x=1"``), ``path`` (percent-decoded, ``"/a b"``),
    ``query`` (``"x=1"``, not decoded), ``args`` (the query parsed),
    ``headers`` (:class:`Headers`), ``body`` (bytes), ``peer`` ((ip, port)),
    ``version`` (``"HTTP/1.1"``), ``worker`` (the worker's index),
    ``body_follows`` (the body streams: ``body`` is empty, read it with
    :meth:`stream`), ``tls`` (a :class:`TLSInfo`, or None on a plain
    connection).
    """

    # method and path are plain slots, not properties: nearly every handler
    # reads both, and a property is a Python call per read.
    __slots__ = (
        "method",
        "path",
        "_a",
        "_live",
        "_target",
        "_query",
        "_headers",
        "_body",
        "_peer",
        "_tls",
        "_tail",
        "_res",
        "_reader",
    )

    def __init__(self, address: int) -> None:
        """Wraps the borrowed view at ``address`` (inside the handler call only).
        Method and path, which nearly every handler reads, are copied now (one
        struct call for both spans); the rest when first asked for."""
        self._a = address
        self._live = True
        mp, ml, tp, tl, pp, pl = _method_target_path(_MEM, address)
        n = tp - mp + tl
        line = _SHORT[n](_MEM, mp)[0] if n < 256 and tp - mp == ml + 1 else None
        self.method, self.path = (line is not None and _LINES.get(line)) or _read_method_path(line, mp, ml, pp, pl)
        self._target = self._query = self._headers = self._body = self._peer = self._tls = self._tail = _UNSET

    @classmethod
    def _detached(
        cls,
        method: str,
        path: str,
        *,
        target: Optional[str] = None,
        query: str = "",
        headers: Optional[Headers] = None,
        body: bytes = b"",
        peer: Tuple[str, int] = ("", 0),
        version: Tuple[int, int] = (1, 1),
    ) -> "Request":
        """A request not backed by the library (for tests of handlers)."""
        r = cls.__new__(cls)
        r._a = 0
        r._live = False
        r.method = method
        r.path = path
        r._target = target if target is not None else (path + ("?" + query if query else ""))
        r._query = query
        r._headers = headers if headers is not None else Headers()
        r._body = body
        r._peer = peer
        r._tls = None
        r._tail = (peer[1], version[0], version[1], 0, False)
        r._res = 0
        return r

    def _dead(self) -> RuntimeError:
        return RuntimeError("this request's memory was returned to the library")

    @property
    def raw_path(self) -> bytes:
        """The decoded path as bytes (what ``path`` decodes as UTF-8)."""
        return self.path.encode("utf-8", "surrogateescape")

    def _field(self, slot: str) -> Any:
        """The value of field ``slot`` (``"_target"``...), read from the
        library's memory the first time, under ``_GATE``."""
        with _GATE:
            value = getattr(self, slot)
            if value is _UNSET:
                if not self._live:
                    raise self._dead()
                value = _READERS[slot](self._a)
                setattr(self, slot, value)
        return value

    @property
    def target(self) -> str:
        t = self._target
        return t if t is not _UNSET else self._field("_target")

    @property
    def query(self) -> str:
        q = self._query
        return q if q is not _UNSET else self._field("_query")

    @property
    def args(self) -> Dict[str, List[str]]:
        """The query string parsed (``{"x": ["1"]}``), blanks kept."""
        return parse_qs(self.query, keep_blank_values=True)

    @property
    def headers(self) -> Headers:
        h = self._headers
        return h if h is not _UNSET else self._field("_headers")

    @property
    def body(self) -> bytes:
        """The whole body. A body that streams (``body_follows``) is not
        here: reading this then raises ``RuntimeError`` (rather than give an
        empty body); use :meth:`stream`."""
        b = self._body
        if b is _UNSET:
            b = self._field("_body")
        if not b and self._fixed()[4]:
            raise RuntimeError(
                "the request body streams (it is larger than the server's whole_body_max): "
                "read it with request.stream(), taken inside the handler call"
            )
        return b

    @property
    def body_follows(self) -> bool:
        """Whether the body streams: it is larger than the server's
        ``whole_body_max`` and had not arrived with the head, so ``body`` is
        ``b""`` and the body is read with :meth:`stream` as it arrives."""
        return self._fixed()[4]

    def stream(self) -> BodyReader:
        """The body as a :class:`BodyReader`, a binary file that fills as the
        body arrives (``read(n)``, ``read()``, ``readline()``; iteration and
        ``read1()`` give the chunks as they come).

        When the body streams (``body_follows``), call this inside the handler
        call, on its thread (later, a ``RuntimeError``: a body not taken by
        then is discarded), then read from another thread: return a
        :class:`StreamResponse` whose iterable reads it, or hand it to a
        thread of your own and answer later. Reads in the handler itself
        never wait: see :class:`BodyReader`. A body that arrived whole gives
        a reader over ``body``, usable anywhere. Every call returns the same
        reader."""
        try:
            return self._reader
        except AttributeError:
            pass
        if not self.body_follows:
            reader = BodyReader(None, self.body)
        else:
            with _GATE:
                if not self._live:
                    raise RuntimeError(
                        "the body streams and the handler has returned: take its reader with "
                        "request.stream() inside the handler call (the library discarded the body)"
                    )
            try:
                reader = reader_for(self._res)
            except _ffi.WarpcoreError as exc:
                if exc.code == _ffi.INVALID_STATE:
                    raise RuntimeError(
                        "request.stream() of a body that streams must be called inside the handler call, "
                        f"on its thread ({exc.message})"
                    ) from None
                raise
        self._reader = reader
        return reader

    # -- switching protocols -------------------------------------------------------

    def accept_websocket(
        self,
        headers: Any = None,
        *,
        subprotocol: Optional[str] = None,
        max_message: Optional[int] = None,
        on_event: Optional[Any] = None,
    ) -> "_websocket.WebSocket":
        """Accepts the request's WebSocket handshake: sends ``101`` (with
        ``headers``, such as cookies, and ``Sec-WebSocket-Protocol:
        subprotocol`` when given; see :func:`warpcore.subprotocols` for what
        the client offers) and returns the :class:`~warpcore.WebSocket`,
        which the handler returns. Messages over ``max_message`` bytes
        (None: 1 MiB) close the connection with 1009. ``on_event`` see
        :class:`~warpcore.WebSocket`.

        Inside the handler call, or later from any thread while the request
        is unanswered (a :class:`~warpcore.Deferred`, a thread of your own).
        Raises :class:`~warpcore.HandshakeError` when the request is not a
        handshake the library accepts: nothing was sent; answer it (its
        ``response`` is a 400, or a 426 for another WebSocket version)."""
        return _websocket.accept(getattr(self, "_res", None), headers, subprotocol, max_message, on_event)

    def upgrade(self, headers: Any, *, on_event: Optional[Any] = None) -> "_websocket.Upgraded":
        """Sends ``101 Switching Protocols`` with ``headers``, which must name
        the protocol in an ``Upgrade`` field, and returns the connection as
        an :class:`~warpcore.Upgraded` (the handler returns it). For a
        request that asked to switch protocols (HTTP/1.1, ``Connection:
        upgrade``, ``Upgrade``); else :class:`~warpcore.HandshakeError`,
        nothing sent. Where and when: as :meth:`accept_websocket`."""
        return _websocket.upgrade(getattr(self, "_res", None), headers, on_event)

    def take_over(self, *, on_event: Optional[Any] = None) -> "_websocket.Upgraded":
        """:meth:`upgrade` with nothing sent: the application writes its own
        answer (a ``101`` its protocol library composed) on the returned
        :class:`~warpcore.Upgraded`."""
        return _websocket.upgrade(getattr(self, "_res", None), None, on_event, take_over=True)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return _json.loads(self.body)

    def _fixed(self) -> Tuple[int, int, int, int]:
        t = self._tail
        return t if t is not _UNSET else self._field("_tail")

    @property
    def peer(self) -> Tuple[str, int]:
        p = self._peer
        return p if p is not _UNSET else self._field("_peer")

    @property
    def tls(self) -> Optional[TLSInfo]:
        """What the connection's TLS negotiated (:class:`TLSInfo`: version,
        cipher, SNI server name, ALPN, resumed, the client's certificates);
        None on a plain connection."""
        t = self._tls
        return t if t is not _UNSET else self._field("_tls")

    @property
    def version(self) -> str:
        return "HTTP/1.1" if self._fixed()[2] == 1 else "HTTP/1.0"

    @property
    def worker(self) -> int:
        return self._fixed()[3]

    def _detach(self) -> None:
        """The handler returned and the request was kept: copies whatever
        was not read yet (the view is still valid) and marks the request
        dead, in one step for any other thread reading it."""
        with _GATE:
            if self._live:
                a = self._a
                for slot, read in _READERS.items():
                    if getattr(self, slot) is _UNSET:
                        setattr(self, slot, read(a))
                self._live = False

    def __repr__(self) -> str:
        try:
            return f"<Request {self.method} {self.target}>"
        except RuntimeError:
            return "<Request (released)>"

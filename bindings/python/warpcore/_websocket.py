"""WebSockets (``warpcore_websocket``) and upgraded connections
(``warpcore_upgraded``): what a request becomes after ``101 Switching
Protocols``.

A handler accepts with ``request.accept_websocket()`` (or takes the raw bytes
with ``request.upgrade(...)`` / ``request.take_over()``) and returns the
handle it got; from then on the handle is used from any thread.

How waiting works: every handle is made non-blocking in the library and has
this module's event callback. The library calls it on the worker thread that
owns the connection (a Python thread, so the crossing is cheap) when messages
or bytes arrive, when a refused write may be made again, when the server
starts to drain, and once, last, when the connection is closed. A call that
would have to wait (``receive``, ``send``, ``read``, ``write``) waits here,
in Python, on a condition those events signal: so it can time out, the GIL is
free meanwhile, and the library never holds a thread inside one of its calls.
On a worker thread (a handler, an event callback) nothing waits: the call
raises :class:`WouldBlock` instead, as the library does.

Lifetimes: the handle's ``release()`` (also at the end of a ``with`` block,
and when the object is garbage collected) frees it, closing the connection
if it is open. A handle with an ``on_event`` callback is kept alive by the
library until its ``CLOSED`` event, so an application driven only by events
needs no reference of its own. Every call on a released handle raises
instead of reaching the library.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import logging
import math
import os
import threading
import time
import weakref
from ctypes import byref, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from . import _ffi
from ._ffi import (
    BUFFER_TOO_SMALL,
    CLOSED,
    INVALID_ARGUMENT,
    INVALID_STATE,
    OK,
    WOULD_BLOCK,
    F,
    WarpcoreError,
    error_for,
    header_array,
)

__all__ = [
    "WebSocket",
    "Upgraded",
    "WebSocketEvent",
    "UpgradeEvent",
    "WebSocketClosed",
    "WouldBlock",
    "HandshakeError",
    "subprotocols",
]

log = logging.getLogger("warpcore")

#: Bytes a read or a receive takes into the calling thread's buffer; a
#: larger message gets a buffer of its own size.
CHUNK = 64 * 1024

#: What the library's ``draining`` calls write while the server runs normally.
_NOT_DRAINING = 2**64 - 1


class WebSocketEvent(enum.IntFlag):
    """What a WebSocket's ``on_event`` callback is told (``warpcore_websocket_event``)."""

    #: Messages are waiting: ``receive_nowait()`` until :class:`WouldBlock`.
    MESSAGE = _ffi.WEBSOCKET_EVENT_MESSAGE
    #: A send refused with :class:`WouldBlock` may be made again.
    WRITABLE = _ffi.WEBSOCKET_EVENT_WRITABLE
    #: The connection is closed: the last call, exactly once.
    CLOSED = _ffi.WEBSOCKET_EVENT_CLOSED
    #: The server is shutting down: close soon (``draining`` says by when).
    DRAINING = _ffi.WEBSOCKET_EVENT_DRAINING


class UpgradeEvent(enum.IntFlag):
    """What an upgraded connection's ``on_event`` callback is told (``warpcore_upgrade_event``)."""

    #: Bytes arrived, or the peer half-closed: ``read_nowait()`` until :class:`WouldBlock`.
    READABLE = _ffi.UPGRADE_EVENT_READABLE
    #: A write refused with :class:`WouldBlock` may be made again.
    WRITABLE = _ffi.UPGRADE_EVENT_WRITABLE
    #: The connection is closed: the last call, exactly once.
    CLOSED = _ffi.UPGRADE_EVENT_CLOSED
    #: The server is shutting down: finish up and close.
    DRAINING = _ffi.UPGRADE_EVENT_DRAINING
    #: No byte either way for half the idle timeout: send the protocol's
    #: ping (only after ``set_quiet_notice(True)``).
    QUIET = _ffi.UPGRADE_EVENT_QUIET


class WebSocketClosed(Exception):
    """The WebSocket is closed: raised by ``receive`` once every message was
    received (and by every later one), and by ``send`` once the connection
    closed or is closing.

    ``code`` is the close code of the end (the peer's: 1000 normal, 1001
    going away, 1005 none given; 1006 when the connection ended without a
    close frame; 1002, 1007, 1009 when the peer broke the protocol and the
    library cut it), or None while it is not known yet (``send`` after
    ``close()``, before the peer answered). ``reason`` is the peer's reason.
    """

    def __init__(self, code: Optional[int], reason: str = "", message: str = "") -> None:
        self.code = code
        self.reason = reason
        text = message or "the WebSocket is closed"
        if code is not None:
            text += f" (code {code}{', ' + repr(reason) if reason else ''})"
        super().__init__(text)


class WouldBlock(WarpcoreError, BlockingIOError):
    """The call would have to wait and may not: nothing to receive or read
    yet, or the peer is not reading. Raised by the ``*_nowait`` calls, and
    by every call on a library worker thread (a handler, an ``on_event``
    callback), where nothing waits. The event callback says when to try
    again (``MESSAGE``/``READABLE``, ``WRITABLE``)."""


class HandshakeError(WarpcoreError):
    """The request cannot be upgraded: it is not a WebSocket handshake the
    library accepts (``accept_websocket``), or it did not ask to switch
    protocols (``upgrade``, ``take_over``). Nothing was sent: answer it as
    usual, for instance with ``response``.

    ``status`` is what to answer: 426 (with ``Sec-WebSocket-Version: 13``,
    in ``headers``) when the client speaks another WebSocket version, else
    400. ``message`` is the library's reason."""

    def __init__(self, code: int, message: str, call: str = "") -> None:
        super().__init__(code, message, call)
        if "answer 426" in message:
            self.status = 426
            self.headers: List[Tuple[str, str]] = [("Sec-WebSocket-Version", "13")]
        else:
            self.status = 400
            self.headers = []

    @property
    def response(self) -> Any:
        """A :class:`~warpcore.Response` to return: ``status`` with
        ``headers`` and a line of text saying what is expected."""
        from ._response import TEXT_PLAIN, Response

        if self.status == 426:
            body = "WebSocket version 13 only\n"
        elif self.call == "warpcore_websocket_accept":
            body = "a WebSocket handshake is expected here\n"
        else:
            body = "a request to switch protocols is expected here\n"
        return Response(self.status, TEXT_PLAIN + self.headers, body)


def subprotocols(headers: Any) -> List[str]:
    """The subprotocols a WebSocket handshake offers (its
    ``Sec-WebSocket-Protocol`` fields), in order: pick one and pass it as
    ``accept_websocket(subprotocol=...)``."""
    out: List[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        out.extend(p.strip() for p in value.split(",") if p.strip())
    return out


# --- the library's callbacks --------------------------------------------------------

# Handles whose callback the library may still call, by token (the callback's
# userdata): removed at their CLOSED event, or when accepting failed.
_cores: Dict[int, "_Core"] = {}
_tokens = itertools.count(1)  # next() on it is atomic under the GIL
# Bumped in a child process after fork: handles made before belong to the
# parent's workers, and are released there without a library call.
_epoch = 0


def _on_event(userdata: Optional[int], handle: Optional[int], events: int) -> None:
    try:
        core = _cores.get(userdata or 0)
        if core is not None:
            core.told(handle, events)
    except BaseException:  # noqa: B902 - nothing may cross into C
        try:
            log.exception("a WebSocket or upgrade event callback failed")
        except BaseException:  # noqa: B902
            pass


#: The one event callback (userdata: the handle's token). warpcore_upgrade_cb
#: and warpcore_websocket_cb have the same signature: ctypes makes one type.
_EVENT_CB = _ffi.warpcore_websocket_cb(_on_event)
assert _ffi.warpcore_upgrade_cb is _ffi.warpcore_websocket_cb


def _forget_all() -> None:
    """In a child just forked: every handle is the parent's."""
    global _epoch
    _epoch += 1
    for core in list(_cores.values()):
        core.released = True
        core.owner = None
    _cores.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all)


class _Core:
    """What a handle's Python object and the library's callback share: the
    handle, the events seen so far (``gen`` counts them; a call that found
    nothing waits for it to change), whether the connection closed or the
    handle was released, and the application's ``on_event``."""

    __slots__ = ("token", "handle", "cond", "gen", "closed", "released", "epoch", "on_event", "owner", "flags", "free")

    def __init__(self, on_event: Optional[Callable[..., Any]], flags: Any, free: Any) -> None:
        self.token = next(_tokens)
        self.handle: Optional[int] = None
        # Reentrant: a handle freed by the garbage collector while this thread
        # holds the lock (inside `told`) releases through it without a deadlock.
        self.cond = threading.Condition(threading.RLock())
        self.gen = 0
        self.closed = False  # the CLOSED event came
        self.released = False
        self.epoch = _epoch
        self.on_event = on_event
        self.owner: Any = None  # the WebSocket or Upgraded: strong with on_event, else weak
        self.flags = flags
        self.free = free

    def told(self, handle: Optional[int], events: int) -> None:
        """On the worker: the library's event."""
        closed = bool(events & _ffi.WEBSOCKET_EVENT_CLOSED)  # 4 for both kinds
        with self.cond:
            if self.handle is None and handle:
                # The callback may come before the call that made the handle returns.
                self.handle = handle
            self.gen += 1
            if closed:
                self.closed = True
            self.cond.notify_all()
        callback = self.on_event
        if callback is not None:
            owner = self.owner
            if isinstance(owner, weakref.ref):
                owner = owner()
            if owner is not None:
                try:
                    callback(owner, self.flags(events))
                except BaseException:  # noqa: B902 - nothing may cross into C
                    log.exception("an on_event callback raised")
        if closed:
            # The last call: the library keeps the handle alive no longer.
            _cores.pop(self.token, None)
            self.owner = None

    def wait(self, gen: int, deadline: Optional[float]) -> None:
        """Waits for an event after the ``gen``-th (or a release); raises
        TimeoutError at ``deadline`` (``time.monotonic()``)."""
        with self.cond:
            while self.gen == gen and not self.released:
                if deadline is None:
                    self.cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("timed out")
                    self.cond.wait(left)

    def live(self) -> Optional[int]:
        """The handle, or None once released (or made in the parent process)."""
        if self.released or self.epoch != _epoch:
            return None
        return self.handle

    def release(self) -> None:
        with self.cond:
            if self.released:
                return
            self.released = True
            handle = self.handle if self.epoch == _epoch else None
            self.cond.notify_all()
        if handle is None:
            _cores.pop(self.token, None)
        else:
            self.free(handle)  # the library still tells CLOSED if it has not


# Each thread's buffer for reads and receives (made on first use).
_buffers = threading.local()


def _thread_buffer() -> Tuple[Any, int, memoryview]:
    b = getattr(_buffers, "b", None)
    if b is None:
        buf = ctypes.create_string_buffer(CHUNK)
        b = _buffers.b = (buf, ctypes.addressof(buf), memoryview(buf).cast("B"))
    return b


def _deadline(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    t = float(timeout)
    if math.isnan(t):
        raise ValueError("timeout must be a number of seconds or None, not nan")
    return time.monotonic() + max(0.0, t)


def _milliseconds(seconds: Optional[float]) -> int:
    """An idle timeout in whole milliseconds for the library: None, 0 and
    inf are never (0 for the library); otherwise at least 1 ms."""
    if seconds is None:
        return 0
    value = float(seconds)
    if math.isnan(value) or value < 0:
        raise ValueError(f"an idle timeout is a non-negative number of seconds or None, not {seconds!r}")
    if value == 0 or value == math.inf:
        return 0
    return min(max(1, round(value * 1000)), 2**64 - 1)


def _as_bytes(data: Any, what: str) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} wants bytes, not {type(data).__name__}")


def _would_block(call: str, on_worker: bool) -> WouldBlock:
    if on_worker:
        why = "on a worker thread (a handler or an event callback) nothing waits: call it from another thread, or again on the next event"
    else:
        why = "nothing to take yet, or the peer is not reading"
    return WouldBlock(WOULD_BLOCK, why, call)


class _Handle:
    """What a WebSocket and an upgraded connection share: the core, waiting,
    release, idle timeout, draining, the context manager."""

    __slots__ = ("_core", "__weakref__")
    _DRAINING: Any = None
    _IDLE: Any = None
    _WHAT = "connection"

    def _make(self, core: _Core) -> None:
        self._core = core
        core.owner = self if core.on_event is not None else weakref.ref(self)

    def _h(self) -> int:
        h = self._core.live()
        if h is None:
            raise self._released()
        return h

    def _released(self) -> Exception:
        return ValueError(f"the {self._WHAT} was released")

    def _call(self, attempt: Callable[[int], int], deadline: Optional[float], nowait: bool, call: str) -> int:
        """Runs ``attempt(handle)`` (a library call that never waits) until it
        does not return WOULD_BLOCK, waiting for the next event in between.
        Returns its result code."""
        core = self._core
        on_worker = _ffi.on_worker_thread()
        while True:
            h = core.live()
            if h is None:
                raise self._released()
            gen, closed = core.gen, core.closed
            result = attempt(h)
            if result != WOULD_BLOCK:
                return result
            if closed:
                # Closed before the call and still nothing: no event is to come.
                return CLOSED
            if nowait or on_worker:
                raise _would_block(call, on_worker)
            core.wait(gen, deadline)

    def release(self) -> None:
        """Frees the handle, closing the connection if it is open (after what
        was written leaves; a WebSocket first says 1001, going away, unless a
        close was sent). Calls waiting on other threads end. Idempotent; also
        done at the end of a ``with`` block and on garbage collection."""
        self._core.release()

    def __del__(self) -> None:
        try:
            core = self._core
        except AttributeError:
            return
        try:
            core.release()
        except BaseException:  # noqa: B902 - at exit the library or the module may be gone
            pass

    @property
    def released(self) -> bool:
        return self._core.released

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (its CLOSED event came) or the handle released."""
        return self._core.closed or self._core.released

    @property
    def draining(self) -> Optional[float]:
        """Seconds left before the shutting-down server cuts the connection
        (0 once past), or None while the server runs normally."""
        out = c_uint64()
        rc = type(self)._DRAINING(self._h(), byref(out))
        if rc:
            raise error_for(rc, "draining")
        return None if out.value == _NOT_DRAINING else out.value / 1000

    def set_idle_timeout(self, seconds: Optional[float]) -> None:
        """Closes the connection after ``seconds`` with no byte either way
        (None: never; the library's default is 60 s)."""
        ms = _milliseconds(seconds)
        rc = type(self)._IDLE(self._h(), ms)
        if rc == CLOSED:
            return
        if rc:
            raise error_for(rc, "set_idle_timeout")

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _install(core: _Core, made: Callable[[], Tuple[int, int]], set_nonblocking: Any, make_error: Callable[[int], Exception]) -> int:
    """Makes a handle with ``made()`` -> (result, handle), the core
    registered for the callback first; then makes it non-blocking."""
    _cores[core.token] = core
    try:
        rc, handle = made()
    except BaseException:
        _cores.pop(core.token, None)
        raise
    if rc:
        _cores.pop(core.token, None)  # the callback is never called
        core.released = True
        raise make_error(rc)  # right after the call: its message is this thread's
    with core.cond:
        core.handle = handle
    rc = set_nonblocking(handle, True)
    if rc:  # pragma: no cover - only a freed handle fails
        core.release()
        raise error_for(rc, "set_nonblocking")
    return handle


def _error(call: str) -> Callable[[int], Exception]:
    def make(rc: int) -> Exception:
        e = error_for(rc, call)
        if rc == INVALID_STATE:
            return HandshakeError(rc, e.message, call)
        return e

    return make


def _response_handle(res: Optional[int]) -> int:
    if not res:
        raise RuntimeError("this request is not backed by the library (a test request): it cannot be upgraded")
    return res


# --- WebSocket ----------------------------------------------------------------------


class WebSocket(_Handle):
    """A WebSocket (RFC 6455) a handler accepted with
    ``request.accept_websocket()``; the handler returns it.

    ``receive()`` gives the next message, text as ``str`` and binary as
    ``bytes``, and raises :class:`WebSocketClosed` (``code``, ``reason``)
    once the connection ended; ``send(data)`` sends ``str`` as text and
    ``bytes`` as binary; ``close(code, reason)`` starts the closing
    handshake (``receive`` then gives what is left and the end). Iterating
    gives the messages until the end. The library answers pings, completes
    the closing handshake, and closes with 1002/1007/1009 a peer that breaks
    the protocol, sends invalid UTF-8 or a message over ``max_message``.

    Threads: any thread, several at once (one receiving while another
    sends). Off the worker threads ``receive`` waits for a message and
    ``send`` while the peer is not reading (``timeout`` in seconds, then
    ``TimeoutError``); on a worker thread, and in the ``*_nowait`` forms,
    they raise :class:`WouldBlock` instead, and ``on_event`` says when to try
    again.

    ``on_event(websocket, events)`` (:class:`WebSocketEvent` bits), if given
    at accept, runs on the worker thread that owns the connection: it must
    not block (it may ``receive_nowait``, ``send_nowait``, ``close``); it
    may come before ``accept_websocket`` returns; its last call is
    ``CLOSED``. Such a WebSocket is kept alive by the library until then.
    """

    __slots__ = ("subprotocol", "_end")
    _DRAINING = F.websocket_draining
    _IDLE = F.websocket_set_idle_timeout
    _WHAT = "WebSocket"

    def __init__(self) -> None:
        raise TypeError("a WebSocket is made by request.accept_websocket()")

    def _released(self) -> Exception:
        end = self._end
        return WebSocketClosed(end[0] if end else None, end[1] if end else "", "the WebSocket was released")

    @property
    def close_code(self) -> Optional[int]:
        """The close code of the end once ``receive`` met it, else None."""
        return self._end[0] if self._end else None

    @property
    def close_reason(self) -> Optional[str]:
        """The reason of the end once ``receive`` met it, else None."""
        return self._end[1] if self._end else None

    def _closed(self) -> WebSocketClosed:
        end = self._end
        return WebSocketClosed(end[0], end[1]) if end else WebSocketClosed(None, "", "the WebSocket is closed or closing")

    # -- receiving ------------------------------------------------------------------

    def receive(self, timeout: Optional[float] = None) -> Union[str, bytes]:
        """The next message: ``str`` (text) or ``bytes`` (binary). Waits up
        to ``timeout`` seconds (None: as long as it takes), then raises
        ``TimeoutError``. Raises :class:`WebSocketClosed` at the end."""
        return self._receive(_deadline(timeout), False)

    def receive_nowait(self) -> Union[str, bytes]:
        """The next message if one is waiting, else :class:`WouldBlock`."""
        return self._receive(None, True)

    def _receive(self, deadline: Optional[float], nowait: bool) -> Union[str, bytes]:
        buf, address, view = _thread_buffer()
        length = c_size_t()
        kind = c_uint32()
        big: List[Any] = []  # a buffer of the message's size, when CHUNK is short

        def attempt(h: int) -> int:
            if big:
                return F.websocket_recv(h, ctypes.addressof(big[1]), len(big[0]), byref(length), byref(kind))
            return F.websocket_recv(h, address, CHUNK, byref(length), byref(kind))

        while True:
            rc = self._call(attempt, deadline, nowait, "warpcore_websocket_recv")
            if rc == OK:
                break
            if rc == BUFFER_TOO_SMALL:
                # The message stays first in line: take it into a buffer its size.
                data = bytearray(length.value)
                big[:] = [data, (ctypes.c_char * len(data)).from_buffer(data)]
                continue
            if rc == CLOSED:
                raise self._closed()
            if rc == INVALID_ARGUMENT and self._core.released:
                raise self._released()
            raise error_for(rc, "warpcore_websocket_recv")
        n = length.value
        payload = view[:n] if not big else memoryview(big[0])[:n]
        k = kind.value
        if k == _ffi.WEBSOCKET_KIND_TEXT:
            return str(payload, "utf-8")
        if k == _ffi.WEBSOCKET_KIND_BINARY:
            return payload.tobytes()
        # The end: two bytes of code, then the reason.
        data = payload.tobytes()
        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
        self._end = (code, data[2:].decode("utf-8", "replace"))
        raise self._closed()

    def __iter__(self) -> Iterator[Union[str, bytes]]:
        """The messages until the end (then ``close_code`` says how it ended)."""
        while True:
            try:
                yield self.receive()
            except WebSocketClosed:
                return

    # -- sending --------------------------------------------------------------------

    def send(self, data: Union[str, bytes, bytearray, memoryview], timeout: Optional[float] = None) -> None:
        """Sends ``data``: ``str`` as a text message, bytes as binary. Waits
        while the peer is not reading, up to ``timeout`` seconds (then
        ``TimeoutError``, nothing sent). Raises :class:`WebSocketClosed` when
        the connection is closed or closing."""
        self._send(data, _deadline(timeout), False)

    def send_nowait(self, data: Union[str, bytes, bytearray, memoryview]) -> None:
        """``send`` that raises :class:`WouldBlock` (nothing sent) instead of
        waiting; ``on_event`` is told ``WRITABLE`` when it may try again."""
        self._send(data, None, True)

    def _send(self, data: Any, deadline: Optional[float], nowait: bool) -> None:
        if isinstance(data, str):
            kind, payload = _ffi.WEBSOCKET_KIND_TEXT, data.encode("utf-8")
        else:
            kind, payload = _ffi.WEBSOCKET_KIND_BINARY, _as_bytes(data, "send")
        n = len(payload)
        send = F.websocket_send
        rc = self._call(lambda h: send(h, kind, payload, n), deadline, nowait, "warpcore_websocket_send")
        if rc == OK:
            return
        if rc == CLOSED:
            raise self._closed()
        if rc == INVALID_ARGUMENT and self._core.released:
            raise self._released()
        raise error_for(rc, "warpcore_websocket_send")

    # -- closing --------------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Starts the closing handshake with ``code`` (1000 normal, 1001 going
        away, 1003, 1007-1014, or 3000-4999) and ``reason`` (at most 123
        bytes of UTF-8). Never waits: the peer answers, the connection
        closes, and ``receive`` gives what was left, then the end. A peer
        that does not answer within 5 s is cut. Does nothing when the
        WebSocket is closed, closing or released."""
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"a close code must be an int, not {type(code).__name__}")
        if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
            raise ValueError(f"close code {code} may not be sent (1000-1003, 1007-1014 or 3000-4999)")
        r = reason.encode("utf-8")
        if len(r) > 123:
            raise ValueError(f"a close reason is at most 123 bytes of UTF-8, not {len(r)}")
        h = self._core.live()
        if h is None:
            return
        rc = F.websocket_close(h, code, r, len(r))
        if rc and rc != CLOSED and not (rc == INVALID_ARGUMENT and self._core.released):
            raise error_for(rc, "warpcore_websocket_close")

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        # 1011 (internal error) when the block raised, else a normal close.
        try:
            self.close(1000 if exc_type is None else 1011)
        finally:
            self.release()

    def __repr__(self) -> str:
        state = "released" if self._core.released else ("closed" if self._core.closed else "open")
        return f"<warpcore.WebSocket {state}>"


def accept(
    res: Optional[int],
    headers: Any = None,
    subprotocol: Optional[str] = None,
    max_message: Optional[int] = None,
    on_event: Optional[Callable[[WebSocket, WebSocketEvent], Any]] = None,
) -> WebSocket:
    """``warpcore_websocket_accept`` on response handle ``res`` (see ``Request.accept_websocket``)."""
    res = _response_handle(res)
    if max_message is None:
        limit = 0
    else:
        if isinstance(max_message, bool) or not isinstance(max_message, int):
            raise TypeError(f"max_message must be an int or None, not {type(max_message).__name__}")
        if not 0 < max_message < 2**64:
            raise ValueError(f"max_message {max_message!r} is out of range (1 .. 2**64 - 1, or None for 1 MiB)")
        limit = max_message
    if on_event is not None and not callable(on_event):
        raise TypeError("on_event must be callable")
    fields = list(headers.items() if hasattr(headers, "items") else headers or ())
    if subprotocol is not None:
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    h = header_array(fields)
    ws = object.__new__(WebSocket)
    ws.subprotocol = subprotocol
    ws._end = None
    core = _Core(on_event, WebSocketEvent, F.websocket_free)
    ws._make(core)
    out = c_void_p()

    def made() -> Tuple[int, int]:
        # Releases the GIL: from another thread the library makes the call
        # wait for the handler to return, and the worker may call back.
        rc = F.websocket_accept(res, h.address, h.count, limit, _EVENT_CB, core.token, byref(out))
        return rc, out.value or 0

    _install(core, made, F.websocket_set_nonblocking, _error("warpcore_websocket_accept"))
    return ws


# --- upgraded connections -----------------------------------------------------------


class Upgraded(_Handle):
    """A connection that switched protocols: ``request.upgrade(headers)``
    sent ``101`` with ``headers`` (which name the protocol in an ``Upgrade``
    field), ``request.take_over()`` sent nothing (the application writes its
    own answer). The handler returns it. Then the connection's bytes flow
    both ways: ``read(n)`` (``b""`` once the peer half-closed or the
    connection closed), ``write(data)``, ``shutdown_write()`` (a TCP
    half-close), ``close()``.

    Threads, waiting, ``on_event(upgraded, events)`` (:class:`UpgradeEvent`
    bits) and lifetime as for :class:`WebSocket`.
    """

    __slots__ = ()
    _DRAINING = F.upgraded_draining
    _IDLE = F.upgraded_set_idle_timeout
    _WHAT = "upgraded connection"

    def __init__(self) -> None:
        raise TypeError("an Upgraded connection is made by request.upgrade() or request.take_over()")

    def set_quiet_notice(self, on: bool = True) -> None:
        """With ``on``, ``on_event`` is told :attr:`UpgradeEvent.QUIET` at
        each half of the idle timeout without a byte either way, and the idle
        timeout no longer closes the connection: a protocol with pings sends
        one then, and closes the connection itself when the peer stays
        silent. Off (the default), the idle timeout closes a quiet
        connection. Nothing once the connection is closed."""
        if not isinstance(on, bool):
            raise TypeError("on must be a bool")
        rc = F.upgraded_set_quiet_notice(self._h(), on)
        if rc == CLOSED:
            return
        if rc:
            raise error_for(rc, "set_quiet_notice")

    def read(self, size: int = CHUNK, timeout: Optional[float] = None) -> bytes:
        """Up to ``size`` bytes that arrived, waiting for some up to
        ``timeout`` seconds (None: as long as it takes; then
        ``TimeoutError``); ``b""`` once the peer half-closed (writing may go
        on) or the connection is closed."""
        return self._read(size, _deadline(timeout), False)

    def read_nowait(self, size: int = CHUNK) -> bytes:
        """``read`` that raises :class:`WouldBlock` instead of waiting."""
        return self._read(size, None, True)

    def _read(self, size: int, deadline: Optional[float], nowait: bool) -> bytes:
        if size < 0:
            size = CHUNK
        if size == 0:
            return b""
        if size <= CHUNK:
            _, address, view = _thread_buffer()
        else:
            data = bytearray(size)
            anchor = (ctypes.c_char * size).from_buffer(data)
            address, view = ctypes.addressof(anchor), memoryview(data)
        got = c_size_t()
        read = F.upgraded_read
        rc = self._call(lambda h: read(h, address, size, byref(got)), deadline, nowait, "warpcore_upgraded_read")
        if rc == OK:
            return view[: got.value].tobytes()
        if rc == CLOSED:
            return b""
        if rc == INVALID_ARGUMENT and self._core.released:
            raise self._released()
        raise error_for(rc, "warpcore_upgraded_read")

    def write(self, data: Union[bytes, bytearray, memoryview], timeout: Optional[float] = None) -> None:
        """Sends ``data`` (copied). Waits, up to ``timeout`` seconds, while
        the server's stream high-water mark is queued (then
        ``TimeoutError``, nothing sent). Raises
        :class:`~warpcore.ClientClosedError` once the connection is closed or
        its writing side shut."""
        self._write(data, _deadline(timeout), False)

    def write_nowait(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """``write`` that raises :class:`WouldBlock` (nothing sent) instead of waiting."""
        self._write(data, None, True)

    def _write(self, data: Any, deadline: Optional[float], nowait: bool) -> None:
        payload = _as_bytes(data, "write")
        n = len(payload)
        write = F.upgraded_write
        rc = self._call(lambda h: write(h, payload, n), deadline, nowait, "warpcore_upgraded_write")
        self._check(rc, "warpcore_upgraded_write")

    def _check(self, rc: int, call: str) -> None:
        if rc == OK:
            return
        if rc == INVALID_ARGUMENT and self._core.released:
            raise self._released()
        if rc == CLOSED:
            raise _ffi.ClientClosedError(CLOSED, "the connection is closed, or its writing side was shut", call)
        raise error_for(rc, call)

    def shutdown_write(self) -> None:
        """Shuts the writing side once what was written has left (the peer
        reads the end of the stream); reading goes on. Raises
        :class:`~warpcore.ClientClosedError` when closed or shut already."""
        self._check(F.upgraded_shutdown_write(self._h()), "warpcore_upgraded_shutdown_write")

    def close(self) -> None:
        """Closes the connection once what was written has left; reads and
        writes waiting on other threads end. Does nothing when it is closed
        or released already. The handle is freed by ``release()``."""
        h = self._core.live()
        if h is None:
            return
        rc = F.upgraded_close(h)
        if rc and rc != CLOSED and not (rc == INVALID_ARGUMENT and self._core.released):
            raise error_for(rc, "warpcore_upgraded_close")

    def __repr__(self) -> str:
        state = "released" if self._core.released else ("closed" if self._core.closed else "open")
        return f"<warpcore.Upgraded {state}>"


def upgrade(
    res: Optional[int],
    headers: Any,
    on_event: Optional[Callable[[Upgraded, UpgradeEvent], Any]] = None,
    take_over: bool = False,
) -> Upgraded:
    """``warpcore_response_upgrade`` (or ``_take_over``) on response handle ``res``."""
    res = _response_handle(res)
    if on_event is not None and not callable(on_event):
        raise TypeError("on_event must be callable")
    h = header_array(None if take_over else headers)
    conn = object.__new__(Upgraded)
    core = _Core(on_event, UpgradeEvent, F.upgraded_free)
    conn._make(core)
    out = c_void_p()

    def made() -> Tuple[int, int]:
        if take_over:
            rc = F.response_take_over(res, _EVENT_CB, core.token, byref(out))
        else:
            rc = F.response_upgrade(res, h.address, h.count, _EVENT_CB, core.token, byref(out))
        return rc, out.value or 0

    call = "warpcore_response_take_over" if take_over else "warpcore_response_upgrade"
    _install(core, made, F.upgraded_set_nonblocking, _error(call))
    return conn

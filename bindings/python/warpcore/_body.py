"""Request bodies read as they arrive (``warpcore_body``).

A body larger than the server's ``whole_body_max`` that did not arrive with
its head *streams*: the handler is called once the head is in, with
``Request.body_follows`` true and ``Request.body`` empty, and the body is read
through a :class:`BodyReader` (``Request.stream()``). The library holds at
most 64 KiB of it per connection and reads nothing more from the socket until
the application has taken those bytes, so a client sending faster than the
application reads is slowed down by TCP, not buffered in memory.

Threads: off the library's worker threads a read waits for bytes. On a worker
thread (the handler itself, on the :class:`~warpcore.Server`'s event-loop
threads) the library never waits: a read there gets what has already arrived
(little: the worker reads nothing more while its handler runs) or raises
:class:`BodyWouldBlock`. So a handler hands the reader to another thread: it
returns a :class:`~warpcore.StreamResponse` whose iterable reads it (run on a
stream thread), or passes it to a thread of its own and answers later.

``_RawBody`` is the one owner of the C pointer (freed exactly once, never
while a read on it is under way); :class:`BodyReader` is the public reader on
top; the WSGI adapter wraps ``_RawBody`` in an ``io.BufferedReader`` for
``wsgi.input``. ``_RawBody`` also reads without ever waiting
(``try_read``, ``warpcore_body_try_read``) and registers the engine's
readiness callback (``on_readable``, ``warpcore_body_on_readable``): the ASGI
server reads streamed bodies so, on its event loop, with no thread per
upload.
"""

from __future__ import annotations

import ctypes
import io
import threading
from ctypes import byref, c_size_t, c_void_p
from typing import Any, Iterator, List, Optional

from ._ffi import WOULD_BLOCK, F, WarpcoreError, error_for, guarded

__all__ = ["BodyReader", "BodyWouldBlock", "CHUNK"]

#: The most a read asks the library for at once: its window per connection.
CHUNK = 64 * 1024

# Reads may wait (off the workers) and come from daemon threads: guarded (see
# _ffi.guarded), and releasing the GIL (F, a CDLL). The non-blocking read and
# the readiness callback's registration likewise. The free waits for nothing
# but a readiness callback running on a worker (which needs the GIL: F lets
# go of it), and so does a registration that replaces one.
_body_read = guarded(F.body_read)
_body_try_read = guarded(F.body_try_read)
_body_on_readable = guarded(F.body_on_readable)
_body_free = F.body_free


class BodyWouldBlock(WarpcoreError, BlockingIOError):
    """A read on a library worker thread (the handler) found no body bytes
    there yet: a worker thread never waits. Read from another thread (a
    :class:`~warpcore.StreamResponse`'s iterable, or a thread of your own).
    Bytes a read gathered before it raised stay in the reader for the next
    read."""


def take_reader(res: int) -> int:
    """``warpcore_response_body`` for handle ``res``, on the worker inside
    the handler call: the address of the new ``warpcore_body``."""
    out = c_void_p()
    # Releasing the GIL: called from another thread while the handler runs,
    # the library makes the call wait for the handler, which needs the GIL.
    rc = F.response_body(res, byref(out))
    if rc:
        raise error_for(rc, "warpcore_response_body")
    assert out.value is not None
    return out.value


def _would_block() -> BodyWouldBlock:
    return BodyWouldBlock(
        WOULD_BLOCK,
        "the rest of the request body has not arrived, and a read on a worker thread (the handler) never waits: "
        "read it from another thread (a StreamResponse's iterable, or a thread of your own)",
        "warpcore_body_read",
    )


class _RawBody(io.RawIOBase):
    """The ``warpcore_body`` at ``ptr``, as a raw binary stream: ``readinto``
    is one ``warpcore_body_read``. Owns the pointer: ``close()`` (or garbage
    collection) frees it, at once or, when reads are under way on other
    threads, as the last of them returns (the C rule: a free must not
    overlap another call)."""

    def __init__(self, ptr: int) -> None:
        super().__init__()
        self._ptr: Optional[int] = ptr
        self._gate = threading.Lock()  # never held across a library call
        self._busy = 0  # reads under way
        self._orphan: Optional[int] = None  # closed while busy: freed by the last read
        self.ended = False

    def readable(self) -> bool:
        return True

    def _call(self, fn: Any, *args: Any) -> int:
        """``fn(ptr, *args)``, a library call on the body, never overlapping
        its free (which, asked for meanwhile, the last call makes): its
        result code. Raises ValueError (closed)."""
        with self._gate:
            ptr = self._ptr
            if ptr is None:
                raise ValueError("read from a closed request body")
            self._busy += 1
        try:
            return fn(ptr, *args)
        finally:
            with self._gate:
                self._busy -= 1
                orphan = self._orphan if not self._busy else None
                if orphan is not None:
                    self._orphan = None
            if orphan is not None:
                _body_free(orphan)

    def _read(self, address: int, capacity: int) -> int:
        """One library read of up to ``capacity`` bytes into ``address``:
        their count, 0 at the end. Raises BodyWouldBlock, ClientClosedError
        (the body cannot be had whole: the message says why), ValueError
        (closed)."""
        if self.ended:
            return 0
        got = c_size_t()
        rc = self._call(_body_read, address, capacity, byref(got))
        if rc:
            if rc == WOULD_BLOCK:
                raise _would_block()
            raise error_for(rc, "warpcore_body_read")
        n = got.value
        if n == 0:
            self.ended = True
        return n

    def try_read(self, address: int, capacity: int) -> Optional[int]:
        """One read of up to ``capacity`` bytes into ``address`` that never
        waits, on any thread (``warpcore_body_try_read``): their count, 0 at
        the end, None while nothing has arrived; the callback set by
        :meth:`on_readable` is then owed one call, on the worker, once bytes
        arrive or the body ends or fails. Raises ClientClosedError (the body
        cannot be had whole), ValueError (closed)."""
        if self.ended:
            return 0
        got = c_size_t()
        rc = self._call(_body_try_read, address, capacity, byref(got))
        if rc:
            if rc == WOULD_BLOCK:
                return None
            raise error_for(rc, "warpcore_body_try_read")
        n = got.value
        if n == 0:
            self.ended = True
        return n

    def on_readable(self, callback: Any, userdata: Optional[int]) -> None:
        """Sets the engine's readiness callback (``warpcore_body_on_readable``):
        ``callback`` is a ``warpcore_body_ready_cb`` the caller keeps alive
        (an empty ``warpcore_body_ready_cb()``, NULL, removes it). It runs
        once on the worker after each :meth:`try_read` that found nothing,
        as soon as the body may be read on. Set it before the first
        ``try_read``. It never runs once the body was freed (by
        :meth:`close`, or by the last call under way on another thread then:
        the free waits for a running callback), nor once a call that
        replaced it returned. Raises ValueError (closed)."""
        rc = self._call(_body_on_readable, callback, userdata)
        if rc:
            raise error_for(rc, "warpcore_body_on_readable")

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = len(view)
        if n == 0:
            return 0
        # The buffer's address; the ctypes object that exports it goes before
        # this returns (a caller may resize ``b`` next: RawIOBase.read does).
        anchor = ctypes.c_char.from_buffer(view)
        try:
            return self._read(ctypes.addressof(anchor), n)
        finally:
            del anchor
            view.release()

    def close(self) -> None:
        with self._gate:
            ptr, self._ptr = self._ptr, None
            if ptr is not None and self._busy:
                self._orphan, ptr = ptr, None
        if ptr is not None:
            _body_free(ptr)
        super().close()


class BodyReader:
    """A request body as a binary file that fills as the body arrives.

    ``read(n)`` (n bytes, fewer only at the end), ``read()`` (the rest),
    ``readinto(b)``, ``readline()``, ``readlines()`` work as a file's do;
    ``read1(n)`` and iteration give the bytes as they arrive, a chunk at a
    time (at most 64 KiB each), without waiting for more: ``for chunk in
    request.stream(): ...``. ``b""`` means the body has ended.

    Off the library's worker threads every read waits for the bytes it needs.
    On a worker thread (inside the handler) nothing waits: ``read1`` and
    iteration return what has arrived, and any read that would have to wait
    raises :class:`BodyWouldBlock` (keeping what it gathered for the next
    read), so no read ever returns a body cut short without saying so.

    A body that cannot be had whole (the client left or stalled past the body
    timeout, the body passed ``max_body_size``, bad chunked framing) raises
    :class:`~warpcore.ClientClosedError`; past ``max_body_size`` the client
    was answered 413 already if the answer had not begun.

    May move between threads and be used from any thread (one read at a
    time: reads on one reader take turns). ``close()`` releases it (the rest
    of the body is discarded); it is closed at the end of a
    :class:`~warpcore.StreamResponse` that iterates it, and when it is
    garbage collected. A context manager.
    """

    __slots__ = ("_raw", "_pending", "_lock", "_buf", "_closed", "__weakref__")

    def __init__(self, raw: Optional[_RawBody] = None, data: bytes = b"") -> None:
        self._raw = raw  # None: the whole body is ``data``
        self._pending = bytearray(data)  # read from the library, not yet by the caller
        self._lock = threading.Lock()  # one read at a time
        self._buf: Optional[Any] = None  # the library reads into this (made on first use)
        self._closed = False

    @property
    def streams(self) -> bool:
        """Whether the body is read from the connection as it arrives (False:
        it arrived whole and is read from memory)."""
        return self._raw is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def readable(self) -> bool:
        return True

    # -- the library --------------------------------------------------------------

    def _fetch(self) -> bytes:
        """One library read (up to CHUNK): b"" at the end. Lock held."""
        raw = self._raw
        if raw is None:
            return b""
        buf = self._buf
        if buf is None:
            buf = self._buf = ctypes.create_string_buffer(CHUNK)
        n = raw._read(ctypes.addressof(buf), CHUNK)
        return ctypes.string_at(buf, n) if n else b""

    def _check(self) -> None:
        if self._closed:
            raise ValueError("read from a closed BodyReader")

    # -- reads --------------------------------------------------------------------

    def read1(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (any number with -1) of what has arrived,
        waiting only while nothing has (never on a worker thread); b"" at
        the end."""
        with self._lock:
            self._check()
            pending = self._pending
            if not pending:
                data = self._fetch()
                if size is None or size < 0 or len(data) <= size:
                    return data
                pending += data
            n = len(pending) if size is None or size < 0 else min(size, len(pending))
            out = bytes(pending[:n])
            del pending[:n]
            return out

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = self.read1()
        if not chunk:
            raise StopIteration
        return chunk

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The body as it arrives, in chunks of at most ``size`` bytes."""
        while True:
            chunk = self.read1(size)
            if not chunk:
                return
            yield chunk

    def read(self, size: Optional[int] = -1) -> bytes:
        """``size`` bytes (fewer only at the end), or with -1 / None the rest
        of the body; b"" at the end."""
        with self._lock:
            self._check()
            pending = self._pending
            want = -1 if size is None or size < 0 else size
            # On BodyWouldBlock what was gathered stays in pending for the next read.
            while want < 0 or len(pending) < want:
                data = self._fetch()
                if not data:
                    break
                pending += data
            n = len(pending) if want < 0 else min(want, len(pending))
            out = bytes(pending[:n])
            del pending[:n]
            return out

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, b: Any) -> int:
        """Fills ``b`` (fewer bytes only at the end): how many were written."""
        view = memoryview(b).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readline(self, size: Optional[int] = -1) -> bytes:
        """The next line, its ``\\n`` included (none at the end of the body),
        at most ``size`` bytes when it is given."""
        limit = -1 if size is None or size < 0 else size
        with self._lock:
            self._check()
            pending = self._pending
            searched = 0
            while True:
                i = pending.find(b"\n", searched)
                if i >= 0:
                    n = i + 1
                    break
                searched = len(pending)
                if 0 <= limit <= len(pending):
                    n = limit
                    break
                data = self._fetch()
                if not data:
                    n = len(pending)
                    break
                pending += data
            if 0 <= limit < n:
                n = limit
            out = bytes(pending[:n])
            del pending[:n]
            return out

    def readlines(self, hint: Optional[int] = -1) -> List[bytes]:
        """The remaining lines (stopping once ``hint`` bytes were read, when given)."""
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    # -- lifetime -----------------------------------------------------------------

    def close(self) -> None:
        """Releases the reader; what it did not read is discarded (the library
        drains a little of it, then closes the connection after its answer).
        Safe from any thread, even while another one waits in a read (that
        read ends first). Idempotent."""
        self._closed = True
        raw = self._raw
        if raw is not None:
            raw.close()

    def __enter__(self) -> "BodyReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "streaming" if self._raw is not None else "whole"
        return f"<warpcore.BodyReader {kind}{' closed' if self._closed else ''}>"


def reader_for(res: int) -> BodyReader:
    """A BodyReader over the streamed body of handle ``res`` (in the handler call)."""
    return BodyReader(_RawBody(take_reader(res)))


def raw_for(res: int) -> _RawBody:
    """The raw stream over the streamed body of handle ``res`` (in the handler call)."""
    return _RawBody(take_reader(res))


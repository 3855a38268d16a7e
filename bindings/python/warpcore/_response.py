"""Responses a handler returns, and how each is handed to the library.

``Response`` is answered in one call (``warpcore_respond``, or
``warpcore_respond_buffer`` without a copy for large bodies). ``StreamResponse``
is started at once and its iterable is drained by a stream thread, whose writes
block while the client is slow (the library's backpressure), so the event loop
never waits for the iterable. ``FileResponse`` is sent by the library
(``warpcore_respond_file``: sendfile, ETag, conditionals, ranges), also when
answered later from another thread.
"""

from __future__ import annotations

import logging
import operator
import os
import queue
import threading
import time
from ctypes import byref, c_void_p
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _ffi
from ._websocket import _Handle as _Switched
from ._ffi import (
    CLOSED,
    INLINE,
    LENGTH_MISMATCH,
    RELEASE,
    F,
    HeaderArray,
    WarpcoreError,
    error_for,
    guarded,
    header_array,
    pin,
)

__all__ = ["Response", "FileResponse", "StreamResponse", "Deferred", "HeadersLike"]

log = logging.getLogger("warpcore")

HeadersLike = Union[None, Sequence[Tuple[str, str]], Mapping[str, str]]
Body = Union[bytes, bytearray, memoryview, str]

#: Bodies at least this large are handed over without a copy.
ZERO_COPY_MIN = 64 * 1024
#: Read size for file-like bodies the library cannot send itself (WSGI).
FILE_CHUNK = 256 * 1024

# Off the worker (stream threads, deferred answers): guarded (see _ffi.guarded).
_respond = guarded(F.respond)
_respond_buffer = guarded(F.respond_buffer)
_start = guarded(F.response_start)
_write = guarded(F.response_write)
_write_buffer = guarded(F.response_write_buffer)
_end = guarded(F.response_end)
_abort = guarded(F.response_abort)
_respond_inline = INLINE.respond
# Releases the GIL on the worker too: the library opens and stats the file.
_respond_file = guarded(F.respond_file)
_respond_buffer_inline = INLINE.respond_buffer
_start_inline = INLINE.response_start


def _body_bytes(body: Any) -> bytes:
    if type(body) is bytes:
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"a response body must be bytes or str, not {type(body).__name__}")


def _status(value: Any) -> int:
    """``value`` as a status the C calls can take (``uint16_t``). ctypes would
    keep only the low bits (65736 sent as 200): out of that range is a
    ``ValueError`` here; the library then refuses what is not 200..599
    (``INVALID_STATUS``)."""
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"a status must be an int, not {type(value).__name__}") from None
    if not 0 <= n < 65536:
        raise ValueError(f"status {value!r} is out of range (the library answers with 200..599)")
    return n


def _content_length(value: Any) -> Optional[int]:
    """None (chunked) or a length the C call can take (``int64_t``, where -1
    means chunked): 2**64 - 1 would have been sent chunked."""
    if value is None:
        return None
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"content_length must be an int or None, not {type(value).__name__}") from None
    return length_in_range(value, n, "content_length", ", or None for chunked")


def length_in_range(value: Any, n: int, what: str, alternative: str = "") -> int:
    """``n`` (``value`` as an int) if the C calls can take it as a length
    (``int64_t``, where -1 means chunked): 2**64 - 1 would have been sent
    chunked, -5 refused later. Else a ``ValueError`` naming ``what``."""
    if not 0 <= n < 2**63:
        raise ValueError(f"{what} {value!r} is out of range (0 .. 2**63 - 1{alternative})")
    return n


# States of Response._prepared below the address of a prepared response.
_UNSEEN, _SEEN_ONCE, _NOT_PREPARED = 0, 1, 2
_PREPARED_MIN = _NOT_PREPARED

# Guards what a Response caches (_fast, _array, _prepared, _version) against
# a setter on another thread. Taken only when a response is first prepared or
# changed, never on the answering path; never held across a library call.
_CACHE_LOCK = threading.RLock()


class Response:
    """A complete response: ``Response(200, [("Content-Type", "text/plain")], b"hi")``.

    ``headers`` is a list of (name, value) pairs or a dict; ``body`` bytes or
    str (sent as UTF-8). The library adds ``Date``, ``Server``,
    ``Content-Length`` and ``Connection``. A response may be returned again and
    again (a module-level constant): what the C call needs is prepared once.
    """

    __slots__ = ("_status", "_headers", "_body", "_fast", "_array", "_prepared", "_retired", "_version")

    def __init__(self, status: int = 200, headers: HeadersLike = None, body: Body = b"") -> None:
        # _UNSEEN, _SEEN_ONCE, _NOT_PREPARED, or the address of the
        # warpcore_prepared made the second time this response is answered.
        # Set first: __del__ reads it after a constructor that raised too.
        self._prepared = _UNSEEN
        # Earlier prepared responses of this object (made before a setter
        # ran): a handler thread may still be returning one, so they are
        # freed with the object.
        self._retired: Optional[List[int]] = None
        self._version = 0  # one more for each setter call
        self._fast: Optional[Tuple[Any, ...]] = None
        self._array: Optional[HeaderArray] = None
        self._status = _status(status)
        self._headers = headers
        self._body = body if type(body) is bytes else _body_bytes(body)

    def __del__(self) -> None:
        # By now no handler thread can be returning this response: the
        # server keeps the last one each thread returned until that thread's
        # next request, and the library copies it as the handler returns.
        for p in (getattr(self, "_prepared", _UNSEEN), *(getattr(self, "_retired", None) or ())):
            if p > _PREPARED_MIN:
                _ffi.F.prepared_free(p)

    def _prepared_answer(self) -> int:
        """The address of this response as a ``warpcore_prepared`` for an
        answering handler to return, or 0: made (one foreign call) the second
        time the response is answered, since one answered once, made per
        request, is not worth preparing."""
        p = self._prepared
        if p > _PREPARED_MIN:
            return p
        if p == _NOT_PREPARED:
            return 0
        with _CACHE_LOCK:
            p = self._prepared
            if p != _SEEN_ONCE:  # unseen, or another thread got here first
                if p == _UNSEEN:
                    self._prepared = _SEEN_ONCE
                return p if p > _PREPARED_MIN else 0
            # Seen once before: prepare it now, if it has the untyped fields.
            # What it is made of is read together, with the version it had.
            version, fast, h, status, body = self._version, self._fast, self._array, self._status, self._body
        made = None
        if fast and h is not None:
            out = c_void_p()
            # Outside the lock (a foreign call): another thread may prepare
            # the same response, or a setter change it, meanwhile.
            if _ffi.F.prepared_new(status, h.address, h.count, body, len(body), byref(out)) == 0:
                made = out.value
        with _CACHE_LOCK:
            if self._version == version and self._prepared == _SEEN_ONCE:
                # Not preparable (the library refused it, or the typed path
                # is needed): answered the ordinary way from now on.
                self._prepared = made or _NOT_PREPARED
                return made or 0
            current = self._prepared if self._version == version else _UNSEEN
        # Another thread prepared it first, or a setter changed it: ours is
        # seen by nobody and goes; this answer takes the ordinary way.
        if made:
            _ffi.F.prepared_free(made)
        return current if current > _PREPARED_MIN else 0

    @property
    def status(self) -> int:
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        value = _status(value)
        with _CACHE_LOCK:
            self._status = value
            self._changed()

    @property
    def headers(self) -> HeadersLike:
        return self._headers

    @headers.setter
    def headers(self, value: HeadersLike) -> None:
        with _CACHE_LOCK:
            self._headers = value
            self._changed()

    @property
    def body(self) -> bytes:
        return self._body

    @body.setter
    def body(self, value: Body) -> None:
        value = value if type(value) is bytes else _body_bytes(value)
        with _CACHE_LOCK:
            self._body = value
            self._changed()

    def _changed(self) -> None:
        """After a setter, with _CACHE_LOCK held: what was prepared from the
        old fields is dropped; the old prepared response is kept until the
        object goes (see __del__)."""
        self._version += 1
        self._fast = None
        if self._prepared > _PREPARED_MIN:
            if self._retired is None:
                self._retired = []
            self._retired.append(self._prepared)
        self._prepared = _UNSEEN

    def _prepare(self) -> Tuple[Any, ...]:
        """(status, header array pointer, header count, body, body length):
        the arguments after the handle of the untyped in-handler call
        (``RAW.respond(res, *fast)``), or () when the typed path must be
        taken (a large body, a status out of range). Kept until a setter runs;
        a header list changed in place is not seen (assign it again)."""
        with _CACHE_LOCK:  # reentrant: a header value's __str__ may read the response
            body = self._body
            status = self._status
            if len(body) < ZERO_COPY_MIN:
                h = header_array(self._headers)
                self._array = h  # keeps the fields the pointer points to alive
                fast: Tuple[Any, ...] = (status, h.pointer, h.count, body, len(body))
            else:
                fast = ()
            self._fast = fast
            return fast

    def _header_array(self) -> HeaderArray:
        return header_array(self._headers)

    def __repr__(self) -> str:
        return f"<Response {self._status} {len(self._body)} bytes>"


class StreamResponse:
    """A streamed response: the status and headers now, then each chunk the
    iterable yields (bytes or str), sent as it comes.

    Without ``content_length`` the body is chunked (HTTP/1.1) or ends with the
    connection (HTTP/1.0); with it exactly that many bytes must follow. The
    iterable runs on a stream thread (not the event loop); a list or tuple is
    sent at once. Its ``close()`` is called at the end, as WSGI does.
    """

    __slots__ = ("iterable", "_status", "headers", "_content_length")

    def __init__(
        self,
        iterable: Iterable[Body],
        status: int = 200,
        headers: HeadersLike = None,
        content_length: Optional[int] = None,
    ) -> None:
        self.iterable = iterable
        self.status = status
        self.headers = headers
        self.content_length = content_length

    @property
    def status(self) -> int:
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        self._status = _status(value)

    @property
    def content_length(self) -> Optional[int]:
        return self._content_length

    @content_length.setter
    def content_length(self, value: Optional[int]) -> None:
        self._content_length = _content_length(value)


class FileResponse:
    """The contents of the file at ``path``: ``Content-Type`` by extension
    (unless given), ``Last-Modified``, ``ETag``, conditional requests and
    ranges, all done by the library. A missing file is a 404."""

    __slots__ = ("path", "_status", "headers", "content_type")

    def __init__(
        self,
        path: Union[str, os.PathLike],
        status: int = 200,
        headers: HeadersLike = None,
        content_type: Optional[str] = None,
    ) -> None:
        self.path = os.fspath(path)
        self.status = status
        self.headers = headers
        self.content_type = content_type

    @property
    def status(self) -> int:
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        self._status = _status(value)


class Deferred:
    """An answer made later, off the event loop: ``Deferred(fn, *args)``
    returned by a handler runs ``fn(*args)`` on a stream thread after the
    handler returned, and answers with what it returns (a :class:`Response`,
    :class:`StreamResponse`, :class:`FileResponse`, bytes or str); an
    exception becomes a 500. For work that waits, such as reading a body
    that streams (``Request.stream()``, taken in the handler) before
    answering: there reads wait for the bytes, and a body over
    ``max_body_size`` is still answered 413 by the library, since the
    answer has not begun."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Any, *args: Any) -> None:
        if not callable(fn):
            raise TypeError("Deferred wants a callable")
        self.fn = fn
        self.args = args


TEXT_PLAIN = [("Content-Type", "text/plain; charset=utf-8")]
_ERROR_500 = Response(500, TEXT_PLAIN, b"Internal Server Error\n")
_ERROR_404 = Response(404, TEXT_PLAIN, b"Not Found\n")


def _finished(rc: int, call: str) -> bool:
    """For a stream call's result: True when the handle is released (client
    gone, length broken), raising for real errors."""
    if rc == 0:
        return False
    if rc == CLOSED or rc == LENGTH_MISMATCH:
        log.debug("%s: %s", call, _ffi.result_str(rc))
        return True
    raise error_for(rc, call)


def _merge_headers(headers: HeadersLike, extra: Sequence[Tuple[str, str]]) -> list:
    """``extra`` fields unless ``headers`` has them already."""
    if headers is None:
        base: list = []
    elif hasattr(headers, "items"):
        base = list(headers.items())  # type: ignore[union-attr]
    else:
        base = list(headers)
    have = {str(n).lower() for n, _ in base}
    return base + [(n, v) for n, v in extra if n.lower() not in have]


class StreamThreads:
    """Up to ``limit`` daemon threads that run submitted calls (the streams'
    iterables), started as needed and kept for the next.

    Daemon threads, not ``concurrent.futures``': the interpreter joins
    non-daemon threads at exit before any ``atexit`` hook can stop the server,
    so a stream waiting for its next event (server-sent events) or blocked on
    a client that does not read would keep the process from exiting."""

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        self._idle = 0  # threads waiting for a call and not yet promised one
        self._closed = False

    def submit(self, fn: Any, *args: Any) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the server's stream threads are stopped (it was shut down)")
            self._queue.put((fn, args))
            if self._idle:
                self._idle -= 1  # that thread takes this call
                return
            if len(self._threads) >= self._limit:
                return  # queued until a thread is free
            t = threading.Thread(target=self._run, name=f"warpcore-stream-{len(self._threads)}", daemon=True)
            self._threads.append(t)
        t.start()

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException:  # noqa: B902 - pump never raises; be sure the thread lives on
                log.exception("a stream thread's call failed")
            del item, fn, args
            with self._lock:
                self._idle += 1

    def owns(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is one of these."""
        return thread in self._threads

    def shutdown(self, timeout: Optional[float]) -> bool:
        """Refuses new calls, lets the threads finish what they run (waiting
        up to ``timeout`` seconds, None: as long as it takes, 0: not at all);
        returns whether every thread has ended."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if timeout is None:
            for t in threads:
                t.join()
        elif timeout > 0:
            deadline = time.monotonic() + timeout
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    def forget(self) -> None:
        """In a child forked from the process: the threads were the parent's."""
        self._lock = threading.Lock()
        self._queue = queue.SimpleQueue()
        self._threads = []
        self._idle = 0
        self._closed = True


class Responder:
    """Sends handler results through response handles; owns the stream
    threads. One per server."""

    def __init__(self, stream_threads: int = 16) -> None:
        self._threads = StreamThreads(stream_threads)

    # -- public entry points ---------------------------------------------------

    def answer(self, res: Any, result: Any, on_worker: bool) -> None:
        """Answers handle ``res`` with ``result``. ``on_worker``: we are inside
        the handler call (the fast path; writes never block there)."""
        if type(result) is Response:
            body = result._body
            h = result._header_array()
            n = len(body)
            if n < ZERO_COPY_MIN:
                rc = (_respond_inline if on_worker else _respond)(res, result.status, h.address, h.count, body, n)
            else:
                rc = (_respond_buffer_inline if on_worker else _respond_buffer)(
                    res, result.status, h.address, h.count, body, n, RELEASE, pin(body)
                )
            if rc:
                if rc == CLOSED:
                    return
                raise error_for(rc, "warpcore_respond")
            return
        if isinstance(result, StreamResponse):
            self._stream(res, result, on_worker)
        elif isinstance(result, Deferred):
            self._submit(self._deferred, res, result)
        elif isinstance(result, FileResponse):
            self._file(res, result, on_worker)
        elif isinstance(result, Response):
            self.answer(res, Response(result.status, result.headers, result.body), on_worker)
        elif isinstance(result, (bytes, str)):
            self.answer(res, Response(200, TEXT_PLAIN if isinstance(result, str) else None, result), on_worker)
        elif isinstance(result, _Switched):
            return  # a WebSocket or an upgraded connection: the 101 was the answer
        elif result is None:
            raise TypeError(
                "the handler returned None instead of a Response (a handler that accepted a WebSocket returns it)"
            )
        else:
            raise TypeError(f"the handler returned {type(result).__name__}, not a Response")

    def fail(self, res: int) -> None:
        """Answers 500 if the request has not been answered yet."""
        h = header_array(_ERROR_500.headers)
        rc = _respond(res, 500, h.address, h.count, _ERROR_500.body, len(_ERROR_500.body))
        if rc and rc not in (CLOSED, _ffi.ALREADY_ANSWERED):
            log.error("cannot answer 500: %s", error_for(rc, "warpcore_respond"))

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Stops the stream threads (see ``StreamThreads.shutdown``); whether
        they all ended."""
        return self._threads.shutdown(timeout)

    def owns(self, thread: threading.Thread) -> bool:
        return self._threads.owns(thread)

    def forget(self) -> None:
        self._threads.forget()

    def _deferred(self, res: int, d: Deferred) -> None:
        """On a stream thread: runs a Deferred and answers with its result."""
        try:
            result = d.fn(*d.args)
            if isinstance(result, Deferred):
                raise TypeError("a Deferred's function returned another Deferred")
            self.answer(res, result, False)
        except _ffi.ClientClosedError as exc:
            # A body read failed: the client left or stalled, or the body
            # passed max_body_size (the library answered 413): not a bug.
            log.info("a deferred answer gave up: %s", exc)
            self.fail(res)
        except BaseException as exc:  # noqa: B902 - a stream thread must live on
            log.error("a deferred answer failed", exc_info=(type(exc), exc, exc.__traceback__))
            self.fail(res)

    # -- streams ------------------------------------------------------------------

    def _submit(self, fn: Any, *args: Any) -> None:
        self._threads.submit(fn, *args)

    def _stream(self, res: int, s: StreamResponse, on_worker: bool) -> None:
        h = header_array(s.headers)
        length = -1 if s.content_length is None else s.content_length  # checked by its setter
        rc = (_start_inline if on_worker else _start)(res, s.status, h.address, h.count, length)
        if rc:
            _close(s.iterable)
            if rc == CLOSED:
                return
            raise error_for(rc, "warpcore_response_start")
        if on_worker and not isinstance(s.iterable, (list, tuple)):
            # The handle now outlives the handler call: a stream thread ends it.
            self._submit(pump, res, s.iterable)
        else:
            pump(res, s.iterable)

    def _file(self, res: Any, f: FileResponse, on_worker: bool) -> None:
        # The library sends the file itself (sendfile, ETag, conditionals,
        # ranges): inside the handler call through the worker's caches, after
        # it (a deferred answer) opened on this thread. On the worker too the
        # call releases the GIL: opening and stat-ing a file can take a while.
        extra = [("Content-Type", f.content_type)] if f.content_type else []
        h = header_array(_merge_headers(f.headers, extra) if extra else f.headers)
        path = os.fsencode(os.path.abspath(f.path))
        rc = _respond_file(res, f.status, h.address, h.count, path, len(path))
        if rc == 0 or rc == CLOSED:
            return
        if rc == _ffi.IO_ERROR:  # missing, a directory, unreadable: nothing was sent
            return self.answer(res, _ERROR_404, on_worker)
        raise error_for(rc, "warpcore_respond_file")


def _close(iterable: Any) -> None:
    close = getattr(iterable, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("close() of a response iterable failed")


def pump(res: int, iterable: Iterable[Any]) -> None:
    """Writes every chunk of ``iterable`` to the started stream ``res`` and ends
    it. Runs on a stream thread (writes block above the high-water mark) or
    inside the handler call for lists. Never raises: an error is logged and
    the stream aborted (the connection closes without the stream's end, so
    the client sees an incomplete body). The iterable's ``close()`` runs
    before the stream ends: a client holding the whole body knows it ran."""
    finished = False
    try:
        for chunk in iterable:
            if type(chunk) is not bytes:
                chunk = _body_bytes(chunk)
            n = len(chunk)
            if not n:
                continue
            if n < ZERO_COPY_MIN:
                rc = _write(res, chunk, n)
            else:
                rc = _write_buffer(res, chunk, n, RELEASE, pin(chunk))
            if rc and _finished(rc, "warpcore_response_write"):
                return
        finished = True
    except WarpcoreError as exc:
        log.error("streamed response failed: %s", exc)
    except Exception:
        log.exception("a streamed response's iterable raised; the response is cut short")
    finally:
        _close(iterable)
    if finished:
        rc = _end(res)
        if rc == LENGTH_MISMATCH:
            log.error("a streamed response ended short of its Content-Length; the connection is closed")
        elif rc and rc != CLOSED:
            log.error("warpcore_response_end: %s", error_for(rc, "warpcore_response_end"))
        return
    # After an error: abort, which releases the handle and closes the
    # connection without the last chunk.
    rc = _abort(res)
    if rc and rc != CLOSED:
        log.error("warpcore_response_abort: %s", error_for(rc, "warpcore_response_abort"))

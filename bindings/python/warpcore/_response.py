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
import os
from concurrent.futures import ThreadPoolExecutor
from ctypes import byref, c_void_p
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _ffi
from ._ffi import (
    CLOSED,
    INLINE,
    LENGTH_MISMATCH,
    RELEASE,
    F,
    HeaderArray,
    WarpcoreError,
    error_for,
    header_array,
    pin,
)

__all__ = ["Response", "FileResponse", "StreamResponse", "HeadersLike"]

log = logging.getLogger("warpcore")

HeadersLike = Union[None, Sequence[Tuple[str, str]], Mapping[str, str]]
Body = Union[bytes, bytearray, memoryview, str]

#: Bodies at least this large are handed over without a copy.
ZERO_COPY_MIN = 64 * 1024
#: Read size for file-like bodies the library cannot send itself (WSGI).
FILE_CHUNK = 256 * 1024

_respond = F.respond
_respond_buffer = F.respond_buffer
_start = F.response_start
_write = F.response_write
_write_buffer = F.response_write_buffer
_end = F.response_end
_abort = F.response_abort
_respond_inline = INLINE.respond
_respond_file_inline = INLINE.respond_file
_respond_file = F.respond_file
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


# States of Response._prepared below the address of a prepared response.
_UNSEEN, _SEEN_ONCE, _NOT_PREPARED = 0, 1, 2
_PREPARED_MIN = _NOT_PREPARED


class Response:
    """A complete response: ``Response(200, [("Content-Type", "text/plain")], b"hi")``.

    ``headers`` is a list of (name, value) pairs or a dict; ``body`` bytes or
    str (sent as UTF-8). The library adds ``Date``, ``Server``,
    ``Content-Length`` and ``Connection``. A response may be returned again and
    again (a module-level constant): what the C call needs is prepared once.
    """

    __slots__ = ("_status", "_headers", "_body", "_fast", "_array", "_prepared", "_retired")

    def __init__(self, status: int = 200, headers: HeadersLike = None, body: Body = b"") -> None:
        self._status = status
        self._headers = headers
        self._body = body if type(body) is bytes else _body_bytes(body)
        self._fast: Optional[Tuple[Any, ...]] = None
        self._array: Optional[HeaderArray] = None
        # _UNSEEN, _SEEN_ONCE, _NOT_PREPARED, or the address of the
        # warpcore_prepared made the second time this response is answered.
        self._prepared = _UNSEEN
        # Earlier prepared responses of this object (made before a setter
        # ran): a handler thread may still be returning one, so they are
        # freed with the object.
        self._retired: Optional[List[int]] = None

    def __del__(self) -> None:
        # By now no handler thread can be returning this response: the
        # server keeps the last one each thread returned until that thread's
        # next request, and the library copies it as the handler returns.
        for p in (self._prepared, *(self._retired or ())):
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
        if p == _UNSEEN:
            self._prepared = _SEEN_ONCE
            return 0
        # Seen once before: prepare it now, if it has the untyped fields.
        if self._fast:
            h = self._array
            out = c_void_p()
            rc = _ffi.F.prepared_new(self._status, h.address, h.count, self._body, len(self._body), byref(out))
            if rc == 0 and out.value:
                self._prepared = out.value
                return out.value
        # Not preparable (the library refused it, or the typed path is needed):
        # answered the ordinary way from now on.
        self._prepared = _NOT_PREPARED
        return 0

    @property
    def status(self) -> int:
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        self._status = value
        self._fast = None
        self._reset_prepared()

    @property
    def headers(self) -> HeadersLike:
        return self._headers

    @headers.setter
    def headers(self, value: HeadersLike) -> None:
        self._headers = value
        self._fast = None
        self._reset_prepared()

    @property
    def body(self) -> bytes:
        return self._body

    @body.setter
    def body(self, value: Body) -> None:
        self._body = value if type(value) is bytes else _body_bytes(value)
        self._fast = None
        self._reset_prepared()

    def _reset_prepared(self) -> None:
        # A changed response is prepared again; the old one is kept until the
        # object goes (see __del__).
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
        body = self._body
        status = self._status
        if len(body) < ZERO_COPY_MIN and type(status) is int and 0 <= status < 65536:
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

    __slots__ = ("iterable", "status", "headers", "content_length")

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


class FileResponse:
    """The contents of the file at ``path``: ``Content-Type`` by extension
    (unless given), ``Last-Modified``, ``ETag``, conditional requests and
    ranges, all done by the library. A missing file is a 404."""

    __slots__ = ("path", "status", "headers", "content_type")

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


class Responder:
    """Sends handler results through response handles; owns the stream
    threads. One per server."""

    def __init__(self, stream_threads: int = 16) -> None:
        self._stream_threads = max(1, stream_threads)
        self._pool: Optional[ThreadPoolExecutor] = None

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
        elif isinstance(result, FileResponse):
            self._file(res, result, on_worker)
        elif isinstance(result, Response):
            self.answer(res, Response(result.status, result.headers, result.body), on_worker)
        elif isinstance(result, (bytes, str)):
            self.answer(res, Response(200, TEXT_PLAIN if isinstance(result, str) else None, result), on_worker)
        elif result is None:
            raise TypeError("the handler returned None instead of a Response")
        else:
            raise TypeError(f"the handler returned {type(result).__name__}, not a Response")

    def fail(self, res: int) -> None:
        """Answers 500 if the request has not been answered yet."""
        h = header_array(_ERROR_500.headers)
        rc = _respond(res, 500, h.address, h.count, _ERROR_500.body, len(_ERROR_500.body))
        if rc and rc not in (CLOSED, _ffi.ALREADY_ANSWERED):
            log.error("cannot answer 500: %s", error_for(rc, "warpcore_respond"))

    def shutdown(self, wait: bool = True) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)

    # -- streams ------------------------------------------------------------------

    def _submit(self, fn: Any, *args: Any) -> None:
        pool = self._pool
        if pool is None:
            pool = self._pool = ThreadPoolExecutor(self._stream_threads, thread_name_prefix="warpcore-stream")
        pool.submit(fn, *args)

    def _stream(self, res: int, s: StreamResponse, on_worker: bool) -> None:
        h = header_array(s.headers)
        length = -1 if s.content_length is None else int(s.content_length)
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
        # it (a deferred answer) opened on this thread. The inline variant
        # keeps the GIL: on the worker it never blocks.
        extra = [("Content-Type", f.content_type)] if f.content_type else []
        h = header_array(_merge_headers(f.headers, extra) if extra else f.headers)
        path = os.fsencode(os.path.abspath(f.path))
        respond_file = _respond_file_inline if on_worker else _respond_file
        rc = respond_file(res, f.status, h.address, h.count, path, len(path))
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

"""A WSGI (PEP 3333) server on libwarpcore.

    from warpcore.wsgi import serve
    serve(app, host="127.0.0.1", port=8000, threads=8, processes=2)

or, as gunicorn (see :mod:`warpcore._cli`; ``warpcore`` is the same command)::

    python -m warpcore.wsgi myproject.app:app --bind 127.0.0.1:8000 --threads 8 --workers 2

Request bodies: no size limit by default (``--max-body-size 100M`` sets one;
larger bodies get 413). A body up to 1 MiB arrives whole and ``wsgi.input``
is a ``BytesIO``; a larger one streams: ``wsgi.input`` reads it from the
connection as the application asks (``read(n)``, ``read()``, ``readline()``,
``readlines()``, iteration), through a 64 KiB window, so an upload of any
size takes bounded memory unless the application itself keeps it.

Each request is read on a worker thread (the event loop, on a Python thread),
turned into an environ, and handed to a pool of ``threads`` application
threads; the application answers through the library's deferred and streaming
responses, so the event loop never waits for it. A streamed body is written
as the application yields it, blocking only that application thread while the
client is slow. ``threads=0`` runs the application on the worker thread itself
(no hand-off: fastest for quick, CPU-bound applications; a slow one holds up
its worker's other connections).

``processes=M`` makes this process the master of M worker processes (the
command line's supervisor, :mod:`warpcore._arbiter`) that share the
listening sockets it opens, to use several cores despite the GIL. SIGTERM or
SIGINT stops them gracefully: no new connections, requests in flight finish
within the grace period.

The status line's reason phrase is the application's (PEP 3333):
``"299 Custom Thing"`` goes out as such (``warpcore_response_set_reason``);
a standard phrase costs nothing more. A phrase with control characters is
the application's error (a 500).
"""

from __future__ import annotations

import io
from http import HTTPStatus
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from . import _ffi
from ._body import CHUNK, _RawBody, raw_for
from ._ffi import (
    ALREADY_ANSWERED,
    CLOSED,
    LENGTH_MISMATCH,
    RAW,
    RELEASE,
    ClientClosedError,
    error_for,
    guarded,
    header_array,
    pin,
    warpcore_handler_cb,
)
from ._request import _MEM, _SHORT, _pair, _read_tls, _unpack_view, read_headers
from ._tls_request import wsgi_entries
from ._response import (
    FILE_CHUNK,
    ZERO_COPY_MIN,
    _abort,
    _end,
    _respond,
    _respond_buffer,
    _start,
    _write,
    _write_buffer,
    length_in_range,
    pump,
)
from ._forwarded import CONFLICT, SCHEME_HEADERS, Trust, client_address, scheme_of
from ._server import _ASYNC_SIGNALS, NO_LIMIT, Server

__all__ = ["serve", "WSGIServer", "FileWrapper", "main"]

log = logging.getLogger("warpcore.wsgi")

WSGIApp = Callable[[Dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: environ["SERVER_SOFTWARE"].
SERVER_SOFTWARE = "warpcore/0.1.0"

# Application threads are daemon threads: their calls are guarded (see
# _ffi.guarded); _respond, _start and the rest come guarded from _response.
_respond_raw = RAW.respond
_respond_raw_deferred = guarded(RAW.respond_deferred)
_set_reason_raw = guarded(_ffi.F.response_set_reason)

_ERROR_BODY = b"Internal Server Error\n"
_ERROR_HEADERS = [("Content-Type", "text/plain; charset=utf-8")]

# Request headers that have their own environ keys (PEP 3333, CGI).
_SPECIAL = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}
_header_keys: Dict[bytes, Optional[str]] = {}


def _environ_key(name: bytes) -> Optional[str]:
    """``HTTP_X_FOO`` for ``X-Foo``; None for names with ``_``, which would be
    indistinguishable from ``-`` (the usual header-spoofing guard)."""
    key = _header_keys.get(name)
    if key is None and name not in _header_keys:
        text = name.decode("latin-1")
        low = text.lower()
        if "_" in text:
            key = None
        elif low in _SPECIAL:
            key = _SPECIAL[low]
        else:
            key = "HTTP_" + text.upper().replace("-", "_")
        if len(_header_keys) < 4096:
            _header_keys[name] = key
    return key


# Per server: request heads (request line and header fields, as received) ->
# the environ entries they give, base included; each request copies its entry.
# Bounded: cleared when full. Heads longer than _HEAD_SPAN_MAX are not kept.
_HEADS_MAX = 256
_HEAD_SPAN_MAX = 2048


class FileWrapper:
    """``wsgi.file_wrapper``: iterates a file in blocks; the server sends a
    real file (one with ``fileno()``) from its descriptor in large chunks."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> "FileWrapper":
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


# Status lines seen -> their codes and, when not the standard one, their
# reason phrase (bounded): most applications send a few.
_status_codes: Dict[str, Tuple[int, Optional[bytes]]] = {}


def _status_code(status: Any) -> Tuple[int, Optional[bytes]]:
    """The code of a WSGI status line ("200 OK") and its reason phrase
    when the engine's would differ (None when standard), checked and
    remembered; raises on a malformed one."""
    if type(status) is not str:
        raise TypeError("status must be a str")
    try:
        code = int(status[:3])
    except ValueError:
        raise ValueError(f"bad status {status!r}") from None
    if len(status) < 4 or status[3] != " ":
        raise ValueError(f"bad status {status!r}: want '200 OK'")
    phrase = status[4:]
    try:
        standard = HTTPStatus(code).phrase
    except ValueError:
        standard = None
    reason = None if phrase == standard else phrase.encode("latin-1")
    if len(_status_codes) < 256:
        _status_codes[status] = (code, reason)
    return code, reason


def _set_reason(call: "_Call") -> None:
    """Gives the engine the application's own reason phrase, if any."""
    reason = call.reason
    if reason is not None:
        rc = _set_reason_raw(call.res, reason, len(reason))
        if rc:
            raise error_for(rc, "warpcore_response_set_reason")


class _Call:
    """One request's application call: start_response state and the handle."""

    __slots__ = (
        "res", "inline", "status", "code", "reason", "headers", "started", "done", "length", "body", "progress"
    )

    def __init__(
        self,
        res: Any,
        inline: bool = False,
        body: Optional[_RawBody] = None,
        progress: Optional[Callable[[], None]] = None,
    ) -> None:
        self.res = res
        self.body = body  # the streamed body behind wsgi.input, released at the end
        # Called as the response goes out bit by bit (the watchdog's sign of
        # progress: see WSGIServer.stuck).
        self.progress = progress
        self.inline = inline
        self.status: Optional[str] = None
        self.code = 0
        self.reason: Optional[bytes] = None
        self.headers: Optional[List[Tuple[str, str]]] = None
        self.started = False  # the head went out (a stream was started)
        self.done = False  # the handle is released
        self.length = -1

    def start_response(self, status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.started:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        known = _status_codes.get(status) if type(status) is str else None
        code, reason = known if known is not None else _status_code(status)
        if type(headers) is not list:
            raise TypeError("headers must be a list")
        self.status = status
        self.code = code
        self.reason = reason
        self.headers = headers
        return self.write

    def _begin(self) -> None:
        """Sends the head of a streamed body."""
        if self.status is None:
            raise AssertionError("the application wrote a body before start_response")
        length = -1
        for name, value in self.headers:  # type: ignore[union-attr]
            if name.lower() == "content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                else:
                    length = length_in_range(value, length, "Content-Length")
        self.length = length
        h = header_array(self.headers)
        _set_reason(self)
        rc = _start(self.res, self.code, h.address, h.count, length)
        if rc:
            if rc == CLOSED:
                self.done = True
                raise _Gone()
            raise error_for(rc, "warpcore_response_start")
        self.started = True

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: sends ``data`` now."""
        if type(data) is not bytes:
            raise TypeError(f"write() wants bytes, not {type(data).__name__}")
        if self.done:
            raise _Gone()
        if not self.started:
            self._begin()
        if not data:
            return
        n = len(data)
        if n < ZERO_COPY_MIN:
            rc = _write(self.res, data, n)
        else:
            rc = _write_buffer(self.res, data, n, RELEASE, pin(data))
        if rc:
            if rc in (CLOSED, LENGTH_MISMATCH):
                self.done = True
                raise _Gone()
            raise error_for(rc, "warpcore_response_write")
        if self.progress is not None:
            self.progress()


class _ReadProgress(io.RawIOBase):
    """A streamed body that reports each read (see ``run_app``'s ``progress``)."""

    def __init__(self, raw: _RawBody, progress: Callable[[], None]) -> None:
        super().__init__()
        self._raw = raw
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> Optional[int]:
        n = self._raw.readinto(b)
        self._progress()
        return n

    def close(self) -> None:
        super().close()
        self._raw.close()


class _Gone(Exception):
    """The client went away (or the response broke its length): stop sending."""


def _respond_whole(call: _Call, body: bytes) -> None:
    h = header_array(call.headers)
    _set_reason(call)
    n = len(body)
    if n < ZERO_COPY_MIN and 0 <= call.code < 65536:
        # Untyped calls (see _ffi.RAW): on the worker thread inside the handler
        # call, one that keeps the GIL; from an application thread, one that
        # releases it (the call may wait for the worker).
        respond = _respond_raw if call.inline else _respond_raw_deferred
        rc = respond(call.res, call.code, h.pointer, h.count, body, n)
    elif n < ZERO_COPY_MIN:
        rc = _respond(call.res, call.code, h.address, h.count, body, n)
    else:
        rc = _respond_buffer(call.res, call.code, h.address, h.count, body, n, RELEASE, pin(body))
    if rc:
        if rc == CLOSED:
            call.done = True
            return
        raise error_for(rc, "warpcore_respond")
    call.done = True


def _send_file(call: _Call, wrapper: FileWrapper) -> bool:
    """Sends a FileWrapper around a regular file from its descriptor; False
    when it is not one (then it is iterated like any iterable)."""
    f = wrapper.filelike
    try:
        fd = f.fileno()
        st = os.fstat(fd)
        pos = f.tell()
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return False
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode):
        return False
    size = max(0, st.st_size - pos)
    declared = None
    for name, value in call.headers or ():
        if name.lower() == "content-length":
            try:
                declared = int(value)
            except ValueError:
                pass
            else:
                declared = length_in_range(value, declared, "Content-Length")
    if declared is not None and declared < size:
        size = declared

    progress = call.progress

    def chunks() -> Iterable[bytes]:
        offset, left = pos, size
        while left > 0:
            data = os.pread(fd, min(FILE_CHUNK, left), offset)
            if not data:
                break
            offset += len(data)
            left -= len(data)
            if progress is not None:
                progress()  # the last chunk was taken
            yield data

    if size <= FILE_CHUNK:
        _respond_whole(call, b"".join(chunks()))
        return True
    headers = [(n, v) for n, v in call.headers or () if n.lower() != "content-length"]
    h = header_array(headers)
    _set_reason(call)
    rc = _start(call.res, call.code, h.address, h.count, size)
    if rc:
        if rc == CLOSED:  # the only failure that releases the handle
            call.done = True
            return True
        # The handle is still ours: _app_failed answers 500 with it.
        raise error_for(rc, "warpcore_response_start")
    call.started = call.done = True
    pump(call.res, chunks())  # ends the stream and releases the handle
    return True


def run_app(
    app: WSGIApp,
    environ: Dict[str, Any],
    res: Any,
    inline: bool = False,
    offload: Optional[Callable[..., Any]] = None,
    body: Optional[_RawBody] = None,
    progress: Optional[Callable[[], None]] = None,
) -> None:
    """Runs ``app`` for one request and answers handle ``res``. Never raises.

    ``inline``: we are on the worker thread, inside the handler call. There a
    write never blocks, so a body the application produces bit by bit (a
    generator, a file) would pile up in memory: with ``offload`` (a submit
    function) it is drained on another thread, with backpressure.

    ``body``: the streamed request body behind ``wsgi.input``, released once
    the response is sent (the application may read it until then, from its
    result's iterator too).

    ``progress``: called whenever the call makes progress, a piece of the
    body read or of the response sent (see :meth:`WSGIServer.stuck`)."""
    call = _Call(res, inline, body, progress)
    if progress is not None and body is not None:
        environ["wsgi.input"].detach()  # the plain reader: unread, and not to close the body when collected
        environ["wsgi.input"] = io.BufferedReader(_ReadProgress(body, progress), CHUNK)
    try:
        result = app(environ, call.start_response)
    except BaseException as exc:  # noqa: B902 - an app error must not kill the thread
        _app_failed(call, environ, exc)
        _release_body(call)
        return
    if type(result) is list and len(result) == 1 and type(result[0]) is bytes and call.status is not None and not call.started:
        # The common case, a body in one piece: nothing to iterate or close.
        try:
            _respond_whole(call, result[0])
        except BaseException as exc:  # noqa: B902 - an app error must not kill the thread
            _app_failed(call, environ, exc)
        if body is not None:
            _release_body(call)
        return
    if offload is not None and type(result) is not list and type(result) is not tuple:
        call.inline = False
        offload(_send_result, call, environ, result)
        return
    _send_result(call, environ, result)


def _send_result(call: _Call, environ: Dict[str, Any], result: Any) -> None:
    """Sends what the application returned and closes it. Never raises."""
    res = call.res
    try:
        if type(result) is list or type(result) is tuple:
            if call.started:
                for chunk in result:
                    call.write(chunk)
            else:
                body = result[0] if len(result) == 1 else b"".join(result)
                if type(body) is not bytes:
                    raise TypeError(f"the application returned {type(body).__name__}, not bytes")
                if call.status is None:
                    raise AssertionError("the application returned without calling start_response")
                _respond_whole(call, body)
        elif isinstance(result, FileWrapper) and not call.started and call.status is not None and _send_file(
            call, result
        ):
            pass
        else:
            for chunk in result:
                if chunk:
                    call.write(chunk)
                elif type(chunk) is not bytes:
                    raise TypeError(f"the application yielded {type(chunk).__name__}, not bytes")
            if not call.started and not call.done:
                if call.status is None:
                    raise AssertionError("the application returned without calling start_response")
                _respond_whole(call, b"")
        if call.started and not call.done:
            call.done = True
            rc = _end(res)
            if rc == LENGTH_MISMATCH:
                log.error(
                    "%s %s: the body was shorter than its Content-Length",
                    environ.get("REQUEST_METHOD"),
                    environ.get("RAW_URI"),
                )
            elif rc and rc != CLOSED:
                log.error("warpcore_response_end: %s", error_for(rc, "warpcore_response_end"))
    except _Gone:
        log.debug("client gone during %s %s", environ.get("REQUEST_METHOD"), environ.get("RAW_URI"))
    except BaseException as exc:  # noqa: B902 - an app error must not kill the thread
        _app_failed(call, environ, exc)
    finally:
        close = None if type(result) is list or type(result) is tuple else getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("close() of the application's iterable failed")
        if call.body is not None:
            _release_body(call)


def _release_body(call: _Call) -> None:
    """Releases the streamed body behind ``wsgi.input`` (the library discards
    what the application did not read)."""
    body, call.body = call.body, None
    if body is not None:
        body.close()


def _app_failed(call: _Call, environ: Dict[str, Any], exc: BaseException) -> None:
    """Logs an application error; answers 500 if nothing was sent yet."""
    if isinstance(exc, ClientClosedError):
        # Reading wsgi.input failed: the client left or stalled, or the body
        # passed max_body_size (answered 413 by the library): not a bug.
        log.info("%s %s: %s", environ.get("REQUEST_METHOD"), environ.get("RAW_URI"), exc)
    else:
        log.error(
            "application error on %s %s",
            environ.get("REQUEST_METHOD"),
            environ.get("RAW_URI"),
            exc_info=(type(exc), exc, exc.__traceback__),
        )
    if call.done:
        return
    call.done = True
    if not call.started:
        h = header_array(_ERROR_HEADERS)
        rc = _respond(call.res, 500, h.address, h.count, _ERROR_BODY, len(_ERROR_BODY))
        if rc and rc != CLOSED and rc != ALREADY_ANSWERED:
            log.error("cannot answer 500: %s", error_for(rc, "warpcore_respond"))
    else:
        # Mid-stream (PEP 3333: abort the connection): what was written goes
        # out, then the close, without the last chunk or the rest of the
        # Content-Length, so the client sees the body is incomplete.
        _abort(call.res)


def _head_environ(
    head: Optional[bytes],
    v: Tuple[int, ...],
    base: Dict[str, Any],
    heads: Dict[bytes, Tuple[Dict[str, Any], Any]],
    rules: "_HeadRules",
) -> Tuple[Dict[str, Any], Any]:
    """The environ entries that follow from the request line and header fields
    of view ``v`` (plus ``base``), and what else the head asks of the request
    (None, or ``(problem, forwarded_for, scheme)``: see ``_finish_environ``),
    remembered in ``heads`` under ``head`` (their bytes as received) unless
    that is None."""
    mem, short = _MEM, _SHORT

    def text(p: int, n: int) -> str:
        return (short[n](mem, p)[0] if n < 64 else mem[p : p + n].tobytes()).decode("latin-1") if n else ""

    environ = base.copy()
    environ["REQUEST_METHOD"] = text(v[0], v[1])
    environ["RAW_URI"] = environ["REQUEST_URI"] = text(v[2], v[3])
    path = text(v[4], v[5])
    environ["QUERY_STRING"] = text(v[6], v[7])
    environ["SERVER_PROTOCOL"] = "HTTP/1.1" if v[16] else "HTTP/1.0"
    problem: Optional[Tuple[int, str]] = None
    # PEP 3333: SCRIPT_NAME is the application's root, PATH_INFO the rest. A
    # path outside the root is a configuration problem, answered 500 as
    # gunicorn does (a segment's prefix, /appx under /app, is outside).
    root = rules.script_name
    if root:
        if path == root or path.startswith(root) and path[len(root)] == "/":
            path = path[len(root) :]
        else:
            problem = (500, f"Request path {path!r} does not start with SCRIPT_NAME {root!r}")
    environ["PATH_INFO"] = path
    proxy: Optional[Dict[str, List[str]]] = None
    if v[9]:
        field_max = rules.field_size
        for name, value in read_headers(v[8], v[9]):
            if field_max and len(name) + len(value) + 2 > field_max and problem is None:
                problem = (431, f"Request header field {name.decode('latin-1')!r} is over {field_max} bytes")
            if name[:2] in (b"X-", b"x-"):
                low = name.decode("latin-1").lower()
                if low == "x-forwarded-for" or low in SCHEME_HEADERS:
                    if proxy is None:
                        proxy = {}
                    proxy.setdefault(low, []).append(value.decode("latin-1"))
            key = _header_keys.get(name) or _environ_key(name)
            if key is None:
                continue
            value_text = value.decode("latin-1")
            if key in environ and key.startswith("HTTP_"):
                # Repeated fields join with "," (RFC 9110 5.3); cookies with ";".
                environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value_text
            else:
                environ[key] = value_text
    extra = None
    if problem is not None or proxy is not None:
        forwarded_for = ",".join(proxy["x-forwarded-for"]) if proxy and "x-forwarded-for" in proxy else None
        extra = (problem, forwarded_for, scheme_of(proxy) if proxy else None)
    if head is not None:
        if len(heads) >= _HEADS_MAX:
            heads.clear()
        heads[head] = (environ, extra)
    return environ, extra


def _unix_server_name(environ: Dict[str, Any]) -> None:
    """SERVER_NAME and SERVER_PORT of a request on a Unix socket, which has
    neither: from its Host field, as gunicorn does (port 80 when it names
    none); the server's own when there is none."""
    host = environ.get("HTTP_HOST")
    if not host:
        return
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    environ["SERVER_NAME"] = name
    environ["SERVER_PORT"] = port or "80"


class _HeadRules:
    """What a server's settings ask of every request head."""

    __slots__ = ("script_name", "field_size")

    def __init__(self, script_name: str, field_size: Optional[int]) -> None:
        self.script_name = script_name
        self.field_size = field_size or 0


def _finish_environ(environ: Dict[str, Any], extra: Any, trust: Trust, res: Any) -> bool:
    """Applies what a head asks beyond its cached entries (``extra``): a
    problem is answered here (False: the request is done); an allowed proxy's
    ``X-Forwarded-For`` sets ``REMOTE_ADDR`` and its scheme headers
    ``wsgi.url_scheme`` (disagreeing ones are a 400, as gunicorn)."""
    problem, forwarded_for, scheme = extra
    if problem is None and scheme == CONFLICT and trust(environ["REMOTE_ADDR"]):
        problem = (400, "the scheme headers (X-Forwarded-Proto, -Protocol, -Ssl) disagree")
    if problem is not None:
        status, message = problem
        log.warning("invalid request from %s: %s", environ["REMOTE_ADDR"], message)
        body = f"{message}\n".encode("latin-1", "replace")
        h = header_array(_ERROR_HEADERS)
        rc = _respond(res, status, h.address, h.count, body, len(body))
        if rc and rc != CLOSED:
            log.error("cannot answer %d: %s", status, error_for(rc, "warpcore_respond"))
        return False
    if trust(environ["REMOTE_ADDR"]):
        if scheme is not None:
            environ["wsgi.url_scheme"] = scheme
        if forwarded_for is not None:
            client = client_address(forwarded_for, trust)
            if client is not None:
                environ["REMOTE_ADDR"] = client
                environ["REMOTE_PORT"] = "0"
    return True


class WSGIServer(Server):
    """A WSGI application on libwarpcore. ``threads`` application threads
    (0: run the application on the worker threads), ``workers`` event loops.
    Start/stop like :class:`warpcore.Server`, with its settings (listeners
    too: ``bind=["unix:/run/app.sock", "fd://3"]``), except that
    ``max_body_size`` defaults to :data:`~warpcore.NO_LIMIT` (as gunicorn and
    Werkzeug have no limit, and Flask's ``MAX_CONTENT_LENGTH`` is unset by
    default): bodies over ``whole_body_max`` (default 1 MiB) stream through
    ``wsgi.input``, so their size does not decide memory use. An application
    whose body streams runs on an application thread (with ``threads=0``,
    on a stream thread), where ``wsgi.input`` reads wait for the bytes.

    ``script_name`` is the application's root (``SCRIPT_NAME``): it is
    taken off the front of ``PATH_INFO``, and a request outside it is
    answered 500, as gunicorn does. ``forwarded_allow_ips`` are the proxies
    whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` (``-Protocol``,
    ``-Ssl``) set ``REMOTE_ADDR`` and ``wsgi.url_scheme`` (see
    :mod:`warpcore._forwarded`; default ``$FORWARDED_ALLOW_IPS`` or
    loopback; peers on a Unix socket are allowed). ``limit_request_field_size``
    is the largest header field, name and value, in bytes (a larger one is
    answered 431; default none beyond the engine's limit on the whole head).

    ``sched_batch=True`` puts the application threads under Linux's
    ``SCHED_BATCH`` policy as well as the workers (``Server``'s setting;
    followed on ``reload`` too, by each application thread as it takes its
    next request): a woken thread then does not preempt the one running, so on a
    core shared by a worker and the pool, requests and answers cross in
    batches instead of a context switch each. Threads the application
    starts from an application thread inherit the policy.

    ``watchdog=True`` notes when each application call starts, for
    :meth:`stuck` (the process supervisor's hung-worker check)."""

    def __init__(
        self,
        app: WSGIApp,
        host: str = "127.0.0.1",
        port: int = 8000,
        threads: int = 8,
        workers: int = 1,
        *,
        multiprocess: bool = False,
        script_name: str = "",
        forwarded_allow_ips: Union[None, str, Sequence[str]] = None,
        limit_request_field_size: Optional[int] = None,
        watchdog: bool = False,
        **settings: Any,
    ) -> None:
        settings.setdefault("max_body_size", NO_LIMIT)
        # wsgi.input reads whole and streamed bodies alike: stream past 1 MiB.
        settings.setdefault("whole_body_max", 1 << 20)
        super().__init__(lambda request: None, host, port, workers, **settings)
        if threads < 0:
            raise ValueError("threads must be >= 0")
        if not callable(app):
            raise TypeError("the WSGI application must be callable")
        if script_name and not script_name.startswith("/"):
            raise ValueError(f"script_name {script_name!r} must start with '/'")
        if limit_request_field_size is not None and limit_request_field_size < 0:
            raise ValueError("limit_request_field_size must be >= 0 (0: no limit)")
        self.app = app
        self.threads = threads
        self._multiprocess = multiprocess
        self._script_name = script_name.rstrip("/")
        self._trust = Trust(forwarded_allow_ips)
        self._rules = _HeadRules(self._script_name, limit_request_field_size)
        self._watchdog = bool(watchdog)
        # When each application thread (by index) and each event loop running
        # the application inline (by worker index) started its current call;
        # 0.0 when idle (with watchdog).
        self._busy = [0.0] * threads
        self._loop_busy: Dict[int, float] = {}
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._app_threads: List[threading.Thread] = []
        self._sched_batch_failed = False

    def _runs_on(self, thread: threading.Thread) -> bool:
        return thread in self._app_threads or super()._runs_on(thread)

    def _forget(self) -> None:
        super()._forget()
        self._queue = queue.SimpleQueue()
        self._app_threads = []

    def _base_environ(self) -> Dict[str, Any]:
        return {
            "SCRIPT_NAME": self._script_name,
            "SERVER_NAME": self.host,
            "SERVER_PORT": str(self.port),
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self._settings.get("tls") else "http",
            "wsgi.errors": sys.stderr,
            # One application thread is the only case where the application
            # never runs on two threads at once: with threads=0 it runs on
            # every event loop and, for bodies that stream, on stream threads.
            "wsgi.multithread": self.threads != 1,
            "wsgi.multiprocess": self._multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }

    def reload(self, handler: Optional[WSGIApp] = None, *, app: Optional[WSGIApp] = None, **settings: Any) -> None:
        """:meth:`warpcore.Server.reload`, where the new application is
        ``app`` (or ``handler``, the same): requests read from now on go to
        it; those under way finish with the old one."""
        if handler is not None and app is not None:
            raise TypeError("reload() takes app or handler, not both")
        new_app = app if app is not None else handler
        if new_app is not None and not callable(new_app):
            raise TypeError("the WSGI application must be callable")
        super().reload(None, **settings)
        if new_app is not None:
            self.app = new_app  # one attribute store: the next request reads it

    def stuck(self, timeout: float) -> Optional[str]:
        """Why the application cannot make progress, if it cannot: every
        application thread in a call that started, or last sent a piece of
        its response or read one of the request body, more than ``timeout``
        seconds ago (a long download or upload that goes on is progress), or
        (with ``threads=0``) an event loop held that long by one call; else
        None. Needs ``watchdog=True``."""
        if not self._watchdog:
            return None
        since = time.monotonic() - timeout
        if self.threads:
            busy = self._busy
            if busy and all(0.0 < t <= since for t in busy):
                n = len(busy)
                return f"all {n} application threads have been in one call, with no progress, for over {timeout:g} s"
            return None
        held = sorted(i for i, t in list(self._loop_busy.items()) if 0.0 < t <= since)
        if held:
            return f"event loop {held[0]} has been in one application call for over {timeout:g} s"
        return None

    def _make_callback(self) -> Any:
        server = self
        put = self._queue.put
        base: Dict[str, Any] = {}
        app_holder = self
        inline = self.threads == 0
        offload = self._responder._submit
        BytesIO = io.BytesIO
        BufferedReader = io.BufferedReader
        short = _SHORT
        mem = _MEM
        rules = self._rules
        trust = self._trust
        finish = _finish_environ
        loop_busy = self._loop_busy if self._watchdog and inline else None
        monotonic = time.monotonic

        heads: Dict[bytes, Tuple[Dict[str, Any], Any]] = {}

        def head_environ(head: Optional[bytes], v: Tuple[int, ...], base: Dict[str, Any]) -> Tuple[Dict[str, Any], Any]:
            return _head_environ(head, v, base, heads, rules)

        def on_request(_userdata: Optional[int], req: int, res: int) -> None:
            try:
                if not base:
                    base.update(server._base_environ())
                v = _unpack_view(_MEM, req)
                # The request line and header fields sit together in the
                # receive buffer, from the method to the end of the last field
                # value: the same bytes always give the same environ entries,
                # so one read and one dict hit replace reading and decoding
                # every field (see _head_environ).
                mp = v[0]
                n = v[9]
                if n:
                    last = v[8] + 32 * n - 16  # the last field's value (ptr, len)
                    vp, vl = _pair(mem, last)
                    span = vp + vl - mp
                    # Only a head that is one span of one buffer (the target
                    # inside it too) is read in one piece.
                    if 0 < span < _HEAD_SPAN_MAX and mp < v[2] < vp:
                        head = short[span](mem, mp)[0] if span < 256 else mem[mp : mp + span].tobytes()
                        fields, extra = heads.get(head) or head_environ(head, v, base)
                    else:
                        fields, extra = head_environ(None, v, base)
                else:
                    fields, extra = head_environ(None, v, base)
                environ = fields.copy()
                p, n = v[12], v[13]
                environ["REMOTE_ADDR"] = short[n](mem, p)[0].decode("ascii") if n < 64 else ""
                environ["REMOTE_PORT"] = str(v[14])
                if environ["REMOTE_ADDR"] == "unix:":
                    _unix_server_name(environ)
                if v[19]:
                    environ.update(wsgi_entries(_read_tls(req)))
                if extra is not None and not finish(environ, extra, trust, res):
                    return
                if v[18]:
                    # The body streams (larger than whole_body_max): wsgi.input
                    # reads it as it arrives; CONTENT_LENGTH is the header's
                    # (none for a chunked body: wsgi.input_terminated).
                    streamed = raw_for(res)
                    environ["wsgi.input"] = BufferedReader(streamed, CHUNK)
                else:
                    streamed = None
                    body = _MEM[v[10] : v[10] + v[11]].tobytes() if v[11] else b""
                    if body or "CONTENT_LENGTH" in environ:
                        environ["CONTENT_LENGTH"] = str(len(body))
                    environ["wsgi.input"] = BytesIO(body)
            except BaseException:
                log.exception("cannot read a request")
                h = header_array(_ERROR_HEADERS)
                _respond(res, 500, h.address, h.count, _ERROR_BODY, len(_ERROR_BODY))
                return
            if streamed is not None:
                # Reads of wsgi.input wait for the body: never on this thread.
                if inline:
                    offload(run_app, app_holder.app, environ, res, False, None, streamed)
                else:
                    put((environ, res, streamed))
            elif inline:
                if loop_busy is None:
                    run_app(app_holder.app, environ, res, True, offload)
                else:
                    worker = v[17]
                    loop_busy[worker] = monotonic()
                    try:
                        run_app(app_holder.app, environ, res, True, offload)
                    finally:
                        loop_busy[worker] = 0.0
            else:
                put((environ, res, None))

        return warpcore_handler_cb(on_request)

    def _app_loop(self, index: int) -> None:
        get = self._queue.get
        batch = False
        busy = self._busy if self._watchdog else None
        monotonic = time.monotonic

        def progress() -> None:
            busy[index] = monotonic()  # type: ignore[index]

        while True:
            item = get()
            if item is None:
                return
            # The sched_batch setting, followed after a reload too.
            if self._settings["sched_batch"] is not batch:
                batch = self._settings["sched_batch"]
                self._move_app_thread(batch)
            if busy is None:
                run_app(self.app, item[0], item[1], False, None, item[2])
            else:
                busy[index] = monotonic()
                try:
                    run_app(self.app, item[0], item[1], False, None, item[2], progress)
                finally:
                    busy[index] = 0.0

    def _move_app_thread(self, batch: bool) -> None:
        try:
            _ffi.thread_set_sched_batch(batch)
        except _ffi.WarpcoreError as exc:
            if not self._sched_batch_failed:
                self._sched_batch_failed = True
                log.warning("application threads stay under their scheduling policy: %s", exc.message)

    def start(self) -> "WSGIServer":
        if self.threads:
            old = signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
            try:
                for i in range(self.threads):
                    t = threading.Thread(target=self._app_loop, args=(i,), name=f"warpcore-wsgi-{i}", daemon=True)
                    t.start()
                    self._app_threads.append(t)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
        super().start()
        return self

    def shutdown(self, grace: float = 10.0) -> None:
        """Stops accepting, lets requests in flight finish for up to ``grace``
        seconds (the application threads keep answering), then stops the
        application threads. Not from the application (it would wait for
        itself): a ``RuntimeError`` there."""
        super().shutdown(grace)
        threads, self._app_threads = self._app_threads, []
        for _ in threads:
            self._queue.put(None)
        deadline = time.monotonic() + max(grace, 1.0)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("application thread %s still busy after shutdown", t.name)


# --- serve(): one process, or a master and M worker processes --------------------------


def worker_server(
    app: WSGIApp,
    *,
    bind: List[str],
    threads: int = 8,
    loops: int = 1,
    root_path: str = "",
    forwarded_allow_ips: Union[None, str, Sequence[str]] = None,
    keepalive: Optional[float] = None,
    limit_request_line: Optional[int] = None,
    limit_request_fields: Optional[int] = None,
    limit_request_field_size: Optional[int] = None,
    max_body_size: int = NO_LIMIT,
    sched_batch: bool = False,
    access_log: Any = None,
    multiprocess: bool = False,
    watchdog: bool = False,
    **settings: Any,
) -> WSGIServer:
    """The server a worker process of the command line runs (see
    :mod:`warpcore._worker`; ``warpcore.asgi.worker_server`` takes the same
    options): the command line's settings, by their gunicorn names, as
    :class:`WSGIServer` arguments. ``settings`` are more of those."""
    if keepalive is not None:
        settings["timeouts"] = dict(settings.get("timeouts") or {}, idle=keepalive)
    if limit_request_line is not None and limit_request_line > 32 << 10:
        # The line is part of the head, whose default limit is 32 KiB.
        settings.setdefault("max_head_size", limit_request_line)
    return WSGIServer(
        app,
        threads=threads,
        workers=loops,
        bind=bind,
        multiprocess=multiprocess,
        script_name=root_path,
        forwarded_allow_ips=forwarded_allow_ips,
        limit_request_field_size=limit_request_field_size,
        watchdog=watchdog,
        max_request_line=limit_request_line,
        max_header_count=limit_request_fields,
        max_body_size=max_body_size,
        sched_batch=sched_batch,
        access_log=access_log,
        **settings,
    )


def _run_one(
    app: WSGIApp,
    host: str,
    port: int,
    threads: int,
    workers: int,
    grace: float,
    ready: Optional[Callable[[WSGIServer], None]],
    settings: Dict[str, Any],
) -> None:
    server = WSGIServer(app, host, port, threads, workers, **settings)
    # Handlers first: a signal right after start must stop us gracefully.
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        try:
            if ready is not None:
                ready(server)
            while not stop.wait(1.0) and not server.wait(0):
                pass
        finally:
            server.shutdown(grace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    app: WSGIApp,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 8,
    processes: int = 1,
    *,
    workers: int = 1,
    grace: float = 10.0,
    timeout: float = 30.0,
    ready: Optional[Callable[[str], None]] = None,
    **settings: Any,
) -> None:
    """Serves ``app`` until SIGTERM or SIGINT, then stops gracefully (requests
    in flight get ``grace`` seconds). ``threads`` application threads per
    process (0: run the app on the event-loop threads), ``workers`` event loops
    per process. ``settings`` are :class:`WSGIServer`'s (``bind=[...]``
    replaces ``host`` and ``port``). ``ready(address)`` is called once the
    server accepts connections (default: print ``listening on ADDRESS``).
    Main thread only.

    ``processes=M`` > 1: this process becomes the master of M worker
    processes forked from it (the command line's supervisor,
    :mod:`warpcore._arbiter`): it opens the listening sockets, which the
    workers share, replaces a worker that dies or makes no progress for
    ``timeout`` seconds (0: never), and answers the command line's signals
    (HUP replaces the workers, TTIN/TTOU, USR1)."""
    if processes < 1:
        raise ValueError("processes must be >= 1")
    say = ready or (lambda address: print(f"listening on {address}", flush=True))
    if processes == 1:
        _run_one(app, host, port, threads, workers, grace, lambda s: say(s.address), settings)
        return
    from ._arbiter import Arbiter
    from ._config import Config
    from ._sockets import normalize

    bind = settings.pop("bind", None)
    if bind is None:
        bind = [(f"[{host}]" if ":" in host else host) + f":{port}"]
    if threads < 0 or workers < 0:
        raise ValueError("threads and workers must be >= 0")
    cfg = Config.defaults(
        wsgi_app=getattr(app, "__name__", "app"),
        bind=[normalize(b) for b in bind],
        workers=processes,
        threads=threads,
        loops=workers,
        graceful_timeout=float(grace),
        timeout=float(timeout),
        max_body_size=settings.pop("max_body_size", NO_LIMIT),
        sched_batch=settings.pop("sched_batch", False),
        root_path=settings.pop("script_name", ""),
    )
    cfg.server_options = settings
    code = Arbiter(cfg, lambda cfg: app, ready=lambda addresses: say(addresses[0])).run()
    if code:
        raise RuntimeError("the server processes could not start (see the log)")


# --- command line ----------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m warpcore.wsgi``: the ``warpcore`` command (see
    :mod:`warpcore._cli`)."""
    from ._cli import main as cli_main

    return cli_main(argv, prog="python -m warpcore.wsgi")


if __name__ == "__main__":
    sys.exit(main())

"""A WSGI (PEP 3333) server on libwarpcore.

    from warpcore.wsgi import serve
    serve(app, host="127.0.0.1", port=8000, threads=8, processes=2)

or, gunicorn-like::

    python -m warpcore.wsgi myproject.app:app --bind 127.0.0.1:8000 --threads 8 --processes 2

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

``processes=M`` forks M server processes that share the port through
``SO_REUSEPORT`` (the library's share_port), to use several cores despite the
GIL. SIGTERM or SIGINT stops them gracefully: no new connections, requests in
flight finish within the grace period.
"""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

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
from ._request import _MEM, _SHORT, _pair, _unpack_view, read_headers
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
from ._server import _ASYNC_SIGNALS, NO_LIMIT, Server

__all__ = ["serve", "WSGIServer", "FileWrapper", "main"]

log = logging.getLogger("warpcore.wsgi")

WSGIApp = Callable[[Dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Application threads are daemon threads: their calls are guarded (see
# _ffi.guarded); _respond, _start and the rest come guarded from _response.
_respond_raw = RAW.respond
_respond_raw_deferred = guarded(RAW.respond_deferred)

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


# Status lines seen -> their codes (bounded): most applications send a few.
_status_codes: Dict[str, int] = {}


def _status_code(status: Any) -> int:
    """The code of a WSGI status line ("200 OK"), which is checked and
    remembered; raises on a malformed one."""
    if type(status) is not str:
        raise TypeError("status must be a str")
    try:
        code = int(status[:3])
    except ValueError:
        raise ValueError(f"bad status {status!r}") from None
    if len(status) < 4 or status[3] != " ":
        raise ValueError(f"bad status {status!r}: want '200 OK'")
    if len(_status_codes) < 256:
        _status_codes[status] = code
    return code


class _Call:
    """One request's application call: start_response state and the handle."""

    __slots__ = ("res", "inline", "status", "code", "headers", "started", "done", "length", "body")

    def __init__(self, res: Any, inline: bool = False, body: Optional[_RawBody] = None) -> None:
        self.res = res
        self.body = body  # the streamed body behind wsgi.input, released at the end
        self.inline = inline
        self.status: Optional[str] = None
        self.code = 0
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
        code = _status_codes.get(status) if type(status) is str else None
        if code is None:
            code = _status_code(status)
        if type(headers) is not list:
            raise TypeError("headers must be a list")
        self.status = status
        self.code = code
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


class _Gone(Exception):
    """The client went away (or the response broke its length): stop sending."""


def _respond_whole(call: _Call, body: bytes) -> None:
    h = header_array(call.headers)
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

    def chunks() -> Iterable[bytes]:
        offset, left = pos, size
        while left > 0:
            data = os.pread(fd, min(FILE_CHUNK, left), offset)
            if not data:
                break
            offset += len(data)
            left -= len(data)
            yield data

    if size <= FILE_CHUNK:
        _respond_whole(call, b"".join(chunks()))
        return True
    headers = [(n, v) for n, v in call.headers or () if n.lower() != "content-length"]
    h = header_array(headers)
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
) -> None:
    """Runs ``app`` for one request and answers handle ``res``. Never raises.

    ``inline``: we are on the worker thread, inside the handler call. There a
    write never blocks, so a body the application produces bit by bit (a
    generator, a file) would pile up in memory: with ``offload`` (a submit
    function) it is drained on another thread, with backpressure.

    ``body``: the streamed request body behind ``wsgi.input``, released once
    the response is sent (the application may read it until then, from its
    result's iterator too)."""
    call = _Call(res, inline, body)
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
    head: Optional[bytes], v: Tuple[int, ...], base: Dict[str, Any], heads: Dict[bytes, Dict[str, Any]]
) -> Dict[str, Any]:
    """The environ entries that follow from the request line and header fields
    of view ``v`` (plus ``base``), remembered in ``heads`` under ``head``
    (their bytes as received) unless that is None."""
    mem, short = _MEM, _SHORT

    def text(p: int, n: int) -> str:
        return (short[n](mem, p)[0] if n < 64 else mem[p : p + n].tobytes()).decode("latin-1") if n else ""

    environ = base.copy()
    environ["REQUEST_METHOD"] = text(v[0], v[1])
    environ["RAW_URI"] = environ["REQUEST_URI"] = text(v[2], v[3])
    environ["PATH_INFO"] = text(v[4], v[5])
    environ["QUERY_STRING"] = text(v[6], v[7])
    environ["SERVER_PROTOCOL"] = "HTTP/1.1" if v[16] else "HTTP/1.0"
    if v[9]:
        for name, value in read_headers(v[8], v[9]):
            key = _header_keys.get(name) or _environ_key(name)
            if key is None:
                continue
            value_text = value.decode("latin-1")
            if key in environ and key.startswith("HTTP_"):
                # Repeated fields join with "," (RFC 9110 5.3); cookies with ";".
                environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value_text
            else:
                environ[key] = value_text
    if head is not None:
        if len(heads) >= _HEADS_MAX:
            heads.clear()
        heads[head] = environ
    return environ


class WSGIServer(Server):
    """A WSGI application on libwarpcore. ``threads`` application threads
    (0: run the application on the worker threads), ``workers`` event loops.
    Start/stop like :class:`warpcore.Server`, with its settings, except that
    ``max_body_size`` defaults to :data:`~warpcore.NO_LIMIT` (as gunicorn and
    Werkzeug have no limit, and Flask's ``MAX_CONTENT_LENGTH`` is unset by
    default): bodies over ``whole_body_max`` (default 1 MiB) stream through
    ``wsgi.input``, so their size does not decide memory use. An application
    whose body streams runs on an application thread (with ``threads=0``,
    on a stream thread), where ``wsgi.input`` reads wait for the bytes.

    ``sched_batch=True`` puts the application threads under Linux's
    ``SCHED_BATCH`` policy as well as the workers (``Server``'s setting;
    followed on ``reload`` too, by each application thread as it takes its
    next request): a woken thread then does not preempt the one running, so on a
    core shared by a worker and the pool, requests and answers cross in
    batches instead of a context switch each. Threads the application
    starts from an application thread inherit the policy."""

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
        **settings: Any,
    ) -> None:
        settings.setdefault("max_body_size", NO_LIMIT)
        # wsgi.input reads whole and streamed bodies alike: stream past 1 MiB.
        settings.setdefault("whole_body_max", 1 << 20)
        super().__init__(lambda request: None, host, port, workers, **settings)
        if threads < 0:
            raise ValueError("threads must be >= 0")
        self.app = app
        self.threads = threads
        self._multiprocess = multiprocess
        self._script_name = script_name.rstrip("/")
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
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self._settings.get("tls") else "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": self.threads > 1 or self.workers > 1,
            "wsgi.multiprocess": self._multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }

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

        heads: Dict[bytes, Dict[str, Any]] = {}

        def head_environ(head: Optional[bytes], v: Tuple[int, ...], base: Dict[str, Any]) -> Dict[str, Any]:
            return _head_environ(head, v, base, heads)

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
                        fields = heads.get(head) or head_environ(head, v, base)
                    else:
                        fields = head_environ(None, v, base)
                else:
                    fields = head_environ(None, v, base)
                environ = fields.copy()
                p, n = v[12], v[13]
                environ["REMOTE_ADDR"] = short[n](mem, p)[0].decode("ascii") if n < 64 else ""
                environ["REMOTE_PORT"] = str(v[14])
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
                run_app(app_holder.app, environ, res, True, offload)
            else:
                put((environ, res, None))

        return warpcore_handler_cb(on_request)

    def _app_loop(self) -> None:
        get = self._queue.get
        batch = False
        while True:
            item = get()
            if item is None:
                return
            # The sched_batch setting, followed after a reload too.
            if self._settings["sched_batch"] is not batch:
                batch = self._settings["sched_batch"]
                self._move_app_thread(batch)
            run_app(self.app, item[0], item[1], False, None, item[2])

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
                    t = threading.Thread(target=self._app_loop, name=f"warpcore-wsgi-{i}", daemon=True)
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


# --- serve(): one process, or M processes on one port -------------------------------


def _reserve_port(host: str, port: int) -> Tuple[int, Optional[socket.socket]]:
    """For port 0 with several processes: a port all of them can join. The
    bound (not listening) SO_REUSEPORT socket keeps it ours until they listen."""
    if port != 0:
        return port, None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, 0))
    return s.getsockname()[1], s


def _stop_event(signals: Sequence[int]) -> threading.Event:
    """An event set by any of ``signals`` (handlers installed now)."""
    stop = threading.Event()
    for sig in signals:
        signal.signal(sig, lambda signum, frame: stop.set())
    return stop


def _run_one(
    app: WSGIApp,
    host: str,
    port: int,
    threads: int,
    workers: int,
    grace: float,
    multiprocess: bool,
    ready: Optional[Callable[[WSGIServer], None]],
    settings: Dict[str, Any],
) -> None:
    server = WSGIServer(app, host, port, threads, workers, multiprocess=multiprocess, **settings)
    # Handlers first: a signal right after start must stop us gracefully.
    stop = _stop_event((signal.SIGTERM, signal.SIGINT))
    server.start()
    try:
        if ready is not None:
            ready(server)
        while not stop.wait(1.0) and not server.wait(0):
            pass
    finally:
        server.shutdown(grace)


def serve(
    app: WSGIApp,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 8,
    processes: int = 1,
    *,
    workers: int = 1,
    grace: float = 10.0,
    ready: Optional[Callable[[str], None]] = None,
    **settings: Any,
) -> None:
    """Serves ``app`` until SIGTERM or SIGINT, then stops gracefully (requests
    in flight get ``grace`` seconds). ``threads`` application threads per
    process (0: run the app on the event-loop threads), ``workers`` event loops
    per process, ``processes`` processes sharing the port. ``ready(address)``
    is called once every process accepts connections (default: print
    ``listening on HOST:PORT``). Main thread only."""
    if processes < 1:
        raise ValueError("processes must be >= 1")
    say = ready or (lambda address: print(f"listening on {address}", flush=True))
    if processes == 1:
        _run_one(app, host, port, threads, workers, grace, False, lambda s: say(s.address), settings)
        return
    _serve_processes(app, host, port, threads, processes, workers, grace, say, settings)


def _serve_processes(
    app: WSGIApp,
    host: str,
    port: int,
    threads: int,
    processes: int,
    workers: int,
    grace: float,
    say: Callable[[str], None],
    settings: Dict[str, Any],
) -> None:
    if threading.active_count() > 1:
        log.warning("forking with %d threads running; only the calling thread survives in the children", threading.active_count())
    port, reservation = _reserve_port(host, port)
    settings = dict(settings, share_port=True)
    address = (f"[{host}]" if ":" in host else host) + f":{port}"
    ready_r, ready_w = os.pipe()
    children: Dict[int, int] = {}  # pid -> slot
    stopping = [False]

    def spawn(slot: int, report: bool) -> int:
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                os.close(ready_r)
                if reservation is not None:
                    reservation.close()
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)

                def child_ready(server: WSGIServer) -> None:
                    if report:
                        os.write(ready_w, b"r")
                        os.close(ready_w)

                if not report:
                    os.close(ready_w)
                _run_one(app, host, port, threads, workers, grace, True, child_ready, settings)
            except BaseException:
                log.exception("server process %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = slot
        return pid

    def on_stop(signum: int, frame: Any) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    for slot in range(processes):
        spawn(slot, True)
    os.close(ready_w)
    # Restarted processes get a pipe nobody reads; they close it at once.
    ready_w = os.open(os.devnull, os.O_WRONLY)
    # Every child writes one byte when it listens (or closes the pipe by dying).
    got = 0
    while got < processes and not stopping[0]:
        try:
            data = os.read(ready_r, processes - got)
        except InterruptedError:
            continue
        if not data:
            break
        got += len(data)
    os.close(ready_r)
    if reservation is not None:
        reservation.close()
    if got == processes and not stopping[0]:
        say(address)

    # Supervise: restart a process that dies on its own; stop all on a signal.
    while children:
        if stopping[0]:
            for pid in list(children):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            for pid in list(children):
                _reap(pid)
                children.pop(pid, None)
            break
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.2)
            continue
        slot = children.pop(pid, None)
        if slot is not None and not stopping[0]:
            log.error("server process %d exited (status %d); starting another", pid, status)
            time.sleep(0.5)
            if not stopping[0]:
                spawn(slot, False)
    if ready_w >= 0:
        os.close(ready_w)


def _reap(pid: int) -> None:
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


# --- command line ----------------------------------------------------------------------


def _load_app(spec: str) -> WSGIApp:
    module_name, sep, attr = spec.partition(":")
    if not sep:
        attr = "application"
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    call = attr.endswith("()")
    obj: Any = module
    for part in (attr[:-2] if call else attr).split("."):
        obj = getattr(obj, part)
    if call:
        obj = obj()
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj


def _parse_bind(bind: str) -> Tuple[str, int]:
    if bind.startswith("["):
        host, _, port = bind[1:].partition("]:")
    else:
        host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--bind wants HOST:PORT, not {bind!r}")
    return host, int(port)


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _parse_size(text: str) -> int:
    """``--max-body-size``: ``none`` (no limit), or bytes with an optional
    K/M/G/T suffix (``100M``, ``1.5G``; ``KiB``/``MB`` spellings too)."""
    t = text.strip().upper()
    if t in ("NONE", "UNLIMITED", "INF"):
        return NO_LIMIT
    for suffix in ("IB", "B"):
        if t.endswith(suffix) and len(t) > len(suffix) and t[-len(suffix) - 1] in "KMGT":
            t = t[: -len(suffix)]
            break
    unit = t[-1:] if t[-1:] in "KMGT" else ""
    try:
        n = float(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"--max-body-size wants bytes (100M, 1G) or 'none', not {text!r}") from None
    if not 0 <= n < float(NO_LIMIT) or int(n * _SIZE_UNITS[unit]) >= NO_LIMIT:  # nan fails too
        raise argparse.ArgumentTypeError(f"--max-body-size {text!r} is out of range")
    return int(n * _SIZE_UNITS[unit])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warpcore.wsgi", description="Serve a WSGI application with libwarpcore."
    )
    parser.add_argument("app", help="MODULE:NAME (or MODULE:FACTORY() ) of the WSGI application")
    parser.add_argument("--bind", "-b", type=_parse_bind, default=("127.0.0.1", 8000), metavar="HOST:PORT")
    parser.add_argument("--threads", type=int, default=8, help="application threads per process (0: run on the event loop)")
    parser.add_argument("--processes", "-w", type=int, default=1, help="server processes sharing the port")
    parser.add_argument("--workers", type=int, default=1, help="event loops per process")
    parser.add_argument("--graceful-timeout", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument(
        "--max-body-size",
        type=_parse_size,
        default=NO_LIMIT,
        metavar="BYTES",
        help="largest request body accepted, larger ones get 413: bytes, with an optional K, M, G or T "
        "suffix (powers of 1024), or 'none' (the default: no limit, like gunicorn; bodies over 1 MiB "
        "stream through wsgi.input, so memory stays bounded whatever the size)",
    )
    parser.add_argument(
        "--sched-batch",
        action="store_true",
        help="run the event loops and the application threads under Linux's SCHED_BATCH scheduling policy: "
        "a woken thread does not preempt the running one, so requests and answers cross between them in batches",
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    try:
        app = _load_app(args.app)
    except Exception as exc:
        print(f"warpcore.wsgi: cannot load {args.app}: {exc}", file=sys.stderr)
        return 1
    host, port = args.bind
    try:
        serve(
            app,
            host,
            port,
            threads=args.threads,
            processes=args.processes,
            workers=args.workers,
            grace=args.graceful_timeout,
            max_body_size=args.max_body_size,
            sched_batch=args.sched_batch,
        )
    except (_ffi.WarpcoreError, ValueError, OSError) as exc:
        print(f"warpcore.wsgi: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One HTTP request of an ASGI application: its scope, ``receive`` and ``send``.

The scope is read on the engine's worker thread, inside the handler call (the
request's memory is lent only then), and the request is handed to the event
loop, where :class:`HTTPCycle` runs the application and answers the response
handle through the engine's deferred path:

* ``http.response.start`` is kept until the first ``http.response.body``: a
  body in one message (``more_body`` false) is one ``warpcore_respond``; with
  ``more_body`` the response streams (``warpcore_response_start``, chunked
  unless a ``content-length`` is given, then ``warpcore_response_write_buffer``
  per message). A head whose body does not follow in the same step of the
  application's task (it awaited something else first) is sent on its own.
* Backpressure: every streamed chunk goes to the engine without a copy, and
  the engine's release of it says that it left the socket. ``send`` returns
  only while the bytes not yet released are at most the server's stream
  high-water mark (the engine's own bound), else it waits for the releases:
  a client that does not read stops the application, not the memory.
* ``http.response.pathsend`` is ``warpcore_respond_file``: the engine sends
  the file with ``sendfile`` (and answers conditionals and ranges itself).
* A request body up to the server's ``whole_body_max`` arrives whole: the
  first ``receive`` gives it. A larger one streams: each ``receive`` reads up
  to 64 KiB of what has arrived, on the loop, with a read that never waits
  (``warpcore_body_try_read``); while nothing has, it awaits a future that
  the engine's readiness callback (``warpcore_body_on_readable``, registered
  at the first read, run on the worker when bytes arrive or the body ends
  or fails) resolves through the mailbox. So an upload of any size takes
  bounded memory (the engine's 64 KiB window and the chunk being handed
  over) and no thread: a client that stalls mid-body holds up nobody. A
  ``receive`` cancelled while it waits has taken nothing from the engine.
  A ``receive`` that follows one which returned a chunk without suspending
  (the engine refilled its window while the application worked on the
  last chunk) yields to the loop once before it reads: a fast upload to an
  application that spends a while on each chunk does not hold up the
  loop's other work until its body ends.
* ``http.disconnect``: ``receive`` gives it once the response is complete,
  once the client is known to be gone, and at shutdown. The client is known
  gone when a body read or a write found the connection closed, or, while
  ``receive`` waits with the body read and the response not complete (a long
  poll, Starlette's ``is_disconnected()``), when the engine says that the
  connection let go of the request unanswered (a reset, a FIN, a timeout,
  the shutdown's cut): the first such wait of a request registers the engine's
  close callback (``warpcore_response_on_close``), which hands the news to
  the loop. ``send`` to a client that is gone raises
  :class:`ClientDisconnected` (an ``OSError``, ASGI spec 2.4); an application
  that returns without answering a client that is gone is not an error.

  A client that closes its connection *normally* (``close()`` with nothing
  unread: a FIN, no RST; a browser tab closed, curl stopped, a proxy giving
  up on its upstream) is gone too, as under uvicorn (``http.disconnect`` at
  the EOF) and nginx (a client abort, 499): the server turns on the engine's
  ``client_fin_ends_request``, so a request still pending one to two
  seconds after its client's FIN ends as for a reset — the close callback runs, a long
  poll waiting in ``receive`` gets ``http.disconnect``, and ``send``
  raises. An answer given within that grace still goes out: a client that
  sends its request and half-closes at once (``printf ... | nc -N``) gets
  it, as under uvicorn when the application is quick; under uvicorn a slow
  one's is dropped. A FIN that comes while a request body still streams in cuts the
  body short (``receive`` gives ``http.disconnect``, with the setting or
  without); complete requests the client pipelined that still wait behind
  the pending one (not read ahead), or part of one that may not be read
  ahead (a chunked body cut by the FIN), keep the half-close: the pending
  answer is waited for.
  ``ASGIServer(..., client_fin_ends_request=False)``
  (``--no-client-fin-ends-request``) takes a FIN as a half-close instead
  (RFC 9112 §9.6: the client may still read, and the answer still goes
  out): a long poll then learns nothing of a normal close until its own
  timeout, its answer, the engine's answer timeout or the shutdown.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import logging
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import _ffi
from .._body import CHUNK, _RawBody
from .._ffi import (
    ALREADY_ANSWERED,
    CLOSED,
    INVALID_HEADER,
    INVALID_STATUS,
    IO_ERROR,
    LENGTH_MISMATCH,
    OK,
    RAW,
    RAW_UNTYPED,
    ClientClosedError,
    error_for,
    guarded,
    header_array,
    warpcore_body_ready_cb,
    warpcore_close_cb,
    warpcore_release_cb,
)
from .._response import ZERO_COPY_MIN, _abort, _end, _respond, _respond_buffer, _respond_file, _start

__all__ = ["HTTPCycle", "ClientDisconnected", "respond_error", "on_loop"]

log = logging.getLogger("warpcore.asgi")

_respond_raw = guarded(RAW.respond_deferred)
# Keeps the GIL: for a handle whose handler call has returned (HTTPCycle._respond).
_respond_raw_keep_gil = guarded(RAW.respond)
_write_buffer = guarded(_ffi.F.response_write_buffer)

_DISCONNECT = {"type": "http.disconnect"}
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_BODY_500 = b"Internal Server Error"


class ClientDisconnected(OSError):
    """``send`` after the client went away (ASGI spec 2.4: a subclass of OSError)."""


_running_loop = asyncio._get_running_loop


def on_loop(loop: Any, call: str) -> None:
    """Raises unless the caller runs on ``loop``: ``receive`` and ``send``
    change the request's state and call the engine with no lock, and their
    futures belong to the server's loop. From another thread (or another
    loop) they would race with the loop's own calls."""
    if _running_loop() is not loop:
        raise RuntimeError(
            f"ASGI {call} awaited outside the server's event loop (another thread or loop): from a thread, "
            f"hand it to the server's loop (asyncio.run_coroutine_threadsafe, anyio.from_thread.run)"
        )


def respond_error(res: int, status: int, body: bytes, headers: Sequence[Tuple[bytes, bytes]] = _TEXT) -> None:
    """Answers ``res`` with ``status`` if nothing was sent yet (any thread)."""
    h = header_array(headers)
    rc = _respond(res, status, h.address, h.count, body, len(body))
    if rc and rc not in (CLOSED, ALREADY_ANSWERED):
        log.error("cannot answer %d: %s", status, error_for(rc, "warpcore_respond"))


# --- streamed chunks: pinned until the engine releases them ------------------------

# token -> (cycle, chunk, length): the chunk stays alive until its release,
# which also says that its bytes left the socket (or the connection is gone).
_chunks: Dict[int, Tuple["HTTPCycle", bytes, int]] = {}
_chunk_tokens = itertools.count(1)
_released_lock = threading.Lock()


def _on_chunk_released(userdata: Optional[int], data: Optional[int], length: int) -> None:
    # On the worker thread that wrote it (or on the writer, if refused).
    try:
        item = _chunks.pop(userdata or 0, None)
        if item is None:
            return
        cycle = item[0]
        with _released_lock:
            cycle.released += item[2]
        if cycle.drain_waiting and cycle.written - cycle.released <= cycle.high_water:
            cycle.drain_waiting = False
            cycle.mailbox.post(HTTPCycle._drained, cycle)
    except BaseException:  # noqa: B902 - nothing may cross into C
        pass


_CHUNK_RELEASED = warpcore_release_cb(_on_chunk_released)


def chunks_held() -> int:
    """Streamed chunks the engine still holds (for tests)."""
    return len(_chunks)


# --- the engine's close notice: a waiting receive() learns that the client left ----

# key (the callback's userdata) -> the cycle that registered it, until the
# notice comes or the cycle ends (HTTPCycle._finish): a notice that comes
# later finds nothing. Keys are never reused.
_watched: Dict[int, "HTTPCycle"] = {}
_watch_keys = itertools.count(1)  # next() on it is atomic under the GIL
# Through F (CDLL): the GIL is released for the call, which may wait for a
# close callback running on a worker, itself waiting for the GIL.
_on_close = guarded(_ffi.F.response_on_close)


def _on_close_notice(userdata: Optional[int], res: Optional[int]) -> None:
    # On the worker thread that served the connection, inside its event loop:
    # nothing here may block (the mailbox's post does not). At most once per
    # registration; the handle is released by the cycle's next call on it.
    try:
        cycle = _watched.pop(userdata or 0, None)
        if cycle is not None:
            # False: the loop is gone (shutdown's drain told every cycle).
            cycle.mailbox.post(HTTPCycle.gone, cycle)
    except BaseException:  # noqa: B902 - nothing may cross into C (at exit the module may be half gone)
        pass


#: The one close callback, alive as long as the module (userdata: a key of _watched).
_CLOSE_NOTICE = warpcore_close_cb(_on_close_notice)


def cycles_watched() -> int:
    """Cycles waiting for the engine's close notice (for tests)."""
    return len(_watched)


# --- streamed request bodies: read on the loop, woken by the engine ----------------

# key (the readiness callback's userdata) -> the cycle whose body it is, from
# the registration (the body's first read) until the body is freed (its end,
# or HTTPCycle._finish): a callback that comes later finds nothing. Keys are
# never reused.
_bodies: Dict[int, "HTTPCycle"] = {}
_body_keys = itertools.count(1)  # next() on it is atomic under the GIL


def _on_body_ready(userdata: Optional[int]) -> None:
    # On the worker thread that serves the connection, inside its event loop:
    # nothing here may block (the mailbox's post does not). Once after each
    # try_read that found nothing, when bytes arrived or the body ended or
    # failed; never once the body's free returned (the free waits for it).
    try:
        cycle = _bodies.get(userdata or 0)
        if cycle is not None:
            # False: the loop is gone (the shutdown's drain woke every cycle).
            cycle.mailbox.post(HTTPCycle._body_ready, cycle)
    except BaseException:  # noqa: B902 - nothing may cross into C (at exit the module may be half gone)
        pass


#: The one readiness callback, alive as long as the module (userdata: a key of _bodies).
_BODY_READY = warpcore_body_ready_cb(_on_body_ready)

# The buffer the loop's reads go to, one per thread that runs a server's loop.
_read_buffers = threading.local()


def _try_read_chunk(raw: _RawBody) -> Optional[bytes]:
    """Up to 64 KiB of what has arrived of the body, never waiting: b"" at
    the end, None while nothing has (the readiness callback is then owed).
    Raises ClientClosedError when the body cannot be had whole."""
    buf = getattr(_read_buffers, "buf", None)
    if buf is None:
        buf = _read_buffers.buf = ctypes.create_string_buffer(CHUNK)
    address = ctypes.addressof(buf)
    n = raw.try_read(address, CHUNK)
    if n is None:
        return None
    return ctypes.string_at(address, n) if n else b""


def bodies_watched() -> int:
    """Streamed bodies whose readiness callback is registered (for tests)."""
    return len(_bodies)


def _content_length(headers: Any) -> Optional[int]:
    """The ``content-length`` among ASGI response headers, if any."""
    for name, value in headers:
        if len(name) == 14 and name.lower() == b"content-length":
            try:
                n = int(value)
            except ValueError:
                raise RuntimeError(f"invalid content-length {value!r}") from None
            if not 0 <= n < 2**63:
                raise RuntimeError(f"content-length {value!r} is out of range")
            return n
    return None


def _bytes(body: Any, what: str) -> bytes:
    if type(body) is bytes:
        return body
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)  # a bytes subclass is bytes too
    raise TypeError(f"{what} must be bytes, not {type(body).__name__}")


class HTTPCycle:
    """One request's ``receive`` and ``send`` (on the event loop's thread)."""

    __slots__ = (
        "server",
        "mailbox",
        "loop",
        "scope",
        "res",
        "body",
        "reader",
        "body_left",
        "status",
        "headers",
        "started",
        "streaming",
        "complete",
        "disconnected",
        "failed",
        "head_pending",
        "written",
        "released",
        "high_water",
        "drain_waiting",
        "drain_future",
        "waiters",
        "reading",
        "read_hot",
        "read_future",
        "task",
        "handed",
        "watch_key",
        "body_key",
        "__weakref__",
    )

    def __init__(self, server: Any, scope: Dict[str, Any], res: int, body: Optional[bytes], reader: Optional[_RawBody], body_length: Optional[int]) -> None:
        self.server = server
        self.mailbox = server._mailbox
        self.loop = server._loop
        self.scope = scope
        self.res = res
        self.body = body  # the whole body, until the first receive takes it
        self.reader = reader  # the streamed body's reader, until its end
        self.body_left = body_length  # of a streamed body with a Content-Length
        self.status = 0
        self.headers: Any = None
        self.started = False  # http.response.start was sent by the app
        self.streaming = False  # the engine's stream is started (the head left)
        self.complete = False  # the handle is done (answered, aborted or gone)
        self.disconnected = False
        self.failed: Optional[BaseException] = None
        self.head_pending = False
        self.written = 0
        self.released = 0
        self.high_water = server._high_water
        self.drain_waiting = False
        self.drain_future: Optional[asyncio.Future] = None
        self.waiters: Optional[List[asyncio.Future]] = None
        self.reading = False
        # The last receive() of the streamed body returned a chunk without
        # suspending: the next one yields to the loop first (see receive()).
        self.read_hot = False
        # What a receive() of the streamed body awaits while nothing has
        # arrived: resolved by the engine's readiness callback (through the
        # mailbox), or when the cycle ends or the client is known gone. The
        # bytes stay in the engine until a read takes them, in the step that
        # returns them, so a receive() cancelled while it waits (a timeout,
        # Starlette's is_disconnected()) loses no chunk.
        self.read_future: Optional[asyncio.Future] = None
        self.task: Optional[asyncio.Task] = None
        # The request's hand-over from the engine's handler call: its last
        # item turns True once that call has all but returned.
        self.handed: Optional[List[Any]] = None
        # The key of the close callback registered for this request (0: none
        # asked for; see _watch_close).
        self.watch_key = 0
        # The key of the streamed body's readiness callback (0: not
        # registered yet; see _read).
        self.body_key = 0

    # -- running the application -------------------------------------------------

    async def run(self, app: Any) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            log.debug("client gone: %s %s", self.scope["method"], self.scope["path"])
            self._close(abort=True)
        except asyncio.CancelledError:
            self._close(abort=True)
            raise
        except BaseException as exc:  # noqa: B902 - the server goes on
            if self.disconnected:
                log.debug("the application raised after the client left", exc_info=True)
            else:
                log.error("Exception in ASGI application", exc_info=(type(exc), exc, exc.__traceback__))
            self._fail()
        else:
            if result is not None:
                log.error("ASGI callable should return None, but returned %r", result)
            if not self.complete:
                if self.disconnected:
                    # Nothing to answer (as uvicorn): the call releases the
                    # handle, which a close notice left to this cycle.
                    self._close(abort=True)
                elif not self.started:
                    log.error("ASGI callable returned without starting response")
                    self._fail()
                else:
                    log.error("ASGI callable returned without completing response")
                    self._close(abort=True)
        finally:
            self._finish()

    def _fail(self) -> None:
        """500 when nothing left yet, else the connection closes."""
        if self.complete:
            return
        if self.streaming:
            self._close(abort=True)
            return
        self.complete = True
        respond_error(self.res, 500, _BODY_500)

    def _close(self, abort: bool) -> None:
        if self.complete:
            return
        self.complete = True
        if abort:
            rc = _abort(self.res)
            if rc and rc not in (CLOSED, ALREADY_ANSWERED):
                log.error("warpcore_response_abort: %s", error_for(rc, "warpcore_response_abort"))

    def _finish(self) -> None:
        self.complete = True
        if self.watch_key:
            # Every path of run() made a finishing call on the handle: the
            # engine runs the callback no more; a notice posted already
            # finds a finished cycle (gone() is then harmless).
            _watched.pop(self.watch_key, None)
        self._drop_reader()  # the engine discards the rest (or closes after the answer)
        self._wake_waiters()
        self.server._cycle_done(self)

    def _drop_reader(self) -> None:
        """Frees the streamed body's reader (once): its readiness callback
        runs no more once this returns (the free waits for a running one),
        and one posted already finds no reader."""
        reader, self.reader = self.reader, None
        if self.body_key:
            _bodies.pop(self.body_key, None)
        if reader is not None:
            reader.close()

    def _wake_waiters(self) -> None:
        waiters, self.waiters = self.waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.set_result(None)
        fut = self.drain_future
        if fut is not None and not fut.done():
            fut.set_result(None)
        self._body_ready()

    def gone(self) -> None:
        """The client is known to be gone (or the server stops waiting for it)."""
        self.disconnected = True
        self._wake_waiters()

    # -- receive -------------------------------------------------------------------

    async def receive(self) -> Dict[str, Any]:
        if _running_loop() is not self.loop:
            on_loop(self.loop, "receive()")
        body = self.body
        if body is not None:
            self.body = None
            # After the response, http.disconnect (the spec, and uvicorn),
            # as for a streamed body: not a body left unread.
            if not self.complete:
                return {"type": "http.request", "body": body, "more_body": False}
        if self.reader is not None and not self.disconnected and not self.complete:
            if self.read_hot:
                # The last receive() returned a chunk without suspending (the
                # engine refilled its window while the application worked on
                # it): this one lets the loop run first, else a fast upload
                # to an application that spends a while on each chunk would
                # hold the loop (every other request, WebSocket, timer) until
                # its body ends. Before the read, so a cancellation here has
                # taken nothing; the flag is cleared first, so the receive()
                # after a cancelled one reads at once (a cancel scope that
                # cancels every receive() at its first wait still progresses).
                self.read_hot = False
                await asyncio.sleep(0)
            if self.reader is not None and not self.disconnected and not self.complete:
                return await self._read()
            # The body ended (another task's receive() took its last chunk)
            # or the cycle did meanwhile: as receive() says then.
        if not (self.complete or self.disconnected):
            if not self.watch_key:
                # The first wait of this request: ask the engine to tell when
                # the connection lets go of it unanswered.
                self._watch_close()
                if self.complete or self.disconnected:
                    return _DISCONNECT
            fut = self.loop.create_future()
            if self.waiters is None:
                self.waiters = [fut]
            else:
                self.waiters.append(fut)
            try:
                await fut
            finally:
                # A receive cancelled by a timeout (Starlette's
                # is_disconnected() polls so) leaves nothing behind.
                waiters = self.waiters
                if waiters is not None and fut in waiters:
                    waiters.remove(fut)
        return _DISCONNECT

    def _watch_close(self) -> None:
        """Registers the engine's close callback for this request (once):
        when the connection lets go of it unanswered, gone() runs on the loop."""
        key = self.watch_key = next(_watch_keys)
        # In the dict before the call: the callback may run before it returns.
        _watched[key] = self
        rc = _on_close(self.res, _CLOSE_NOTICE, key)
        if rc == OK:
            return
        _watched.pop(key, None)
        if rc == CLOSED:
            # The connection is gone already: the call released the handle,
            # as a send that finds it closed does.
            self.complete = True
            self.gone()
        elif rc == ALREADY_ANSWERED:
            # The handle is done: nothing will finish it, nor tell.
            self.complete = True
            self._wake_waiters()
        else:
            # Not expected: the wait goes on without the notice, as before it.
            log.warning("cannot watch the client: %s", error_for(rc, "warpcore_response_on_close"))

    async def _read(self) -> Dict[str, Any]:
        """The streamed body's next chunk (up to 64 KiB), read on the loop
        with a read that never waits; while nothing has arrived, awaits the
        engine's readiness callback."""
        if self.reading:
            raise RuntimeError("receive() called while another receive() of the same request waits")
        reader = self.reader
        self.reading = True
        suspended = False
        try:
            while True:
                try:
                    if not self.body_key:
                        # Once per body, before its first read (a read that
                        # found nothing before it would not be owed a call).
                        key = next(_body_keys)
                        # In the dict first: the callback may run before the
                        # call returns.
                        _bodies[key] = self
                        try:
                            reader.on_readable(_BODY_READY, key)
                        except BaseException:
                            # Not registered: no callback will come for it,
                            # and the next receive() registers again.
                            _bodies.pop(key, None)
                            raise
                        self.body_key = key
                    # The first read also sends a 100 Continue the client is owed.
                    chunk = _try_read_chunk(reader)
                except ClientClosedError as exc:
                    log.debug("request body cut short: %s", exc)
                    self.gone()
                    return _DISCONNECT
                if chunk is not None:
                    break
                suspended = True
                fut = self.read_future = self.loop.create_future()
                try:
                    # Cancelled here (a timeout), nothing was taken: the next
                    # receive() reads again.
                    await fut
                finally:
                    if self.read_future is fut:
                        self.read_future = None
                if self.reader is not reader or self.disconnected or self.complete:
                    # The cycle ended, the client is gone, or the response
                    # is complete meanwhile: as receive() says then.
                    return _DISCONNECT
        finally:
            self.reading = False
        # Returned without letting the loop run: the next receive() will.
        self.read_hot = not suspended
        more = bool(chunk)
        if more and self.body_left is not None:
            self.body_left -= len(chunk)
            more = self.body_left > 0
        if not more:
            self._drop_reader()
        return {"type": "http.request", "body": chunk, "more_body": more}

    def _body_ready(self) -> None:
        """On the loop: the streamed body may be read on (the engine's
        readiness callback), or the wait has ended otherwise."""
        fut = self.read_future
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- send --------------------------------------------------------------------------

    async def send(self, message: Dict[str, Any]) -> None:
        if _running_loop() is not self.loop:
            on_loop(self.loop, "send()")
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started:
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got {kind!r}")
            if self.complete:
                self._after_complete(kind)
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = _bytes(body, "http.response.body's body")
            if message.get("more_body", False):
                if not self.streaming:
                    self._start_stream()
                if body:
                    self._write(body)
                    if self.written - self.released > self.high_water:
                        await self._drain()
                return
            if self.streaming:
                if body:
                    self._write(body)
                self._end()
            else:
                self._respond(body)
            return
        if kind == "http.response.start":
            if self.started:
                if self.complete:
                    self._after_complete(kind)
                raise RuntimeError("Expected ASGI message 'http.response.body', but got 'http.response.start'")
            if self.disconnected:
                raise ClientDisconnected("the client went away")
            status = message["status"]
            if type(status) is not int:
                if isinstance(status, bool) or not isinstance(status, int):
                    raise TypeError(f"http.response.start's status must be an int, not {type(status).__name__}")
                status = int(status)  # an IntEnum: http.HTTPStatus.CREATED
            if not 0 <= status < 65536:
                # The C calls take a uint16_t: ctypes would send 65736 as 200.
                raise RuntimeError(f"invalid HTTP status {status!r} (200..599)")
            self.status = status
            headers = message.get("headers", ())
            if type(headers) is not list and type(headers) is not tuple:
                # Any iterable (a generator): read once here, as it is
                # read more than once (the head, its content-length).
                headers = list(headers)
            self.headers = headers
            self.started = True
            # The head leaves with the first body, or on its own once the
            # application's task yields without one: one call after the
            # current step of the loop serves every head started in it.
            self.head_pending = True
            heads = self.server._heads
            heads.append(self)
            if len(heads) == 1:
                self.loop.call_soon(self.server._flush_heads)
            return
        if kind == "http.response.pathsend":
            if not self.started:
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got {kind!r}")
            if self.complete or self.streaming:
                self._after_complete(kind)
            self._send_file(message["path"])
            return
        if self.complete:
            self._after_complete(kind)
        raise RuntimeError(f"Unexpected ASGI message {kind!r} for an HTTP request")

    def _after_complete(self, kind: str) -> None:
        if self.failed is not None:
            raise RuntimeError(f"the response failed: {self.failed}")
        if self.disconnected:
            raise ClientDisconnected("the client went away")
        raise RuntimeError(f"Unexpected ASGI message {kind!r} sent, after response already completed")

    def _check(self, rc: int, call: str) -> None:
        """A failed call's result as the application's exception; CLOSED and
        LENGTH_MISMATCH released the handle."""
        if rc == CLOSED:
            self.complete = True
            self.gone()
            raise ClientDisconnected("the client went away")
        if rc == LENGTH_MISMATCH:
            self.complete = True
            raise RuntimeError("the response body does not match its content-length (the connection is closed)")
        if rc == INVALID_STATUS:
            raise RuntimeError(f"invalid HTTP status {self.status!r} (200..599)")
        if rc == INVALID_HEADER:
            raise RuntimeError(f"invalid HTTP header in {self.headers!r}")
        raise error_for(rc, call)

    def _header_array(self) -> Any:
        try:
            return header_array(self.headers)
        except TypeError:
            raise TypeError("ASGI response headers must be an iterable of (bytes, bytes) pairs") from None

    def _respond(self, body: bytes) -> None:
        """The whole response in one call."""
        self.head_pending = False
        status = self.status
        h = self._header_array()
        n = len(body)
        if not n and self.scope.get("method") == "HEAD":  # a denied WebSocket has none
            # A HEAD answer's Content-Length is the application's, not 0.
            length = _content_length(self.headers)
            if length:
                rc = _start(self.res, status, h.address, h.count, length)
                if rc:
                    self._check(rc, "warpcore_response_start")
                self.streaming = True
                self._end()
                return
        if n < ZERO_COPY_MIN:
            if RAW_UNTYPED and 0 <= status < 65536:
                handed = self.handed
                if handed is not None and handed[5] and not self.watch_key:
                    # The handler call has returned, so the engine takes a
                    # small answer at once, with no wait: keeping the GIL
                    # spares a hand-over to a worker thread waiting for it
                    # and the wait to take it back (a context switch or two
                    # per request once the application's steps are long).
                    # Not once a close callback was registered: the call
                    # would wait for one running on a worker, which waits
                    # for the GIL.
                    rc = _respond_raw_keep_gil(self.res, status, h.pointer, h.count, body, n)
                else:
                    rc = _respond_raw(self.res, status, h.pointer, h.count, body, n)
            else:
                rc = _respond(self.res, status, h.address, h.count, body, n)
        else:
            rc = _respond_buffer(self.res, status, h.address, h.count, body, n, _ffi.RELEASE, _ffi.pin(body))
        if rc:
            self._check(rc, "warpcore_respond")
        self.complete = True
        self._wake_waiters()

    def _start_stream(self) -> None:
        self.head_pending = False
        h = self._header_array()
        length = _content_length(self.headers)
        status = self.status
        if not 0 <= status < 65536:
            raise RuntimeError(f"invalid HTTP status {status!r} (200..599)")
        rc = _start(self.res, status, h.address, h.count, -1 if length is None else length)
        if rc:
            self._check(rc, "warpcore_response_start")
        self.streaming = True

    def _flush_head(self) -> None:
        """The application yielded after http.response.start without a body:
        the head leaves now (a client of server-sent events sees it at once)."""
        if not self.head_pending or self.complete or self.disconnected:
            return
        try:
            self._start_stream()
        except ClientDisconnected:
            pass
        except (RuntimeError, TypeError, _ffi.WarpcoreError) as exc:
            # Nothing was sent: 500, and the application's next send says why.
            log.error("cannot send the response head: %s", exc)
            self.failed = exc
            self.head_pending = False
            self.complete = True
            respond_error(self.res, 500, _BODY_500)
            self._wake_waiters()

    def _write(self, chunk: bytes) -> None:
        n = len(chunk)
        token = next(_chunk_tokens)
        _chunks[token] = (self, chunk, n)
        self.written += n
        rc = _write_buffer(self.res, chunk, n, _CHUNK_RELEASED, token)
        if rc:
            self._check(rc, "warpcore_response_write_buffer")

    async def _drain(self) -> None:
        """Waits until what the engine holds of this stream is at most the
        high-water mark (or the client is gone)."""
        while self.written - self.released > self.high_water and not self.disconnected and not self.complete:
            fut = self.drain_future = self.loop.create_future()
            self.drain_waiting = True
            # A release between the check above and the flag is seen here.
            if self.written - self.released <= self.high_water:
                self.drain_waiting = False
                break
            try:
                await fut
            finally:
                self.drain_waiting = False
                self.drain_future = None
        if self.disconnected:
            raise ClientDisconnected("the client went away")

    def _drained(self) -> None:
        fut = self.drain_future
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _end(self) -> None:
        rc = _end(self.res)
        self.complete = True
        self._wake_waiters()
        if rc:
            self._check(rc, "warpcore_response_end")

    def _send_file(self, path: Any) -> None:
        """http.response.pathsend: the engine sends the file (sendfile)."""
        import os

        self.head_pending = False
        p = os.fsencode(path)
        if not os.path.isabs(p):
            raise RuntimeError(f"http.response.pathsend wants an absolute path, not {path!r}")
        h = self._header_array()
        rc = _respond_file(self.res, self.status, h.address, h.count, p, len(p))
        if rc == IO_ERROR:
            # Missing or unreadable: nothing was sent.
            raise RuntimeError(f"http.response.pathsend: cannot send {path!r}")
        if rc:
            self._check(rc, "warpcore_respond_file")
        self.complete = True
        self._wake_waiters()

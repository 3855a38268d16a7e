"""``ASGIServer``: an ASGI 3 application on libwarpcore, one asyncio event loop
per process.

Threads: the engine's event loops (``loops`` of them, 1 by default) run on
Python threads (``warpcore_server_run_worker``); the asyncio loop runs on one
more thread (the main thread with :meth:`ASGIServer.serve_forever`). A worker
reads each request's scope inside its handler call, takes a streamed body's
reader there, and posts the request to the loop through a :class:`Mailbox`
(one wake-up per batch of requests); the loop runs the application in a task
and answers through the engine's deferred path (the engine posts the answer
to the worker's mailbox, again one wake-up per batch). Per request that is
one Python callback on the worker, a share of one loop wake-up, one task and
one foreign call for a whole response. One loop per process, not per engine
worker: with one GIL a second loop thread adds hand-offs, not throughput;
``workers`` (processes, see :func:`warpcore.asgi.serve`) use more cores.

Shutdown (:meth:`shutdown`, or SIGTERM/SIGINT/SIGHUP under
:meth:`serve_forever`): the engine stops accepting and drains in-flight
requests for up to ``timeout_graceful_shutdown`` seconds while the loop keeps
answering them; open WebSockets are closed with 1012; requests still running
after the engine stopped see ``http.disconnect`` and are cancelled a moment
later; then the lifespan's shutdown runs and the loop stops. A stop asked for
during the lifespan's startup cancels the startup (nothing listens yet); a
second stop signal cuts the drain and a lifespan shutdown that hangs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import signal
import threading
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .. import _ffi
from .._body import raw_for
from .._ffi import INLINE, header_array, warpcore_handler_cb
from .._request import _MEM, _SHORT, _pair, _read_tls, _unpack_view, read_headers
from .._tls_request import asgi_extension
from .._server import _ASYNC_SIGNALS, NO_LIMIT, Server
from ._http import HTTPCycle, respond_error
from ._lifespan import Lifespan, LifespanFailed
from ._mailbox import Mailbox
from ._websocket import WebSocketCycle

__all__ = ["ASGIServer", "LifespanFailed"]

log = logging.getLogger("warpcore.asgi")

#: The stream high-water mark the server gives the engine (its own default):
#: ``send`` of a streamed body waits while more than this is unsent.
HIGH_WATER = 1 << 20
#: The engine's answer timeout by default: its longest (a day).
ANSWER_TIMEOUT = 86400.0

_HEADS_MAX = 256
_HEAD_SPAN_MAX = 2048

_WS_VERSION = b"13"
_503 = b"Service Unavailable"
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


class _ASGI2:
    """An ASGI 2 (double-callable) application as an ASGI 3 one."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def asgi3(app: Any, interface: str = "auto") -> Any:
    """``app`` as an ASGI 3 callable: ``interface`` ``asgi3``, ``asgi2``
    (wrapped), or ``auto``: told as uvicorn tells them (a class with
    ``__await__``, or a coroutine function, is ASGI 3)."""
    if interface == "asgi3":
        return app
    if interface == "asgi2":
        return _ASGI2(app)
    if interface != "auto":
        raise ValueError(f"interface must be 'auto', 'asgi3' or 'asgi2', not {interface!r}")
    if inspect.isclass(app):
        use3 = hasattr(app, "__await__")
    elif inspect.isfunction(app):
        use3 = asyncio.iscoroutinefunction(app)
    else:
        use3 = asyncio.iscoroutinefunction(getattr(app, "__call__", None))
    return app if use3 else _ASGI2(app)


def _raw_path(target: bytes) -> bytes:
    """The path of a request target as sent (percent-encoded), without the query."""
    if target[:1] != b"/" and target != b"*":
        # absolute-form: http://host/path?query
        rest = target.split(b"://", 1)[-1]
        cut = [i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0]
        target = rest[min(cut):] if cut else b""
        if not target.startswith(b"/"):
            target = b"/" + target
    return target.split(b"?", 1)[0]


class _Head:
    """What a request head says, read once for the head's bytes."""

    __slots__ = ("method", "path", "raw_path", "query", "headers", "version", "websocket", "refusal", "subprotocols", "length")

    def __init__(self, v: Tuple[int, ...], root: str, root_raw: bytes, ws: bool) -> None:
        mem, short = _MEM, _SHORT

        def span(p: int, n: int) -> bytes:
            return (short[n](mem, p)[0] if n < 256 else mem[p : p + n].tobytes()) if n else b""

        self.method = span(v[0], v[1]).decode("latin-1")
        self.path = root + span(v[4], v[5]).decode("utf-8", "replace")
        self.raw_path = root_raw + _raw_path(span(v[2], v[3]))
        self.query = span(v[6], v[7])
        headers = [(n.lower(), value) for n, value in read_headers(v[8], v[9])] if v[9] else []
        self.headers = tuple(headers)
        self.version = "1.1" if v[16] == 1 else "1.0"
        self.length: Optional[int] = None
        upgrade = connection_upgrade = False
        keys = 0
        version_ok = False
        subprotocols: List[str] = []
        for name, value in headers:
            if name == b"content-length":
                try:
                    self.length = int(value)
                except ValueError:
                    pass
            elif name == b"upgrade":
                upgrade = value.strip().lower() == b"websocket"
            elif name == b"connection":
                connection_upgrade = b"upgrade" in [t.strip() for t in value.lower().split(b",")]
            elif name == b"sec-websocket-key":
                keys += 1
            elif name == b"sec-websocket-version":
                version_ok = value.strip() == _WS_VERSION
            elif name == b"sec-websocket-protocol":
                subprotocols.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
        # None: plain HTTP; True: a WebSocket handshake for the application;
        # False: a handshake the engine would refuse, answered ``refusal``.
        self.websocket: Any = None
        self.refusal: Any = None
        if ws and upgrade and connection_upgrade and self.version == "1.1":
            if self.method != "GET" or keys != 1:
                self.websocket, self.refusal = False, (400, _TEXT)
            elif not version_ok:
                self.websocket, self.refusal = False, (426, _TEXT + [(b"sec-websocket-version", _WS_VERSION)])
            else:
                self.websocket = True
        self.subprotocols = subprotocols


class _Engine(Server):
    """The engine server whose handler hands requests to an ASGIServer's loop."""

    def __init__(self, asgi: "ASGIServer", host: str, port: int, loops: int, **settings: Any) -> None:
        self._asgi = asgi
        super().__init__(lambda request: None, host, port, loops, **settings)

    def _make_callback(self) -> Any:
        asgi = self._asgi
        mem, short, unpack, pair = _MEM, _SHORT, _unpack_view, _pair
        heads: Dict[bytes, _Head] = {}
        root = asgi.root_path
        root_raw = root.encode("utf-8")
        ws = asgi.ws
        mailbox = asgi._mailbox
        post = mailbox.post
        start_http = asgi._start_http
        start_ws = asgi._start_ws
        state = asgi.state
        # The real port is known once the engine started, after this is made.
        addr: List[Tuple[str, int]] = []
        limit = asgi.limit_concurrency
        admit = asgi._admit
        respond_inline = INLINE.respond
        secure = self._settings.get("tls") is not None
        engine = self
        http_scheme, ws_scheme = ("https", "wss") if secure else ("http", "ws")

        def head_of(v: Tuple[int, ...]) -> _Head:
            mp = v[0]
            n = v[9]
            if n:
                # The request line and header fields sit together in the
                # receive buffer: the same bytes give the same head.
                vp, vl = pair(mem, v[8] + 32 * n - 16)
                span = vp + vl - mp
                if 0 < span < _HEAD_SPAN_MAX and mp < v[2] < vp:
                    key = short[span](mem, mp)[0] if span < 256 else mem[mp : mp + span].tobytes()
                    head = heads.get(key)
                    if head is None:
                        head = _Head(v, root, root_raw, ws)
                        if len(heads) >= _HEADS_MAX:
                            heads.clear()
                        heads[key] = head
                    return head
            return _Head(v, root, root_raw, ws)

        def on_request(_userdata: Optional[int], req: int, res: int) -> None:
            # A place under limit_concurrency taken and not yet handed over
            # (to the cycle, which gives it back when its task ends).
            admitted = False
            try:
                v = unpack(mem, req)
                if not addr:
                    addr.append((self.host, self._port))
                server_addr = addr[0]
                head = head_of(v)
                p, n = v[12], v[13]
                client = (short[n](mem, p)[0].decode("ascii") if n < 64 else "", v[14])
                if limit is not None:
                    if not admit():
                        h = header_array(_TEXT)
                        respond_inline(res, 503, h.address, h.count, _503, len(_503))
                        return
                    admitted = True
                websocket = head.websocket
                if websocket is not False:
                    scope = {
                        "type": "http",
                        "asgi": {"version": "3.0", "spec_version": "2.4"},
                        "http_version": head.version,
                        "server": server_addr,
                        "client": client,
                        "scheme": http_scheme,
                        "method": head.method,
                        "root_path": root,
                        "path": head.path,
                        "raw_path": head.raw_path,
                        "query_string": head.query,
                        "headers": list(head.headers),
                        "state": state.copy(),
                    }
                if websocket is None:
                    scope["extensions"] = {"http.response.pathsend": {}}
                    if v[19]:
                        scope["extensions"]["tls"] = asgi_extension(_read_tls(req), engine._served_cert)
                    if v[18]:
                        # Streams: the reader is taken now, inside the call.
                        item = [scope, res, None, raw_for(res), head.length, False]
                    else:
                        item = [scope, res, mem[v[10] : v[10] + v[11]].tobytes() if v[11] else b"", None, None, False]
                    admitted = False
                    if not post(start_http, item):
                        _refuse(item)
                    else:
                        # The handler call is over but for returning to C,
                        # which takes no more Python (the GIL is released
                        # next): from here the loop's answer never waits for
                        # it with the GIL held (see HTTPCycle._respond).
                        # Nothing may follow this store.
                        item[5] = True
                elif websocket is True:
                    scope["type"] = "websocket"
                    scope["scheme"] = ws_scheme
                    del scope["method"]
                    scope["subprotocols"] = list(head.subprotocols)
                    scope["extensions"] = {"websocket.http.response": {}}
                    if v[19]:
                        scope["extensions"]["tls"] = asgi_extension(_read_tls(req), engine._served_cert)
                    admitted = False
                    if not post(start_ws, (scope, res)):
                        _refuse((scope, res, None, None, None))
                else:
                    status, fields = head.refusal
                    if admitted:
                        admitted = False
                        asgi._release()
                    h = header_array(fields)
                    body = b"a WebSocket handshake (version 13) is expected here\n"
                    respond_inline(res, status, h.address, h.count, body, len(body))
            except BaseException:  # noqa: B902 - nothing may cross into C
                try:
                    if admitted:
                        asgi._release()
                    log.exception("cannot hand a request to the application")
                    respond_error(res, 500, b"Internal Server Error")
                except BaseException:  # noqa: B902
                    pass

        def _refuse(item: Tuple[Any, ...]) -> None:
            # The loop is gone (the server stops): 503, the body released.
            if limit is not None:
                asgi._release()
            if item[3] is not None:
                item[3].close()
            respond_error(item[1], 503, _503)

        return warpcore_handler_cb(on_request)


class ASGIServer:
    """An ASGI 3 application (or ASGI 2, told apart as uvicorn does; see
    ``interface``) served by libwarpcore.

    ``host``/``port`` (0: any free port, see :attr:`port`); ``loops`` engine
    event loops in this process; ``root_path`` the ASGI ``root_path`` (and
    the prefix of ``path`` and ``raw_path``, as uvicorn gives them);
    ``lifespan`` ``"auto"``, ``"on"`` or ``"off"``; ``ws`` ``"auto"`` (WebSocket
    handshakes get the ``websocket`` scope) or ``"none"`` (they are plain
    HTTP requests); ``ws_max_size`` the largest WebSocket message taken;
    ``limit_concurrency`` how many requests and WebSockets may run at once
    before new ones get 503; ``timeout_keep_alive`` seconds an idle
    keep-alive connection is kept (an application's answer has no time
    limit by default: ``timeouts={"answer": s}`` sets one, after which the
    engine answers 503); ``timeout_graceful_shutdown`` seconds
    in-flight requests get at shutdown (None: as long as they take);
    ``access_log`` True (lines to the ``warpcore.access`` logger), a path, a
    callable taking bytes, or False; ``share_port`` joins other processes on
    the port (``SO_REUSEPORT``); ``body_threads`` is accepted and unused
    (streamed request bodies are read on the loop, with no thread of their
    own; it was the size of a pool of threads that waited for them); any
    other keyword is a
    :class:`warpcore.Server` setting (``client_fin_ends_request``, default
    True here, as uvicorn: a client's FIN while its answer is pending ends
    the request, a long poll gets ``http.disconnect``; False takes a FIN as
    a half-close, the answer still going out; ``max_body_size``, default no limit;
    ``whole_body_max``, default 1 MiB: larger bodies stream into
    ``receive``; ``timeouts``, ``server_name``, ``static``...).

    :meth:`start` runs the loop on a thread of its own and returns once the
    server listens (after the lifespan's startup); :meth:`shutdown` drains
    and stops it. :meth:`serve_forever` runs the loop on the calling (main)
    thread until SIGTERM, SIGINT or SIGHUP.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        loops: int = 1,
        root_path: str = "",
        lifespan: str = "auto",
        ws: str = "auto",
        ws_max_size: int = 16 << 20,
        limit_concurrency: Optional[int] = None,
        timeout_keep_alive: Optional[float] = 5.0,
        timeout_graceful_shutdown: Optional[float] = 30.0,
        access_log: Any = True,
        interface: str = "auto",
        share_port: bool = False,
        body_threads: int = 16,
        loop: str = "auto",
        **settings: Any,
    ) -> None:
        if not callable(app):
            raise TypeError("the ASGI application must be callable")
        if lifespan not in ("auto", "on", "off"):
            raise ValueError(f"lifespan must be 'auto', 'on' or 'off', not {lifespan!r}")
        if ws not in ("auto", "none"):
            raise ValueError(f"ws must be 'auto' or 'none', not {ws!r}")
        if loop not in ("auto", "asyncio", "uvloop"):
            raise ValueError(f"loop must be 'auto', 'asyncio' or 'uvloop', not {loop!r}")
        if limit_concurrency is not None and int(limit_concurrency) < 1:
            raise ValueError("limit_concurrency must be at least 1 (or None)")
        if timeout_graceful_shutdown is not None and not float(timeout_graceful_shutdown) >= 0:
            raise ValueError("timeout_graceful_shutdown must be a number of seconds >= 0, or None")
        if not 0 < int(ws_max_size) < 2**64:
            raise ValueError("ws_max_size must be a positive number of bytes")
        self.app = asgi3(app, interface)
        self.host = host
        self.root_path = root_path.rstrip("/")
        self.lifespan_mode = lifespan
        self.ws = ws == "auto"
        self._ws_max_size = int(ws_max_size)
        self.limit_concurrency = None if limit_concurrency is None else int(limit_concurrency)
        self.grace = timeout_graceful_shutdown
        self.loop_kind = loop
        self.state: Dict[str, Any] = {}
        settings.setdefault("max_body_size", NO_LIMIT)
        settings.setdefault("whole_body_max", 1 << 20)
        settings.setdefault("stream_high_water", HIGH_WATER)
        # As uvicorn (http.disconnect at the EOF) and nginx (a client abort):
        # a browser tab closed during a long poll is a client gone.
        settings.setdefault("client_fin_ends_request", True)
        self._high_water = int(settings["stream_high_water"])
        timeouts = dict(settings.pop("timeouts", None) or {})
        if timeout_keep_alive is not None:
            timeouts.setdefault("idle", max(1.0, float(timeout_keep_alive)))
        # An ASGI application may take its time before it answers (a long
        # poll, a slow upstream): as under uvicorn, nothing cuts it short by
        # default (the engine's 60 s answer timeout would answer 503).
        timeouts.setdefault("answer", ANSWER_TIMEOUT)
        settings["timeouts"] = timeouts
        if access_log is False:
            access_log = None
        settings["access_log"] = access_log
        # Accepted as before (existing command lines and calls), unused:
        # streamed bodies are read on the loop (HTTPCycle._read).
        self._body_threads = max(1, int(body_threads))
        self._engine = _Engine(self, host, port, int(loops), share_port=share_port, **settings)
        self._loop: Any = None
        self._mailbox: Any = None
        self._cycles: Set[Any] = set()
        self._heads: List[HTTPCycle] = []  # heads sent by the app, their body not yet
        self._stopping = False
        self._stop_event: Optional[asyncio.Event] = None
        self._cut_event: Optional[asyncio.Event] = None  # a second stop signal
        self._stop_grace: Optional[float] = None
        self._thread: Optional[threading.Thread] = None
        self._admitted = 0
        self._admit_lock = threading.Lock()
        self._done = threading.Event()
        self._started = False
        self.shutdown_report: Optional[Dict[str, int]] = None

    # -- admission (limit_concurrency) -------------------------------------------------

    def _admit(self) -> bool:
        with self._admit_lock:
            if self._admitted >= self.limit_concurrency:  # type: ignore[operator]
                return False
            self._admitted += 1
            return True

    def _release(self) -> None:
        with self._admit_lock:
            self._admitted -= 1

    # -- on the loop ---------------------------------------------------------------------

    def _start_http(self, item: List[Any]) -> None:
        scope, res, body, reader, length = item[:5]
        cycle = HTTPCycle(self, scope, res, body, reader, length)
        # The cycle keeps the hand-over for its last item (HTTPCycle._respond
        # reads it), not the body and the reader, which are the cycle's now:
        # a whole body would stay in memory after receive() took it for as
        # long as the request lives (a long poll). Nothing reads them from
        # the item after this (the worker's _refuse only when it was not
        # posted, so never ran this).
        item[2] = item[3] = None
        cycle.handed = item
        self._cycles.add(cycle)
        cycle.task = self._loop.create_task(cycle.run(self.app))

    def _start_ws(self, item: Tuple[Any, ...]) -> None:
        scope, res = item
        cycle = WebSocketCycle(self, scope, res)
        self._cycles.add(cycle)
        cycle.task = self._loop.create_task(cycle.run(self.app))

    def _flush_heads(self) -> None:
        """After a step of the loop: heads whose body did not follow leave."""
        heads, self._heads = self._heads, []
        for cycle in heads:
            cycle._flush_head()

    def _cycle_done(self, cycle: Any) -> None:
        self._cycles.discard(cycle)
        if self.limit_concurrency is not None:
            self._release()

    # -- lifecycle ----------------------------------------------------------------------

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        kind = self.loop_kind
        if kind in ("auto", "uvloop"):
            try:
                import uvloop  # type: ignore[import-not-found]
            except ImportError:
                if kind == "uvloop":
                    raise
            else:
                return uvloop.new_event_loop()
        return asyncio.new_event_loop()

    async def _main(self, ready: Callable[[], None]) -> None:
        """The server's life on its loop: startup, serve until asked to
        stop, drain, shutdown."""
        loop = self._loop = asyncio.get_running_loop()
        self._mailbox = Mailbox(loop)
        self._stop_event = asyncio.Event()
        self._cut_event = asyncio.Event()
        lifespan = Lifespan(self.app, self.lifespan_mode, self.state)
        try:
            # A stop asked for while the application starts (SIGTERM while
            # it waits for its database, say) cancels the startup: nothing
            # listens yet, so nothing is left to drain, and a startup that
            # hangs must not make the process deaf to signals.
            if not await _unless(lifespan.startup(), self._stop_event):
                log.warning("stopped during the application's startup, which was cancelled; not serving")
                return
            try:
                self._engine.start()
            except BaseException:
                await _unless(lifespan.shutdown(), self._cut_event)
                raise
            self._started = True
            ready()
            await self._stop_event.wait()
            await self._drain(self._stop_grace if self._stop_grace is not None else self.grace)
            # A second stop signal cuts a shutdown that hangs, as it cuts the drain.
            if not await _unless(lifespan.shutdown(), self._cut_event):
                log.warning("the application's shutdown was cancelled by a second stop signal")
        finally:
            self._mailbox.close()
            task = lifespan.task
            if task is not None and not task.done():
                task.cancel()
                # Its cleanup (finally blocks) runs now, not never: a
                # lifespan that ignores the cancellation is left behind.
                await asyncio.wait({task}, timeout=1.0)

    async def _drain(self, grace: Optional[float]) -> None:
        self._stopping = True
        for cycle in list(self._cycles):
            if isinstance(cycle, WebSocketCycle):
                cycle.shutting_down()
        seconds = 2**32 / 1000 if grace is None or math.isinf(grace) else max(0.0, float(grace))
        loop = self._loop
        # The engine's shutdown waits for its workers: on another thread,
        # while this loop goes on answering what is in flight.
        self.shutdown_report = await loop.run_in_executor(None, self._engine.shutdown, seconds)
        # The engine has stopped: what still runs can no longer answer.
        for cycle in list(self._cycles):
            if isinstance(cycle, HTTPCycle):
                cycle.gone()
        tasks = [c.task for c in self._cycles if c.task is not None and not c.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)

    def _request_stop(self, grace: Optional[float] = None) -> None:
        """On the loop: begin the graceful shutdown (a second request with a
        shorter grace does not shorten a shutdown under way)."""
        if self._stop_event is None:
            return
        if not self._stop_event.is_set():
            self._stop_grace = grace
            self._stop_event.set()

    def start(self) -> "ASGIServer":
        """Runs the server on a thread of its own; returns once it listens.
        Raises what kept it from starting (``LifespanFailed``, a
        ``WarpcoreError`` such as an address in use)."""
        if self._thread is not None:
            raise RuntimeError("the server was already started")
        ready = threading.Event()
        failure: List[BaseException] = []

        def run() -> None:
            loop = self._new_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._main(ready.set))
            except BaseException as exc:  # noqa: B902 - handed to start() or logged
                if not ready.is_set():
                    failure.append(exc)
                else:
                    log.exception("the ASGI server's loop failed")
            finally:
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()
                self._done.set()
                ready.set()

        old = signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
        try:
            self._thread = threading.Thread(target=run, name="warpcore-asgi-loop", daemon=True)
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def shutdown(self, grace: Optional[float] = None) -> Optional[Dict[str, int]]:
        """Drains (``grace`` seconds, default ``timeout_graceful_shutdown``),
        runs the lifespan's shutdown, stops the loop; returns the engine's
        shutdown report. Not from the loop's own thread. Idempotent."""
        thread = self._thread
        if thread is None:
            return self.shutdown_report
        if thread is threading.current_thread():
            raise RuntimeError("shutdown() from the server's own loop would wait for itself")
        loop = self._loop
        if loop is not None and not self._done.is_set():
            try:
                loop.call_soon_threadsafe(self._request_stop, grace)
            except RuntimeError:  # the loop closed meanwhile
                pass
        thread.join()
        return self.shutdown_report

    def serve_forever(self, ready: Optional[Callable[["ASGIServer"], None]] = None) -> None:
        """Runs on the calling (main) thread until SIGTERM, SIGINT or SIGHUP,
        then shuts down gracefully; a second SIGINT or SIGTERM cuts the
        grace short, and a lifespan shutdown that hangs. A signal during the
        lifespan's startup cancels it and returns without serving. Raises
        ``LifespanFailed`` when startup failed."""
        if self._thread is not None:
            raise RuntimeError("the server was already started")
        self._thread = threading.current_thread()
        loop = self._new_loop()
        asyncio.set_event_loop(loop)
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        stops = [0]

        def on_signal(signum: int) -> None:
            stops[0] += 1
            if stops[0] == 1:
                log.info("%s: shutting down gracefully", signal.Signals(signum).name)
                self._request_stop()
            else:
                log.warning("%s again: cutting in-flight requests", signal.Signals(signum).name)
                self._engine_cut()

        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            loop.run_until_complete(self._main(lambda: ready(self) if ready is not None else None))
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                asyncio.set_event_loop(None)
                self._done.set()

    def _engine_cut(self) -> None:
        """A second stop signal (on the loop): the drain ends now (the
        engine's shutdown is asked again with no grace; it cuts what is
        left), and so does a lifespan shutdown that hangs."""
        if self._cut_event is not None:
            self._cut_event.set()
        engine = self._engine

        def cut() -> None:
            try:
                ptr = engine._use(closed_too=True)  # not freed while in use
            except RuntimeError:
                return
            try:
                _ffi.F.server_shutdown(ptr, 0)
            finally:
                engine._used()

        threading.Thread(target=cut, name="warpcore-asgi-cut", daemon=True).start()

    # -- what it serves -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on (the real one when 0 was asked for)."""
        return self._engine.port

    @property
    def address(self) -> str:
        return self._engine.address

    @property
    def running(self) -> bool:
        return self._started and not self._done.is_set() and not self._stopping

    def stats(self) -> Dict[str, int]:
        """The engine's counters, plus the hand-off's: ``loop_wakeups`` (times a
        worker woke the loop) and ``loop_posts`` (calls it handed over)."""
        out = self._engine.stats()
        mailbox = self._mailbox
        if mailbox is not None:
            out["loop_wakeups"] = mailbox.wakeups
            out["loop_posts"] = mailbox.posted
        return out

    def __enter__(self) -> "ASGIServer":
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


async def _unless(step: Any, event: asyncio.Event) -> bool:
    """Runs the coroutine ``step`` to its end (True; its exception is
    raised) unless ``event`` is set first: then ``step`` is cancelled and
    awaited, and the answer is False."""
    task = asyncio.ensure_future(step)
    if not event.is_set():
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            waiter.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return False

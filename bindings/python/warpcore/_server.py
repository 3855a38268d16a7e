"""``Server``: a libwarpcore server whose worker loops run on Python threads.

The server is started with external workers: each worker's event loop runs
inside ``warpcore_server_run_worker`` on a ``threading.Thread`` this module
starts, so handler callbacks land on threads Python created (a fraction of a
microsecond per crossing, against 11-13 us on a thread the library created).
ctypes releases the GIL while the loop runs and the callback takes it back.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import weakref
from ctypes import byref, c_void_p
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from . import _ffi
from ._ffi import CLOSED, INLINE, SHUTTING_DOWN, F, check, warpcore_handler_cb
from ._request import Request
from ._response import TEXT_PLAIN, ZERO_COPY_MIN, FileResponse, Responder, Response

__all__ = ["Server", "Handler"]

log = logging.getLogger("warpcore")

Handler = Callable[[Request], Any]

# Signals a worker thread must never take: they belong to the main thread,
# where Python runs its handlers.
_ASYNC_SIGNALS = {
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD", "SIGWINCH")
    if hasattr(signal, name)
}

_TIMEOUTS = {
    "header": _ffi.TIMEOUT_HEADER,
    "idle": _ffi.TIMEOUT_IDLE,
    "body": _ffi.TIMEOUT_BODY,
    "write": _ffi.TIMEOUT_WRITE,
}

_live_servers: "weakref.WeakSet[Server]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_live_servers):
        try:
            server.shutdown(0)
        except Exception:  # pragma: no cover - best effort at exit
            pass


def _static_handler(mounts: Mapping[str, Union[str, os.PathLike]], fallback: Handler) -> Handler:
    """Serves files under each mount's directory, the rest with ``fallback``.

    The C API has no static mounts yet (planned as ``warpcore_respond_file``
    and config mounts): this does the mapping in Python and sends files as a
    :class:`FileResponse`.
    """
    table: List[Tuple[str, str]] = []
    for prefix, root in mounts.items():
        if not prefix.startswith("/"):
            raise ValueError(f"static prefix {prefix!r} must start with '/'")
        p = prefix.rstrip("/")
        table.append((p, os.path.realpath(os.fspath(root))))
    table.sort(key=lambda t: -len(t[0]))

    def handle(request: Request) -> Any:
        path = request.path
        for prefix, root in table:
            if prefix and path != prefix and not path.startswith(prefix + "/"):
                continue
            if request.method not in ("GET", "HEAD"):
                return Response(405, TEXT_PLAIN + [("Allow", "GET, HEAD")], b"Method Not Allowed\n")
            parts = [s for s in path[len(prefix) :].split("/") if s and s != "."]
            if any(s == ".." or "\0" in s for s in parts):
                return Response(404, TEXT_PLAIN, b"Not Found\n")
            full = os.path.join(root, *parts)
            if os.path.isdir(full):
                full = os.path.join(full, "index.html")
            return FileResponse(full)
        return fallback(request)

    return handle


class Server:
    """An HTTP/1.1 server calling ``handler(request)`` for each request.

    ``handler`` returns a :class:`Response`, :class:`FileResponse` or
    :class:`StreamResponse`. An exception becomes a 500 and is logged through
    the ``warpcore`` logger; the server goes on.

    ``workers`` event loops run on as many Python threads (0: one per core).
    With one GIL, more than one worker helps only when handlers release it
    (I/O); ``processes`` in :mod:`warpcore.wsgi` gets past the GIL.
    ``static`` maps URL prefixes to directories. ``share_port`` joins other
    processes listening on the same address (``SO_REUSEPORT``).

    Use as a context manager (``with Server(h, port=0) as s: s.port``) or call
    :meth:`start` and :meth:`shutdown`.
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 8080,
        workers: int = 1,
        static: Optional[Mapping[str, Union[str, os.PathLike]]] = None,
        *,
        server_name: Optional[str] = None,
        share_port: bool = False,
        max_body_size: Optional[int] = None,
        max_head_size: Optional[int] = None,
        max_header_count: Optional[int] = None,
        stream_high_water: Optional[int] = None,
        timeouts: Optional[Mapping[str, float]] = None,
        stream_threads: int = 16,
    ) -> None:
        if not callable(handler):
            raise TypeError("handler must be callable")
        self.host = host
        self._requested_port = int(port)
        self._workers_wanted = int(workers)
        self._settings: Dict[str, Any] = {
            "server_name": server_name,
            "share_port": share_port,
            "max_body_size": max_body_size,
            "max_head_size": max_head_size,
            "max_header_count": max_header_count,
            "stream_high_water": stream_high_water,
            "timeouts": dict(timeouts or {}),
        }
        for key in self._settings["timeouts"]:
            if key not in _TIMEOUTS:
                raise ValueError(f"unknown timeout {key!r} (one of {', '.join(_TIMEOUTS)})")
        self._user_handler = handler
        self._static = dict(static or {})
        self._handler = _static_handler(self._static, handler) if self._static else handler
        self._responder = Responder(stream_threads)
        self._ptr: Optional[int] = None
        self._callback: Any = None
        self._threads: List[threading.Thread] = []
        self._port = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._shut = False

    # -- the callback -----------------------------------------------------------

    def _make_callback(self) -> Any:
        responder = self._responder
        answer = responder.answer
        fail = responder.fail
        server = self
        respond = INLINE.respond
        getrefcount = sys.getrefcount

        # The hot path: every name is a local, a plain Response is answered
        # right here with one foreign call that keeps the GIL.
        def on_request(_userdata: Optional[int], req: int, res: int) -> None:
            request = Request(req)
            try:
                result = server._handler(request)
                if type(result) is Response and len(result.body) < ZERO_COPY_MIN:
                    h = result._header_array()
                    body = result.body
                    rc = respond(res, result.status, h.address, h.count, body, len(body))
                    if rc and rc != CLOSED:
                        raise _ffi.error_for(rc, "warpcore_respond")
                else:
                    answer(res, result, True)
            except BaseException as exc:  # noqa: B902 - nothing may cross into C
                _log_failure(request, exc)
                fail(res)
            # A request the handler kept (in a thread, a closure) gets its
            # fields copied before the library takes the memory back.
            if getrefcount(request) > 2:
                request._detach()
            request._live = False

        return warpcore_handler_cb(on_request)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> "Server":
        """Binds the address and starts the worker threads; returns self. The
        server accepts connections when this returns."""
        with self._lock:
            if self._ptr is not None or self._shut:
                raise RuntimeError("the server was already started")
            self._callback = self._make_callback()
            self._ptr = self._start_server()
            self._port = F.server_port(self._ptr)
            count = F.server_workers(self._ptr)
            _live_servers.add(self)
            # Threads inherit the signal mask: block async signals while they
            # are made, so the main thread keeps taking SIGINT and SIGTERM.
            old = signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
            try:
                for i in range(count):
                    t = threading.Thread(target=self._run_worker, args=(i,), name=f"warpcore-worker-{i}", daemon=True)
                    t.start()
                    self._threads.append(t)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return self

    def _start_server(self) -> int:
        s = self._settings
        cfg = c_void_p()
        check(F.config_new(byref(cfg)), "warpcore_config_new")
        try:
            host = self.host
            addr = (f"[{host}]" if ":" in host else host) + f":{self._requested_port}"
            a = addr.encode("utf-8")
            check(F.config_set_listen(cfg, a, len(a)), "warpcore_config_set_listen")
            workers = self._workers_wanted
            if workers < 0:
                raise ValueError("workers must be >= 0")
            check(F.config_set_workers(cfg, workers), "warpcore_config_set_workers")
            check(F.config_set_external_workers(cfg, True), "warpcore_config_set_external_workers")
            check(F.config_set_share_port(cfg, bool(s["share_port"])), "warpcore_config_set_share_port")
            check(F.config_set_handler(cfg, self._callback, None), "warpcore_config_set_handler")
            if s["server_name"] is not None:
                n = s["server_name"].encode("latin-1")
                check(F.config_set_server_name(cfg, n, len(n)), "warpcore_config_set_server_name")
            if s["max_body_size"] is not None:
                check(F.config_set_max_body_size(cfg, int(s["max_body_size"])), "warpcore_config_set_max_body_size")
            if s["max_head_size"] is not None:
                check(F.config_set_max_head_size(cfg, int(s["max_head_size"])), "warpcore_config_set_max_head_size")
            if s["max_header_count"] is not None:
                check(
                    F.config_set_max_header_count(cfg, int(s["max_header_count"])),
                    "warpcore_config_set_max_header_count",
                )
            if s["stream_high_water"] is not None:
                check(
                    F.config_set_stream_high_water(cfg, int(s["stream_high_water"])),
                    "warpcore_config_set_stream_high_water",
                )
            for which, seconds in s["timeouts"].items():
                check(
                    F.config_set_timeout(cfg, _TIMEOUTS[which], int(seconds * 1000)),
                    "warpcore_config_set_timeout",
                )
            out = c_void_p()
            check(F.server_start(cfg, byref(out)), "warpcore_server_start")
            assert out.value is not None
            return out.value
        finally:
            F.config_free(cfg)

    def _run_worker(self, index: int) -> None:
        try:
            rc = F.server_run_worker(self._ptr, index)
            if rc and rc != SHUTTING_DOWN:
                log.error("worker %d: %s", index, _ffi.error_for(rc, "warpcore_server_run_worker"))
        finally:
            if all(t is threading.current_thread() or not t.is_alive() for t in self._threads):
                self._stopped.set()

    @property
    def port(self) -> int:
        """The port the server listens on (the real one when 0 was asked for)."""
        if self._ptr is None and not self._port:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def address(self) -> str:
        """``HOST:PORT`` the server listens on."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def workers(self) -> int:
        """How many worker loops run."""
        return len(self._threads)

    @property
    def running(self) -> bool:
        return self._ptr is not None and not self._shut

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits until the server has stopped; returns whether it has."""
        return self._stopped.wait(timeout)

    def shutdown(self, grace: float = 5.0) -> None:
        """Stops accepting, lets requests already received finish for up to
        ``grace`` seconds, closes the rest and frees the server. Idempotent.
        Not from a handler (it waits for the workers)."""
        if threading.current_thread() in self._threads:
            raise RuntimeError("shutdown() from a handler would wait for itself; call it from another thread")
        with self._lock:
            if self._shut:
                return
            self._shut = True
            ptr = self._ptr
        if ptr is None:
            self._stopped.set()
            return
        ms = max(0, min(int(grace * 1000), 2**32 - 1))
        check(F.server_shutdown(ptr, ms), "warpcore_server_shutdown")
        for t in self._threads:
            t.join()
        self._stopped.set()
        # Stream threads see their connections closed and finish.
        self._responder.shutdown(wait=True)
        F.server_free(ptr)
        self._ptr = None
        _live_servers.discard(self)

    def reload(
        self,
        handler: Optional[Handler] = None,
        static: Optional[Mapping[str, Union[str, os.PathLike]]] = None,
        **settings: Any,
    ) -> None:
        """Swaps the handler and the static mounts live (both live on the
        Python side). Changing engine settings (limits, timeouts, server name)
        needs ``warpcore_server_reload``, which the C API does not have yet:
        passing any raises :class:`NotImplementedError`."""
        if settings:
            raise NotImplementedError(
                "reload of engine settings (" + ", ".join(sorted(settings)) + ") needs warpcore_server_reload, "
                "which libwarpcore's C API does not provide yet; only handler= and static= can be reloaded"
            )
        if handler is not None:
            if not callable(handler):
                raise TypeError("handler must be callable")
            self._user_handler = handler
        if static is not None:
            self._static = dict(static)
        new = _static_handler(self._static, self._user_handler) if self._static else self._user_handler
        self._handler = new  # one attribute store: atomic for the workers

    def stats(self) -> Dict[str, Any]:
        """Not available: libwarpcore's C API has no ``warpcore_server_stats``
        yet. Raises :class:`NotImplementedError`."""
        raise NotImplementedError(
            "stats() needs warpcore_server_stats, which libwarpcore's C API does not provide yet"
        )

    def serve_forever(self, stop_signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM), grace: float = 5.0) -> None:
        """Starts (if needed), runs until one of ``stop_signals`` arrives, then
        shuts down gracefully. Main thread only."""
        stop = threading.Event()
        previous = {}
        for sig in stop_signals:
            previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())
        try:
            if self._ptr is None:
                self.start()
            while not stop.wait(1.0) and not self._stopped.is_set():
                pass
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            self.shutdown(grace)

    def __enter__(self) -> "Server":
        if self._ptr is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "running" if self.running else ("stopped" if self._shut else "new")
        return f"<warpcore.Server {self.host}:{self._port or self._requested_port} {state}>"


def _log_failure(request: Request, exc: BaseException) -> None:
    try:
        what = f"{request.method} {request.target}"
    except Exception:
        what = "a request"
    log.error("handler failed on %s", what, exc_info=(type(exc), exc, exc.__traceback__))

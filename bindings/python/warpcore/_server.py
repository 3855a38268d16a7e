"""``Server``: a libwarpcore server whose worker loops run on Python threads.

The server is started with external workers: each worker's event loop runs
inside ``warpcore_server_run_worker`` on a ``threading.Thread`` this module
starts, so handler callbacks land on threads Python created (a fraction of a
microsecond per crossing, against 11-13 us on a thread the library created).
ctypes releases the GIL while the loop runs and the callback takes it back.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import math
import os
import signal
import sys
import threading
import weakref
from ctypes import byref, c_void_p
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _ffi
from ._ffi import (
    BUFFER_TOO_SMALL,
    CLOSED,
    RAW,
    SHUTTING_DOWN,
    F,
    check,
    warpcore_access_log_cb,
    warpcore_error_log_cb,
    warpcore_handler_cb,
)
from ._request import _LINES, _MEM, _SHORT, _UNSET, Request, _method_target_path, _read_method_path
from ._response import _PREPARED_MIN, Responder, Response
from ._tls import TLS

__all__ = ["Server", "Handler", "NO_LIMIT"]

#: ``max_body_size=NO_LIMIT``: bodies of any size (the C API's ``UINT64_MAX``).
NO_LIMIT = 2**64 - 1
#: The largest ``whole_body_max`` the library takes.
WHOLE_BODY_MOST = 64 << 20

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
    "answer": _ffi.TIMEOUT_ANSWER,
}

_live_servers: "weakref.WeakSet[Server]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # Stream threads are daemon threads (see StreamThreads): the interpreter
    # did not wait for them, and neither does this. A server one of them may
    # still touch is not freed: the process is ending anyway.
    for server in list(_live_servers):
        try:
            server._shutdown(0, streams_timeout=0)
        except Exception:  # pragma: no cover - best effort at exit
            pass
    # Those threads may still be inside a library call: wait for those calls
    # (cut short by the shutdown) and refuse later ones (see _ffi.guarded).
    _ffi.close_calls(5.0)


def _forget_servers() -> None:
    """In a child just forked: the servers, their worker and stream threads
    are the parent's. The child forgets them without a library call (its
    workers exist only in the parent: shutting down would wait for them), and
    its locks are made anew (another thread may have held one at the fork)."""
    for server in list(_live_servers):
        server._forget()
    _live_servers.clear()
    _ffi._calls_under_way.clear()  # calls the parent's threads were making


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_servers)


class Server:
    """An HTTP/1.1 server calling ``handler(request)`` for each request.

    ``handler`` returns a :class:`Response`, :class:`FileResponse`,
    :class:`StreamResponse`, or :class:`Deferred` (answered later from a
    stream thread). An exception becomes a 500 and is logged through
    the ``warpcore`` logger; the server goes on.

    ``workers`` event loops run on as many Python threads (0: one per core).
    With one GIL, more than one worker helps only when handlers release it
    (I/O); ``processes`` in :mod:`warpcore.wsgi` gets past the GIL.
    ``static`` maps URL prefixes to directories, served by the library
    without calling the handler (sendfile, ETag, conditionals, ranges; fixed
    when the server starts); paths with a segment starting with ``.``
    (``/.env``, ``/.git/config``) are answered 404 unless ``static_dotfiles``
    is True (``/.well-known/`` under a mount at ``/`` is served either way;
    see ``warpcore_config_set_static_dotfiles``). ``share_port`` joins other
    processes listening on the same address (``SO_REUSEPORT``).

    Listeners: ``host`` and ``port`` name one TCP address; ``bind``, a list
    of addresses, replaces them: ``"HOST:PORT"`` or ``"[V6]:PORT"`` (port 0
    picks a free one), ``"unix:/path/to.sock"`` (a Unix socket the library
    creates at start, replacing a stale file, and removes at the end;
    ``unix_socket_mode`` sets its permission bits and ``unix_socket_owner``
    its ``(uid, gid)``, -1 leaving one unchanged) and ``"fd://N"`` (a
    listening socket the program already has, which the server then owns
    and closes). ``systemd=True`` adds the sockets systemd passed
    (``LISTEN_FDS``, when ``LISTEN_PID`` is this process). ``addresses``
    lists what the server listens on once started.
    ``coalesce_wait`` is how long, in seconds like the other durations, a
    busy worker may nap before polling again to gather events (0 to 0.001,
    whole microseconds, 0 = off; the library's default is 50 µs; see
    ``warpcore_config_set_coalesce_wait``). ``sched_batch`` runs the worker
    threads under Linux's ``SCHED_BATCH`` policy while the server runs (see
    ``warpcore_config_set_sched_batch``; :func:`warpcore.thread_set_sched_batch`
    moves threads of the application's that answer deferred requests).
    ``client_fin_ends_request`` (default False) makes a client's FIN that
    comes while its answer is deferred end its pending requests as a reset
    does (their close callbacks run, ``warpcore_response_on_close``; later
    answers on them raise :class:`~warpcore.ClientClosedError`; see
    ``warpcore_config_set_client_fin_ends_request``): how nginx and ASGI
    servers take a browser tab that closed during a long poll (the ASGI
    server turns it on). Off, a FIN only half-closes and the answers still
    go out (RFC 9112 §9.6).

    Request bodies: ``max_body_size`` is the largest accepted (the library's
    default is 1 MiB; :data:`NO_LIMIT` or ``math.inf`` for none); a larger
    one is answered 413. Bodies up to ``whole_body_max`` (at most 64 MiB;
    by default ``max_body_size`` up to that, so that bodies within the limit
    arrive whole as they always did) arrive whole in ``Request.body``; a
    larger one that had not arrived with its head streams
    (``Request.body_follows``): read it with ``Request.stream()``, whatever
    its size, in bounded memory (``Request.body`` then raises).

    TLS: ``tls=TLS(certfile, keyfile, ...)`` (or a ``(certfile, keyfile)``
    pair) makes the listener speak HTTPS (see :class:`~warpcore.TLS`);
    ``Request.tls`` then says what each connection negotiated, and
    ``reload(tls=...)`` (or ``reload()`` with a ``tls`` setting) reads the
    certificate files again without dropping a connection.

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
        whole_body_max: Optional[int] = None,
        max_head_size: Optional[int] = None,
        max_header_count: Optional[int] = None,
        stream_high_water: Optional[int] = None,
        max_connections: Optional[int] = None,
        backlog: Optional[int] = None,
        coalesce_wait: Optional[float] = None,
        sched_batch: bool = False,
        client_fin_ends_request: bool = False,
        timeouts: Optional[Mapping[str, float]] = None,
        access_log: Union[None, bool, str, os.PathLike, Callable[[bytes], Any]] = None,
        file_cache: Optional[Tuple[float, float]] = None,
        static_dotfiles: bool = False,
        stream_threads: int = 16,
        max_request_line: Optional[int] = None,
        bind: Optional[Sequence[str]] = None,
        systemd: bool = False,
        unix_socket_mode: Optional[int] = None,
        unix_socket_owner: Optional[Tuple[int, int]] = None,
        tls: Union[None, TLS, Tuple[Any, Any]] = None,
    ) -> None:
        if not callable(handler):
            raise TypeError("handler must be callable")
        self.host = host
        self._requested_port = int(port)
        self._bind = _check_bind(bind)
        _check_bool("systemd", systemd)
        self._systemd = systemd
        self._unix_mode = _unix_mode(unix_socket_mode, unix_socket_owner)
        self._addresses: List[str] = []
        self._systemd_specs: List[str] = []
        self._workers_wanted = int(workers)
        self._share_port = bool(share_port)
        self._settings: Dict[str, Any] = {
            "server_name": server_name,
            "max_body_size": max_body_size,
            "whole_body_max": whole_body_max,
            "max_head_size": max_head_size,
            "max_request_line": max_request_line,
            "max_header_count": max_header_count,
            "stream_high_water": stream_high_water,
            "max_connections": max_connections,
            "backlog": backlog,
            "coalesce_wait": coalesce_wait,
            "sched_batch": sched_batch,
            "client_fin_ends_request": client_fin_ends_request,
            "timeouts": dict(timeouts or {}),
            "access_log": access_log,
            "file_cache": file_cache,
            "static_dotfiles": static_dotfiles,
            "tls": TLS.of(tls),
        }
        _check_timeouts(self._settings["timeouts"])
        _check_bool("static_dotfiles", static_dotfiles)
        _check_bool("sched_batch", sched_batch)
        _check_bool("client_fin_ends_request", client_fin_ends_request)
        self._keep: List[Any] = []  # callbacks the library may still call
        # The certificate the TLS listeners serve, as PEM (read at each start
        # and reload, as the library reads the files then; see TLS.served_cert).
        self._served_cert: Optional[str] = None
        self.shutdown_report: Optional[Dict[str, int]] = None
        self._static = _static_mounts(static)
        self._handler = handler
        self._responder = Responder(stream_threads)
        self._ptr: Optional[int] = None
        self._callback: Any = None
        self._threads: List[threading.Thread] = []
        self._port = 0
        # Guards _ptr, _shut, _freeing and _users. Never held across a call
        # into the library.
        self._lock = threading.Lock()
        # Calls into the library in progress outside the workers (stats,
        # reload...): shutdown() frees the server only once they are done.
        self._users = 0
        self._no_users = threading.Condition(self._lock)
        self._freeing = False
        self._forked = False
        self._stopped = threading.Event()
        self._shut = False

    # -- the callback -----------------------------------------------------------

    def _make_callback(self) -> Any:
        responder = self._responder
        answer = responder.answer
        fail = responder.fail
        server = self
        respond = RAW.respond  # the handle declared, the rest untyped: see _ffi.RAW
        # Whether the handler kept the request (in a list, a closure, another
        # thread) is told by its reference count: above what it was before the
        # handler saw it. Measured per request, in the same way at both
        # places, never a fixed number: how many references the call itself
        # holds depends on the interpreter (CPython 3.14 loads locals without
        # one). A kept request is copied (Request._detach), one not kept goes.
        getrefcount = sys.getrefcount
        last_resort = _last_resort
        new = object.__new__
        mem, method_target_path, short, unset = _MEM, _method_target_path, _SHORT, _UNSET
        lines, read_method_path = _LINES, _read_method_path
        # Subclasses that wrap the callback keep the plain handler.
        answering = type(self)._make_callback is Server._make_callback
        prepared_min = _PREPARED_MIN
        keep = threading.local()

        # The hot path: every name is a local. A plain Response answered a
        # second time is returned as a prepared response (the library answers
        # with it as this returns: no second foreign call); otherwise it is
        # answered right here with one foreign call that keeps the GIL.
        def on_request(_userdata: Optional[int], req: int, res: int) -> Optional[int]:
            request = None
            # Nothing may escape into C: the answering callback would return
            # an uninitialised pointer. The outer try is for what the inner
            # one's handling itself raises (a logging handler, say).
            try:
                # Request(req), inlined: no __init__ frame per request.
                mp, ml, tp, tl, pp, pl = method_target_path(mem, req)
                n = tp - mp + tl
                line = short[n](mem, mp)[0] if n < 256 and tp - mp == ml + 1 else None
                request = new(Request)
                request.method, request.path = (line is not None and lines.get(line)) or read_method_path(line, mp, ml, pp, pl)
                request._a = req
                request._res = res
                request._live = True
                request._target = request._query = request._headers = unset
                request._body = request._peer = request._tls = request._tail = unset
                unkept = getrefcount(request)
                try:
                    result = server._handler(request)
                    if type(result) is Response and (fast := result._fast or result._prepare()):
                        if answering:
                            p = result._prepared
                            if p > prepared_min or (p := result._prepared_answer()):
                                # The library copies it once this returns: keep the
                                # Response (which owns it) alive until then.
                                keep.result = result
                                if getrefcount(request) > unkept:
                                    request._detach()
                                return p
                        rc = respond(res, *fast)
                        if rc and rc != CLOSED:
                            raise _ffi.error_for(rc, "warpcore_respond")
                    else:
                        answer(res, result, True)
                except BaseException as exc:  # noqa: B902 - nothing may cross into C
                    _log_failure(request, exc)
                    fail(res)
                # A request the handler kept (in a thread, a closure) gets its
                # fields copied before the library takes the memory back; one
                # nobody kept goes away with this frame.
                if getrefcount(request) > unkept:
                    request._detach()
            except BaseException:  # noqa: B902 - nothing may cross into C
                last_resort(request, res, fail)
            return None

        if answering:
            return _ffi.warpcore_answering_cb(on_request)
        return warpcore_handler_cb(on_request)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> "Server":
        """Binds the address and starts the worker threads; returns self. The
        server accepts connections when this returns."""
        with self._lock:
            if self._forked:
                raise RuntimeError(self._closed_message())
            if self._ptr is not None or self._shut:
                raise RuntimeError("the server was already started")
            self._callback = self._make_callback()
            self._ptr = self._start_server()
            self._note_served_cert()
            self._port = F.server_port(self._ptr)
            self._addresses = _listener_addresses(self._ptr)
            if self._bind is not None or self._systemd:
                # The first TCP listener names the server (SERVER_NAME...).
                for a in self._addresses:
                    if not a.startswith("unix:"):
                        self.host = a.rpartition(":")[0].strip("[]")
                        break
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
        cfg = self._config(self._requested_port, self._workers_wanted, starting=True)
        try:
            out = c_void_p()
            check(F.server_start(cfg, byref(out)), "warpcore_server_start")
            assert out.value is not None
            return out.value
        finally:
            F.config_free(cfg)

    def _note_served_cert(self) -> None:
        tls = self._settings["tls"]
        self._served_cert = tls.served_cert() if tls is not None else None

    def _config(
        self, port: int, workers: int, bind: Optional[List[str]] = None, starting: bool = False
    ) -> c_void_p:
        """A new warpcore_config with every setting (the caller frees it).
        ``bind``: new listeners; by default the server's (a reload names
        them as they were asked for: the library keeps those it has)."""
        s = self._settings
        cfg = c_void_p()
        check(F.config_new(byref(cfg)), "warpcore_config_new")
        try:
            listeners = list(self._bind or []) + self._systemd_specs if bind is None else bind
            tls_addresses = []
            if bind is None and self._bind is None and not self._systemd:
                host = self.host
                a = ((f"[{host}]" if ":" in host else host) + f":{port}").encode("utf-8")
                check(F.config_set_listen(cfg, a, len(a)), "warpcore_config_set_listen")
                tls_addresses.append(a)
            for address in listeners:
                a = os.fsencode(address)
                check(F.config_add_listener(cfg, a, len(a)), f"warpcore_config_add_listener({address!r})")
            if self._systemd and starting:
                count = ctypes.c_uint32()
                check(F.config_add_systemd_listeners(cfg, byref(count)), "warpcore_config_add_systemd_listeners")
                if not count.value and not listeners:
                    # Not the library's 127.0.0.1:8080 default instead.
                    raise ValueError("systemd=True but systemd passed this process no socket (LISTEN_PID, LISTEN_FDS)")
                # The library adds them as these (see warpcore_config_add_systemd_listeners).
                self._systemd_specs = [f"fd://{3 + i}" for i in range(count.value)]
                if count.value:
                    # It unset the variables in the C environment; os.environ
                    # is Python's copy, which subprocesses get.
                    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                        os.environ.pop(name, None)
            if self._unix_mode is not None:
                mode, uid, gid = self._unix_mode
                mode = _umask_socket_mode() if mode is None else mode
                check(F.config_set_unix_socket_mode(cfg, mode, uid, gid), "warpcore_config_set_unix_socket_mode")
            if s["tls"] is not None:
                # Every listener speaks TLS (as gunicorn's --certfile applies to
                # every --bind): added after them, each becomes a TLS listener.
                tls_addresses += [os.fsencode(address) for address in listeners + self._systemd_specs]
                for a in dict.fromkeys(tls_addresses):
                    s["tls"].add_to(cfg, a)
            check(F.config_set_workers(cfg, _c_unsigned("workers", workers, 32)), "warpcore_config_set_workers")
            check(F.config_set_external_workers(cfg, True), "warpcore_config_set_external_workers")
            check(F.config_set_share_port(cfg, self._share_port), "warpcore_config_set_share_port")
            if isinstance(self._callback, _ffi.warpcore_handler_cb):
                check(F.config_set_handler(cfg, self._callback, None), "warpcore_config_set_handler")
            else:  # the answering handler (see _make_callback)
                check(F.config_set_answering_handler(cfg, self._callback, None), "warpcore_config_set_answering_handler")
            check(F.config_set_error_log(cfg, _ERROR_LOG, None), "warpcore_config_set_error_log")
            for prefix, root in self._static.items():
                p, d = prefix.encode("utf-8"), os.fsencode(root)
                check(F.config_add_static(cfg, p, len(p), d, len(d)), "warpcore_config_add_static")
            if s["server_name"] is not None:
                n = s["server_name"].encode("latin-1")
                check(F.config_set_server_name(cfg, n, len(n)), "warpcore_config_set_server_name")
            sizes = dict((key, s[key]) for key in _SIZE_BITS)
            if sizes["max_body_size"] == math.inf:
                sizes["max_body_size"] = NO_LIMIT
            if sizes["whole_body_max"] is None and sizes["max_body_size"] is not None:
                # A program that only raised the limit keeps its bodies whole
                # in Request.body, as before bodies could stream, up to the
                # library's most (64 MiB); larger ones stream.
                sizes["whole_body_max"] = min(_c_unsigned("max_body_size", sizes["max_body_size"], 64), WHOLE_BODY_MOST)
            for key, bits in _SIZE_BITS.items():
                if sizes[key] is not None:
                    setter = getattr(F, "config_set_" + key)
                    check(setter(cfg, _c_unsigned(key, sizes[key], bits)), "warpcore_config_set_" + key)
            if s["coalesce_wait"] is not None:
                us = _whole_units("coalesce_wait", s["coalesce_wait"], 1_000_000, 32)
                check(F.config_set_coalesce_wait(cfg, us), "warpcore_config_set_coalesce_wait")
            for which, seconds in s["timeouts"].items():
                ms = _whole_units(f"timeouts[{which!r}]", seconds, 1000, 64)
                check(F.config_set_timeout(cfg, _TIMEOUTS[which], ms), "warpcore_config_set_timeout")
            if s["file_cache"] is not None:
                fd_s, info_s = s["file_cache"]
                check(
                    F.config_set_file_cache(
                        cfg, _whole_units("file_cache[0]", fd_s, 1000, 64), _whole_units("file_cache[1]", info_s, 1000, 64)
                    ),
                    "warpcore_config_set_file_cache",
                )
            check(F.config_set_static_dotfiles(cfg, s["static_dotfiles"]), "warpcore_config_set_static_dotfiles")
            check(F.config_set_sched_batch(cfg, s["sched_batch"]), "warpcore_config_set_sched_batch")
            check(
                F.config_set_client_fin_ends_request(cfg, s["client_fin_ends_request"]),
                "warpcore_config_set_client_fin_ends_request",
            )
            log_to = s["access_log"]
            if log_to is True or callable(log_to):
                cb = warpcore_access_log_cb(_access_logger(log_to))
                self._keep.append(cb)
                check(F.config_set_access_log_callback(cfg, cb, None), "warpcore_config_set_access_log_callback")
            elif log_to:
                path = os.fsencode(log_to)
                check(F.config_set_access_log_file(cfg, path, len(path)), "warpcore_config_set_access_log_file")
        except BaseException:
            F.config_free(cfg)
            raise
        return cfg

    def _run_worker(self, index: int) -> None:
        _ffi.mark_worker_thread()
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
        """``HOST:PORT`` the server listens on (its first listener's address:
        ``unix:/path`` for a Unix socket)."""
        if self._addresses:
            return self._addresses[0]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def addresses(self) -> List[str]:
        """Every address the server listens on, in the order given, as the
        library reports them (``127.0.0.1:39211``, ``[::1]:80``,
        ``unix:/run/app.sock``; a descriptor handed in as ``fd://N`` by the
        address its socket has)."""
        if self._ptr is None and not self._addresses:
            raise RuntimeError("the server is not started")
        return list(self._addresses)

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

    def shutdown(self, grace: float = 5.0) -> Optional[Dict[str, int]]:
        """Stops accepting, lets requests already received finish for up to
        ``grace`` seconds, closes the rest and frees the server. Returns what
        it did (``{"requests_finished": n, "connections_cut": m}``, also kept
        as ``shutdown_report``). Idempotent. Not from a thread the server
        runs (a handler, a stream's iterable): it waits for those threads."""
        # Checked before anything changes: a refused call leaves the server
        # running and shutdown() callable again.
        if self._runs_on(threading.current_thread()):
            raise RuntimeError(
                "shutdown() from a handler, a stream's iterable or a WSGI application thread would wait for "
                "itself; call it from another thread (threading.Thread(target=server.shutdown).start())"
            )
        # inf waits as long as the library can (~49 days).
        if math.isnan(float(grace)):
            raise ValueError("shutdown grace must be a number of seconds, not nan")
        # Stream threads see their connections closed at the latest at the
        # deadline and finish; one still busy a while later (an iterable
        # waiting for an event) keeps the server from being freed.
        streams_timeout = max(1.0, min(float(grace), 60.0))
        if _ffi.on_worker_thread():
            # Another server's handler: the library never waits for workers on
            # a worker thread (it would only start the shutdown), so the
            # shutdown runs on a thread of its own, waited for here.
            result: Dict[str, Any] = {}

            def run() -> None:
                try:
                    result["report"] = self._shutdown(grace, streams_timeout)
                except BaseException as e:  # handed to the caller below
                    result["error"] = e

            t = threading.Thread(target=run, name="warpcore-shutdown", daemon=True)
            t.start()
            t.join()
            if "error" in result:
                raise result["error"]
            return result.get("report")
        return self._shutdown(grace, streams_timeout=streams_timeout)

    def _runs_on(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is one the server runs and shutdown() waits for."""
        return thread in self._threads or self._responder.owns(thread)

    def _shutdown(self, grace: float, streams_timeout: Optional[float]) -> Optional[Dict[str, int]]:
        ms = int(max(0.0, min(float(grace) * 1000, 2**32 - 1)))
        with self._lock:
            if self._shut:
                return self.shutdown_report
            self._shut = True
            ptr = self._ptr
        if ptr is None:
            self._stopped.set()
            return None
        check(F.server_shutdown(ptr, ms), "warpcore_server_shutdown")
        for t in self._threads:
            t.join()
        self._stopped.set()
        report = _ffi.warpcore_shutdown_report()
        check(F.server_shutdown_report(ptr, byref(report)), "warpcore_server_shutdown_report")
        self.shutdown_report = {"requests_finished": report.requests_finished, "connections_cut": report.connections_cut}
        streams_done = self._responder.shutdown(streams_timeout)
        # No new call may start, and the ones under way (stats() on another
        # thread...) end before the free. The workers are stopped, so none of
        # those calls waits for them, nor for this lock.
        with self._lock:
            self._freeing = True
            while self._users:
                self._no_users.wait()
            self._ptr = None
        _live_servers.discard(self)
        if streams_done:
            F.server_free(ptr)
        elif streams_timeout != 0:
            log.warning("a stream's iterable is still running after shutdown; the server is not freed")
        return self.shutdown_report

    def _use(self, closed_too: bool = False) -> int:
        """The server's pointer for one library call, counted until
        ``_used()``: shutdown() frees it only after. ``closed_too``: also while
        shutdown() is under way (the counters can be read until the free)."""
        with self._lock:
            ptr = self._ptr
            if ptr is None or self._freeing or (self._shut and not closed_too):
                raise RuntimeError(self._closed_message())
            self._users += 1
            return ptr

    def _used(self) -> None:
        with self._lock:
            self._users -= 1
            if not self._users:
                self._no_users.notify_all()

    def _closed_message(self) -> str:
        if self._forked:
            return "the server belongs to the process this one was forked from"
        if self._shut:
            return "the server was shut down"
        return "the server is not running"

    def _forget(self) -> None:
        """After a fork, in the child (see _forget_servers): closed, with no
        library call and no lock taken."""
        self._lock = threading.Lock()
        self._no_users = threading.Condition(self._lock)
        self._users = 0
        self._ptr = None
        self._shut = self._forked = True
        self._threads = []
        self._responder.forget()
        self._stopped = threading.Event()
        self._stopped.set()

    def reload(self, handler: Optional[Handler] = None, **settings: Any) -> None:
        """Applies new settings to requests read from now on, atomically, with
        no connection dropped: ``handler``, and any of the constructor's engine
        settings (``server_name``, ``max_body_size``, ``whole_body_max``, ``max_head_size``,
        ``max_header_count``, ``stream_high_water``, ``max_connections``,
        ``backlog`` (for the listeners it opens),
        ``coalesce_wait``, ``sched_batch``, ``client_fin_ends_request``,
        ``timeouts``, ``access_log``,
        ``file_cache``, ``static_dotfiles``, ``max_request_line``, ``tls``: the
        certificate files are read again whenever the config is rebuilt),
        ``static`` (the whole new set of mounts; ``{}`` removes them all) and
        ``bind`` (the whole new list of listeners: those whose address is
        unchanged keep their socket and connections, new ones are opened,
        dropped ones stop accepting while their connections finish). Settings
        not given keep their values; a refused reload (a missing static
        directory, an address in use, say) raises and changes nothing. The
        worker count is fixed at start. May be called from a handler."""
        static = settings.pop("static", None)
        bind = _check_bind(settings.pop("bind", None))
        unknown = set(settings) - set(self._settings)
        if unknown:
            raise TypeError(f"reload() cannot change {', '.join(sorted(unknown))}")
        if handler is not None and not callable(handler):
            raise TypeError("handler must be callable")
        if "timeouts" in settings:
            settings["timeouts"] = dict(settings["timeouts"] or {})
            _check_timeouts(settings["timeouts"])
        for key in ("static_dotfiles", "sched_batch", "client_fin_ends_request"):
            if key in settings:
                _check_bool(key, settings[key])
        if "tls" in settings:
            settings["tls"] = TLS.of(settings["tls"])
            if (settings["tls"] is None) != (self._settings["tls"] is None):
                raise ValueError("reload() cannot turn TLS on or off: the listener keeps its scheme")
        if settings or static is not None or bind is not None:
            ptr = self._use()
            try:
                old, old_static = self._settings, self._static
                self._settings = dict(old, **settings)
                if static is not None:
                    self._static = _static_mounts(static)
                try:
                    cfg = self._config(self._port, len(self._threads), bind)
                    try:
                        check(F.server_reload(ptr, cfg), "warpcore_server_reload")
                    finally:
                        F.config_free(cfg)
                except BaseException:
                    self._settings, self._static = old, old_static
                    raise
                self._note_served_cert()
                if bind is not None:
                    self._bind, self._systemd_specs = bind, []
                    self._addresses = _listener_addresses(ptr)
                    self._port = F.server_port(ptr)
            finally:
                self._used()
        if handler is not None:
            self._handler = handler  # one attribute store: atomic for the workers

    def stats(self) -> Dict[str, int]:
        """The engine's counters (connections, requests, responses by class,
        bytes, parse errors, cache hits, coalescing naps), summed over the workers."""
        return self._counters(_ffi.warpcore_stats, F.server_stats, "warpcore_server_stats")

    def file_cache_stats(self) -> Dict[str, int]:
        """Hit and miss counts of the library's file caches (static mounts and
        FileResponse)."""
        return self._counters(_ffi.warpcore_file_cache_stats, F.server_file_cache_stats, "warpcore_server_file_cache_stats")

    def _counters(self, struct: Any, read: Any, name: str) -> Dict[str, int]:
        """One counters struct read by ``read``, as a dict of its fields.
        Readable until shutdown() frees the server."""
        ptr = self._use(closed_too=True)
        try:
            out = struct()
            check(read(ptr, byref(out)), name)
        finally:
            self._used()
        # ``size`` is the struct's header, not a counter.
        return {field: getattr(out, field) for field, _ in out._fields_ if field != "size"}

    def reopen_logs(self) -> None:
        """Reopens the access-log file (after log rotation moved it away)."""
        ptr = self._use()
        try:
            check(F.server_reopen_logs(ptr), "warpcore_server_reopen_logs")
        finally:
            self._used()

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


def _check_bind(bind: Optional[Sequence[str]]) -> Optional[List[str]]:
    """The listener addresses of ``bind`` (checked by the library when the
    server starts), as a list; None for None."""
    if bind is None:
        return None
    if isinstance(bind, (str, bytes)):
        raise TypeError("bind must be a list of addresses, not one string")
    out = []
    for address in bind:
        if not isinstance(address, str):
            raise TypeError(f"a bind address must be a str, not {type(address).__name__}")
        out.append(address)
    if not out:
        raise ValueError("bind must name at least one address")
    return out


def _unix_mode(
    mode: Optional[int], owner: Optional[Tuple[int, int]]
) -> Optional[Tuple[Optional[int], int, int]]:
    """(mode, uid, gid) for warpcore_config_set_unix_socket_mode (a None mode:
    what the umask gives, see :func:`_umask_socket_mode`), or None when
    neither is set (the library's default: the process's umask)."""
    if mode is None and owner is None:
        return None
    m = None if mode is None else _c_unsigned("unix_socket_mode", mode, 32)
    if m is not None and m > 0o7777:
        raise ValueError(f"unix_socket_mode {mode!r} is not a permission mode (0 to 0o7777)")
    uid, gid = (-1, -1) if owner is None else owner
    for name, n in (("uid", uid), ("gid", gid)):
        if not isinstance(n, int) or not -1 <= n < 2**32 - 1:
            raise ValueError(f"unix_socket_owner {name} {n!r} is out of range (-1 leaves it unchanged)")
    return m, uid, gid


def _umask_socket_mode() -> int:
    """The mode bind() gives a new socket file, 0o777 less the umask: what an
    owner set without a mode keeps (the library's call sets both). The umask
    is read from /proc, since os.umask() would change it under other threads;
    unknown, the file is the owner's alone."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o777 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o700


def _listener_addresses(ptr: int) -> List[str]:
    """The addresses of a running server's listeners."""
    out = []
    buf = ctypes.create_string_buffer(128)
    needed = ctypes.c_size_t()
    for i in range(F.server_listener_count(ptr)):
        rc = F.server_listener_address(ptr, i, buf, len(buf), byref(needed))
        if rc == BUFFER_TOO_SMALL:
            buf = ctypes.create_string_buffer(needed.value + 1)
            rc = F.server_listener_address(ptr, i, buf, len(buf), byref(needed))
        check(rc, "warpcore_server_listener_address")
        out.append(os.fsdecode(buf.raw[: needed.value]))
    return out


def _static_mounts(static: Optional[Mapping[str, Union[str, "os.PathLike[str]"]]]) -> Dict[str, str]:
    """URL prefix -> absolute directory, prefixes checked."""
    mounts = {}
    for prefix, root in (static or {}).items():
        if not prefix.startswith("/"):
            raise ValueError(f"static prefix {prefix!r} must start with '/'")
        mounts[prefix] = os.path.abspath(os.fspath(root))
    return mounts


#: The integer settings and the width of their C parameter.
_SIZE_BITS = {
    "max_body_size": 64,
    "whole_body_max": 64,
    "max_head_size": 32,
    "max_request_line": 32,
    "max_header_count": 32,
    "stream_high_water": 64,
    "max_connections": 32,
    "backlog": 32,
}


def _c_unsigned(name: str, value: Any, bits: int) -> int:
    """``value`` as an unsigned C integer of ``bits`` bits. ctypes would keep
    only the low bits of a negative or too large number (``2**64 + 100`` as a
    body limit of 100): that is a ``ValueError`` naming the setting here; the
    library checks its own range after this."""
    n = int(value)
    if not 0 <= n < 2**bits:
        raise ValueError(f"{name} {value!r} is out of range")
    return n


def _whole_units(name: str, seconds: Any, per_second: int, bits: int) -> int:
    """``seconds`` as a whole number of milliseconds or microseconds
    (``per_second`` of them in a second), rounded, checked as ``_c_unsigned``
    checks integers; ``int()`` would fail on inf and nan with messages that
    name nothing, so those are a ``ValueError`` naming the setting too."""
    value = float(seconds)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite, non-negative number of seconds, not {seconds!r}")
    return _c_unsigned(f"{name} (in 1/{per_second} s)", round(value * per_second), bits)


def _check_timeouts(timeouts: Mapping[str, float]) -> None:
    for key in timeouts:
        if key not in _TIMEOUTS:
            raise ValueError(f"unknown timeout {key!r} (one of {', '.join(_TIMEOUTS)})")


def _check_bool(name: str, value: Any) -> None:
    # A security switch: "no" or 0.0 must not quietly mean True or False.
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")


_LEVELS = {_ffi.LOG_LEVEL_ERROR: logging.ERROR, _ffi.LOG_LEVEL_WARNING: logging.WARNING, _ffi.LOG_LEVEL_INFO: logging.INFO}


def _on_error_log(_userdata: Optional[int], level: int, message: Optional[int], length: int) -> None:
    try:
        text = ctypes.string_at(message, length).decode("utf-8", "replace") if length else ""
        log.log(_LEVELS.get(level, logging.ERROR), "libwarpcore: %s", text)
    except BaseException:  # noqa: B902 - nothing may cross into C
        pass


#: The library's error log goes to the ``warpcore`` logger.
_ERROR_LOG = warpcore_error_log_cb(_on_error_log)

access_log = logging.getLogger("warpcore.access")


def _access_logger(target: Any) -> Callable[[Optional[int], Optional[int], int], None]:
    """The access-log callback: batches of lines to ``target(bytes)``, or with
    ``True`` each line to the ``warpcore.access`` logger."""

    def on_lines(_userdata: Optional[int], lines: Optional[int], length: int) -> None:
        try:
            data = ctypes.string_at(lines, length) if length else b""
            if target is True:
                for line in data.decode("utf-8", "replace").splitlines():
                    access_log.info("%s", line)
            else:
                target(data)
        except BaseException:  # noqa: B902 - nothing may cross into C
            log.exception("the access-log callback failed")

    return on_lines


def _last_resort(request: Optional[Request], res: int, fail: Callable[[int], None]) -> None:
    """The handler callback's own error handling failed (a logging handler
    raised, say): answer 500 if nothing was, copy the request in case it was
    kept, and return to C whatever else happens."""
    try:
        fail(res)
    except BaseException:  # noqa: B902 - nothing may cross into C
        pass
    try:
        if request is not None and request._live:
            request._detach()
    except BaseException:  # noqa: B902 - nothing may cross into C
        pass
    try:
        log.critical("the request callback failed", exc_info=True)
    except BaseException:  # noqa: B902 - nothing may cross into C
        pass


def _log_failure(request: Request, exc: BaseException) -> None:
    try:
        what = f"{request.method} {request.target}"
    except Exception:
        what = "a request"
    log.error("handler failed on %s", what, exc_info=(type(exc), exc, exc.__traceback__))

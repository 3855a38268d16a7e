"""One worker process of the arbiter: loads the application, serves it on
the listening sockets the master opened (handed in as ``fd://N``), and
reports to the master.

Reporting: the master gave the worker a shared counter (an anonymous shared
mapping, like gunicorn's WorkerTmp file but without a system call per
beat). The worker's main thread adds one to it every ``period`` seconds
*while the application can make progress*: not when every application
thread has been in one call for longer than ``--timeout`` without sending
or reading a piece of a body (or, with ``--threads 0``, when an event loop
has been held that long by one call),
since then no request can be answered. A worker whose counter stops is
killed by the master and replaced. The worker logs the stuck threads'
stacks once when it stops reporting, so the log says where they hung.

Messages to the master go through a pipe, one line each: ``ready PID``
once the server accepts connections, ``retire PID`` when the worker wants
to be replaced (``--max-requests`` reached, or ``--reload`` saw a source
file change): the master starts its replacement and stops this worker once
that one is ready, so no request waits for a worker to boot.

Signals: TERM and QUIT stop gracefully (requests in flight get
``--graceful-timeout``), INT at once, USR1 reopens the logs. The worker
dies with the master: ``PR_SET_PDEATHSIG`` (SIGTERM) on Linux, and a check
of the parent's PID every period elsewhere and for the moment before the
call; a stop still under way ``STOP_MARGIN`` seconds after its grace (an
application call that holds an event loop) ends the process.

The interface: ``server_factory(interface)`` is ``warpcore.wsgi.worker_server``
or ``warpcore.asgi.worker_server``, called as ``worker_server(app,
**server_options(cfg, fds))``; it returns a server with ``start()``,
``shutdown(grace)``, ``reopen_logs()``, ``stats()`` (a dict with
``"requests"``) and ``stuck(timeout)`` (a reason, or None).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import mmap
import os
import random
import signal
import struct
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from . import _logs
from ._config import Config, ConfigError

__all__ = ["BOOT_ERROR", "WorkerSpec", "run", "server_factory", "server_options", "load_app"]

log = logging.getLogger("warpcore.worker")

#: Exit status of a worker that could not load the application or start.
BOOT_ERROR = 3

_BEAT = struct.Struct("Q")


class WorkerSpec:
    """What the master hands a worker it forks."""

    def __init__(
        self,
        cfg: Config,
        fds: List[int],
        notify_fd: int,
        beat: mmap.mmap,
        master_pid: int,
        load: Callable[[Config], Any],
        period: float,
        multiprocess: bool = False,
    ) -> None:
        self.cfg = cfg
        self.fds = fds
        self.notify_fd = notify_fd
        self.beat = beat
        self.master_pid = master_pid
        self.load = load
        self.period = period
        self.multiprocess = multiprocess  # more than one worker when forked


def beat_count(beat: mmap.mmap) -> int:
    """The master's read of a worker's counter."""
    return _BEAT.unpack_from(beat, 0)[0]


def load_app(spec: str) -> Any:
    """``MODULE:NAME`` (``NAME`` may be dotted; ``MODULE:FACTORY()`` calls it;
    ``MODULE`` alone means ``MODULE:application``), imported from the
    current directory too."""
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


def server_factory(interface: str) -> Callable[..., Any]:
    """The ``worker_server`` of ``warpcore.wsgi`` or ``warpcore.asgi``;
    ConfigError when the ASGI server is not in this installation."""
    if interface == "wsgi":
        from .wsgi import worker_server

        return worker_server
    try:
        module = importlib.import_module("warpcore.asgi")
    except ImportError as exc:
        raise ConfigError(f"--interface asgi needs warpcore.asgi, which this installation lacks ({exc})") from None
    factory = getattr(module, "worker_server", None)
    if factory is None:
        raise ConfigError("--interface asgi: warpcore.asgi has no worker_server(app, **options)")
    return factory


def server_options(cfg: Config, fds: List[int], multiprocess: bool = False) -> Dict[str, Any]:
    """The keyword arguments of ``worker_server(app, **options)`` for the
    settings ``cfg``, the inherited listening sockets ``fds``, and whether
    other workers run the application too."""
    line = cfg.limit_request_line
    # Every listener speaks TLS when certfile is set (as gunicorn's): the
    # server adds the fd:// listeners as TLS ones. The worker's server reads
    # the certificate files again when it starts: a SIGHUP's new workers
    # serve the files as they are then.
    tls = {"tls": cfg.tls} if cfg.tls is not None else {}
    return dict(cfg.server_options, **tls, **{
        "bind": [f"fd://{fd}" for fd in fds],
        "threads": cfg.threads,
        "loops": cfg.loops,
        "root_path": cfg.root_path,
        "forwarded_allow_ips": cfg.forwarded_allow_ips,
        "keepalive": cfg.keepalive,
        # 0, gunicorn's "no limit": as long as the head may be (32 KiB).
        "limit_request_line": (32 << 10) if line == 0 else line,
        "limit_request_fields": cfg.limit_request_fields,
        "limit_request_field_size": cfg.limit_request_field_size or None,
        "max_body_size": cfg.max_body_size,
        "sched_batch": cfg.sched_batch,
        "access_log": _logs.access_log_target(cfg.accesslog),
        "multiprocess": multiprocess,
        "watchdog": cfg.timeout > 0,
    })


# --- dying with the master --------------------------------------------------------

PR_SET_PDEATHSIG = 1


def _die_with_parent(master_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
                log.warning("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))
        except (OSError, AttributeError) as exc:  # pragma: no cover - not glibc
            log.warning("prctl(PR_SET_PDEATHSIG) unavailable: %s", exc)
    # The master may have died before the call: then nothing would tell us.
    if os.getppid() != master_pid:
        raise SystemExit(0)


#: After the grace of a stop, how long the worker waits for its server to
#: end before it exits anyway (the master's kill comes as late: KILL_MARGIN).
STOP_MARGIN = 5.0


def _end_by(seconds: float) -> None:
    """Ends the process ``seconds`` from now if it has not ended by then. A
    drain cannot cut an application call that holds an event loop (``--threads
    0``), so the server's shutdown waits for it: the master kills such a
    worker, but a worker whose master was killed must end on its own."""

    def end() -> None:
        time.sleep(seconds)
        log.error("worker %d still stopping %.0f s after the grace: exiting", os.getpid(), seconds)
        os._exit(1)

    threading.Thread(target=end, name="warpcore-stop-deadline", daemon=True).start()


# --- --reload: source files polled ---------------------------------------------------


class _Watcher:
    """The source files of the loaded modules (and extra ones), polled."""

    def __init__(self, extra: List[str]) -> None:
        self.extra = set(os.path.abspath(f) for f in extra)
        self.seen: Dict[str, Tuple[int, int]] = {}
        self.changed()  # the first look records what is there

    def _files(self) -> Set[str]:
        files = set(self.extra)
        for module in list(sys.modules.values()):
            f = getattr(module, "__file__", None)
            if f:
                files.add(f[:-1] if f.endswith(".pyc") else f)
        return files

    def changed(self) -> Optional[str]:
        """A file that changed since the last look, or None."""
        found = None
        for f in self._files():
            try:
                st = os.stat(f)
            except OSError:
                continue
            sig = (st.st_mtime_ns, st.st_size)
            old = self.seen.setdefault(f, sig)
            if old != sig:
                self.seen[f] = sig
                found = found or f
        return found


def _fail_app(text: str) -> Callable[..., Any]:
    """With --reload, an application that failed to load is this: a 500
    with the traceback, until a change to the file brings a new worker."""
    body = text.encode("utf-8", "replace")

    def app(environ: Any, start_response: Any) -> List[bytes]:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")])
        return [body]

    return app


def _traceback_files(exc: BaseException) -> List[str]:
    files = [frame.filename for frame in traceback.extract_tb(exc.__traceback__)]
    if isinstance(exc, SyntaxError) and exc.filename:
        files.append(exc.filename)
    return [f for f in files if os.path.isfile(f)]


# --- the worker ------------------------------------------------------------------------


class _Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.cfg = spec.cfg
        self.stop: Optional[str] = None  # "graceful" or "quick"
        self.reopen = False
        self.wake = threading.Event()
        self.count = 0

    def _boot_signals(self) -> None:
        """While the worker boots it serves nothing: stopping is exiting (an
        application's import may take long, and must not delay it)."""
        for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH):
            signal.signal(sig, signal.SIG_IGN)  # the master's
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
            signal.signal(sig, lambda s, f: os._exit(0))
        signal.signal(signal.SIGUSR1, lambda s, f: self._reopen())

    def _signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda s, f: self._stop("graceful"))
        signal.signal(signal.SIGQUIT, lambda s, f: self._stop("graceful"))
        signal.signal(signal.SIGINT, lambda s, f: self._stop("quick"))
        signal.signal(signal.SIGUSR1, lambda s, f: self._reopen())

    def _stop(self, how: str) -> None:
        if self.stop != "quick":
            self.stop = how
        self.wake.set()

    def _reopen(self) -> None:
        self.reopen = True
        self.wake.set()

    def _tell(self, what: str) -> None:
        try:
            os.write(self.spec.notify_fd, f"{what} {os.getpid()}\n".encode("ascii"))
        except OSError as exc:
            log.warning("cannot tell the master %r: %s", what, exc)

    def _beat(self) -> None:
        self.count += 1
        _BEAT.pack_into(self.spec.beat, 0, self.count)

    def run(self) -> int:
        cfg = self.cfg
        self._boot_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _MASTER_SIGNALS)
        _die_with_parent(self.spec.master_pid)
        random.seed()
        watcher = None
        try:
            app = self.spec.load(cfg)
        except BaseException as exc:  # noqa: B902 - whatever the import raised
            if not cfg.reload:
                log.error("cannot load %s: %s", cfg.wsgi_app, exc, exc_info=not isinstance(exc, ImportError))
                return BOOT_ERROR
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            log.error("cannot load %s (serving the error until a file changes):\n%s", cfg.wsgi_app, text)
            app = _fail_app(text)
            watcher = _Watcher(list(cfg.reload_extra_files) + _traceback_files(exc))
        if cfg.reload and watcher is None:
            watcher = _Watcher(list(cfg.reload_extra_files))
        try:
            server = server_factory(cfg.interface)(app, **server_options(cfg, self.spec.fds, self.spec.multiprocess))
            self._signals()  # from now on a stop drains what the server took
            server.start()
        except Exception as exc:
            log.error("cannot start the server: %s", exc)
            return BOOT_ERROR
        self._beat()
        self._tell("ready")
        log.info("worker %d serving (%s)", os.getpid(), cfg.interface)
        try:
            self._loop(server, watcher)
        finally:
            grace = cfg.graceful_timeout if self.stop != "quick" else 0.0
            _end_by(grace + STOP_MARGIN)
            server.shutdown(grace)
        return 0

    def _loop(self, server: Any, watcher: Optional[_Watcher]) -> None:
        cfg = self.cfg
        period = self.spec.period
        limit = cfg.max_requests + random.randint(0, cfg.max_requests_jitter) if cfg.max_requests else 0
        asked = False
        stuck_told = False
        next_poll = time.monotonic() + 1.0
        while self.stop is None:
            self.wake.wait(period)
            self.wake.clear()
            if self.reopen:
                self.reopen = False
                _logs.reopen()
                try:
                    server.reopen_logs()
                except Exception as exc:
                    log.error("cannot reopen the access log: %s", exc)
            if self.stop is not None:
                break
            if os.getppid() != self.spec.master_pid:
                log.warning("the master is gone: stopping")
                self.stop = "graceful"
                break
            reason = server.stuck(cfg.timeout) if cfg.timeout else None
            if reason is None:
                self._beat()
                stuck_told = False
            elif not stuck_told:
                stuck_told = True
                log.error("%s: no longer reporting alive, so the master replaces this worker\n%s", reason, _stacks())
            if limit and not asked and server.stats()["requests"] >= limit:
                asked = True
                log.info("worker %d handled %d requests (--max-requests): asking for its replacement", os.getpid(), limit)
                self._tell("retire")
            if watcher is not None and not asked and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + 1.0
                changed = watcher.changed()
                if changed:
                    asked = True
                    log.info("%s changed: asking for a new worker (--reload)", changed)
                    self._tell("retire")


def _stacks() -> str:
    """The stacks of the server's threads, for the log of a stuck worker."""
    frames = sys._current_frames()
    out = []
    for t in threading.enumerate():
        frame = frames.get(t.ident or 0)
        if frame is not None and t.name.startswith("warpcore-"):
            out.append(f"thread {t.name}:\n" + "".join(traceback.format_stack(frame)))
    return "".join(out)


#: Signals the master blocks while it forks (so a signal sent to a new
#: worker before it set its handlers waits for them).
_MASTER_SIGNALS = {
    signal.SIGHUP,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
    signal.SIGWINCH,
}


def run(spec: WorkerSpec) -> int:
    """The worker's life, in the child the master forked (its signals are
    blocked on entry); returns the exit status."""
    return _Worker(spec).run()

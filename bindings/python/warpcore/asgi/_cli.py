"""``serve()`` and ``python -m warpcore.asgi``: one process, or N processes
sharing the port under a supervisor.

Signals. One process: SIGTERM, SIGINT and SIGHUP stop it gracefully
(in-flight requests get ``--timeout-graceful-shutdown`` seconds, then the
lifespan's shutdown runs); a second SIGTERM or SIGINT cuts what is left.
Several processes (``--workers N``): the supervisor starts them (each runs
its own lifespan and listens with ``SO_REUSEPORT`` once its startup is
done), SIGTERM and SIGINT stop them all gracefully, SIGHUP replaces them
(new processes start and listen first, then the old ones drain: no
connection is refused), and a process that dies is replaced. A process that
fails at startup (a lifespan ``startup.failed``) stops the server: exit
status 3, as uvicorn's.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import socket
import sys
import threading
from typing import Any, Callable, Dict, Optional, Sequence

from .. import _ffi
from .._config import parse_size as _config_parse_size
from .._worker import load_app as _load_app
from ._lifespan import LifespanFailed
from .._tls import TLS
from ._server import ASGIServer

__all__ = ["serve", "main", "STARTUP_FAILURE"]

log = logging.getLogger("warpcore.asgi")


def _parse_size(text: str) -> int:
    """A size flag: ``none``, or bytes with an optional K/M/G/T suffix."""
    try:
        return _config_parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"wants bytes (100M, 1G) or 'none', not {text!r} ({exc})") from None


def _reserve_port(host: str, port: int) -> "tuple[int, Optional[socket.socket]]":
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

#: Exit status of a server whose startup failed (uvicorn's).
STARTUP_FAILURE = 3

_SUPERVISED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


def serve(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int = 1,
    ready: Optional[Callable[[str], None]] = None,
    **options: Any,
) -> int:
    """Serves ``app`` until SIGTERM, SIGINT (or SIGHUP with one process),
    then stops gracefully; returns the exit status (0, or
    :data:`STARTUP_FAILURE`). ``workers`` processes share the port.
    ``ready(address)`` is called once every process listens (default: print
    ``listening on HOST:PORT``). Every other option is an
    :class:`ASGIServer` keyword (``loops``, ``root_path``, ``lifespan``,
    ``ws``, ``limit_concurrency``, ``timeout_keep_alive``,
    ``timeout_graceful_shutdown``, ``access_log``, ``interface``, ``loop``,
    and the engine's settings). Main thread only."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    say = ready or (lambda address: print(f"listening on {address}", flush=True))
    if workers == 1:
        server = ASGIServer(app, host, port, **options)
        try:
            server.serve_forever(lambda s: say(s.address))
        except LifespanFailed as exc:
            log.error("Application startup failed: %s", exc)
            return STARTUP_FAILURE
        return 0
    return _Supervisor(app, host, port, workers, say, options).run()


class _Supervisor:
    """Starts ``workers`` server processes on one port and keeps them."""

    def __init__(self, app: Any, host: str, port: int, workers: int, say: Callable[[str], None], options: Dict[str, Any]) -> None:
        self.app = app
        self.host = host
        self.workers = workers
        self.say = say
        self.options = dict(options, share_port=True)
        self.port, self.reservation = _reserve_port(host, port)
        self.children: Dict[int, int] = {}  # pid -> read end of its ready pipe (-1 once ready)

    def spawn(self) -> int:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                os.close(r)
                if self.reservation is not None:
                    self.reservation.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor sends TERM
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SUPERVISED)

                def listening(server: ASGIServer) -> None:
                    os.write(w, b"r")
                    os.close(w)

                try:
                    ASGIServer(self.app, self.host, self.port, **self.options).serve_forever(listening)
                except LifespanFailed as exc:
                    log.error("Application startup failed: %s", exc)
                    code = STARTUP_FAILURE
            except BaseException:  # noqa: B902 - reported, then the exit status says it
                log.exception("server process %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(w)
        self.children[pid] = r
        return pid

    def wait_ready(self, pids: Sequence[int]) -> bool:
        """Waits until each of ``pids`` listens; False when one died first."""
        waiting = {self.children[p]: p for p in pids if self.children.get(p, -1) >= 0}
        while waiting:
            try:
                readable, _, _ = select.select(list(waiting), [], [])
            except InterruptedError:
                continue
            for fd in readable:
                data = os.read(fd, 1)
                os.close(fd)
                pid = waiting.pop(fd)
                if pid in self.children:
                    self.children[pid] = -1
                if not data:
                    return False  # closed without a byte: it died
        return True

    def stop(self, pids: Sequence[int]) -> int:
        """TERMs ``pids`` and reaps them; the worst exit status."""
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        worst = 0
        for pid in pids:
            status = _reap(pid)
            fd = self.children.pop(pid, -1)
            if fd >= 0:
                os.close(fd)
            worst = max(worst, status)
        return worst

    def run(self) -> int:
        if threading.active_count() > 1:
            log.warning("forking with %d threads running; only the calling thread survives in the children", threading.active_count())
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SUPERVISED)
        try:
            return self._run()
        finally:
            if self.children:
                self.stop(list(self.children))
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _run(self) -> int:
        first = [self.spawn() for _ in range(self.workers)]
        ok = self.wait_ready(first)
        if self.reservation is not None:
            self.reservation.close()
            self.reservation = None
        if not ok:
            log.error("a server process failed to start; stopping")
            worst = self.stop(list(self.children))
            return STARTUP_FAILURE if worst in (0, STARTUP_FAILURE) else worst
        address = (f"[{self.host}]" if ":" in self.host else self.host) + f":{self.port}"
        self.say(address)
        while True:
            info = signal.sigwaitinfo(_SUPERVISED)
            sig = info.si_signo
            if sig in (signal.SIGTERM, signal.SIGINT):
                log.info("%s: stopping the server processes", signal.Signals(sig).name)
                self.stop(list(self.children))
                return 0
            if sig == signal.SIGHUP:
                log.info("SIGHUP: replacing the server processes")
                old = list(self.children)
                new = [self.spawn() for _ in range(self.workers)]
                if not self.wait_ready(new):
                    log.error("a new server process failed to start; keeping the old ones")
                    self.stop([p for p in new if p in self.children])
                    continue
                self.stop(old)
                continue
            # SIGCHLD: replace a process that ended on its own.
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                fd = self.children.pop(pid, None)
                if fd is None:
                    continue
                if fd >= 0:
                    os.close(fd)
                code = os.waitstatus_to_exitcode(status)
                if code == STARTUP_FAILURE:
                    log.error("server process %d failed at startup; stopping", pid)
                    self.stop(list(self.children))
                    return STARTUP_FAILURE
                log.error("server process %d exited (%d); starting another", pid, code)
                self.spawn()


def _reap(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return max(0, os.waitstatus_to_exitcode(status))
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0


# --- command line -----------------------------------------------------------------------


def _load(spec: str, factory: bool, app_dir: str) -> Any:
    if app_dir:
        sys.path.insert(0, os.path.abspath(app_dir))
    target = spec + "()" if factory and not spec.endswith("()") else spec
    if ":" not in target:
        raise ValueError(f"the application must be given as MODULE:ATTRIBUTE, not {spec!r}")
    return _load_app(target)


def _seconds(text: str) -> Optional[float]:
    if text.lower() in ("none", "inf", "forever"):
        return None
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"want a number of seconds >= 0 (or 'none'), not {text!r}")
    return value


_LOG_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m warpcore.asgi",
        description="Serve an ASGI application with libwarpcore (flags named as uvicorn's where they mean the same).",
    )
    p.add_argument("app", help="MODULE:ATTRIBUTE of the ASGI application (with --factory, of a callable returning it)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to bind (default 8000; 0 picks a free one)")
    p.add_argument("--workers", type=int, default=1, help="server processes sharing the port (default 1)")
    p.add_argument("--loops", type=int, default=1, help="the engine's event loops (threads) per process (default 1)")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="the asyncio event loop (auto: uvloop when installed)")
    p.add_argument("--root-path", default="", help="the ASGI root_path (the prefix a proxy mounts the application at)")
    p.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--ws", choices=("auto", "none"), default="auto", help="WebSocket support (none: handshakes are plain HTTP requests)")
    p.add_argument("--ws-max-size", type=_parse_size, default=16 << 20, metavar="BYTES", help="largest WebSocket message (default 16M)")
    p.add_argument("--interface", choices=("auto", "asgi3", "asgi2"), default="auto")
    p.add_argument("--factory", action="store_true", help="APP names a callable that returns the application")
    p.add_argument("--app-dir", default="", help="look for the application's module here (default: the current directory)")
    p.add_argument("--limit-concurrency", type=int, default=None, metavar="N", help="requests and WebSockets at once before 503")
    p.add_argument("--limit-max-body-size", dest="max_body_size", type=_parse_size, default=None, metavar="BYTES", help="largest request body (413 beyond; default: no limit)")
    p.add_argument("--timeout-keep-alive", type=float, default=5.0, metavar="SECONDS", help="idle keep-alive connections close after this (default 5, at least 1)")
    p.add_argument("--timeout-graceful-shutdown", type=_seconds, default=30.0, metavar="SECONDS", help="in-flight requests get this long at shutdown (default 30; 'none': as long as they take)")
    p.add_argument("--access-log", dest="access_log", action="store_true", default=True, help="log each request (default)")
    p.add_argument("--no-access-log", dest="access_log", action="store_false")
    p.add_argument("--log-level", choices=tuple(_LOG_LEVELS), default="info")
    p.add_argument("--client-fin-ends-request", dest="client_fin_ends_request", action="store_true", default=True,
                   help="a client's FIN while its answer is pending ends the request: http.disconnect (default, as uvicorn)")
    p.add_argument("--no-client-fin-ends-request", dest="client_fin_ends_request", action="store_false",
                   help="take a client's FIN as a half-close: the answer still goes out (RFC 9112 9.6)")
    p.add_argument("--certfile", "--ssl-certfile", dest="certfile", metavar="FILE", help="serve HTTPS with this certificate chain (PEM; with --keyfile)")
    p.add_argument("--keyfile", "--ssl-keyfile", dest="keyfile", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument("--ssl-ca-certs", "--ca-certs", dest="ca_certs", metavar="FILE", help="the CA certificates (PEM) client certificates are checked against")
    p.add_argument("--ssl-cert-reqs", "--cert-reqs", dest="cert_reqs", type=int, choices=(0, 1, 2), default=0, metavar="N",
                   help="client certificates (ssl.CERT_*, as uvicorn's): 0 not asked for (default), 1 optional, 2 required")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if (args.certfile is None) != (args.keyfile is None):
        p.error("--certfile and --keyfile go together")
    if args.cert_reqs and args.ca_certs is None:
        p.error("--ssl-cert-reqs 1 or 2 needs --ssl-ca-certs, the CA certificates to check client certificates against")
    logging.basicConfig(level=_LOG_LEVELS[args.log_level], format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    access = logging.getLogger("warpcore.access")
    if args.access_log:
        # The engine's lines (Apache combined) on stdout, as uvicorn's are.
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    try:
        app = _load(args.app, args.factory, args.app_dir)
    except Exception as exc:
        print(f"warpcore.asgi: cannot load {args.app}: {exc}", file=sys.stderr)
        return 1
    options: Dict[str, Any] = {
        "workers": args.workers,
        "loops": args.loops,
        "loop": args.loop,
        "root_path": args.root_path,
        "lifespan": args.lifespan,
        "ws": args.ws,
        "ws_max_size": args.ws_max_size,
        "interface": args.interface,
        "limit_concurrency": args.limit_concurrency,
        "timeout_keep_alive": args.timeout_keep_alive,
        "timeout_graceful_shutdown": args.timeout_graceful_shutdown,
        "access_log": True if args.access_log else False,
        "client_fin_ends_request": args.client_fin_ends_request,
    }
    if args.max_body_size is not None:
        options["max_body_size"] = args.max_body_size
    try:
        if args.certfile is not None:
            client_auth = ("none", "optional", "required")[args.cert_reqs]
            options["tls"] = TLS(args.certfile, args.keyfile, client_auth=client_auth,
                                 ca=args.ca_certs if args.cert_reqs else None)
        return serve(app, args.host, args.port, **options)
    except (_ffi.WarpcoreError, ValueError, OSError, ImportError) as exc:
        print(f"warpcore.asgi: {exc}", file=sys.stderr)
        return 1


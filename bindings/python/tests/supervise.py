"""Helpers for the command line's tests: a master process started with
``python -m warpcore``, its worker processes found by PID, polling with
deadlines (never a fixed sleep standing in for an event), cleanup by PID."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, TypeVar

from .conftest import child_env

T = TypeVar("T")

#: A WSGI application for the tests, written to APP.py in the test's directory.
APP = r'''
import json, os, sys, threading, time

VERSION = b"v1"

def app(environ, start_response):
    path = environ["PATH_INFO"]
    status = "200 OK"
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/version":
        body = VERSION
    elif path == "/sleep":
        open("sleeping-%d" % os.getpid(), "w").close()  # the tests wait for this
        time.sleep(float(environ.get("QUERY_STRING") or "0.5"))
        body = b"slept"
    elif path == "/hang":
        threading.Event().wait()
        body = b"never"
    elif path == "/threads":
        names = sorted(t.name for t in threading.enumerate() if t.name.startswith("warpcore-"))
        body = json.dumps(names).encode()
    elif path == "/osenv":
        body = json.dumps(sorted(k for k in os.environ if k.startswith("LISTEN_"))).encode()
    elif path.endswith("/environ"):
        body = json.dumps({k: v for k, v in environ.items() if isinstance(v, (str, bool, int))}).encode()
    else:
        body = b"hello"
    start_response(status, [("Content-Type", "text/plain")])
    return [body]
'''


def wait_until(what: str, check: Callable[[], Optional[T]], timeout: float = 30.0, every: float = 0.05) -> T:
    """Polls ``check()`` until it returns something truthy (returned), or
    fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except AssertionError:
            raise  # a check that knows it cannot succeed any more
        except Exception as exc:  # a check may fail while things settle
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(every)


def children(pid: int) -> Set[int]:
    """The live (not zombie) child processes of ``pid``."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry))
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def listening_socket() -> socket.socket:
    """A TCP socket listening on 127.0.0.1, a free port."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def in_background(call: Callable[[], Any]) -> "tuple[threading.Thread, List[Any]]":
    """Runs ``call()`` on a daemon thread; the list gets what it returned or
    the exception it raised."""
    out: List[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except Exception as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


class Reply:
    def __init__(self, status: int, reason: str, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body[:80]!r}>"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def get(address: str, path: str = "/", headers: Optional[Dict[str, str]] = None, timeout: float = 10.0,
        method: str = "GET") -> Reply:
    """One request on a fresh connection to ``address`` (``HOST:PORT`` or
    ``unix:PATH``)."""
    if address.startswith("unix:"):
        conn: http.client.HTTPConnection = _UnixConnection(address[len("unix:") :], timeout)
    else:
        host, _, port = address.rpartition(":")
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, r.reason, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


class Master:
    """``python -m warpcore ARGS`` in ``cwd`` (the test's directory, with
    APP.py), its standard output and error in files there."""

    def __init__(self, cwd: Path, args: Sequence[str], *, env: Optional[Dict[str, str]] = None,
                 command: Optional[List[str]] = None, pass_fds: Sequence[int] = (), app: str = APP) -> None:
        self.cwd = cwd
        if app and not (cwd / "APP.py").exists():
            (cwd / "APP.py").write_text(app)
        n = len(list(cwd.glob("master-*.out")))
        self.out_path = cwd / f"master-{n}.out"
        self.err_path = cwd / f"master-{n}.err"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        argv = command if command is not None else [sys.executable, "-m", "warpcore", *args]
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=self._err, env=env or child_env(), cwd=cwd,
                                     pass_fds=tuple(pass_fds))
        self.pid = self.proc.pid
        self._seen: Set[int] = set()

    # -- output --------------------------------------------------------------------

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def addresses(self, count: int = 1, timeout: float = 60.0) -> List[str]:
        """The ``listening on`` addresses, once ``count`` are printed."""

        def printed() -> Optional[List[str]]:
            lines = [ln[len("listening on ") :] for ln in self.out().splitlines() if ln.startswith("listening on ")]
            if len(lines) >= count:
                return lines
            if self.proc.poll() is not None:
                raise AssertionError(f"the master exited ({self.proc.returncode}) before listening:\n{self.err()}")
            return None

        return wait_until("the master to print its addresses", printed, timeout)

    def address(self) -> str:
        return self.addresses()[0]

    def wait_log(self, text: str, timeout: float = 30.0) -> str:
        return wait_until(f"{text!r} in the error log", lambda: text in self.err() and self.err(), timeout)

    # -- processes -------------------------------------------------------------------

    def workers(self) -> Set[int]:
        pids = children(self.pid)
        self._seen |= pids
        return pids

    def wait_workers(self, what: str, check: Callable[[Set[int]], bool], timeout: float = 30.0) -> Set[int]:
        return wait_until(what, lambda: (lambda p: p if check(p) else None)(self.workers()), timeout)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Stops the master (TERM, then KILL) and any worker of it still
        running (by the PIDs seen)."""
        try:
            if self.proc.poll() is None:
                self.workers()
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(45)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            for pid in self._seen:
                if alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        finally:
            self._out.close()
            self._err.close()

    def __enter__(self) -> "Master":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

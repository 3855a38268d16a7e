"""``python -m warpcore.asgi`` as a process: signals, lifespan order, startup
failure, --workers processes under the supervisor (HUP replaces them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List

import pytest

from .conftest import child_env, request, wait_for_line

APP = '''
import asyncio, os
LOG = os.environ["ASGI_TEST_LOG"]

def note(what):
    with open(LOG, "a") as f:
        f.write(what + "\\n")

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                if os.environ.get("ASGI_TEST_FAIL"):
                    await send({"type": "lifespan.startup.failed", "message": "cannot reach the database"})
                    return
                note("startup %d" % os.getpid())
                await send({"type": "lifespan.startup.complete"})
            else:
                note("shutdown %d" % os.getpid())
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/slow":
        note("slow begins")
        await asyncio.sleep(0.5)
        note("slow ends")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
'''


def _start(tmp_path, *args: str, fail: bool = False, source: str = APP, **env_vars: str) -> subprocess.Popen:
    """``python -m warpcore.asgi myasgi:app`` with ``source`` as myasgi.py
    and ``env_vars`` in its environment."""
    (tmp_path / "myasgi.py").write_text(source)
    env = child_env()
    env["ASGI_TEST_LOG"] = str(tmp_path / "log.txt")
    if fail:
        env["ASGI_TEST_FAIL"] = "1"
    env.update(env_vars)
    return subprocess.Popen(
        [sys.executable, "-m", "warpcore.asgi", "myasgi:app", "--port", "0", "--no-access-log", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def _background(fn) -> tuple:
    out: Dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: B902
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _lines(tmp_path) -> List[str]:
    p = tmp_path / "log.txt"
    return p.read_text().splitlines() if p.exists() else []


def _wait_for(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["TERM", "INT", "HUP"])
def test_signal_drains_then_lifespan_shutdown(tmp_path, sig):
    proc = _start(tmp_path)
    try:
        line = wait_for_line(proc, "listening on ")
        port = int(line.rsplit(":", 1)[1])
        assert request(port).body == str(proc.pid).encode()
        t, out = _background(lambda: request(port, path="/slow"))
        _wait_for(lambda: "slow begins" in _lines(tmp_path))
        proc.send_signal(sig)
        t.join(15)
        assert out.get("value") is not None and out["value"].status == 200, out
        assert proc.wait(30) == 0
        assert _lines(tmp_path) == [f"startup {proc.pid}", "slow begins", "slow ends", f"shutdown {proc.pid}"]
    finally:
        _stop(proc)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_startup_failure_exits_3(tmp_path, workers):
    proc = _start(tmp_path, "--workers", workers, fail=True)
    try:
        assert proc.wait(30) == 3
        err = proc.stderr.read().decode()
        assert "cannot reach the database" in err
        assert b"listening on" not in proc.stdout.read()
    finally:
        _stop(proc)


def test_bad_app(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "warpcore.asgi", "nosuchmodule:app", "--port", "0"],
        capture_output=True,
        env=child_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert p.returncode == 1 and b"cannot load nosuchmodule:app" in p.stderr


def _pids(port: int, want: int, exclude=frozenset()) -> set:
    """PIDs answering on ``port`` until ``want`` distinct ones (not in
    ``exclude``) were seen."""
    seen: set = set()
    deadline = time.monotonic() + 30
    while len(seen - exclude) < want:
        assert time.monotonic() < deadline, f"saw only {seen}"
        try:
            seen.add(int(request(port).body))
        except OSError:
            pass  # a process being replaced
    return seen - exclude


def test_workers_and_hup(tmp_path):
    proc = _start(tmp_path, "--workers", "2")
    try:
        line = wait_for_line(proc, "listening on ")
        port = int(line.rsplit(":", 1)[1])
        first = _pids(port, 2)
        assert proc.pid not in first
        # HUP: new processes (their own lifespan) listen, the old ones drain.
        proc.send_signal(signal.SIGHUP)
        second = _pids(port, 2, exclude=frozenset(first))
        for pid in first:
            _wait_for(lambda: f"shutdown {pid}" in _lines(tmp_path))
            _wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid))
        # A process that dies is replaced.
        victim = sorted(second)[0]
        os.kill(victim, signal.SIGKILL)
        third = _pids(port, 1, exclude=frozenset(first | second))
        assert third
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        for pid in (second | third) - {victim}:
            assert f"shutdown {pid}" in _lines(tmp_path)
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        _stop(proc)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True

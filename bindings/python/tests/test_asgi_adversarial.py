"""warpcore.asgi against hostile clients and careless applications, over
real sockets: each case ends in a clear error (an exception in the
application, a 500, a closed connection) or bounded memory, never a hang,
a lost byte or another request's answer."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import socket
import threading
import time
from typing import Any, Dict, List

import pytest

from .conftest import raw_exchange, request
from .test_asgi import TIMEOUT, asgi, http_only, ok, rss_kib, wait_until  # noqa: F401 - asgi is a fixture

__all__ = ["asgi"]


def _post(port: int, body: bytes, path: str = "/") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    conn.request("POST", path, body=body)
    r = conn.getresponse()
    r.body = r.read()  # type: ignore[attr-defined]
    conn.close()
    return r


# --- request bodies ----------------------------------------------------------------------------


def test_cancelled_receive_loses_no_streamed_body(asgi):
    """A receive() cancelled while a streamed chunk is being read (a
    timeout, a cancel scope) must leave that chunk to the next
    receive(): it was read from the client and dropped, silently cutting
    64 KiB out of the body."""
    async def cancelling(scope, receive, send):
        # receive() in a task cancelled at its first wait, as a cancel scope
        # or a timeout of zero does; a message it got before is kept.
        got = bytearray()
        more = True
        while more:
            task = asyncio.ensure_future(receive())
            await asyncio.sleep(0)
            task.cancel()
            try:
                m = await task
            except asyncio.CancelledError:
                continue
            got += m["body"]
            more = m["more_body"]
        await ok(send, f"{len(got)} {hashlib.sha256(got).hexdigest()}".encode())

    async def polling(scope, receive, send):
        # Short timeouts around each receive, as a careful application writes them.
        got = bytearray()
        while True:
            try:
                m = await asyncio.wait_for(receive(), 0.0005)
            except asyncio.TimeoutError:
                continue
            got += m["body"]
            if not m["more_body"]:
                break
        await ok(send, f"{len(got)} {hashlib.sha256(got).hexdigest()}".encode())

    body = os.urandom(1 << 20)
    want = f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
    for app in (cancelling, polling):
        s = asgi(http_only(app), whole_body_max=1024)
        r = _post(s.port, body)
        assert (r.status, r.body) == (200, want), app.__name__


# --- what the application sends ------------------------------------------------------------------


def test_status_out_of_range_or_enum(asgi, tmp_path):
    """A status past 65535 was cut to 16 bits by ctypes (65736 went out as
    200 OK); an ``http.HTTPStatus`` (an int) was refused with a 500."""
    import http as std_http

    f = tmp_path / "f.txt"
    f.write_bytes(b"file")
    errors: List[str] = []

    async def app(scope, receive, send):
        status: Any = {"/enum": std_http.HTTPStatus.CREATED, "/bool": True, "/float": 200.0}.get(scope["path"], 65736)
        try:
            await send({"type": "http.response.start", "status": status, "headers": []})
            if scope["path"] == "/file":
                await send({"type": "http.response.pathsend", "path": str(f)})
            else:
                await send({"type": "http.response.body", "body": b"x" * (100_000 if scope["path"] == "/big" else 1)})
        except (RuntimeError, TypeError) as exc:
            errors.append(f"{scope['path']}: {exc}")
            raise

    s = asgi(http_only(app))
    r = request(s.port, path="/enum")
    assert (r.status, r.body) == (201, b"x")
    for path in ("/small", "/big", "/file", "/bool", "/float"):
        assert request(s.port, path=path).status == 500, path
    wait_until(lambda: len(errors) == 5)
    assert sum("invalid HTTP status 65736" in e for e in errors) == 3, errors
    assert sum("must be an int" in e for e in errors) == 2, errors


def test_websocket_denial_with_an_empty_body(asgi):
    """A websocket.http.response with an empty body looked up the scope's
    "method" (a websocket scope has none): KeyError, and a 500 instead of
    the application's answer."""
    errors: List[BaseException] = []

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        try:
            await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"token")]})
            await send({"type": "websocket.http.response.body", "body": b""})
        except Exception as exc:
            errors.append(exc)
            raise

    s = asgi(app)
    out = raw_exchange(
        s.port,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        until_close=False,
    )
    assert out.startswith(b"HTTP/1.1 401"), out
    assert b"x-why: token\r\n" in out and b"Content-Length: 0\r\n" in out, out
    assert errors == []


def test_send_and_receive_from_another_thread_or_loop_raise(asgi):
    """receive() and send() awaited on another thread's loop raced with the
    server's loop (no lock guards a request's state, and the head's flush
    was scheduled with a call_soon that is not thread-safe): they raise,
    and the application can still answer from its own task."""
    from websockets.sync.client import connect

    errors: List[str] = []

    def elsewhere(coro_fn, *args):
        def run():
            try:
                asyncio.run(coro_fn(*args))
            except RuntimeError as exc:
                errors.append(str(exc))

        t = threading.Thread(target=run)
        t.start()
        return t

    async def joined(t):
        while t.is_alive():
            await asyncio.sleep(0.002)

    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await receive()
            await joined(elsewhere(send, {"type": "websocket.accept"}))
            await send({"type": "websocket.accept"})
            await joined(elsewhere(receive))
            await joined(elsewhere(send, {"type": "websocket.send", "text": "from a thread"}))
            await send({"type": "websocket.send", "text": "from the task"})
            await send({"type": "websocket.close"})
            return
        await joined(elsewhere(receive))
        await joined(elsewhere(send, {"type": "http.response.start", "status": 200, "headers": []}))
        await ok(send, b"from the task")
        await joined(elsewhere(send, {"type": "http.response.body", "body": b"late"}))

    s = asgi(app, lifespan="off")
    r = request(s.port)
    assert (r.status, r.body) == (200, b"from the task")
    with connect(f"ws://127.0.0.1:{s.port}/", open_timeout=TIMEOUT) as ws:
        assert ws.recv(TIMEOUT) == "from the task"
    wait_until(lambda: len(errors) == 6, what=f"6 errors, not {errors}")
    assert all("outside the server's event loop" in e for e in errors), errors


# --- lifespan and signals ------------------------------------------------------------------------

HANGING = """
import asyncio, os
LOG = os.environ["ASGI_TEST_LOG"]
HANG = os.environ["ASGI_TEST_HANG"]

def note(what):
    with open(LOG, "a") as f:
        f.write(what + "\\n")

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        if HANG == "startup":
            note("startup hangs")
            try:
                await asyncio.Event().wait()
            finally:
                note("startup cancelled")
        await send({"type": "lifespan.startup.complete"})
        await receive()
        note("shutdown hangs")
        await asyncio.Event().wait()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def _hanging(tmp_path, hang: str):
    import subprocess
    import sys

    from .conftest import child_env

    (tmp_path / "hanging.py").write_text(HANGING)
    env = child_env()
    env["ASGI_TEST_LOG"] = str(tmp_path / "log.txt")
    env["ASGI_TEST_HANG"] = hang
    return subprocess.Popen(
        [sys.executable, "-m", "warpcore.asgi", "hanging:app", "--port", "0", "--no-access-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )


def _noted(tmp_path) -> List[str]:
    p = tmp_path / "log.txt"
    return p.read_text().splitlines() if p.exists() else []


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_stop_signal_during_a_hanging_startup(tmp_path, sig):
    """A stop signal while the lifespan startup hung did nothing (the
    server waited for the startup to finish before it looked), and a
    second one neither: only SIGKILL ended the process. The first now
    cancels the startup and the process exits without listening."""
    import signal

    proc = _hanging(tmp_path, "startup")
    try:
        wait_until(lambda: "startup hangs" in _noted(tmp_path), what="the startup")
        proc.send_signal(getattr(signal, sig))
        assert proc.wait(TIMEOUT) == 0
        assert _noted(tmp_path) == ["startup hangs", "startup cancelled"]
        assert b"listening on" not in proc.stdout.read()
        assert b"stopped during the application's startup" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_second_signal_cuts_a_hanging_lifespan_shutdown(tmp_path):
    """A lifespan shutdown that never completed kept the process alive
    through every later SIGTERM; the second one now cuts it, as it cuts
    the drain (uvicorn's force exit)."""
    import signal

    from .conftest import wait_for_line

    proc = _hanging(tmp_path, "shutdown")
    try:
        port = int(wait_for_line(proc, "listening on ").rsplit(":", 1)[1])
        assert request(port).body == b"ok"
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "shutdown hangs" in _noted(tmp_path), what="the shutdown")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
        assert b"shutdown was cancelled by a second stop signal" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()

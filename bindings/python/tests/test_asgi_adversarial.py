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

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

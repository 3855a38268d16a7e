"""Streamed request bodies under warpcore.asgi, over real sockets: read on
the event loop with the engine's non-blocking read and its readiness
callback (``warpcore_body_try_read``, ``warpcore_body_on_readable``), so
many uploads share the loop, a stalled one holds no thread, a client that
leaves mid-body is told, and a cancelled receive() loses nothing."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

from warpcore.asgi._http import bodies_watched, chunks_held, cycles_watched

from .conftest import child_env
from .test_asgi import TIMEOUT, asgi, http_only, ok, rss_kib, wait_until  # noqa: F401 - asgi is a fixture

CHUNK = 64 * 1024


def _reset(c: socket.socket) -> None:
    """Closes ``c`` with a reset (RST), as a client that is killed does."""
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _read_response(c: socket.socket, deadline: float) -> Tuple[bytes, bytes]:
    """One response of known length (Content-Length): (head, body)."""
    out = b""
    while b"\r\n\r\n" not in out:
        c.settimeout(max(0.01, deadline - time.monotonic()))
        more = c.recv(65536)
        assert more, out
        out += more
    head, body = out.split(b"\r\n\r\n", 1)
    fields = head.split(b"\r\n")
    length = int(next(f.split(b":", 1)[1] for f in fields if f.lower().startswith(b"content-length:")))
    while len(body) < length:
        c.settimeout(max(0.01, deadline - time.monotonic()))
        more = c.recv(65536)
        assert more, out
        body += more
    return head, body


def _settled_cleanup(s: Any) -> None:
    wait_until(
        lambda: not s._cycles
        and s.stats()["connections_active"] == 0
        and bodies_watched() == 0
        and cycles_watched() == 0
        and chunks_held() == 0,
        what="the cycles, connections and registered callbacks",
    )


async def _echo_digest(scope, receive, send) -> None:
    """Reads the whole body; answers its length, SHA-256, largest message
    and message count (or returns on http.disconnect)."""
    got = hashlib.sha256()
    n = largest = messages = 0
    while True:
        m = await receive()
        if m["type"] != "http.request":
            return
        messages += 1
        n += len(m["body"])
        largest = max(largest, len(m["body"]))
        got.update(m["body"])
        if not m["more_body"]:
            break
    await ok(send, f"{n} {got.hexdigest()} {largest} {messages}".encode())


def test_many_concurrent_large_uploads_sent_interleaved(asgi):
    """50 uploads of 1 MB at once, each sent in pieces of random size in
    random order across the connections (so every body arrives a little at
    a time, interleaved with the others): each is read whole, in order, in
    messages of at most 64 KiB, and answered with its own length and
    checksum; nothing stays registered after."""
    s = asgi(http_only(_echo_digest), whole_body_max=1024)
    n, size = 50, 1_000_000
    rng = random.Random(1234)
    bodies = [os.urandom(size) for _ in range(n)]
    socks = [socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) for _ in range(n)]
    sel = selectors.DefaultSelector()
    outgoing: Dict[int, memoryview] = {}
    replies: Dict[int, bytes] = {}
    try:
        for i, c in enumerate(socks):
            # The head alone first: every body streams.
            c.sendall(b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (i, size))
        wait_until(lambda: s.stats()["requests"] >= n, what="every upload's head")
        for i, c in enumerate(socks):
            c.setblocking(False)
            outgoing[i] = memoryview(bodies[i])
            replies[i] = b""
            sel.register(c, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
        deadline = time.monotonic() + 60
        open_ = set(range(n))
        while open_:
            assert time.monotonic() < deadline, f"{len(open_)} uploads unanswered"
            events = sel.select(0.5)
            rng.shuffle(events)
            for key, mask in events:
                i = key.data
                c = socks[i]
                if mask & selectors.EVENT_WRITE and outgoing[i]:
                    piece = outgoing[i][: rng.randint(1, 48 * 1024)]
                    try:
                        sent = c.send(piece)
                    except BlockingIOError:
                        sent = 0
                    outgoing[i] = outgoing[i][sent:]
                    if not outgoing[i]:
                        sel.modify(c, selectors.EVENT_READ, i)
                if mask & selectors.EVENT_READ:
                    try:
                        more = c.recv(65536)
                    except BlockingIOError:
                        continue
                    replies[i] += more
                    if not more:
                        sel.unregister(c)
                        open_.discard(i)
    finally:
        sel.close()
        for c in socks:
            c.close()
    for i in range(n):
        head, _, body = replies[i].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), (i, replies[i][:200])
        length, digest, largest, messages = body.split()
        assert (int(length), digest.decode()) == (size, hashlib.sha256(bodies[i]).hexdigest()), i
        assert 0 < int(largest) <= CHUNK, (i, largest)
        assert int(messages) >= size // CHUNK, (i, messages)
    _settled_cleanup(s)


def test_upload_whose_client_resets_mid_body(asgi, caplog):
    """Uploads whose clients reset halfway through their bodies, some while
    the application waits in receive() for more (the engine's readiness
    callback tells it), some while it is busy elsewhere (its next receive()
    finds the body failed): every application gets http.disconnect at once,
    not a hang until a timeout, and the cycles, connections and callbacks
    are all released."""
    n = 40
    partial = 100_000
    fed: Dict[str, int] = {}
    ended: Dict[str, str] = {}

    async def app(scope, receive, send):
        path = scope["path"]
        fed[path] = 0
        while True:
            m = await receive()
            if m["type"] == "http.disconnect":
                ended[path] = "disconnect"
                return
            fed[path] += len(m["body"])
            if not m["more_body"]:
                ended[path] = "complete"
                await ok(send)
                return
            if path.startswith("/busy") and fed[path] >= partial:
                await asyncio.sleep(0.3)  # not in receive() when the reset comes

    caplog.set_level(logging.DEBUG, logger="warpcore")
    s = asgi(http_only(app), whole_body_max=1024, timeouts={"body": 60})
    paths = [f"/{'busy' if i % 2 else 'wait'}{i}" for i in range(n)]
    socks = []
    try:
        for path in paths:
            c = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)
            c.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode())
            c.sendall(os.urandom(partial))
            socks.append(c)
        wait_until(lambda: all(fed.get(p, 0) >= partial for p in paths), what="every application to read what was sent")
        time.sleep(0.05)  # the waiting ones wait in receive() again
    finally:
        t0 = time.monotonic()
        for c in socks:
            _reset(c)
    wait_until(lambda: len(ended) == n, what="every application to end")
    took = time.monotonic() - t0
    assert set(ended.values()) == {"disconnect"}, ended
    assert took < 3.0, f"the resets reached the applications after {took:.1f} s"
    _settled_cleanup(s)
    noise = [r.getMessage() for r in caplog.records if r.name.startswith("warpcore") and r.levelno >= logging.WARNING]
    assert not noise, noise


def test_receive_cancelled_by_wait_for_in_the_middle_of_a_body_loses_nothing(asgi):
    """An application that bounds each receive() with asyncio.wait_for while
    the body trickles in (pauses longer than its timeout): receive() is
    cancelled again and again while it waits for the engine, and the body
    still arrives whole, in order."""
    timeouts = [0]

    async def app(scope, receive, send):
        got = hashlib.sha256()
        n = 0
        while True:
            try:
                m = await asyncio.wait_for(receive(), 0.003)
            except asyncio.TimeoutError:
                timeouts[0] += 1
                continue
            if m["type"] != "http.request":
                return
            n += len(m["body"])
            got.update(m["body"])
            if not m["more_body"]:
                break
        await ok(send, f"{n} {got.hexdigest()}".encode())

    s = asgi(http_only(app), whole_body_max=1024)
    body = os.urandom(400_000)
    rng = random.Random(99)
    with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as c:
        c.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        at = 0
        while at < len(body):
            step = rng.choice((1, 700, 5000, 30_000, 70_000))
            c.sendall(body[at : at + step])
            at += step
            if rng.random() < 0.3:
                time.sleep(0.01)  # longer than the application's timeout
        head, answer = _read_response(c, time.monotonic() + TIMEOUT)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert answer == f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
    assert timeouts[0] >= 5, f"only {timeouts[0]} receive() calls were cancelled"
    _settled_cleanup(s)


def test_expect_100_continue_is_answered_at_the_first_receive(asgi):
    """``Expect: 100-continue`` with a body that streams: the client is told
    to send it only when the application first calls receive() (the first
    read of the body), not before; an application that answers without
    reading sends no 100 at all."""
    go = threading.Event()
    started: List[str] = []

    async def app(scope, receive, send):
        started.append(scope["path"])
        if scope["path"] == "/refuse":
            await ok(send, b"no thanks", status=413)
            return
        while not go.is_set():
            await asyncio.sleep(0.005)
        n = 0
        while True:
            m = await receive()
            if m["type"] != "http.request":
                return
            n += len(m["body"])
            if not m["more_body"]:
                break
        await ok(send, str(n).encode())

    s = asgi(http_only(app), whole_body_max=1024)
    body = os.urandom(300_000)
    with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as c:
        c.sendall(b"POST /take HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        wait_until(lambda: started, what="the application")
        c.settimeout(0.3)
        try:
            early = c.recv(4096)
        except socket.timeout:
            early = b""
        assert early == b"", f"sent before the application read: {early!r}"
        go.set()
        c.settimeout(TIMEOUT)
        interim = b""
        while b"\r\n\r\n" not in interim:
            more = c.recv(1)
            assert more, interim
            interim += more
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim
        c.sendall(body)
        head, answer = _read_response(c, time.monotonic() + TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200") and answer == str(len(body)).encode(), (head, answer)

    with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as c:
        c.sendall(b"POST /refuse HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 300000\r\n\r\n")
        head, answer = _read_response(c, time.monotonic() + TIMEOUT)
        assert head.startswith(b"HTTP/1.1 413") and answer == b"no thanks", (head, answer)
    _settled_cleanup(s)


def test_application_that_ends_while_another_task_waits_for_body_bytes(asgi):
    """An application that answers and returns while a task of its own still
    waits in receive() for body bytes that do not come: the cycle's end
    frees the body (its readiness callback with it) and that receive() gets
    http.disconnect; no future stays pending, nothing stays registered."""
    late: List[Any] = []
    tasks: List[asyncio.Task] = []

    async def app(scope, receive, send):
        first = await receive()
        assert first["more_body"]

        async def reader() -> None:
            late.append(await receive())

        tasks.append(asyncio.ensure_future(reader()))
        await asyncio.sleep(0.05)  # the reader waits for the engine
        await ok(send, b"done early")

    s = asgi(http_only(app), whole_body_max=1024, timeouts={"body": 60})
    with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as c:
        c.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n")
        wait_until(lambda: s.stats()["requests"] >= 1, what="the head")
        c.sendall(b"z" * 10_000)
        head, answer = _read_response(c, time.monotonic() + TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200") and answer == b"done early"
        wait_until(lambda: late, what="the late receive()")
    assert late == [{"type": "http.disconnect"}]
    assert all(t.done() for t in tasks)
    _settled_cleanup(s)


def test_stalled_uploads_cost_no_thread_and_bounded_memory(asgi):
    """200 uploads whose clients send a head and a little of the body, then
    nothing: every application waits in receive() at once, with no thread
    per upload (the process's threads are as many as before them) and
    bounded RSS; an upload sent meanwhile is answered at once; when the
    clients reset, every application ends and everything is released."""
    n = 200
    waiting = [0]
    ended: List[str] = []

    async def app(scope, receive, send):
        m = await receive()
        if m["type"] != "http.request":
            ended.append(m["type"])
            return
        if scope["path"] == "/fast":
            await _echo_rest(m, receive, send)
            return
        waiting[0] += 1
        while True:
            m = await receive()
            if m["type"] != "http.request":
                ended.append(m["type"])
                return
            if not m["more_body"]:
                ended.append("complete")
                await ok(send)
                return

    async def _echo_rest(m, receive, send) -> None:
        n = len(m["body"])
        while m["more_body"]:
            m = await receive()
            n += len(m.get("body", b""))
        await ok(send, str(n).encode())

    s = asgi(http_only(app), whole_body_max=1024, timeouts={"body": 60})

    def round_of_stalls(measure: bool) -> Optional[Tuple[int, int, int]]:
        waiting[0] = 0
        del ended[:]
        socks = []
        threads, tasks, rss = threading.active_count(), _os_threads(), rss_kib()
        out = None
        try:
            for _ in range(n):
                c = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)
                c.sendall(b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"s" * 1000)
                socks.append(c)
            wait_until(lambda: waiting[0] == n, what="every stalled upload's application to wait")
            time.sleep(0.1)
            if measure:
                out = (threading.active_count() - threads, _os_threads() - tasks, rss_kib() - rss)
            # Another upload, its body after its head: not held up.
            with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as c:
                c.sendall(b"POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n")
                time.sleep(0.05)
                t0 = time.monotonic()
                c.sendall(b"f" * 200_000)
                head, answer = _read_response(c, time.monotonic() + TIMEOUT)
                took = time.monotonic() - t0
            assert head.startswith(b"HTTP/1.1 200") and answer == b"200000", (head, answer)
            assert took < 1.0, f"an upload took {took:.2f} s beside {n} stalled ones"
        finally:
            for c in socks:
                _reset(c)
        wait_until(lambda: len(ended) == n, what="every stalled upload's application to end")
        assert ended == ["http.disconnect"] * n, sorted(set(ended))
        _settled_cleanup(s)
        return out

    round_of_stalls(False)  # warms the loop, the engine's tables, the allocator
    more_threads, more_os_threads, grown = round_of_stalls(True)  # type: ignore[misc]
    assert more_threads <= 0, f"{n} stalled uploads started {more_threads} Python threads"
    assert more_os_threads <= 0, f"{n} stalled uploads started {more_os_threads} threads"
    # About 2 MiB here (tasks, cycles, scopes, the engine's connections); a
    # 64 KiB buffer kept per upload would be 12.5 MiB.
    assert grown < 8 * 1024, f"{n} stalled uploads grew RSS by {grown} KiB"


_FREE_WHILE_TOLD = r"""
import asyncio, os, subprocess, sys, time
from warpcore.asgi import ASGIServer

# The client, in a process of its own: it sends when told, whoever holds this
# process's GIL.
CLIENT = r'''
import socket, sys
port, socks = int(sys.argv[1]), {}
for line in sys.stdin:
    what, i = line.split()
    if what == "open":
        c = socks[i] = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(b"POST /" + i.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"y" * 100)
    elif what == "send":
        socks[i].sendall(b"x" * 1000)
    else:
        socks.pop(i).close()
'''

ended = []


def tell(line):
    os.write(client.stdin.fileno(), line.encode() + b"\n")


async def app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    await receive()
    late = []

    async def reader():
        late.append(await receive())

    asyncio.ensure_future(reader())
    await asyncio.sleep(0.01)  # the reader waits: its read found nothing
    tell("send " + scope["path"][1:])  # bytes come: the worker runs the readiness callback...
    t = time.perf_counter() + 0.05
    while time.perf_counter() < t:  # ...which waits for the GIL that this step holds...
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"x"})
    ended.append("answered")
    # ...as the application returns: the cycle's end frees the body, which
    # waits for the running callback, with the GIL let go.


# The worker waiting for the GIL does not make this thread let go of it for
# a second: long past the free.
sys.setswitchinterval(1.0)
s = ASGIServer(app, "127.0.0.1", port=0, loop=sys.argv[1], access_log=False, whole_body_max=1024).start()
client = subprocess.Popen([sys.executable, "-c", CLIENT, str(s.port)], stdin=subprocess.PIPE)
for i in range(10):
    tell(f"open {i}")
    deadline = time.monotonic() + 10
    while len(ended) <= i and time.monotonic() < deadline:
        time.sleep(0.001)
    tell(f"close {i}")
client.stdin.close()
client.wait(10)
s.shutdown(2.0)
print("ended", len(ended), sorted(set(ended)))
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_body_freed_while_its_readiness_callback_waits_for_the_gil(loop, tmp_path):
    """The cycle's end frees the streamed body (warpcore_body_free), which
    waits for a readiness callback running on a worker, and that callback
    waits for the GIL: the free must let go of the GIL (a free that kept it,
    through a PyDLL, hangs the process at the first request). In a child
    process, as a hang holds the GIL that a timeout in this one would need."""
    script = tmp_path / "free_while_told.py"
    script.write_text(_FREE_WHILE_TOLD)
    try:
        out = subprocess.run(
            [sys.executable, str(script), loop], capture_output=True, text=True, env=child_env(), timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the server hung: a body's free waited for a readiness callback that waited for the GIL")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ended 10 "), (out.stdout, out.stderr)

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

from warpcore.asgi._http import HTTPCycle, bodies_watched, chunks_held, cycles_watched

from .conftest import run_hang_probe
from .test_asgi import TIMEOUT, asgi, body_length, http_only, ok, rss_kib, wait_until  # noqa: F401 - asgi is a fixture

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


def _on_loop(s: Any, fn: Any) -> Any:
    """``fn()`` run on the server's event loop (between two of its steps, so
    what it reads of the loop's state is not in the middle of a change)."""

    async def call() -> Any:
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), s._loop).result(TIMEOUT)


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


def test_upload_whose_client_resets_mid_body(asgi, caplog, monkeypatch):
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
    busy: List[str] = []  # busy applications, out of receive() until told
    go_on = threading.Event()
    # Paths whose receive() waiting for the engine was woken by the engine's
    # readiness callback, after the resets (on the loop, read there).
    woken: List[str] = []
    body_ready = HTTPCycle._body_ready

    def recording_body_ready(cycle: HTTPCycle) -> None:
        if cycle.read_future is not None and not cycle.read_future.done():
            woken.append(cycle.scope["path"])
        body_ready(cycle)

    monkeypatch.setattr(HTTPCycle, "_body_ready", recording_body_ready)

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
                busy.append(path)
                while not go_on.is_set():  # not in receive() when the reset comes
                    await asyncio.sleep(0.005)

    def waiting_for_the_engine() -> Dict[str, bool]:
        # On the loop: which receive() waits for the engine's readiness callback.
        return {
            c.scope["path"]: c.read_future is not None and not c.read_future.done() for c in list(s._cycles)
        }

    caplog.set_level(logging.DEBUG, logger="warpcore")
    s = asgi(http_only(app), whole_body_max=1024, timeouts={"body": 60})
    paths = [f"/{'busy' if i % 2 else 'wait'}{i}" for i in range(n)]
    waits = {p for p in paths if p.startswith("/wait")}
    socks = []
    try:
        for path in paths:
            c = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)
            c.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode())
            c.sendall(os.urandom(partial))
            socks.append(c)
        wait_until(lambda: all(fed.get(p, 0) >= partial for p in paths), what="every application to read what was sent")
        wait_until(lambda: len(busy) == n - len(waits), what="the busy applications to stop reading")
        # The waiting ones wait in receive() again, for the engine.
        wait_until(
            lambda: {p for p, w in _on_loop(s, waiting_for_the_engine).items() if w} == waits,
            what="the waiting applications to wait for the engine",
        )
        # The wake-ups while the bodies arrived are forgotten: no byte comes
        # any more, so the next ones are the resets'.
        _on_loop(s, woken.clear)
    finally:
        t0 = time.monotonic()
        for c in socks:
            _reset(c)
    # The engine saw every reset before the busy applications read on.
    wait_until(lambda: s.stats()["connections_active"] == 0, what="the engine to close the connections")
    go_on.set()
    wait_until(lambda: len(ended) == n, what="every application to end")
    took = time.monotonic() - t0
    assert set(ended.values()) == {"disconnect"}, ended
    assert took < 3.0, f"the resets reached the applications after {took:.1f} s"
    # The waiting ones were told by the engine's readiness callback; the
    # busy ones found the body failed when they read on.
    assert sorted(_on_loop(s, lambda: list(woken))) == sorted(waits)
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


def test_receive_after_a_failed_readiness_registration_registers_again(asgi, monkeypatch):
    """The first receive() of a streamed body registers the engine's
    readiness callback; when that registration fails, receive() raises and
    nothing may say it was made: the body's key was set before the call, so
    the next receive() did not register, found nothing, and waited for a
    callback that was never registered (for good). Now the next receive()
    registers again and the body arrives whole."""
    from warpcore import _body

    real = _body._RawBody.on_readable
    failures = [1]

    def failing_once(self: Any, callback: Any, userdata: Any) -> None:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("injected: the registration failed")
        real(self, callback, userdata)

    monkeypatch.setattr(_body._RawBody, "on_readable", failing_once)
    raised: List[str] = []

    async def app(scope, receive, send):
        try:
            await receive()
        except RuntimeError as exc:
            raised.append(str(exc))
        digest = hashlib.sha256()
        n = 0
        while True:
            try:
                m = await asyncio.wait_for(receive(), 5.0)
            except asyncio.TimeoutError:
                await ok(send, b"receive() waited for good", status=500)
                return
            if m["type"] != "http.request":
                return
            n += len(m["body"])
            digest.update(m["body"])
            if not m["more_body"]:
                break
        await ok(send, f"{n} {digest.hexdigest()}".encode())

    s = asgi(http_only(app), whole_body_max=1024)
    body = os.urandom(300_000)
    with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as c:
        c.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        wait_until(lambda: raised, what="the failed registration")
        # The next receive() found nothing: it waits for the engine.
        wait_until(
            lambda: _on_loop(s, lambda: [c.read_future is not None and not c.read_future.done() for c in s._cycles])
            == [True],
            what="the next receive() to wait for the body",
        )
        for at in range(0, len(body), 50_000):
            c.sendall(body[at : at + 50_000])
            time.sleep(0.01)
        head, answer = _read_response(c, time.monotonic() + TIMEOUT)
    assert raised == ["injected: the registration failed"]
    assert head.startswith(b"HTTP/1.1 200"), (head, answer)
    assert answer == f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
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
        n = await body_length(receive)
        if n is not None:
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
    # Asked on the loop, which owns the tasks' state.
    assert _on_loop(s, lambda: [t.done() for t in tasks]) == [True]
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


# The fast client, in a process of its own: in this one its sendall would
# need the GIL between its writes, which the busy application holds, and so
# go no faster than the application reads.
_FAST_UPLOADER = r"""
import hashlib, os, socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
piece = os.urandom(1 << 20)
with socket.create_connection(("127.0.0.1", port), timeout=120) as c:
    c.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    for _ in range(size >> 20):
        c.sendall(piece)
    out = b""
    while True:
        more = c.recv(65536)
        if not more:
            break
        out += more
digest = hashlib.sha256(piece * (size >> 20)).hexdigest()
print(out.partition(b"\r\n\r\n")[2].decode() == f"{size} {digest}", out[:200])
"""


def test_fast_upload_to_an_application_that_works_on_each_chunk_does_not_hold_up_the_loop(asgi, tmp_path):
    """A client uploads 48 MB as fast as it can to an application that
    spends a few milliseconds of CPU on each chunk (parsing, hashing): the
    engine refills its 64 KiB window while the application works, so every
    receive() found a chunk waiting and none suspended, and the loop ran
    nothing else until the body ended (seconds: a GET sent meanwhile, every
    timer, every WebSocket waited). A receive() that follows one which did
    not suspend yields to the loop first: a heartbeat task on the loop keeps
    beating and a GET sent in the middle of the upload is answered at once,
    while the upload still arrives whole."""
    size = 48 << 20
    spin = 0.003
    midway = threading.Event()
    got: Dict[str, Any] = {}

    async def app(scope, receive, send):
        if scope["path"] == "/ping":
            await ok(send, b"pong")
            return
        digest = hashlib.sha256()
        n = chunks = 0
        while True:
            m = await receive()
            if m["type"] != "http.request":
                got["ended"] = m["type"]
                return
            n += len(m["body"])
            chunks += 1
            digest.update(m["body"])
            t = time.perf_counter() + spin
            while time.perf_counter() < t:  # the application's work on the chunk
                pass
            if n >= 2 << 20:
                midway.set()
            if not m["more_body"]:
                break
        got["chunks"] = chunks
        await ok(send, f"{n} {digest.hexdigest()}".encode(), headers=[(b"connection", b"close")])

    s = asgi(http_only(app), whole_body_max=1024)
    gaps: List[float] = []
    beating = [True]

    async def heartbeat() -> None:
        last = time.perf_counter()
        while beating[0]:
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.run_coroutine_threadsafe(heartbeat(), s._loop)
    script = tmp_path / "fast_uploader.py"
    script.write_text(_FAST_UPLOADER)
    t0 = time.monotonic()
    uploader = subprocess.Popen(
        [sys.executable, str(script), str(s.port), str(size)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert midway.wait(60), "the upload never got going"
        # A while with nothing else for the loop but its heartbeat (a
        # request that comes in also breaks a stall when its worker is the
        # upload's: the handler call waits for the GIL, and the window is
        # not refilled meanwhile).
        time.sleep(1.0)
        with socket.create_connection(("127.0.0.1", s.port), timeout=60) as p:
            sent = time.monotonic()
            p.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            head, pong = _read_response(p, time.monotonic() + 60)
            ping = time.monotonic() - sent
        assert head.startswith(b"HTTP/1.1 200") and pong == b"pong", (head, pong)
        out, err = uploader.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        if uploader.poll() is None:
            uploader.kill()
            uploader.wait()
        beating[0] = False
        beat.result(TIMEOUT)
    assert uploader.returncode == 0 and out.startswith("True"), (out, err)
    assert got["chunks"] >= size // CHUNK, got
    # Without the yield the heartbeat waited from the start of the upload to
    # its end or to the GET (over 1 s), and the GET, sent with about 25 MB
    # (some 400 chunks of work) to go, waited for them unless it broke the
    # stall (above).
    stall = max(gaps)
    # About 10 ms each with the yield (a few chunks of work).
    assert stall < 0.5, f"the loop stalled for {stall * 1000:.0f} ms during the upload ({took:.1f} s)"
    assert ping < 0.5, f"a GET sent during the upload waited {ping * 1000:.0f} ms (upload {took:.1f} s)"
    _settled_cleanup(s)


_FREE_WHILE_TOLD = r"""
import asyncio, os, subprocess, sys, time
import warpcore.asgi._http as H
from warpcore.asgi import ASGIServer


# Whether the race happened: a readiness callback that finds its body gone
# from the dict ran during the free (the cycle's end takes the body out of
# the dict, then frees it, which waits for a running callback).
class Bodies(dict):
    found = missed = 0

    def get(self, key, default=None):
        if key in self:
            Bodies.found += 1
        else:
            Bodies.missed += 1
        return dict.get(self, key, default)


H._bodies = Bodies()

# The client, in a process of its own: it sends when told, whoever holds this
# process's GIL.
CLIENT = r'''
import socket, sys, time
port, socks = int(sys.argv[1]), {}
for line in sys.stdin:
    what, i = line.split()
    if what == "open":
        c = socks[i] = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(b"POST /" + i.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"y" * 100)
    elif what == "send":
        # A little later: the application tells with a write, which lets go
        # of the GIL; on one core the callback would take it then.
        time.sleep(0.01)
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
    t = time.perf_counter() + 0.06
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
print("callbacks during the free", Bodies.missed, "before it", Bodies.found)
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_body_freed_while_its_readiness_callback_waits_for_the_gil(loop, tmp_path):
    """The cycle's end frees the streamed body (warpcore_body_free), which
    waits for a readiness callback running on a worker, and that callback
    waits for the GIL: the free must let go of the GIL (a free that kept it,
    through a PyDLL, hangs the process at the first request). In a child
    process, as a hang holds the GIL that a timeout in this one would need."""
    lines = run_hang_probe(
        tmp_path,
        "free_while_told.py",
        _FREE_WHILE_TOLD,
        [loop],
        "the server hung: a body's free waited for a readiness callback that waited for the GIL",
    )
    ended, told = lines
    assert ended.startswith("ended 10 "), lines
    # The race this is about happened (not only the count of answers): a
    # readiness callback ran during a free (10 of 10 here, on one core too;
    # one whose bytes came after the free, a client too slow to send in
    # 60 ms, is no failure).
    during = int(told.split()[4])
    assert during >= 1, lines

"""The ASGI spec's rules over real sockets, against warpcore.asgi.ASGIServer
(on asyncio's own loop and on uvloop)."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import struct
import threading
import time
from typing import Any, Dict, List, Optional

import pytest

from warpcore.asgi import ASGIServer, ClientDisconnected, LifespanFailed
from warpcore.asgi._http import chunks_held

from .conftest import raw_exchange, request

TIMEOUT = 10.0


@pytest.fixture(params=["asyncio", "uvloop"])
def asgi(request):  # pytest's request
    servers: List[ASGIServer] = []
    loop = request.param

    def start(app, **kw):
        kw.setdefault("port", 0)
        kw.setdefault("loop", loop)
        kw.setdefault("access_log", False)
        s = ASGIServer(app, **kw).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.shutdown(2.0)


def wait_until(cond, timeout: float = TIMEOUT, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def ok(send, body: bytes = b"ok", status: int = 200, headers=None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def body_length(receive) -> Optional[int]:
    """Receives the whole request body and returns its length; None when the
    client left first (http.disconnect)."""
    n = 0
    while True:
        m = await receive()
        if m["type"] != "http.request":
            return None
        n += len(m["body"])
        if not m["more_body"]:
            return n


def http_only(fn):
    """An app for http scopes that ignores lifespan (auto mode goes on without it)."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        await fn(scope, receive, send)

    return app


# --- the scope ---------------------------------------------------------------------------


def test_scope_fields(asgi):
    seen: Dict[str, Any] = {}

    async def app(scope, receive, send):
        seen.update(scope)
        await ok(send)

    s = asgi(http_only(app))
    raw = (
        b"GET /a%20b/c%C3%A9?x=1&y=%20 HTTP/1.1\r\nHost: example\r\nX-Dup: one\r\nMixed-Case: V\r\n"
        b"X-Dup: two\r\nConnection: close\r\n\r\n"
    )
    out = raw_exchange(s.port, raw)
    assert out.startswith(b"HTTP/1.1 200"), out
    assert seen["type"] == "http"
    assert seen["asgi"]["version"] == "3.0"
    assert tuple(map(int, seen["asgi"]["spec_version"].split("."))) >= (2, 3)
    assert seen["http_version"] == "1.1"
    assert seen["method"] == "GET"
    assert seen["scheme"] == "http"
    assert seen["path"] == "/a b/c\u00e9"
    assert seen["raw_path"] == b"/a%20b/c%C3%A9"
    assert seen["query_string"] == b"x=1&y=%20"
    assert seen["root_path"] == ""
    assert seen["headers"] == [
        (b"host", b"example"),
        (b"x-dup", b"one"),
        (b"mixed-case", b"V"),
        (b"x-dup", b"two"),
        (b"connection", b"close"),
    ]
    assert all(type(n) is bytes and type(v) is bytes for n, v in seen["headers"])
    host, port = seen["client"]
    assert host == "127.0.0.1" and isinstance(port, int) and port > 0
    assert seen["server"] == ("127.0.0.1", s.port)
    assert isinstance(seen["state"], dict)
    assert "http.response.pathsend" in seen["extensions"]


def test_root_path_and_http_10(asgi):
    seen: List[Dict[str, Any]] = []

    async def app(scope, receive, send):
        seen.append(dict(scope))
        await ok(send)

    s = asgi(http_only(app), root_path="/api/")
    assert request(s.port, path="/x/y").status == 200
    out = raw_exchange(s.port, b"GET /z HTTP/1.0\r\n\r\n")
    assert b" 200 OK" in out.split(b"\r\n")[0], out
    assert (seen[0]["root_path"], seen[0]["path"], seen[0]["raw_path"]) == ("/api", "/api/x/y", b"/api/x/y")
    assert seen[1]["http_version"] == "1.0"


def test_asgi2_double_callable(asgi):
    class App:
        def __init__(self, scope):
            self.scope = scope

        async def __call__(self, receive, send):
            if self.scope["type"] == "http":
                await ok(send, b"asgi2")

    s = asgi(App)
    assert request(s.port).body == b"asgi2"


# --- request bodies ------------------------------------------------------------------------


def test_whole_body_then_disconnect_after_complete(asgi):
    got: List[Dict[str, Any]] = []

    async def app(scope, receive, send):
        got.append(await receive())
        await ok(send, got[0]["body"])
        got.append(await asyncio.wait_for(receive(), 5))

    s = asgi(http_only(app))
    r = request(s.port, "POST", "/", body=b"payload")
    assert r.body == b"payload"
    wait_until(lambda: len(got) == 2)
    assert got[0] == {"type": "http.request", "body": b"payload", "more_body": False}
    assert got[1] == {"type": "http.disconnect"}


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_large_upload_streams_in_bounded_memory(asgi, chunked):
    size = 96 << 20
    seen = {"bytes": 0, "messages": 0, "max_chunk": 0, "last_more": None}

    async def app(scope, receive, send):
        while True:
            m = await receive()
            assert m["type"] == "http.request"
            seen["bytes"] += len(m["body"])
            seen["messages"] += 1
            seen["max_chunk"] = max(seen["max_chunk"], len(m["body"]))
            if not m["more_body"]:
                break
        await ok(send, str(seen["bytes"]).encode())

    s = asgi(http_only(app), whole_body_max=1 << 20)
    block = os.urandom(1 << 16)
    before = rss_kib()
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    if chunked:
        conn.request("POST", "/", body=(block for _ in range(size // len(block))), encode_chunked=True)
    else:
        conn.request("POST", "/", body=(block for _ in range(size // len(block))), headers={"Content-Length": str(size)})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    grown = rss_kib() - before
    assert (r.status, body) == (200, str(size).encode())
    assert seen["messages"] > 10 and seen["max_chunk"] <= 64 * 1024
    # The body is 96 MiB: held whole it would show; streamed, the server
    # keeps a 64 KiB window and the chunk being handed over.
    assert grown < 24 * 1024, f"RSS grew by {grown} KiB"


def test_disconnect_during_upload(asgi):
    got: List[Dict[str, Any]] = []
    done = threading.Event()

    async def app(scope, receive, send):
        try:
            while True:
                m = await receive()
                got.append(m)
                if m["type"] == "http.disconnect" or not m.get("more_body"):
                    break
        finally:
            done.set()

    s = asgi(http_only(app), whole_body_max=1024)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100000)
    wait_until(lambda: len(got) >= 1, what="the first chunk")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset: the client is gone
    assert done.wait(TIMEOUT)
    assert got[-1] == {"type": "http.disconnect"}


# --- responses -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [None, 18], ids=["chunked", "content-length"])
def test_more_body_streaming(asgi, length):
    async def app(scope, receive, send):
        headers = [(b"content-type", b"text/plain")]
        if length:
            headers.append((b"content-length", str(length).encode()))
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        for part in (b"first-", b"second", b"-third"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.001)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    s = asgi(http_only(app))
    r = request(s.port)
    assert (r.status, r.body) == (201, b"first-second-third")
    if length:
        assert r.headers["content-length"] == "18"
    else:
        assert r.headers["transfer-encoding"] == "chunked"


def test_head_leaves_before_a_late_body(asgi):
    go = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        while not go.is_set():
            await asyncio.sleep(0.005)
        await send({"type": "http.response.body", "body": b"data: 1\n\n"})

    s = asgi(http_only(app))
    with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
        go.set()
        rest = head.split(b"\r\n\r\n", 1)[1]
        while b"0\r\n\r\n" not in rest:
            rest += sock.recv(4096)
        assert b"data: 1" in rest


def test_backpressure_slow_reader(asgi):
    produced = [0]
    finished = threading.Event()
    chunk = b"z" * (64 * 1024)
    total = 256 << 20

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while produced[0] < total:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            produced[0] += len(chunk)
        await send({"type": "http.response.body", "body": b""})
        finished.set()

    s = asgi(http_only(app), stream_high_water=256 * 1024)
    before = rss_kib()
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    # The client reads nothing: the application must stall once the engine
    # holds its high-water mark (plus what the kernel's buffers took).
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + 20
    while time.monotonic() - stable_since < 0.5:
        assert time.monotonic() < deadline, "the producer never stalled"
        if produced[0] != last:
            last, stable_since = produced[0], time.monotonic()
        time.sleep(0.01)
    assert produced[0] < 32 << 20, f"{produced[0]} bytes produced for a client that reads nothing"
    assert chunks_held() <= 64
    assert rss_kib() - before < 48 * 1024
    # Now read everything: the stream completes, whole.
    got = 0
    buf = bytearray(1 << 20)
    while not finished.is_set() or got < total:
        n = sock.recv_into(buf)
        if not n:
            break
        got += n
        if got >= total and finished.is_set():
            break
    sock.close()
    assert got >= total
    assert finished.wait(TIMEOUT)


def test_client_gone_mid_stream(asgi):
    events: List[Any] = []
    done = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(10000):
                await send({"type": "http.response.body", "body": b"tick\n" * 1000, "more_body": True})
                await asyncio.sleep(0.002)
        except OSError as exc:
            events.append(exc)
            events.append(await asyncio.wait_for(receive(), 5))
            events.append(await asyncio.wait_for(receive(), 5))
        finally:
            done.set()

    s = asgi(http_only(app))
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    assert done.wait(TIMEOUT)
    assert isinstance(events[0], ClientDisconnected) and isinstance(events[0], OSError)
    # The whole body was b"" (no request body): first receive may give it.
    assert events[-1] == {"type": "http.disconnect"}


def test_pathsend(asgi, tmp_path):
    f = tmp_path / "page.bin"
    f.write_bytes(os.urandom(300_000))

    async def app(scope, receive, send):
        assert "http.response.pathsend" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.pathsend", "path": str(f)})

    s = asgi(http_only(app))
    r = request(s.port)
    assert (r.status, r.body, r.headers["content-type"]) == (200, f.read_bytes(), "application/octet-stream")
    r = request(s.port, headers={"Range": "bytes=0-9"})
    assert (r.status, r.body) == (206, f.read_bytes()[:10])


# --- errors ------------------------------------------------------------------------------------


def test_exception_before_start_is_500(asgi, caplog):
    async def app(scope, receive, send):
        raise ValueError("boom")

    s = asgi(http_only(app))
    r = request(s.port)
    assert r.status == 500
    assert any("Exception in ASGI application" in rec.getMessage() for rec in caplog.records)


def test_exception_after_start_closes_the_connection(asgi):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom")

    s = asgi(http_only(app))
    out = raw_exchange(s.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and b"partial" in out
    assert not out.endswith(b"0\r\n\r\n"), "the chunked body must stay incomplete"


def test_return_without_response_is_500(asgi):
    async def app(scope, receive, send):
        return None

    s = asgi(http_only(app))
    assert request(s.port).status == 500


def test_send_after_complete_raises(asgi):
    errors: List[BaseException] = []

    async def app(scope, receive, send):
        await ok(send)
        try:
            await send({"type": "http.response.body", "body": b"more"})
        except RuntimeError as exc:
            errors.append(exc)

    s = asgi(http_only(app))
    assert request(s.port).body == b"ok"
    wait_until(lambda: errors)
    assert "after response already completed" in str(errors[0])


def test_limit_concurrency_answers_503(asgi):
    release = threading.Event()
    entered = threading.Event()

    async def app(scope, receive, send):
        entered.set()
        while not release.is_set():
            await asyncio.sleep(0.005)
        await ok(send)

    s = asgi(http_only(app), limit_concurrency=1)
    results: List[int] = []
    t = threading.Thread(target=lambda: results.append(request(s.port).status))
    t.start()
    assert entered.wait(TIMEOUT)
    assert request(s.port).status == 503
    release.set()
    t.join(TIMEOUT)
    assert results == [200]
    # A request counts until its task ends (a little after its answer left).
    wait_until(lambda: s._admitted == 0, what="the first request's task to end")
    assert request(s.port).status == 200


def test_small_answers_keep_the_gil_under_load(asgi, monkeypatch):
    """A small whole answer, made once the request's handler call returned,
    keeps the GIL (no hand-over per request to the worker thread waiting for
    it): with the worker taking requests while the application's steps hold
    the GIL (as a FastAPI application's do), every answer arrives right and
    nothing waits for good."""
    from warpcore.asgi import _http

    calls = {"keep": 0, "release": 0}
    keep, release = _http._respond_raw_keep_gil, _http._respond_raw

    def counted(name, fn):
        def call(*args):
            calls[name] += 1
            return fn(*args)

        return call

    monkeypatch.setattr(_http, "_respond_raw_keep_gil", counted("keep", keep))
    monkeypatch.setattr(_http, "_respond_raw", counted("release", release))

    async def app(scope, receive, send):
        n = sum(range(2000))  # a step that holds the GIL a while
        await asyncio.sleep(0)
        await ok(send, body=f"{scope['path']} {n}".encode())

    s = asgi(http_only(app))
    per_client, clients = 50, 4
    failures: List[str] = []

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=TIMEOUT)
        try:
            for j in range(per_client):
                conn.request("GET", f"/{i}/{j}")
                r = conn.getresponse()
                body = r.read()
                if r.status != 200 or body != f"/{i}/{j} {sum(range(2000))}".encode():
                    failures.append(f"{r.status} {body!r}")
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 3)
    assert not any(t.is_alive() for t in threads), "a client waited for good"
    assert failures == []
    assert calls["keep"] + calls["release"] == per_client * clients
    assert calls["keep"] > 0


# --- lifespan ----------------------------------------------------------------------------------


def lifespan_app(log: List[str], fail: str = "", handler=None):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                if m["type"] == "lifespan.startup":
                    if fail == "startup":
                        await send({"type": "lifespan.startup.failed", "message": "no database"})
                        return
                    scope["state"]["db"] = "connected"
                    log.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    log.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await (handler or (lambda s, r, se: ok(se, s["state"]["db"].encode())))(scope, receive, send)

    return app


def test_lifespan_state_and_order(asgi):
    log: List[str] = []
    entered = threading.Event()

    async def slow(scope, receive, send):
        log.append("request")
        entered.set()
        await asyncio.sleep(0.3)
        log.append("answered")
        await ok(send, scope["state"]["db"].encode())

    s = asgi(lifespan_app(log, handler=slow))
    assert log == ["startup"]
    results: List[Any] = []
    t = threading.Thread(target=lambda: results.append(request(s.port)))
    t.start()
    assert entered.wait(TIMEOUT)
    s.shutdown(5.0)  # drains the request in flight, then runs shutdown
    t.join(TIMEOUT)
    assert results[0].body == b"connected"
    assert log == ["startup", "request", "answered", "shutdown"]


def test_lifespan_startup_failed(asgi):
    with pytest.raises(LifespanFailed, match="no database"):
        asgi(lifespan_app([], fail="startup"))


def test_lifespan_unsupported(asgi):
    async def app(scope, receive, send):
        assert scope["type"] == "http"
        await ok(send)

    s = asgi(app, lifespan="auto")
    assert request(s.port).status == 200
    with pytest.raises(LifespanFailed):
        asgi(app, lifespan="on")
    assert request(asgi(app, lifespan="off").port).status == 200


# --- WebSockets -------------------------------------------------------------------------------------


def test_websocket_echo_subprotocol_headers_close(asgi):
    from websockets.sync.client import connect

    seen: Dict[str, Any] = {}
    ended: List[Dict[str, Any]] = []

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        seen.update(scope)
        assert (await receive()) == {"type": "websocket.connect"}
        await send({"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"x-hello", b"there")]})
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                ended.append(m)
                return
            if m.get("text") == "bye":
                await send({"type": "websocket.close", "code": 4001, "reason": "done"})
                continue
            if "text" in m and m["text"] is not None:
                await send({"type": "websocket.send", "text": "echo " + m["text"]})
            else:
                await send({"type": "websocket.send", "bytes": m["bytes"][::-1]})

    s = asgi(app)
    with connect(f"ws://127.0.0.1:{s.port}/chat?room=1", subprotocols=["other", "chat"], open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol == "chat"
        assert ws.response.headers["x-hello"] == "there"
        ws.send("hi")
        assert ws.recv(TIMEOUT) == "echo hi"
        ws.send(b"\x01\x02\x03")
        assert ws.recv(TIMEOUT) == b"\x03\x02\x01"
        ws.send("bye")
        with pytest.raises(Exception):
            ws.recv(TIMEOUT)
        assert ws.close_code == 4001 and ws.close_reason == "done"
    assert seen["type"] == "websocket" and seen["scheme"] == "ws"
    assert (seen["path"], seen["query_string"], seen["subprotocols"]) == ("/chat", b"room=1", ["other", "chat"])
    assert "websocket.http.response" in seen["extensions"]
    wait_until(lambda: ended)
    assert ended[0]["code"] == 4001


def test_websocket_client_close_code(asgi):
    from websockets.sync.client import connect

    ended: List[Dict[str, Any]] = []

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                ended.append(m)
                return

    s = asgi(app)
    with connect(f"ws://127.0.0.1:{s.port}/", open_timeout=TIMEOUT) as ws:
        ws.close(3003, "leaving")
    wait_until(lambda: ended)
    assert ended[0]["code"] == 3003 and ended[0]["reason"] == "leaving"


def test_websocket_denials(asgi):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        if scope["path"] == "/close":
            await send({"type": "websocket.close"})
        elif scope["path"] == "/deny":
            await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"token")]})
            await send({"type": "websocket.http.response.body", "body": b"need a ", "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"token"})
        else:
            raise ValueError("boom")

    s = asgi(app)
    for path, status in (("/close", 403), ("/deny", 401), ("/raise", 500)):
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{s.port}{path}", open_timeout=TIMEOUT)
        assert info.value.response.status_code == status
        if path == "/deny":
            assert info.value.response.body == b"need a token"
            assert info.value.response.headers["x-why"] == "token"


def test_websocket_bad_version_is_426(asgi):
    async def app(scope, receive, send):
        raise AssertionError("the application must not see it")

    s = asgi(app, lifespan="off")
    out = raw_exchange(
        s.port,
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        until_close=False,
    )
    assert out.startswith(b"HTTP/1.1 426"), out
    assert b"sec-websocket-version: 13" in out.lower()


def test_bad_head_is_the_applications_error_and_a_500(asgi):
    errors: List[BaseException] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nb")]})
        try:
            await send({"type": "http.response.body", "body": b"x"})
        except RuntimeError as exc:
            errors.append(exc)
            raise

    s = asgi(http_only(app))
    assert request(s.port).status == 500
    assert "invalid HTTP header" in str(errors[0])


def test_head_keeps_the_applications_content_length(asgi):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1234")]})
        await send({"type": "http.response.body", "body": b""})

    s = asgi(http_only(app))
    out = raw_exchange(s.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and b"Content-Length: 1234\r\n" in out, out
    assert out.endswith(b"\r\n\r\n")


def test_polling_receive_leaves_nothing_behind(asgi):
    sizes: List[int] = []

    async def app(scope, receive, send):
        await receive()  # the (empty) body
        for _ in range(200):  # as Starlette's is_disconnected() polls
            try:
                await asyncio.wait_for(receive(), 0.0001)
            except asyncio.TimeoutError:
                pass
        cycle = receive.__self__
        sizes.append(len(cycle.waiters or ()))
        await ok(send)

    s = asgi(http_only(app))
    assert request(s.port).status == 200
    assert sizes == [0]

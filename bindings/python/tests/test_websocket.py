"""WebSockets and upgraded connections on the native server, driven by the
``websockets`` package's client (and raw sockets where a client must break
the rules): echoes of text, binary, large and many messages, pings, the
closing handshake both ways, protocol errors, handshakes refused, threads,
misuse, raw upgrades, and the demo's ``GET /ws``."""

from __future__ import annotations

import base64
import gc
import logging
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable, List

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import warpcore
from warpcore import HandshakeError, WebSocket, WebSocketClosed, WebSocketEvent, WouldBlock

from .conftest import ROOT, TIMEOUT, child_env, request, wait_for_line

pytestmark = pytest.mark.timeout(60)

KEY = base64.b64encode(b"0123456789abcdef").decode()


def client(port: int, path: str = "/ws", **kw: Any):
    kw.setdefault("open_timeout", TIMEOUT)
    kw.setdefault("close_timeout", TIMEOUT)
    kw.setdefault("max_size", None)
    return connect(f"ws://127.0.0.1:{port}{path}", **kw)


class Sessions:
    """A handler whose ``/ws`` accepts a WebSocket and runs ``session(ws)``
    on a thread of its own; what each session returned or raised lands in
    ``results`` (a queue), so a test waits for it with a bound."""

    def __init__(self, session: Callable[[WebSocket], Any], **accept: Any) -> None:
        self.session = session
        self.accept = accept
        self.results: "queue.Queue[Any]" = queue.Queue()

    def __call__(self, request: warpcore.Request) -> Any:
        if request.path != "/ws":
            return warpcore.Response(200, None, b"plain")
        try:
            ws = request.accept_websocket(**self.accept)
        except HandshakeError as exc:
            return exc.response
        threading.Thread(target=self._run, args=(ws,), daemon=True).start()
        return ws

    def _run(self, ws: WebSocket) -> None:
        try:
            self.results.put(self.session(ws))
        except BaseException as exc:  # noqa: B902 - handed to the test
            self.results.put(exc)
        finally:
            ws.release()

    def result(self) -> Any:
        return self.results.get(timeout=TIMEOUT)


def echo(ws: WebSocket) -> WebSocketClosed:
    """Sends back every message until the end, which it returns."""
    while True:
        try:
            message = ws.receive()
        except WebSocketClosed as end:
            return end
        ws.send(message)


# --- echo -----------------------------------------------------------------------------


def test_text_comes_back_as_text_and_binary_as_binary(serve):
    s = Sessions(echo)
    server = serve(s)
    with client(server.port) as c:
        c.send("héllo, wörld")
        assert c.recv(timeout=TIMEOUT) == "héllo, wörld"
        c.send(b"\x00\xff\x10")
        assert c.recv(timeout=TIMEOUT) == b"\x00\xff\x10"
        c.send("")
        assert c.recv(timeout=TIMEOUT) == ""
        c.send(b"")
        assert c.recv(timeout=TIMEOUT) == b""
    assert s.result().code == 1000
    assert server.stats()["upgrades"] == 1


def test_large_messages_both_kinds(serve):
    s = Sessions(echo)
    server = serve(s)
    blob = os.urandom(500 * 1000)
    text = ("warpcore ✓ " * 50000)[: 500 * 1000]
    with client(server.port) as c:
        for message in (blob, text, blob[:65536], blob[:65537]):
            c.send(message)
            assert c.recv(timeout=TIMEOUT) == message
    assert s.result().code == 1000


def test_many_messages_in_a_row(serve):
    s = Sessions(echo)
    server = serve(s)
    n = 3000
    with client(server.port) as c:
        got: List[Any] = []
        reader = threading.Thread(target=lambda: got.extend(c.recv(timeout=TIMEOUT) for _ in range(n)))
        reader.start()
        for i in range(n):
            c.send(str(i) if i % 2 else str(i).encode())
        reader.join(TIMEOUT * 2)
        assert not reader.is_alive()
        assert got == [str(i) if i % 2 else str(i).encode() for i in range(n)]


def test_ping_is_answered_while_the_application_does_not_receive(serve):
    started = threading.Event()
    proceed = threading.Event()

    def session(ws: WebSocket) -> Any:
        started.set()
        proceed.wait(TIMEOUT)
        return echo(ws)

    s = Sessions(session)
    server = serve(s)
    with client(server.port) as c:
        assert started.wait(TIMEOUT)
        assert c.ping(b"are you there").wait(TIMEOUT), "no pong"
        proceed.set()
        c.send("after the ping")
        assert c.recv(timeout=TIMEOUT) == "after the ping"
    assert s.result().code == 1000


# --- closing ----------------------------------------------------------------------------


def test_the_server_sees_the_clients_close_code_and_reason(serve):
    s = Sessions(echo)
    server = serve(s)
    with client(server.port) as c:
        c.send("one")
        assert c.recv(timeout=TIMEOUT) == "one"
        c.close(4001, "client is done")
        # The library completes the handshake with the same code.
        assert c.close_code == 4001
    end = s.result()
    assert isinstance(end, WebSocketClosed)
    assert (end.code, end.reason) == (4001, "client is done")


def test_the_server_closes_with_its_code_and_reason(serve):
    client_sent = threading.Event()

    def session(ws: WebSocket) -> Any:
        ws.send("bye soon")
        assert client_sent.wait(TIMEOUT)
        ws.close(4002, "server is done")
        with pytest.raises(WebSocketClosed):
            ws.send("too late")
        # What the peer sent before its answer is still received, then the end.
        messages = []
        try:
            while True:
                messages.append(ws.receive())
        except WebSocketClosed as end:
            return messages, end, ws.close_code, ws.close_reason

    s = Sessions(session)
    server = serve(s)
    with client(server.port) as c:
        assert c.recv(timeout=TIMEOUT) == "bye soon"
        c.send("last words")
        client_sent.set()
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4002, "server is done")
    messages, end, code, reason = s.result()
    assert messages == ["last words"]
    assert (end.code, code, reason) == (4002, 4002, "server is done")


def _handshake(port: int) -> socket.socket:
    """A raw socket past a valid handshake for /ws."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(
        (
            "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"closed during the handshake: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def test_a_client_that_breaks_the_protocol_ends_in_1002(serve):
    s = Sessions(echo)
    server = serve(s)
    with _handshake(server.port) as sock:
        sock.sendall(b"\x81\x05hello")  # a text frame without the client's mask
        answer = _read_until_closed(sock)
    # The library sent a close frame with 1002 and cut the connection.
    assert answer[:2] == b"\x88\x02" and struct.unpack("!H", answer[2:4])[0] == 1002, answer
    end = s.result()
    assert isinstance(end, WebSocketClosed) and end.code == 1002


def test_a_message_over_max_message_ends_in_1009(serve):
    s = Sessions(echo, max_message=1000)
    server = serve(s)
    with client(server.port) as c:
        c.send(b"x" * 1000)
        assert c.recv(timeout=TIMEOUT) == b"x" * 1000
        c.send(b"x" * 1001)
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert s.result().code == 1009


def test_requests_that_are_not_handshakes_get_400_or_426(serve):
    s = Sessions(echo)
    server = serve(s)
    r = request(server.port, "GET", "/ws")
    assert r.status == 400 and b"handshake" in r.body
    r = request(
        server.port,
        "GET",
        "/ws",
        headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": KEY},
    )
    assert r.status == 426 and r.headers["sec-websocket-version"] == "13"
    r = request(
        server.port,
        "GET",
        "/ws",
        headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "short"},
    )
    assert r.status == 400
    # The server goes on, and a real handshake still works.
    with client(server.port) as c:
        c.send("fine")
        assert c.recv(timeout=TIMEOUT) == "fine"
    assert server.stats()["upgrades"] == 1


def test_the_handshake_error_says_what_to_answer():
    e = HandshakeError(warpcore._ffi.INVALID_STATE, "Sec-WebSocket-Version is not 13 (answer 426 with Sec-WebSocket-Version: 13)")
    assert (e.status, e.headers, e.response.status) == (426, [("Sec-WebSocket-Version", "13")], 426)
    e = HandshakeError(warpcore._ffi.INVALID_STATE, "not a WebSocket handshake")
    assert (e.status, e.headers, e.response.status) == (400, [], 400)


# --- threads ----------------------------------------------------------------------------


def test_one_thread_receives_while_another_sends(serve):
    n = 500

    def session(ws: WebSocket) -> Any:
        received: List[Any] = []
        receiver = threading.Thread(target=lambda: received.extend(ws.receive(timeout=TIMEOUT) for _ in range(n)))
        sender = threading.Thread(target=lambda: [ws.send(f"from the server {i}") for i in range(n)])
        receiver.start()
        sender.start()
        receiver.join(TIMEOUT * 2)
        sender.join(TIMEOUT * 2)
        assert not receiver.is_alive() and not sender.is_alive()
        return received, echo(ws)

    s = Sessions(session)
    server = serve(s)
    with client(server.port) as c:
        got: List[Any] = []
        reader = threading.Thread(target=lambda: got.extend(c.recv(timeout=TIMEOUT) for _ in range(n)))
        reader.start()
        for i in range(n):
            c.send(f"from the client {i}".encode())
        reader.join(TIMEOUT * 2)
        assert got == [f"from the server {i}" for i in range(n)]
    received, end = s.result()
    assert received == [f"from the client {i}".encode() for i in range(n)]
    assert end.code == 1000


def test_a_send_to_a_peer_that_does_not_read_waits_and_times_out(serve):
    def session(ws: WebSocket) -> Any:
        chunk = b"z" * (256 * 1024)
        # The client reads nothing: TCP and the library's mark fill up, and
        # then a send waits, bounded by its timeout.
        with pytest.raises(TimeoutError):
            for _ in range(4096):
                ws.send(chunk, timeout=0.5)
        with pytest.raises(WouldBlock):
            ws.send_nowait(chunk)
        ws.close(1000, "")
        return "ok"

    s = Sessions(session)
    server = serve(s, stream_high_water=64 * 1024)
    # A raw client that never reads: the websockets client would read.
    with _handshake(server.port):
        assert s.result() == "ok"


def test_receive_times_out_and_the_nowait_form_does_not_wait(serve):
    def session(ws: WebSocket) -> Any:
        with pytest.raises(WouldBlock):
            ws.receive_nowait()
        t = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.receive(timeout=0.2)
        waited = time.monotonic() - t
        ws.send("ready")
        return waited, ws.receive(timeout=TIMEOUT), echo(ws)

    s = Sessions(session)
    server = serve(s)
    with client(server.port) as c:
        assert c.recv(timeout=TIMEOUT) == "ready"
        c.send("now")
    waited, message, end = s.result()
    assert 0.15 < waited < 5 and message == "now" and end.code == 1000


def test_release_from_another_thread_ends_a_waiting_receive(serve):
    holder: "queue.Queue[WebSocket]" = queue.Queue()

    def session(ws: WebSocket) -> Any:
        holder.put(ws)
        return echo(ws)

    s = Sessions(session)
    server = serve(s)
    with client(server.port) as c:
        ws = holder.get(timeout=TIMEOUT)
        ws.release()
        end = s.result()
        assert isinstance(end, WebSocketClosed)
        # The library said "going away" to the client.
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


def test_shutdown_ends_an_open_websocket(serve):
    drained = threading.Event()
    s = Sessions(echo, on_event=lambda ws, events: events & WebSocketEvent.DRAINING and drained.set())
    server = serve(s)
    with client(server.port) as c:
        c.send("hi")
        assert c.recv(timeout=TIMEOUT) == "hi"
        t = time.monotonic()
        server.shutdown(0.5)
        assert time.monotonic() - t < TIMEOUT
        assert drained.is_set()
        assert isinstance(s.result(), WebSocketClosed)
        with pytest.raises(ConnectionClosed):
            c.recv(timeout=TIMEOUT)


# --- events -----------------------------------------------------------------------------


def _event_echo(ws: WebSocket, events: WebSocketEvent) -> None:
    # Simple: on the worker, nothing waits; messages the client sends here
    # are small, so a send is never refused.
    if events & WebSocketEvent.CLOSED:
        ws.release()
        return
    try:
        while True:
            ws.send_nowait(ws.receive_nowait())
    except (WouldBlock, WebSocketClosed):
        pass


def test_an_echo_driven_by_events_alone(serve):
    seen: List[Any] = []
    closed = threading.Event()

    def handler(request: warpcore.Request) -> Any:
        def on_event(ws: WebSocket, events: WebSocketEvent) -> None:
            assert threading.current_thread().name.startswith("warpcore-worker-")
            seen.append(events)
            _event_echo(ws, events)
            if events & WebSocketEvent.CLOSED:
                closed.set()

        # Nobody keeps the WebSocket: the library does, until CLOSED.
        return request.accept_websocket(on_event=on_event)

    server = serve(handler)
    with client(server.port) as c:
        for i in range(100):
            c.send(f"m{i}")
        assert [c.recv(timeout=TIMEOUT) for _ in range(100)] == [f"m{i}" for i in range(100)]
        gc.collect()
        c.send(b"still here")
        assert c.recv(timeout=TIMEOUT) == b"still here"
    assert closed.wait(TIMEOUT)
    assert seen[-1] & WebSocketEvent.CLOSED and sum(1 for e in seen if e & WebSocketEvent.CLOSED) == 1
    assert all(isinstance(e, WebSocketEvent) for e in seen)


def test_an_on_event_that_raises_is_logged_and_the_socket_goes_on(serve, caplog):
    def on_event(ws: WebSocket, events: WebSocketEvent) -> None:
        _event_echo(ws, events)
        raise RuntimeError("a bug in the application's callback")

    server = serve(lambda request: request.accept_websocket(on_event=on_event))
    with caplog.at_level(logging.ERROR, logger="warpcore"):
        with client(server.port) as c:
            c.send("x")
            assert c.recv(timeout=TIMEOUT) == "x"
            c.send("y")
            assert c.recv(timeout=TIMEOUT) == "y"
    assert "a bug in the application's callback" in caplog.text


# --- accepting --------------------------------------------------------------------------


def test_the_application_chooses_a_subprotocol_and_sends_headers(serve):
    def handler(request: warpcore.Request) -> Any:
        offered = warpcore.subprotocols(request.headers)
        ws = request.accept_websocket([("Set-Cookie", "a=b")], subprotocol=offered[-1])
        threading.Thread(target=echo, args=(ws,), daemon=True).start()
        return ws

    server = serve(handler)
    with client(server.port, subprotocols=["chat", "superchat"]) as c:
        assert c.subprotocol == "superchat"
        assert c.response.headers["Set-Cookie"] == "a=b"
        c.send("x")
        assert c.recv(timeout=TIMEOUT) == "x"


def test_accepting_later_from_another_thread(serve):
    def later(request: warpcore.Request) -> Any:
        ws = request.accept_websocket()
        threading.Thread(target=echo, args=(ws,), daemon=True).start()
        return ws

    server = serve(lambda request: warpcore.Deferred(later, request))
    with client(server.port) as c:
        c.send("deferred")
        assert c.recv(timeout=TIMEOUT) == "deferred"


# --- misuse -----------------------------------------------------------------------------


def test_misuse_raises_python_exceptions(serve):
    def session(ws: WebSocket) -> Any:
        end = echo(ws)
        # After the end: the end again, and sends refused.
        with pytest.raises(WebSocketClosed) as again:
            ws.receive()
        assert again.value.code == end.code == 4000
        with pytest.raises(WebSocketClosed):
            ws.send("after the end")
        ws.close()  # closed already: nothing to do
        with pytest.raises(TypeError):
            ws.send(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            ws.close(999)
        with pytest.raises(ValueError):
            ws.close(1000, "x" * 124)
        ws.release()
        ws.release()
        assert ws.released and ws.closed
        for call in (ws.receive, ws.receive_nowait, lambda: ws.send("x"), lambda: ws.draining, lambda: ws.set_idle_timeout(1)):
            with pytest.raises(WebSocketClosed, match="released"):
                call()
        ws.close()  # released: nothing to do
        with ws:
            pass
        return "ok"

    s = Sessions(session)
    server = serve(s)
    with client(server.port) as c:
        c.close(4000, "")
    assert s.result() == "ok"


def test_misuse_in_the_handler(serve):
    outcomes: "queue.Queue[Any]" = queue.Queue()

    def handler(request: warpcore.Request) -> Any:
        try:
            with pytest.raises(ValueError):
                request.accept_websocket(max_message=0)
            with pytest.raises(TypeError):
                request.accept_websocket(on_event="not callable")
            ws = request.accept_websocket()
            # A second accept, an upgrade, an answer: the 101 was the answer.
            with pytest.raises(warpcore.WarpcoreError) as twice:
                request.accept_websocket()
            assert twice.value.name == "ALREADY_ANSWERED"
            with pytest.raises(warpcore.WarpcoreError):
                request.take_over()
            # The handler runs on a worker thread, where nothing waits.
            with pytest.raises(WouldBlock):
                ws.receive(timeout=5)
            assert ws.draining is None
            ws.set_idle_timeout(30)
            outcomes.put("ok")
        except BaseException as exc:  # noqa: B902 - handed to the test
            outcomes.put(exc)
            raise
        threading.Thread(target=echo, args=(ws,), daemon=True).start()
        return ws

    server = serve(handler)
    with client(server.port) as c:
        c.send("x")
        assert c.recv(timeout=TIMEOUT) == "x"
    assert outcomes.get(timeout=TIMEOUT) == "ok"
    with pytest.raises(TypeError):
        WebSocket()
    with pytest.raises(RuntimeError):
        warpcore.Request._detached("GET", "/ws").accept_websocket()


def test_a_websocket_nobody_keeps_is_closed_with_1001(serve):
    # Returned by the handler and dropped: garbage, so released.
    server = serve(lambda request: request.accept_websocket())
    with client(server.port) as c:
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


# --- raw upgrades -----------------------------------------------------------------------


def _raw_upgrade(port: int, protocol: str, extra: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(f"GET /raw HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n".encode() + extra)
    return sock


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, f"closed after {out!r}"
        out += chunk
    return out


def test_a_raw_upgrade_echoes_bytes_and_half_closes(serve):
    results: "queue.Queue[Any]" = queue.Queue()

    def pump(conn: warpcore.Upgraded) -> None:
        total = 0
        with conn:
            while True:
                data = conn.read(timeout=TIMEOUT)
                if not data:
                    break
                total += len(data)
                conn.write(data)
            conn.shutdown_write()
            results.put(total)

    def handler(request: warpcore.Request) -> Any:
        try:
            conn = request.upgrade([("Upgrade", "echo")])
        except HandshakeError as exc:
            return exc.response
        threading.Thread(target=pump, args=(conn,), daemon=True).start()
        return conn

    server = serve(handler)
    assert request(server.port, "GET", "/raw").status == 400
    with _raw_upgrade(server.port, "echo", b"early bytes") as sock:
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 ") and b"upgrade: echo" in head.lower(), head
        assert _read_exactly(sock, 11) == b"early bytes"
        blob = os.urandom(300 * 1000)
        got = []
        reader = threading.Thread(target=lambda: got.append(_read_exactly(sock, len(blob))))
        reader.start()
        sock.sendall(blob)
        reader.join(TIMEOUT)
        assert got == [blob]
        sock.shutdown(socket.SHUT_WR)
        assert _read_until_closed(sock) == b""
    assert results.get(timeout=TIMEOUT) == 11 + len(blob)


def test_an_upgraded_connection_that_asked_is_told_when_quiet_instead_of_closed(serve):
    events: "queue.Queue[Any]" = queue.Queue()

    def on_event(conn: warpcore.Upgraded, bits: int) -> None:
        if bits & warpcore.UpgradeEvent.QUIET:
            events.put("quiet")
        if bits & warpcore.UpgradeEvent.CLOSED:
            events.put("closed")

    def handler(request: warpcore.Request) -> Any:
        conn = request.upgrade({"Upgrade": "x"}, on_event=on_event)
        conn.set_idle_timeout(2)
        conn.set_quiet_notice(True)
        with pytest.raises(TypeError):
            conn.set_quiet_notice(1)  # type: ignore[arg-type]
        holder.append(conn)
        return conn

    holder: List[Any] = []
    server = serve(handler)
    with _raw_upgrade(server.port, "x") as sock:
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        # Each quiet second (half the 2 s idle timeout) is told; the idle
        # timeout does not close it.
        assert [events.get(timeout=TIMEOUT) for _ in range(3)] == ["quiet"] * 3
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)
        sock.setblocking(True)
        # Off again: the idle timeout closes the quiet connection.
        holder[0].set_quiet_notice(False)
        while (e := events.get(timeout=TIMEOUT)) == "quiet":
            pass
        assert e == "closed"
        assert _read_until_closed(sock) == b""
    holder[0].set_quiet_notice(True)  # closed: nothing, no error
    holder[0].release()
    with pytest.raises(ValueError, match="released"):
        holder[0].set_quiet_notice(True)


def test_take_over_sends_nothing_and_the_application_writes_its_answer(serve):
    def handler(request: warpcore.Request) -> Any:
        conn = request.take_over()
        with pytest.raises(WouldBlock):
            conn.read_nowait()
        conn.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: mine\r\nConnection: Upgrade\r\n\r\nhello")
        conn.close()
        with pytest.raises(warpcore.ClientClosedError):
            conn.write(b"closed")
        assert conn.read() == b""
        return conn

    server = serve(handler)
    with _raw_upgrade(server.port, "mine") as sock:
        assert _read_until_closed(sock) == b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: mine\r\nConnection: Upgrade\r\n\r\nhello"
    assert server.stats()["upgrades"] == 1


def test_a_released_upgraded_connection_refuses_calls(serve):
    outcomes: "queue.Queue[Any]" = queue.Queue()

    def handler(request: warpcore.Request) -> Any:
        conn = request.upgrade({"Upgrade": "x"})
        conn.release()
        try:
            for call in (conn.read, lambda: conn.write(b"x"), conn.shutdown_write, lambda: conn.draining):
                with pytest.raises(ValueError, match="released"):
                    call()
            conn.close()
            conn.release()
            outcomes.put("ok")
        except BaseException as exc:  # noqa: B902 - handed to the test
            outcomes.put(exc)
        return conn

    server = serve(handler)
    with _raw_upgrade(server.port, "x") as sock:
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 101 ")
    assert outcomes.get(timeout=TIMEOUT) == "ok"


# --- the demo ---------------------------------------------------------------------------


def test_the_demo_echoes_websocket_messages_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "python" / "demo.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        cwd=tmp_path,
    )
    try:
        port = int(wait_for_line(proc, "listening on ").rsplit(":", 1)[1])
        with client(port) as c:
            c.send("text stays text")
            assert c.recv(timeout=TIMEOUT) == "text stays text"
            c.send(b"\x00binary\xff")
            assert c.recv(timeout=TIMEOUT) == b"\x00binary\xff"
            big = os.urandom(500 * 1000)
            c.send(big)
            assert c.recv(timeout=TIMEOUT) == big
            for i in range(200):
                c.send(f"#{i}")
            assert [c.recv(timeout=TIMEOUT) for _ in range(200)] == [f"#{i}" for i in range(200)]
            assert c.ping().wait(TIMEOUT)
            assert request(port, "GET", "/ws").status == 400
            assert request(port, "POST", "/ws", body=b"").status == 405
            # SIGTERM with the WebSocket open: the demo says "going away" and exits 0.
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                c.recv(timeout=TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()

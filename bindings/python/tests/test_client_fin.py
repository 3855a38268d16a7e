"""client_fin_ends_request: the binding's call
(warpcore_config_set_client_fin_ends_request as a ``Server`` setting, off by
default, checked and reloadable), the ASGI server turning it on by default
(``client_fin_ends_request=False`` and ``--no-client-fin-ends-request``
turning it off), and what it does to a WSGI application whose client
leaves with a FIN. The ASGI long polls it tells are in
test_asgi_adversarial.py (test_long_poll_is_told_of_a_normal_close and
the option-off one, and the 200 clients that leave with a FIN)."""

from __future__ import annotations

import socket
import threading

import pytest

import warpcore
from warpcore import _ffi
from warpcore.asgi import ASGIServer
from warpcore.asgi import _cli as asgi_cli
from warpcore.wsgi import WSGIServer

from .test_asgi import TIMEOUT, wait_until


def read_to_end(c: socket.socket) -> bytes:
    """Everything the server sends until it closes."""
    out = b""
    while True:
        more = c.recv(4096)
        if not more:
            return out
        out += more


def hello(req: warpcore.Request) -> warpcore.Response:
    return warpcore.Response(200, [], b"hello")


async def nothing(scope, receive, send):  # never called: no request is made
    raise AssertionError("not called")


def test_the_binding_declares_the_function():
    assert _ffi.FUNCTIONS["warpcore_config_set_client_fin_ends_request"] == (
        _ffi.warpcore_result,
        [_ffi.warpcore_config_p, _ffi.c_bool],
    )


def test_a_server_setting_off_by_default_checked_and_reloadable():
    with pytest.raises(TypeError, match="client_fin_ends_request"):
        warpcore.Server(hello, port=0, client_fin_ends_request="yes")
    with warpcore.Server(hello, port=0) as s:
        assert s._settings["client_fin_ends_request"] is False
        s.reload(client_fin_ends_request=True)
        assert s._settings["client_fin_ends_request"] is True
        with pytest.raises(TypeError, match="client_fin_ends_request"):
            s.reload(client_fin_ends_request=1)
        assert s._settings["client_fin_ends_request"] is True


def test_the_asgi_server_turns_it_on_unless_told_not_to():
    on = ASGIServer(nothing, port=0, lifespan="off")
    off = ASGIServer(nothing, port=0, lifespan="off", client_fin_ends_request=False)
    assert on._engine._settings["client_fin_ends_request"] is True
    assert off._engine._settings["client_fin_ends_request"] is False
    assert asgi_cli.parser().parse_args(["m:app"]).client_fin_ends_request is True
    args = asgi_cli.parser().parse_args(["m:app", "--no-client-fin-ends-request"])
    assert args.client_fin_ends_request is False


def test_the_asgi_cli_passes_it_on(monkeypatch):
    seen = {}

    def serve(app, host, port, **options):
        seen.update(options)
        return 0

    monkeypatch.setattr(asgi_cli, "_load", lambda name, factory, app_dir: nothing)
    monkeypatch.setattr(asgi_cli, "serve", serve)
    assert asgi_cli.main(["m:app", "--no-access-log"]) == 0
    assert seen["client_fin_ends_request"] is True
    assert asgi_cli.main(["m:app", "--no-access-log", "--no-client-fin-ends-request"]) == 0
    assert seen["client_fin_ends_request"] is False


@pytest.mark.parametrize("on", [False, True])
def test_a_wsgi_application_whose_client_sends_its_fin(on):
    """WSGI keeps the half-close by default: the answer made after the FIN
    is read. With the option on, the client reads the end and no answer,
    and the server goes on."""
    release = threading.Event()
    started = threading.Event()

    def app(environ, start_response):
        started.set()
        release.wait(TIMEOUT)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"late answer"]

    s = WSGIServer(app, port=0, threads=2, client_fin_ends_request=on).start()
    try:
        with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as c:
            c.sendall(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
            assert started.wait(TIMEOUT)
            c.shutdown(socket.SHUT_WR)
            if on:
                assert c.recv(4096) == b"", "no answer after the FIN"
                release.set()
            else:
                # Without the option the FIN changes nothing: whenever the
                # worker sees it, the answer still goes out.
                release.set()
                out = read_to_end(c)
                assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"late answer"), out
        wait_until(lambda: s.stats()["connections_active"] == 0, what="the connection to close")
        with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as c:
            release.set()
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out = read_to_end(c)
            assert out.startswith(b"HTTP/1.1 200"), out
    finally:
        release.set()
        s.shutdown(2.0)


async def quick(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def test_a_client_that_half_closes_right_after_its_request_gets_a_quick_answer():
    """``printf ... | nc -N`` against the ASGI server's default: the request
    and the FIN arrive together, the answer (given well within the grace
    after the FIN) reaches every one of them. Ended at once, about half
    got nothing (the reviewer's count: 11 of 20)."""
    with ASGIServer(quick, port=0, lifespan="off") as s:
        assert s._engine._settings["client_fin_ends_request"] is True
        answered = 0
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as c:
                c.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                c.shutdown(socket.SHUT_WR)
                out = read_to_end(c)
                answered += out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello")
        assert answered == 20

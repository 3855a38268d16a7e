"""PEP 3333 compliance: test applications wrapped in wsgiref.validate.validator,
served through warpcore.wsgi, in thread-pool and inline modes."""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from wsgiref.validate import validator

import pytest

from warpcore.wsgi import FileWrapper, WSGIServer

from .conftest import raw_exchange, request


@pytest.fixture(params=[4, 0], ids=["pool", "inline"])
def wsgi(request):  # pytest's request (shadows the HTTP helper here)
    servers = []
    threads = request.param

    def start(app, validate=True, **kw):
        kw.setdefault("port", 0)
        kw.setdefault("threads", threads)
        s = WSGIServer(validator(app) if validate else app, **kw).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.shutdown(1.0)


@pytest.fixture
def app_errors(caplog):
    """Fails the test if an application error (a validator assertion
    included) was logged."""
    caplog.set_level(logging.ERROR, logger="warpcore")
    yield caplog
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("warpcore")]
    assert not errors, [r.getMessage() + " " + repr(r.exc_info and r.exc_info[1]) for r in errors]


def hello_app(environ, start_response):
    body = b"Hello, World!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def test_hello(wsgi, app_errors):
    s = wsgi(hello_app)
    r = request(s.port)
    assert (r.status, r.body, r.headers["content-type"]) == (200, b"Hello, World!", "text/plain")


def test_environ(wsgi, app_errors):
    seen = {}

    def app(environ, start_response):
        seen.update({k: v for k, v in environ.items() if k != "wsgi.input"})
        seen["input"] = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    s = wsgi(app)
    r = request(
        s.port,
        "POST",
        "/p%C3%A4th/x?a=1&b=%20",
        body=b"form=data",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Thing": "1", "Cookie": "a=1"},
    )
    assert r.status == 200
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["SCRIPT_NAME"] == ""
    # PATH_INFO is the decoded path as bytes-in-latin-1 (PEP 3333).
    assert seen["PATH_INFO"] == "/päth/x".encode().decode("latin-1")
    assert seen["QUERY_STRING"] == "a=1&b=%20"
    assert seen["RAW_URI"] == "/p%C3%A4th/x?a=1&b=%20"
    assert seen["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert seen["CONTENT_LENGTH"] == "9"
    assert seen["input"] == b"form=data"
    assert seen["HTTP_X_THING"] == "1"
    assert seen["HTTP_COOKIE"] == "a=1"
    assert "HTTP_CONTENT_TYPE" not in seen and "HTTP_CONTENT_LENGTH" not in seen
    assert seen["SERVER_NAME"] == "127.0.0.1" and seen["SERVER_PORT"] == str(s.port)
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["REMOTE_ADDR"] == "127.0.0.1" and seen["REMOTE_PORT"].isdigit()
    assert seen["wsgi.version"] == (1, 0) and seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.run_once"] is False and seen["wsgi.multiprocess"] is False
    assert seen["wsgi.file_wrapper"] is FileWrapper


def test_header_with_underscore_is_dropped_and_repeats_join(wsgi, app_errors):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return []

    s = wsgi(app)
    raw_exchange(
        s.port,
        b"GET / HTTP/1.1\r\nHost: x\r\nX_Spoof: 1\r\nX-Rep: a\r\nX-Rep: b\r\nConnection: close\r\n\r\n",
    )
    assert "HTTP_X_SPOOF" not in seen
    assert seen["HTTP_X_REP"] == "a,b"


def test_streamed_generator(wsgi, app_errors):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            for i in range(100):
                yield b"line %d\n" % i

        return gen()

    s = wsgi(app)
    r = request(s.port)
    assert r.headers.get("transfer-encoding") == "chunked"
    assert r.body == b"".join(b"line %d\n" % i for i in range(100))


def test_streamed_with_content_length(wsgi, app_errors):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
        return iter([b"abc", b"", b"def"])

    s = wsgi(app)
    r = request(s.port)
    assert (r.body, r.headers["content-length"]) == (b"abcdef", "6")
    assert "transfer-encoding" not in r.headers


def test_write_callable(wsgi, app_errors):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written,")
        return [b"returned"]

    s = wsgi(app)
    assert request(s.port).body == b"written,returned"


def test_empty_body_and_head(wsgi, app_errors):
    def app(environ, start_response):
        start_response("204 No Content", [])
        return []

    s = wsgi(app)
    r = request(s.port)
    assert (r.status, r.body) == (204, b"")
    s2 = wsgi(hello_app)
    r = request(s2.port, "HEAD", "/")
    assert (r.status, r.body, r.headers["content-length"]) == (200, b"", "13")


def test_file_wrapper(wsgi, app_errors, tmp_path):
    data = os.urandom(700_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        f = open(path, "rb")
        if environ["PATH_INFO"] == "/offset":
            f.seek(100)
        if environ["PATH_INFO"] == "/bytesio":
            f.close()
            return environ["wsgi.file_wrapper"](io.BytesIO(b"in memory"), 4)
        return environ["wsgi.file_wrapper"](f, 8192)

    # Validated, the wrapper is iterated through the validator's own wrapper.
    s = wsgi(app)
    assert request(s.port).body == data
    assert request(s.port, path="/bytesio").body == b"in memory"
    # Unwrapped, a real file is sent from its descriptor with a Content-Length.
    s = wsgi(app, validate=False)
    r = request(s.port)
    assert r.body == data and r.headers["content-length"] == str(len(data))
    r = request(s.port, path="/offset")
    assert r.body == data[100:] and r.headers["content-length"] == str(len(data) - 100)
    assert request(s.port, path="/bytesio").body == b"in memory"


def test_app_exception_before_start_is_500(wsgi, caplog):
    def app(environ, start_response):
        raise KeyError("oops")

    s = wsgi(app)
    with caplog.at_level(logging.ERROR, logger="warpcore"):
        r = request(s.port)
    assert r.status == 500
    assert any("application error" in rec.getMessage() for rec in caplog.records)


def test_exc_info_replaces_headers_before_they_are_sent(wsgi, app_errors):
    import sys

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("late")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]

    s = wsgi(app)
    r = request(s.port)
    assert (r.status, r.body) == (503, b"sorry")


def failing_midway(headers):
    """An app whose body raises after b"partial" (hello on /ok)."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ok":
            return hello_app(environ, start_response)
        start_response("200 OK", headers)

        def gen():
            yield b"partial"
            raise RuntimeError("midway")

        return gen()

    return app


def test_error_after_headers_cuts_the_response(wsgi, caplog):
    s = wsgi(failing_midway([("Content-Type", "text/plain"), ("Content-Length", "100")]))
    import http.client

    with caplog.at_level(logging.ERROR, logger="warpcore"):
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            request(s.port)
    assert any("midway" in repr(rec.exc_info) for rec in caplog.records)
    # The server is still fine.
    assert request(s.port, path="/ok").body == b"Hello, World!"


def test_error_in_a_chunked_body_leaves_it_unterminated(wsgi, caplog):
    s = wsgi(failing_midway([("Content-Type", "text/plain")]))
    with caplog.at_level(logging.ERROR, logger="warpcore"):
        raw = raw_exchange(s.port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), raw
    assert body == b"7\r\npartial\r\n", raw
    assert request(s.port, path="/ok").body == b"Hello, World!"


def test_invalid_app_results_are_500(wsgi, caplog):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/str":
            start_response("200 OK", [])
            return ["not bytes"]
        if environ["PATH_INFO"] == "/nostart":
            return [b"x"]
        start_response("200 OK", [])
        return [b"fine"]

    s = wsgi(app, validate=False)
    with caplog.at_level(logging.ERROR, logger="warpcore"):
        assert request(s.port, path="/str").status == 500
        assert request(s.port, path="/nostart").status == 500
    assert request(s.port).body == b"fine"


def test_pool_keeps_the_event_loop_free():
    """threads>0: a slow application call does not hold up other requests."""
    release = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    s = WSGIServer(app, port=0, threads=2).start()
    try:
        out = {}
        t = threading.Thread(target=lambda: out.update(r=request(s.port, path="/slow")))
        t.start()
        time.sleep(0.2)
        # Were the event loop waiting for /slow, this would wait for release (10 s).
        t0 = time.monotonic()
        assert request(s.port, path="/fast", timeout=9).body == b"/fast"
        assert time.monotonic() - t0 < 8
        release.set()
        t.join(10)
        assert out["r"].body == b"/slow"
    finally:
        s.shutdown(1.0)


def test_many_concurrent_requests(wsgi, app_errors):
    from concurrent.futures import ThreadPoolExecutor

    def app(environ, start_response):
        body = environ["QUERY_STRING"].encode() * 3
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    s = wsgi(app)
    with ThreadPoolExecutor(16) as ex:
        got = list(ex.map(lambda i: request(s.port, path=f"/?{i}").body, range(300)))
    assert got == [str(i).encode() * 3 for i in range(300)]


def test_inline_mode_drains_generators_off_the_event_loop():
    """threads=0: the app runs on the event loop, but a body it yields bit by
    bit is sent from a stream thread (with backpressure), not the loop."""
    release = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/slow":

            def gen():
                yield b"first,"
                release.wait(10)
                yield b"second"

            return gen()
        return [b"quick"]

    s = WSGIServer(app, port=0, threads=0).start()
    try:
        out = {}
        t = threading.Thread(target=lambda: out.update(r=request(s.port, path="/slow")))
        t.start()
        time.sleep(0.3)
        assert request(s.port, path="/other", timeout=5).body == b"quick"
        release.set()
        t.join(10)
        assert out["r"].body == b"first,second"
    finally:
        s.shutdown(1.0)


def test_environ_is_fresh_per_request_with_the_same_head(wsgi, app_errors):
    # Environs are built from a per-server cache keyed by the request head as
    # received: an application changing its environ, and requests whose heads
    # match but whose bodies, peers or fields differ, must not see each other.
    seen = []

    def app(environ, start_response):
        seen.append(
            (environ.get("MARK"), environ.get("HTTP_X_A"), environ.get("CONTENT_LENGTH"),
             environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)), environ["REMOTE_PORT"], environ["PATH_INFO"])
        )
        environ["MARK"] = "changed"
        environ["HTTP_X_A"] = "changed"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    s = wsgi(app)
    head = b"POST /p%20q HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    for body in (b"3\r\nabc\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"3\r\nabc\r\n0\r\n\r\n"):
        assert b" 200 " in raw_exchange(s.port, head + body, until_close=False)
    for value in ("1", "2", "1"):
        assert request(s.port, path="/p%20q", headers={"X-A": value}).status == 200
    assert [(m, a, n, b, p) for m, a, n, b, _, p in seen] == [
        (None, "1", "3", b"abc", "/p q"),
        (None, "1", "5", b"hello", "/p q"),
        (None, "1", "3", b"abc", "/p q"),
        (None, "1", None, b"", "/p q"),
        (None, "2", None, b"", "/p q"),
        (None, "1", None, b"", "/p q"),
    ]
    assert len({port for *_, port, _ in seen}) == len(seen)  # one connection each

"""PEP 3333 and the WSGI server's own settings, in process: SCRIPT_NAME
taken off PATH_INFO, SERVER_SOFTWARE, wsgi.multithread, reload swapping the
application, the proxy headers, the header field limit, the reason phrase,
and the hung-application check behind ``--timeout``."""

from __future__ import annotations

import threading
import time
from wsgiref.validate import validator

import pytest

from warpcore import _forwarded
from warpcore.wsgi import SERVER_SOFTWARE, WSGIServer

from .conftest import raw_exchange, request
from .supervise import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def wsgi():
    servers = []

    def start(app, **kw):
        kw.setdefault("port", 0)
        s = WSGIServer(app, **kw).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.shutdown(1.0)


def recorder():
    seen = {}

    def app(environ, start_response):
        seen.clear()
        seen.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode("latin-1")]

    return seen, app


@pytest.mark.parametrize("threads", [0, 4])
def test_script_name_is_taken_off_path_info(wsgi, threads):
    seen, app = recorder()
    s = wsgi(validator(app), script_name="/app/", threads=threads)
    for path, expect in [("/app", ""), ("/app/", "/"), ("/app/x/y?q=1", "/x/y"), ("/app/%C3%A4", "/ä".encode().decode("latin-1"))]:
        r = request(s.port, path=path)
        assert r.status == 200 and seen["SCRIPT_NAME"] == "/app" and seen["PATH_INFO"] == expect, (path, seen)
    # Outside the root: 500, as gunicorn answers (a prefix of a segment is outside).
    for path in ["/", "/other", "/application", "/ap"]:
        seen.clear()
        r = request(s.port, path=path)
        assert r.status == 500 and b"SCRIPT_NAME" in r.body and not seen, path


def test_script_name_must_be_a_path():
    with pytest.raises(ValueError):
        WSGIServer(lambda e, s: [], script_name="app")


def test_server_software_and_multithread(wsgi):
    for threads, workers, multithread in [(1, 1, False), (1, 2, False), (2, 1, True), (0, 1, True), (0, 2, True)]:
        seen, app = recorder()
        s = wsgi(app, threads=threads, workers=workers)
        assert request(s.port).status == 200
        assert seen["SERVER_SOFTWARE"] == SERVER_SOFTWARE and SERVER_SOFTWARE.startswith("warpcore/")
        assert seen["wsgi.multithread"] is multithread, (threads, workers)


@pytest.mark.parametrize("threads", [0, 2])
@pytest.mark.parametrize("keyword", ["app", "handler"])
def test_reload_swaps_the_application(wsgi, threads, keyword):
    def make(name):
        def app(environ, start_response):
            start_response("200 OK", [])
            return [name]

        return app

    s = wsgi(make(b"one"), threads=threads)
    assert request(s.port).body == b"one"
    s.reload(**{keyword: make(b"two")})
    assert request(s.port).body == b"two"
    s.reload(make(b"three"), max_body_size=100)
    assert request(s.port).body == b"three"
    assert request(s.port, "POST", body=b"x" * 200).status == 413
    with pytest.raises(TypeError):
        s.reload(app=make(b"a"), handler=make(b"b"))
    with pytest.raises(TypeError):
        s.reload(app="not callable")
    assert request(s.port).body == b"three"


def test_reason_phrase_is_the_applications(wsgi):
    """PEP 3333: the status line carries the application's own reason
    phrase (warpcore_response_set_reason), whole or streamed; a standard one
    is the engine's; control characters are the application's error."""

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/custom":
            start_response("299 Custom Thing", [])
            return [b""]
        if path == "/stream":
            start_response("200 Fine Indeed", [])
            return iter([b"a" * 70000, b"b"])
        if path == "/bad":
            start_response("200 Bad\x01Phrase", [])
            return [b""]
        start_response("404 Not Found", [])
        return [b"x"]

    s = wsgi(app, threads=1)
    exchange = lambda path: raw_exchange(s.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert exchange(b"/custom").split(b"\r\n")[0] == b"HTTP/1.1 299 Custom Thing"
    assert exchange(b"/stream").split(b"\r\n")[0] == b"HTTP/1.1 200 Fine Indeed"
    assert exchange(b"/other").split(b"\r\n")[0] == b"HTTP/1.1 404 Not Found"
    assert exchange(b"/bad").split(b"\r\n")[0] == b"HTTP/1.1 500 Internal Server Error"


def test_forwarded_headers(wsgi):
    seen, app = recorder()
    s = wsgi(app, threads=1)  # default: loopback proxies allowed
    request(s.port, headers={"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"})
    assert seen["REMOTE_ADDR"] == "203.0.113.5" and seen["wsgi.url_scheme"] == "https"
    request(s.port, headers={"X-Forwarded-Protocol": "ssl"})
    assert seen["wsgi.url_scheme"] == "https" and seen["REMOTE_ADDR"] == "127.0.0.1"
    request(s.port, headers={"X-Forwarded-Ssl": "on"})
    assert seen["wsgi.url_scheme"] == "https"
    request(s.port, headers={"X-Forwarded-Proto": "http"})
    assert seen["wsgi.url_scheme"] == "http"
    seen.clear()
    r = request(s.port, headers={"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"})
    assert r.status == 400 and not seen
    request(s.port)
    assert seen["wsgi.url_scheme"] == "http" and seen["REMOTE_ADDR"] == "127.0.0.1"
    nobody = wsgi(app, threads=1, forwarded_allow_ips="")
    request(nobody.port, headers={"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"})
    assert seen["REMOTE_ADDR"] == "127.0.0.1" and seen["wsgi.url_scheme"] == "http"
    # Conflicting scheme headers from a proxy that is not allowed are ignored, not a 400.
    assert request(nobody.port, headers={"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"}).status == 200


def test_forwarded_for_picks_the_first_untrusted_hop():
    trust = _forwarded.Trust("127.0.0.1,10.0.0.0/8")
    assert trust("127.0.0.1") and trust("10.1.2.3") and trust("unix:") and not trust("192.0.2.1")
    assert trust("::ffff:10.0.0.1")
    assert _forwarded.client_address("198.51.100.1, 192.0.2.1, 10.0.0.2", trust) == "192.0.2.1"
    assert _forwarded.client_address("10.0.0.3, 10.0.0.2", trust) == "10.0.0.3"
    assert _forwarded.client_address("192.0.2.1:5555", trust) == "192.0.2.1"
    assert _forwarded.client_address("[2001:db8::1]:80", trust) == "2001:db8::1"
    assert _forwarded.client_address(" , ", trust) is None
    assert _forwarded.Trust("*")("192.0.2.1")
    with pytest.raises(ValueError):
        _forwarded.Trust("not-an-ip")


def test_limit_request_field_size(wsgi):
    seen, app = recorder()
    s = wsgi(app, threads=1, limit_request_field_size=64)
    assert request(s.port, headers={"X-A": "v" * 50}).status == 200
    r = request(s.port, headers={"X-A": "v" * 70})
    assert r.status == 431 and b"X-A" in r.body
    with pytest.raises(ValueError):
        WSGIServer(app, limit_request_field_size=-1)


@pytest.mark.parametrize("threads", [0, 2])
def test_stuck_reports_an_application_held_past_the_timeout(wsgi, threads):
    release = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/hold":
            release.wait(30)
        start_response("200 OK", [])
        return [b"ok"]

    s = wsgi(app, threads=threads, watchdog=True)
    assert s.stuck(0.2) is None
    holders = [threading.Thread(target=request, args=(s.port,), kwargs={"path": "/hold"}, daemon=True)
               for _ in range(max(threads, 1))]
    holders[0].start()
    if threads:
        # One of two threads held: not stuck, whatever the time.
        wait_until("the first thread held past the timeout",
                   lambda: any(0 < t < time.monotonic() - 0.3 for t in s._busy))
        assert s.stuck(0.2) is None
        for t in holders[1:]:
            t.start()
    reason = wait_until("stuck", lambda: s.stuck(0.2))
    assert ("application threads" if threads else "event loop") in reason
    release.set()
    for t in holders:
        t.join(10)
    wait_until("not stuck", lambda: s.stuck(0.2) is None)
    assert WSGIServer(app, port=0).stuck(0) is None  # without the watchdog: never

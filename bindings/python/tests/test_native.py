"""The native API over real sockets: Server, Request, Response,
StreamResponse, FileResponse, errors, handler exceptions."""

from __future__ import annotations

import ctypes
import http.client
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import warpcore
from warpcore import FileResponse, Request, Response, StreamResponse, _ffi

from .conftest import PACKAGE_DIR, ROOT, keeping_handler, raw_exchange, request

TEXT = [("Content-Type", "text/plain")]


def test_hello(serve):
    s = serve(lambda req: Response(200, TEXT, b"Hello, World!"))
    r = request(s.port)
    assert (r.status, r.body) == (200, b"Hello, World!")
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["content-length"] == "13"
    assert r.headers["server"] == "warpcore"
    assert "date" in r.headers


def test_request_fields(serve):
    seen = {}

    def handler(req: Request) -> Response:
        seen.update(
            method=req.method,
            path=req.path,
            target=req.target,
            query=req.query,
            args=req.args,
            body=req.body,
            peer=req.peer,
            version=req.version,
            worker=req.worker,
            ctype=req.headers["content-type"],
            ctype_lower=req.headers.get("CONTENT-TYPE"),
            multi=req.headers.get_all("x-multi"),
            missing=req.headers.get("x-missing", "dflt"),
            has=("X-Multi" in req.headers, "nope" in req.headers),
            thread=threading.current_thread().name,
        )
        return Response(201, {"X-Reply": "yes"}, "ünï")

    s = serve(handler)
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    conn.putrequest("POST", "/a%20b/c?x=1&y=&x=2")
    conn.putheader("Content-Type", "application/x-test")
    conn.putheader("X-Multi", "one")
    conn.putheader("x-multi", "two")
    conn.putheader("Content-Length", "5")
    conn.endheaders(b"hello")
    r = conn.getresponse()
    assert r.status == 201
    assert r.getheader("x-reply") == "yes"
    assert r.read() == "ünï".encode()
    conn.close()
    assert seen["method"] == "POST"
    assert seen["path"] == "/a b/c"
    assert seen["target"] == "/a%20b/c?x=1&y=&x=2"
    assert seen["query"] == "x=1&y=&x=2"
    assert seen["args"] == {"x": ["1", "2"], "y": [""]}
    assert seen["body"] == b"hello"
    assert seen["peer"][0] == "127.0.0.1" and 0 < seen["peer"][1] < 65536
    assert seen["version"] == "HTTP/1.1"
    assert seen["worker"] == 0
    assert seen["ctype"] == seen["ctype_lower"] == "application/x-test"
    assert seen["multi"] == ["one", "two"]
    assert seen["missing"] == "dflt"
    assert seen["has"] == (True, False)
    # Handlers run on the Python threads that run the worker loops.
    assert seen["thread"].startswith("warpcore-worker-")


def test_echo_and_large_bodies(serve):
    s = serve(lambda req: Response(200, [("Content-Type", "application/octet-stream")], req.body), max_body_size=8 << 20)
    for size in (0, 1, 1000, 200_000, 3_000_000):
        body = os.urandom(size)
        r = request(s.port, "POST", "/echo", body=body)
        assert r.status == 200 and r.body == body, size
    # Zero-copy bodies (>= 64 KiB) are all released by the library.
    deadline = time.monotonic() + 5
    while _ffi.pinned_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _ffi.pinned_count() == 0


def test_http10_and_head(serve):
    s = serve(lambda req: Response(200, TEXT, b"body!"))
    out = raw_exchange(s.port, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 200") or out.startswith(b"HTTP/1.1 200")
    assert out.endswith(b"\r\n\r\nbody!")
    out = raw_exchange(s.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"Content-Length: 5" in out and out.endswith(b"\r\n\r\n")


def test_keep_alive_and_pipelining_keep_order(serve):
    s = serve(lambda req: Response(200, TEXT, req.path.encode()))
    reqs = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(10))
    out = raw_exchange(s.port, reqs + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    bodies = [part.split(b"\r\n\r\n", 1)[1][: len(b"/%d" % i)] for i, part in enumerate(out.split(b"HTTP/1.1 200 OK")[1:11])]
    assert bodies == [b"/%d" % i for i in range(10)]
    assert out.endswith(b"/last")


def test_concurrent_clients_two_workers(serve):
    s = serve(lambda req: Response(200, TEXT, req.query.encode()), workers=2)
    assert s.workers == 2

    def one(i):
        return request(s.port, "GET", f"/?{i}").body

    with ThreadPoolExecutor(16) as ex:
        assert list(ex.map(one, range(200))) == [str(i).encode() for i in range(200)]


def test_stream_response_chunked(serve):
    def gen():
        for i in range(50):
            yield b"x%d," % i
        yield "end"

    s = serve(lambda req: StreamResponse(gen(), 200, TEXT))
    r = request(s.port)
    assert r.status == 200
    assert r.headers.get("transfer-encoding") == "chunked"
    assert r.body == b"".join(b"x%d," % i for i in range(50)) + b"end"


def test_stream_response_with_length_and_list(serve):
    closed = []

    class Body:
        def __iter__(self):
            yield b"abc"
            yield b"defg"

        def close(self):
            closed.append(True)

    def handler(req):
        if req.path == "/list":
            return StreamResponse([b"a", b"b", "c"])
        return StreamResponse(Body(), 202, TEXT, content_length=7)

    s = serve(handler)
    r = request(s.port, path="/len")
    assert (r.status, r.body, r.headers["content-length"]) == (202, b"abcdefg", "7")
    # The stream thread closes the iterable after the end went out: the client
    # may have the whole answer first, so wait for it (bounded), not assume it.
    deadline = time.monotonic() + 10
    while not closed and time.monotonic() < deadline:
        time.sleep(0.001)
    assert closed == [True]
    r = request(s.port, path="/list")
    assert r.body == b"abc"


def test_stream_slow_iterable_does_not_hold_the_event_loop(serve):
    release = threading.Event()

    streaming = threading.Event()

    def slow():
        streaming.set()
        yield b"first,"
        release.wait(10)
        yield b"second"

    def handler(req):
        if req.path == "/slow":
            return StreamResponse(slow())
        return Response(200, TEXT, b"quick")

    s = serve(handler)  # one worker
    result = {}
    t = threading.Thread(target=lambda: result.update(r=request(s.port, path="/slow")))
    t.start()
    assert streaming.wait(10)
    # The slow stream waits on a stream thread; the worker still answers.
    assert request(s.port, path="/other", timeout=5).body == b"quick"
    release.set()
    t.join(10)
    assert result["r"].body == b"first,second"


def test_stream_error_midway_closes_a_declared_length(serve, caplog):
    def broken():
        yield b"12345"
        raise ValueError("generator broke")

    s = serve(lambda req: StreamResponse(broken(), 200, TEXT, content_length=10))
    with caplog.at_level(logging.ERROR, logger="warpcore"):
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            request(s.port)
    assert any("iterable raised" in r.getMessage() for r in caplog.records)


def test_stream_error_midway_cuts_a_chunked_body_short(serve, caplog):
    def broken():
        yield b"12345"
        raise ValueError("generator broke")

    s = serve(lambda req: StreamResponse(broken(), 200, TEXT) if req.path == "/broken" else Response(200, TEXT, b"ok"))
    with caplog.at_level(logging.ERROR, logger="warpcore"):
        raw = raw_exchange(s.port, b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    # What was written, then the close: no last chunk, no answer to /ok.
    assert body == b"5\r\n12345\r\n", raw
    assert any("iterable raised" in r.getMessage() for r in caplog.records)
    assert request(s.port, path="/ok").body == b"ok"


def test_file_response(serve, tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("hello file\n")
    big = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    big.write_bytes(data)

    def handler(req):
        if req.path == "/small":
            return FileResponse(small)
        if req.path == "/big":
            return FileResponse(str(big), headers=[("X-Kind", "big")])
        if req.path == "/typed":
            return FileResponse(small, content_type="application/x-mine")
        return FileResponse(tmp_path / "missing")

    s = serve(handler)
    r = request(s.port, path="/small")
    assert (r.status, r.body) == (200, b"hello file\n")
    assert r.headers["content-type"].startswith("text/plain")
    assert "last-modified" in r.headers and "etag" in r.headers
    # The library handles ranges and conditionals for a FileResponse too.
    r = request(s.port, path="/small", headers={"Range": "bytes=6-9"})
    assert (r.status, r.body) == (206, b"file")
    r = request(s.port, path="/big")
    assert r.status == 200 and r.body == data and r.headers["x-kind"] == "big"
    assert r.headers["content-length"] == str(len(data))
    assert request(s.port, path="/typed").headers["content-type"] == "application/x-mine"
    assert request(s.port, path="/missing").status == 404


def test_static_mounts(serve, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("<p>index</p>")
    (tmp_path / "a.css").write_text("body{}")
    secret = tmp_path.parent / "secret.txt"
    secret.write_text("no")
    called = []

    def handler(req):
        called.append(req.path)
        return Response(200, TEXT, b"app")

    s = serve(handler, static={"/static": tmp_path})
    r = request(s.port, path="/static/a.css")
    assert (r.status, r.body) == (200, b"body{}")
    assert r.headers["content-type"].startswith("text/css")
    assert "etag" in r.headers and "last-modified" in r.headers
    # Conditional and range requests, by the library.
    assert request(s.port, path="/static/a.css", headers={"If-None-Match": r.headers["etag"]}).status == 304
    r = request(s.port, path="/static/a.css", headers={"Range": "bytes=0-3"})
    assert (r.status, r.body) == (206, b"body")
    assert request(s.port, path="/static/sub/").body == b"<p>index</p>"
    assert request(s.port, path="/static/sub").status == 301
    assert request(s.port, path="/static/nope").status == 404
    assert raw_exchange(s.port, b"GET /static/../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").split(b" ")[1] in (
        b"404",
        b"400",
    )
    assert request(s.port, "POST", "/static/a.css", body=b"").status == 405
    assert called == []  # all of that without the handler
    assert request(s.port, path="/staticfoo").body == b"app"
    assert request(s.port, path="/other").body == b"app"
    st = s.file_cache_stats()
    assert st["info_hits"] + st["info_misses"] > 0


def test_handler_exception_is_a_500_and_logged(serve, caplog):
    def handler(req):
        if req.path == "/boom":
            raise RuntimeError("kaboom")
        if req.path == "/none":
            return None
        if req.path == "/badstatus":
            return Response(99, TEXT, b"")
        if req.path == "/hugestatus":
            return Response(70000, TEXT, b"")
        if req.path == "/badheader":
            return Response(200, [("Bad Name", "x")], b"")
        return Response(200, TEXT, b"fine")

    s = serve(handler)
    with caplog.at_level(logging.ERROR, logger="warpcore"):
        for path in ("/boom", "/none", "/badstatus", "/hugestatus", "/badheader"):
            r = request(s.port, path=path)
            assert r.status == 500, path
            assert r.body == b"Internal Server Error\n"
        assert request(s.port).body == b"fine"  # the server goes on
    messages = [r.getMessage() for r in caplog.records]
    assert any("GET /boom" in m for m in messages)
    boom = next(r for r in caplog.records if "GET /boom" in r.getMessage())
    assert boom.exc_info and "kaboom" in str(boom.exc_info[1])
    bad = next(r for r in caplog.records if "/badstatus" in r.getMessage())
    assert isinstance(bad.exc_info[1], warpcore.WarpcoreError) and bad.exc_info[1].name == "INVALID_STATUS"


def test_kept_request_stays_readable(serve):
    kept = []

    def handler(req):
        kept.append(req)
        return Response(200, TEXT, b"ok")

    s = serve(handler)
    request(s.port, "POST", "/keep?q=1", body=b"payload", headers={"X-A": "b"})
    r = kept[0]
    # Read after the library took the memory back: copied when the handler returned.
    assert (r.method, r.path, r.query, r.body, r.headers["x-a"]) == ("POST", "/keep", "q=1", b"payload", "b")


def test_request_not_kept_is_not_copied(serve, monkeypatch):
    detached = []
    original = Request._detach
    monkeypatch.setattr(Request, "_detach", lambda self: (detached.append(1), original(self)))
    kept = []
    s = serve(keeping_handler(kept))
    request(s.port)
    assert detached == []  # nothing kept it: no copy was needed
    request(s.port, path="/keep")
    assert detached == [1]


def test_errors_carry_the_library_message(serve):
    s = serve(lambda req: Response(200, TEXT, b""))
    with pytest.raises(warpcore.WarpcoreError) as e:
        warpcore.Server(lambda r: None, port=s.port).start()
    assert e.value.name == "ADDRESS_IN_USE"
    assert str(s.port) in e.value.message
    with pytest.raises(warpcore.WarpcoreError) as e:
        warpcore.Server(lambda r: None, host="no such host!", port=0).start()
    assert e.value.name == "INVALID_ADDRESS" and "no such host!" in str(e.value)
    with pytest.raises(warpcore.WarpcoreError) as e:
        warpcore.Server(lambda r: None, port=0, max_header_count=0).start()
    assert e.value.name == "INVALID_ARGUMENT" and e.value.message
    with pytest.raises(warpcore.WarpcoreError) as e:
        warpcore.Server(lambda r: None, port=0, coalesce_wait=0.001001).start()
    assert e.value.name == "INVALID_ARGUMENT" and "coalesce_wait" in e.value.message
    for out_of_range in (-0.000001, -1e-9, 2**32 / 1e6, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="coalesce_wait"):
            warpcore.Server(lambda r: None, port=0, coalesce_wait=out_of_range).start()
    # Integers that ctypes would wrap are refused by name (2**64 + 100 was a body limit of 100).
    for key, too_big in (("max_body_size", 2**64 + 100), ("max_header_count", 2**32 + 50), ("max_connections", 2**32 + 100)):
        for bad in (-1, too_big):
            with pytest.raises(ValueError, match=key):
                warpcore.Server(lambda r: None, port=0, **{key: bad}).start()
    with pytest.raises(ValueError, match="workers"):
        warpcore.Server(lambda r: None, port=0, workers=2**32 + 1).start()
    # Durations that ctypes would wrap (or int() refuse namelessly) are refused by name.
    for bad in (-1, float("inf"), float("nan"), 2.0**64 / 1000):
        with pytest.raises(ValueError, match=r"timeouts\['idle'\]"):
            warpcore.Server(lambda r: None, port=0, timeouts={"idle": bad}).start()
        with pytest.raises(ValueError, match=r"file_cache\[1\]"):
            warpcore.Server(lambda r: None, port=0, file_cache=(1, bad)).start()
    for at_the_ends in (0, 0.001):
        warpcore.Server(lambda r: None, port=0, coalesce_wait=at_the_ends).start().shutdown(1.0)


def test_backlog_is_the_listen_queue_of_the_sockets_it_binds():
    # Out of range: refused by name, by Python (ctypes would wrap) or the library.
    for bad in (-1, 2**32):
        with pytest.raises(ValueError, match="backlog"):
            warpcore.Server(lambda r: None, port=0, backlog=bad).start()
    for bad in (0, 65536):
        with pytest.raises(warpcore.WarpcoreError) as e:
            warpcore.Server(lambda r: None, port=0, backlog=bad).start()
        assert e.value.name == "INVALID_ARGUMENT" and "backlog" in e.value.message
    # The queue the kernel gave the server's socket: TCP_INFO on a listening
    # socket reports its backlog (tcpi_sacked, at offset 28).
    def queue_of(port):
        for name in os.listdir("/proc/self/fd"):
            try:
                fd = os.dup(int(name))
            except OSError:
                continue
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                os.close(fd)  # not a socket
                continue
            with sock:
                try:
                    if sock.family != socket.AF_INET or sock.getsockname()[1] != port:
                        continue
                    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                        continue
                    return int.from_bytes(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[28:32], "little")
                except OSError:
                    continue
        return None

    with open("/proc/sys/net/core/somaxconn") as f:
        cap = int(f.read())
    with warpcore.Server(lambda r: Response(200, TEXT, b"ok"), port=0) as s:
        assert queue_of(s.port) == min(1024, cap)
    with warpcore.Server(lambda r: Response(200, TEXT, b"ok"), port=0, backlog=7) as s:
        assert queue_of(s.port) == min(7, cap)
        assert request(s.port).status == 200


def test_limits_and_server_name(serve):
    s = serve(lambda req: Response(200, TEXT, b"ok"), server_name="unit-test", max_body_size=10, timeouts={"idle": 2})
    assert request(s.port).headers["server"] == "unit-test"
    assert request(s.port, "POST", "/", body=b"x" * 11).status == 413


def test_context_manager_and_lifecycle():
    with warpcore.Server(lambda r: Response(200, TEXT, b"cm"), port=0) as s:
        port = s.port
        assert s.running and s.address == f"127.0.0.1:{port}"
        assert request(port).body == b"cm"
    assert not s.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    s.shutdown()  # idempotent
    with pytest.raises(RuntimeError):
        s.start()


def test_reload_swaps_handler_mounts_and_settings(serve, tmp_path):
    (tmp_path / "f.txt").write_text("file")
    s = serve(lambda req: Response(200, TEXT, b"one"), server_name="before", max_body_size=100)
    assert request(s.port).body == b"one"
    assert request(s.port).headers["server"] == "before"
    # A keep-alive connection opened before the reload stays usable.
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"one"
    s.reload(handler=lambda req: Response(200, TEXT, b"two"), server_name="after", max_body_size=10)
    conn.request("GET", "/")
    r = conn.getresponse()
    assert (r.read(), r.getheader("server")) == (b"two", "after")
    conn.close()
    # Mounts change too; a missing directory is refused and changes nothing.
    s.reload(static={"/s": tmp_path})
    assert request(s.port, path="/s/f.txt").body == b"file"
    with pytest.raises(warpcore.WarpcoreError, match="nope"):
        s.reload(static={"/s": tmp_path / "nope"})
    assert request(s.port, path="/s/f.txt").body == b"file"
    s.reload(static={})
    assert request(s.port, path="/s/f.txt").body == b"two"
    assert request(s.port, "POST", "/", body=b"x" * 50).status == 413
    # The nap is in seconds, as the other durations are; 1.5 ms is refused by the library.
    s.reload(coalesce_wait=0.0002)
    with pytest.raises(warpcore.WarpcoreError, match="coalesce_wait"):
        s.reload(coalesce_wait=0.0015)
    assert request(s.port).body == b"two"
    with pytest.raises(TypeError, match="share_port"):
        s.reload(share_port=True)
    with pytest.raises(warpcore.WarpcoreError) as e:
        s.reload(max_header_count=0)  # refused by the library: nothing changes
    assert e.value.name == "INVALID_ARGUMENT"
    assert request(s.port).headers["server"] == "after"


def test_reload_from_a_handler(serve):
    holder = {}

    def handler(req):
        if req.path == "/reload":
            holder["s"].reload(server_name="reloaded-inside")
        return Response(200, TEXT, b"ok")

    s = serve(handler, workers=2)
    holder["s"] = s
    assert request(s.port, path="/reload").status == 200
    assert request(s.port).headers["server"] == "reloaded-inside"


def test_stats_and_shutdown_report():
    s = warpcore.Server(lambda req: Response(404 if req.path == "/x" else 200, TEXT, b"abc"), port=0).start()
    for path in ("/", "/", "/x"):
        request(s.port, path=path)
    st = s.stats()
    assert st["requests"] == 3 and st["responses_2xx"] == 2 and st["responses_4xx"] == 1
    assert st["connections_accepted"] == 3 and st["bytes_out"] > 0 and st["bytes_in"] > 0
    # Three requests on three connections are far too few to nap for.
    assert st["coalesce_naps"] == 0
    # A nan grace is refused before anything changes; inf waits as long as it may.
    with pytest.raises(ValueError, match="nan"):
        s.shutdown(float("nan"))
    assert request(s.port).status == 200
    report = s.shutdown(float("inf"))
    assert report == s.shutdown_report == {"requests_finished": 0, "connections_cut": 0}
    with pytest.raises(RuntimeError):
        s.stats()


def test_access_log_callback_file_and_error_log(serve, tmp_path, caplog):
    lines = []
    s = serve(lambda req: Response(200, TEXT, b"ok"), access_log=lines.append)
    request(s.port, path="/logged?x=1")
    path = tmp_path / "access.log"
    s.reload(access_log=str(path))
    request(s.port, path="/to-file")
    s.shutdown(1.0)  # flushes the logs
    text = b"".join(lines).decode()
    assert '"GET /logged?x=1 HTTP/1.1" 200 2' in text
    assert '"GET /to-file HTTP/1.1" 200' in path.read_text()
    with caplog.at_level(logging.INFO, logger="warpcore.access"):
        s2 = warpcore.Server(lambda req: Response(200, TEXT, b"ok"), port=0, access_log=True).start()
        request(s2.port, path="/via-logging")
        s2.shutdown(1.0)
    assert any("/via-logging" in r.getMessage() for r in caplog.records if r.name == "warpcore.access")


def test_shutdown_from_a_handler_is_refused(serve):
    holder = {}

    def handler(req):
        try:
            holder["s"].shutdown()
        except RuntimeError as exc:
            return Response(200, TEXT, str(exc))
        return Response(200, TEXT, b"no error?")

    s = serve(handler)
    holder["s"] = s
    assert b"from a handler" in request(s.port).body


def test_library_lookup_error_names_the_paths(tmp_path):
    env = dict(os.environ, WARPCORE_LIBRARY=str(tmp_path / "nope.so"))
    p = subprocess.run(
        [sys.executable, "-c", "import warpcore"], env=env, cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=60
    )
    assert p.returncode != 0
    assert "LibraryNotFoundError" in p.stderr and str(tmp_path / "nope.so") in p.stderr

    # A copy of the package outside any checkout with no library: every place is named.
    import shutil

    pkg = tmp_path / "site" / "warpcore"
    shutil.copytree(PACKAGE_DIR / "warpcore", pkg, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    env = {k: v for k, v in os.environ.items() if k not in ("WARPCORE_LIBRARY", "LD_LIBRARY_PATH", "PYTHONPATH")}
    p = subprocess.run(
        [sys.executable, "-c", "import warpcore"], env=env, cwd=tmp_path / "site", capture_output=True, text=True, timeout=60
    )
    assert p.returncode != 0
    assert str(pkg / "libwarpcore.so") in p.stderr
    assert "target/release/libwarpcore.so" in p.stderr
    assert "system loader" in p.stderr

    # WARPCORE_LIBRARY wins when it names a real library.
    env["WARPCORE_LIBRARY"] = str(ROOT / "target" / "release" / "libwarpcore.so")
    p = subprocess.run(
        [sys.executable, "-c", "import warpcore; print(warpcore.LIBRARY_PATH)"],
        env=env,
        cwd=tmp_path / "site",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == env["WARPCORE_LIBRARY"]


def test_version():
    assert warpcore.version().count(".") == 2
    assert warpcore.result_str(9)


def test_method_and_path_stay_right_across_repeated_and_many_request_lines(serve):
    # Method and path come from a cache keyed by the request line as received:
    # repeats, near-misses, percent-decoding and more distinct lines than the
    # cache holds must all give each request its own method and path.
    from warpcore import _request

    def handler(req: Request) -> Response:
        return Response(200, TEXT, f"{req.method} {req.path} {req.query}".encode("utf-8", "surrogateescape"))

    s = serve(handler)
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        cases = [("GET", "/a%20b", "GET /a b "), ("GET", "/a%20b", "GET /a b "), ("PUT", "/a%20b", "PUT /a b "),
                 ("GET", "/a%20b?x=1", "GET /a b x=1"), ("GET", "/a b".replace(" ", "%2F"), "GET /a/b "),
                 ("PURGE", "/", "PURGE / ")]
        cases += [("GET", f"/p{i}", f"GET /p{i} ") for i in range(_request._LINES_MAX + 50)]
        cases += [("GET", "/x" * 200, "GET " + "/x" * 200 + " ")]  # longer than the cached lines
        for method, target, want in cases:
            conn.request(method, target)
            r = conn.getresponse()
            assert (r.status, r.read().decode()) == (200, want)
    finally:
        conn.close()
    assert len(_request._LINES) <= _request._LINES_MAX


def test_a_response_answered_again_and_again_is_sent_prepared_and_follows_changes(serve):
    # A Response returned a second time is prepared once in the library and
    # returned from the callback (warpcore_config_set_answering_handler): the
    # answers must stay right, for GET and HEAD, after the Response changes
    # (prepared anew) and for a response the library cannot prepare.
    from warpcore import _response

    hello = Response(200, [("Content-Type", "text/plain"), ("X-Kind", "constant")], b"Hello again")
    odd = Response(200, [("X-Kind", "odd")], b"x" * (_response.ZERO_COPY_MIN + 10))

    def handler(req: Request) -> Response:
        return odd if req.path == "/odd" else hello

    s = serve(handler)
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        for _ in range(5):
            conn.request("GET", "/")
            r = conn.getresponse()
            assert (r.status, r.getheader("X-Kind"), r.read()) == (200, "constant", b"Hello again")
        assert hello._prepared > _response._PREPARED_MIN  # the prepared path was taken
        conn.request("HEAD", "/")
        r = conn.getresponse()
        assert (r.status, r.getheader("Content-Length"), r.read()) == (200, "11", b"")
        hello.body = b"Changed"
        hello.status = 203
        for _ in range(3):
            conn.request("GET", "/")
            r = conn.getresponse()
            assert (r.status, r.read()) == (203, b"Changed")
        assert hello._retired  # the first prepared response waits for the object to go
        for _ in range(3):
            conn.request("GET", "/odd")
            r = conn.getresponse()
            assert (r.status, r.getheader("X-Kind"), len(r.read())) == (200, "odd", _response.ZERO_COPY_MIN + 10)
    finally:
        conn.close()


def test_a_prepared_answer_follows_the_date_and_a_reloaded_server_name(serve):
    # A worker keeps the prepared answers it sends most complete, with its
    # Date and Server lines in place: a new second and a reload's server name
    # must show in the very next answer on the same connection.
    from warpcore import _response

    hello = Response(200, TEXT, b"cached")
    s = serve(lambda req: hello, server_name="first-name")
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:

        def get() -> http.client.HTTPResponse:
            conn.request("GET", "/")
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b"cached")
            return r

        for _ in range(4):
            first = get()
        assert hello._prepared > _response._PREPARED_MIN  # the prepared path was taken
        date = first.getheader("Date")
        assert first.getheader("Server") == "first-name"
        deadline = time.monotonic() + 5
        while get().getheader("Date") == date:
            assert time.monotonic() < deadline, "the Date line never moved on"
            time.sleep(0.2)
        s.reload(server_name="second-name")
        assert get().getheader("Server") == "second-name"
        s.reload(server_name="")
        assert get().getheader("Server") is None
    finally:
        conn.close()


def test_static_dotfiles_are_404_unless_allowed(serve, tmp_path):
    for rel, text in [
        ("index.html", "home"),
        (".env", "SECRET=1"),
        (".git/config", "[core]"),
        ("sub/.hidden", "hidden"),
        (".well-known/x", "well-known"),
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    dotfiles = ["/.env", "/.git/config", "/sub/.hidden", "/%2eenv", "/%2Egit/config", "/sub/%2ehidden"]
    s = serve(lambda req: Response(200, TEXT, b"app"), static={"/": tmp_path})
    for path in dotfiles:
        assert request(s.port, path=path).status == 404, path
    assert request(s.port, path="/.well-known/x").body == b"well-known"
    assert request(s.port, path="/").body == b"home"
    # Allowed by a reload, then refused again.
    s.reload(static_dotfiles=True)
    assert [request(s.port, path=p).body for p in dotfiles] == [b"SECRET=1", b"[core]", b"hidden"] * 2
    assert request(s.port, path="/.well-known/x").body == b"well-known"
    with pytest.raises(TypeError, match="static_dotfiles"):
        s.reload(static_dotfiles="no")
    assert request(s.port, path="/.env").body == b"SECRET=1", "a refused reload changes nothing"
    s.reload(static_dotfiles=False)
    assert request(s.port, path="/.env").status == 404
    with pytest.raises(TypeError, match="static_dotfiles"):
        warpcore.Server(lambda req: None, static_dotfiles=1)


def test_static_dotfiles_allowed_at_start(serve, tmp_path):
    (tmp_path / ".env").write_text("SECRET=1")
    s = serve(lambda req: Response(200, TEXT, b"app"), static={"/s": tmp_path}, static_dotfiles=True)
    assert request(s.port, path="/s/.env").body == b"SECRET=1"


def test_sized_structs_carry_their_size():
    # Caller-allocated structs start with size_t size, set on creation; the
    # library refuses a size below the struct's first version and writes it
    # back as the bytes it filled.
    for struct in (_ffi.warpcore_stats, _ffi.warpcore_file_cache_stats, _ffi.warpcore_shutdown_report):
        assert struct._fields_[0] == ("size", ctypes.c_size_t)
        assert struct().size == ctypes.sizeof(struct)
    s = warpcore.Server(lambda req: Response(200, TEXT, b"abc"), port=0).start()
    try:
        out = _ffi.warpcore_stats()
        assert _ffi.F.server_stats(s._ptr, ctypes.byref(out)) == 0
        assert out.size == ctypes.sizeof(out)
        out.size = 8
        assert _ffi.F.server_stats(s._ptr, ctypes.byref(out)) == 1  # INVALID_ARGUMENT
    finally:
        s.shutdown(1)

"""Shutdown with requests in flight; the demo and the WSGI command line under
SIGTERM and SIGINT; several processes on one port."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import warpcore
from warpcore import Response, StreamResponse
from warpcore.wsgi import WSGIServer

from .conftest import PACKAGE_DIR, ROOT, child_env, raw_exchange, request, wait_for_line
from .supervise import children, wait_until

TEXT = [("Content-Type", "text/plain")]


def _in_background(fn):
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: B902
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_native_shutdown_lets_a_running_handler_finish():
    entered = threading.Event()

    def handler(req):
        entered.set()
        time.sleep(0.5)
        return Response(200, TEXT, b"finished")

    s = warpcore.Server(handler, port=0).start()
    t, out = _in_background(lambda: request(s.port, timeout=10))
    assert entered.wait(5)
    t0 = time.monotonic()
    s.shutdown(grace=5.0)
    t.join(10)
    assert out["value"].status == 200 and out["value"].body == b"finished"
    # (No `Connection: close` here: the worker only learns of the shutdown when
    # the handler it is running returns, after the response head was decided.)
    assert time.monotonic() - t0 < 5


def test_a_handler_of_one_server_shuts_another_down():
    # The library never waits for workers on a worker thread; the binding runs
    # such a shutdown on a thread of its own and returns its report, and the
    # other server is freed.
    b = warpcore.Server(lambda req: Response(200, TEXT, b"B"), port=0).start()
    seen = {}

    def handler(req):
        try:
            seen["report"] = b.shutdown(1.0)
        except BaseException as exc:  # noqa: B902
            seen["error"] = exc
        return Response(200, TEXT, b"A")

    a = warpcore.Server(handler, port=0).start()
    try:
        assert request(a.port, timeout=10).body == b"A"
        assert "error" not in seen, seen
        assert seen["report"] == {"requests_finished": 0, "connections_cut": 0}
        assert b.wait(5) and not b.running and b._ptr is None
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", b.port), timeout=2).close()
    finally:
        a.shutdown(1.0)
        b.shutdown(0.1)


def test_native_shutdown_lets_a_stream_finish_within_grace():
    streaming = threading.Event()

    def slow():
        streaming.set()
        for i in range(5):
            time.sleep(0.1)
            yield b"part%d;" % i

    s = warpcore.Server(lambda req: StreamResponse(slow(), 200, TEXT), port=0).start()
    t, out = _in_background(lambda: request(s.port, timeout=10))
    # Shut down once the stream runs (a fixed sleep lost the race on a busy
    # machine: the request was refused, not streamed).
    assert streaming.wait(10)
    s.shutdown(grace=5.0)
    t.join(10)
    assert out["value"].body == b"".join(b"part%d;" % i for i in range(5))


def test_shutdown_deadline_cuts_what_is_too_slow():
    release = threading.Event()
    entered = threading.Event()

    def app(environ, start_response):
        entered.set()
        release.wait(10)
        start_response("200 OK", [])
        return [b"too late"]

    s = WSGIServer(app, port=0, threads=2).start()
    t, out = _in_background(lambda: request(s.port, timeout=10))
    assert entered.wait(10)
    t0 = time.monotonic()
    s.shutdown(grace=0.5)
    took = time.monotonic() - t0
    release.set()
    t.join(10)
    assert took < 6.0  # 0.5 s grace; deadlines are checked once a second
    # The connection was closed at the deadline (or a 500 was sent): never a hang.
    if "value" in out:
        assert out["value"].status != 200
    else:
        assert isinstance(out["error"], (ConnectionError, http.client.HTTPException, OSError))


def test_wsgi_shutdown_with_many_requests_in_flight():
    started = threading.Semaphore(0)

    def app(environ, start_response):
        started.release()
        time.sleep(0.3)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["QUERY_STRING"].encode()]

    s = WSGIServer(app, port=0, threads=8).start()
    threads = [_in_background(lambda i=i: request(s.port, path=f"/?{i}", timeout=10)) for i in range(8)]
    for _ in range(8):
        assert started.acquire(timeout=5)
    s.shutdown(grace=5.0)
    for i, (t, out) in enumerate(threads):
        t.join(10)
        assert out["value"].body == str(i).encode()
    # Nothing listens any more.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo(tmp_path, sig):
    (tmp_path / "f.txt").write_text("static!")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "python" / "demo.py"), "--host", "127.0.0.1", "--port", "0",
         "--workers", "1", "--static", f"/files={tmp_path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # No PYTHONPATH: the demo must find the checkout's package and library itself.
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WARPCORE_LIBRARY")},
        cwd=tmp_path,
    )
    try:
        line = wait_for_line(proc, "listening on ")
        port = int(line.rsplit(":", 1)[1])
        assert line == f"listening on 127.0.0.1:{port}"
        r = request(port)
        assert (r.status, r.body, r.headers["content-type"]) == (200, b"Hello, World!", "text/plain")
        assert request(port, "POST", "/echo", body=b"echo me").body == b"echo me"
        assert request(port, "GET", "/echo").status == 405
        assert request(port, path="/nope").status == 404
        assert request(port, path="/files/f.txt").body == b"static!"
        # A request in flight when the signal comes is still answered.
        t, out = _in_background(lambda: request(port, "POST", "/echo", body=b"x" * 100_000))
        proc.send_signal(sig)
        t.join(10)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_demo_rejects_bad_flags():
    p = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python" / "demo.py"), "--static", "nodir"],
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 2 and b"PREFIX=DIR" in p.stderr


APP = '''
import os, time
def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        open("slow-started", "w").close()
        time.sleep(0.5)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
'''


@pytest.mark.parametrize("processes", [1, 2])
def test_wsgi_command_line(tmp_path, processes):
    (tmp_path / "myapp.py").write_text(APP)
    proc = subprocess.Popen(
        [sys.executable, "-m", "warpcore.wsgi", "myapp:app", "--bind", "127.0.0.1:0", "--threads", "4",
         "--processes", str(processes)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        cwd=tmp_path,
    )
    try:
        line = wait_for_line(proc, "listening on ")
        port = int(line.rsplit(":", 1)[1])
        # A master and its worker processes, which answer.
        workers = wait_until("the workers", lambda: (lambda p: p if len(p) == processes else None)(children(proc.pid)))
        assert proc.pid not in workers
        for _ in range(10):
            r = request(port)
            assert r.status == 200 and int(r.body) in workers
        # SIGTERM: graceful, the slow request in flight completes.
        t, out = _in_background(lambda: request(port, path="/slow"))
        wait_until("the slow request in a worker", lambda: (tmp_path / "slow-started").exists())
        proc.send_signal(signal.SIGTERM)
        t.join(15)
        assert out.get("value") is not None and out["value"].status == 200, out
        assert proc.wait(30) == 0
        for pid in workers:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # the server processes are gone (reaped) too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_wsgi_command_line_bad_app(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "warpcore.wsgi", "nosuchmodule:app", "--bind", "127.0.0.1:0"],
        capture_output=True,
        env=child_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert p.returncode == 1 and b"cannot load nosuchmodule:app" in p.stderr

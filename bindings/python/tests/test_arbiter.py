"""The master process of ``python -m warpcore`` (warpcore._arbiter): its
signals and its supervision of the worker processes, over real processes
and sockets. Workers are counted by their PIDs (the master's children)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import List

import pytest

from .supervise import Master, alive, get, in_background, wait_until

pytestmark = pytest.mark.timeout(180)


def pid_of(address: str) -> int:
    r = get(address, "/pid")
    assert r.status == 200, r
    return int(r.body)


class Load:
    """A client thread issuing requests back to back, each on a new
    connection, counting answers and failures."""

    def __init__(self, address: str, path: str = "/version") -> None:
        self.address = address
        self.path = path
        self.ok = 0
        self.bodies: List[bytes] = []
        self.failures: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                r = get(self.address, self.path, timeout=20)
            except Exception as exc:  # what counts as a failed request
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if r.status != 200:
                self.failures.append(f"status {r.status}: {r.body[:100]!r}")
            else:
                self.ok += 1
                self.bodies.append(r.body)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()


def test_hup_under_load_replaces_every_worker_with_no_failed_request(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "2", "--threads", "2"]) as m:
        address = m.address()
        old = m.wait_workers("two workers", lambda p: len(p) == 2)
        with Load(address) as load:
            wait_until("requests under load", lambda: load.ok >= 20)
            # The application changes on disk; HUP loads it in new workers.
            (tmp_path / "APP.py").write_text((tmp_path / "APP.py").read_text().replace('b"v1"', 'b"v2"'))
            m.signal(signal.SIGHUP)
            new = m.wait_workers("two new workers, the old ones gone", lambda p: len(p) == 2 and not p & old)
            for pid in old:
                wait_until(f"old worker {pid} to exit", lambda: not alive(pid))
            seen = load.ok
            wait_until("requests to the new workers", lambda: load.ok >= seen + 20)
        assert load.failures == [], load.failures[:5]
        # The old application until the new workers were ready, then only the new.
        assert load.bodies[0] == b"v1" and set(load.bodies) == {b"v1", b"v2"}
        assert set(load.bodies[seen:]) == {b"v2"}
        assert m.workers() == new
        assert "SIGHUP" in m.err()


def test_hup_with_a_broken_application_keeps_the_old_workers(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "1", "--threads", "1"]) as m:
        address = m.address()
        (old,) = m.wait_workers("a worker", lambda p: len(p) == 1)
        (tmp_path / "APP.py").write_text("this is not python\n")
        m.signal(signal.SIGHUP)
        m.wait_log("could not boot")
        # The old worker still serves; the master is up.
        assert pid_of(address) == old and m.proc.poll() is None
        assert alive(old)


def test_usr1_reopens_a_rotated_access_log_and_error_log(tmp_path):
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "2", "--access-logfile", str(access),
                           "--error-logfile", str(errors)]) as m:
        address = m.address()
        for _ in range(4):
            get(address, "/first")
        wait_until("access lines", lambda: access.exists() and access.read_text().count("/first") == 4)
        os.rename(access, tmp_path / "access.log.1")
        os.rename(errors, tmp_path / "error.log.1")
        m.signal(signal.SIGUSR1)
        # Every worker reopens: requests until each has written to the new file.
        wait_until("the error log reopened", lambda: errors.exists() and "SIGUSR1" in errors.read_text())

        def every_worker_writes_the_new_file():
            get(address, "/second")
            return access.exists() and access.read_text().count("/second") >= 8

        wait_until("access lines in the new file", every_worker_writes_the_new_file)
        old = (tmp_path / "access.log.1").read_text()
        assert old.count("/first") == 4 and "/second" not in old
        assert "/first" not in access.read_text()
        m.signal(signal.SIGTTIN)  # the master's own lines go to the new error log too
        wait_until("the master writing the new error log", lambda: "SIGTTIN" in errors.read_text())


def test_ttin_and_ttou_add_and_remove_workers(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "2"]) as m:
        address = m.address()
        two = m.wait_workers("two workers", lambda p: len(p) == 2)
        m.signal(signal.SIGTTIN)
        three = m.wait_workers("three workers", lambda p: len(p) == 3 and two < p)
        m.signal(signal.SIGTTIN)
        four = m.wait_workers("four workers", lambda p: len(p) == 4 and three < p)
        # (Signals of one kind sent faster than they are handled count once,
        # as Unix signals do: one at a time.)
        m.signal(signal.SIGTTOU)
        m.wait_log("SIGTTOU: 3 worker")
        m.signal(signal.SIGTTOU)
        after = m.wait_workers("two workers again", lambda p: len(p) == 2)
        assert after == four - two, (two, four, after)  # the oldest went first
        assert get(address).status == 200
        # Never fewer than one.
        m.signal(signal.SIGTTOU)
        m.wait_workers("one worker", lambda p: len(p) == 1)
        m.signal(signal.SIGTTOU)
        m.wait_log("SIGTTOU: 1 worker")
        assert len(m.workers()) == 1


def test_a_killed_master_takes_its_workers_with_it(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "3"]) as m:
        m.address()
        workers = m.wait_workers("three workers", lambda p: len(p) == 3)
        m.signal(signal.SIGKILL)
        m.wait(10)
        for pid in workers:
            wait_until(f"worker {pid} to die with the master", lambda: not alive(pid), timeout=20)


def test_a_killed_master_takes_a_worker_stuck_in_the_application(tmp_path):
    """With --threads 0 the application runs on the event loop, and a call
    that does not return keeps the worker's drain from ending; the master
    would kill the worker after --graceful-timeout, but when the master is
    the one killed, the worker must still end by then (plus a margin)."""
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "1", "--threads", "0", "--timeout", "0",
                           "--graceful-timeout", "1"]) as m:
        address = m.address()
        (worker,) = m.wait_workers("a worker", lambda p: len(p) == 1)
        t, out = in_background(lambda: get(address, "/sleep?600", timeout=60))
        wait_until("the request in the application", lambda: sleeping(tmp_path))
        m.signal(signal.SIGKILL)
        m.wait(10)
        wait_until(f"worker {worker} to end without its master", lambda: not alive(worker), timeout=30)
        t.join(30)
        assert len(out) == 1 and isinstance(out[0], Exception), out  # cut


def test_a_hung_worker_is_killed_and_replaced_after_the_timeout(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "1", "--threads", "2", "--timeout", "2",
                           "--graceful-timeout", "1"]) as m:
        address = m.address()
        (hung,) = m.wait_workers("a worker", lambda p: len(p) == 1)
        # One of two application threads stuck: the worker still serves.
        first, results = in_background(lambda: get(address, "/hang", timeout=30))
        wait_until("the worker to report progress with a thread left", lambda: pid_of(address) == hung)
        started = time.monotonic()
        second, more = in_background(lambda: get(address, "/hang", timeout=30))
        (new,) = m.wait_workers("a new worker", lambda p: len(p) == 1 and hung not in p, timeout=30)
        waited = time.monotonic() - started
        assert 2.0 <= waited < 20, waited
        assert not alive(hung)
        assert pid_of(address) == new
        err = m.wait_log("timed out")
        assert "no longer reporting alive" in err and "threading.py" in err  # the stuck stacks
        first.join(10)
        second.join(10)
        results += more
        assert len(results) == 2 and all(isinstance(r, Exception) for r in results), results


SLOW_APP = r'''
import os, time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/pid":
        start_response("200 OK", [])
        return [str(os.getpid()).encode()]
    if environ["PATH_INFO"] == "/upload":
        n = 0
        while True:
            data = environ["wsgi.input"].read(65536)
            if not data:
                break
            n += len(data)
        start_response("200 OK", [])
        return [str(n).encode()]

    def chunks():
        for i in range(12):
            time.sleep(0.5)
            yield b"%d\n" % i

    start_response("200 OK", [("Content-Type", "text/plain")])
    return chunks()
'''


def test_the_timeout_spares_a_worker_whose_long_requests_progress(tmp_path):
    """--timeout is for a worker whose application makes no progress: a
    response streamed for longer (a chunk every 0.5 s for 6 s) and a body
    uploaded slowly, on every application thread at once, keep it alive."""
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "1", "--threads", "2", "--timeout", "2"],
                app=SLOW_APP) as m:
        address = m.address()
        (worker,) = m.wait_workers("a worker", lambda p: len(p) == 1)
        host, _, port = address.rpartition(":")
        size = 3 << 20

        def upload() -> bytes:
            with socket.create_connection((host, int(port)), timeout=30) as s:
                head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                s.sendall(head % size)
                for _ in range(24):
                    s.sendall(b"x" * (size // 24))
                    time.sleep(0.25)
                data = b""
                while True:
                    got = s.recv(65536)
                    if not got:
                        return data
                    data += got

        streams = [in_background(lambda: get(address, "/stream", timeout=30)) for _ in range(2)]
        for t, _ in streams:
            t.join(30)
        whole = b"".join(b"%d\n" % i for i in range(12))
        assert [getattr(out[0], "body", out[0]) for _, out in streams] == [whole, whole], streams
        uploads = [in_background(upload) for _ in range(2)]
        for t, _ in uploads:
            t.join(30)
        assert [out[0].endswith(b"\r\n\r\n%d" % size) for _, out in uploads] == [True, True], uploads
        assert m.workers() == {worker} and "timed out" not in m.err()


def test_max_requests_recycles_a_worker_gracefully(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "1", "--max-requests", "5",
                           "--max-requests-jitter", "3"]) as m:
        address = m.address()
        (first,) = m.wait_workers("a worker", lambda p: len(p) == 1)
        pids: List[int] = []

        def recycled():
            pids.append(pid_of(address))  # never fails: the replacement is ready first
            return pids[-1] != first

        wait_until("a replacement worker", recycled)
        assert pids.count(first) >= 5
        wait_until("the first worker to exit", lambda: not alive(first))
        assert "--max-requests" in m.err()


def sleeping(tmp_path) -> bool:
    return any(tmp_path.glob("sleeping-*"))


def test_term_drains_and_int_stops_at_once(tmp_path):
    pidfile = tmp_path / "warpcore.pid"
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "2", "--pid", str(pidfile),
                           "--graceful-timeout", "20"]) as m:
        address = m.address()
        assert pidfile.read_text().strip() == str(m.pid)
        workers = m.wait_workers("two workers", lambda p: len(p) == 2)
        t, out = in_background(lambda: get(address, "/sleep?1.5"))
        wait_until("the slow request in a worker", lambda: sleeping(tmp_path))
        m.signal(signal.SIGTERM)
        assert m.wait(30) == 0
        t.join(10)
        assert len(out) == 1 and getattr(out[0], "status", None) == 200, out
        assert not pidfile.exists()
        for pid in workers:
            assert not alive(pid)
    for marker in tmp_path.glob("sleeping-*"):
        marker.unlink()
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "1", "--graceful-timeout", "30"]) as m:
        address = m.address()
        t, out = in_background(lambda: get(address, "/sleep?20", timeout=30))
        wait_until("the slow request in the worker", lambda: sleeping(tmp_path))
        started = time.monotonic()
        m.signal(signal.SIGINT)
        assert m.wait(20) == 0
        assert time.monotonic() - started < 10  # not the 20 s request, nor the 30 s grace
        t.join(30)
        assert len(out) == 1 and isinstance(out[0], Exception), out  # cut


def test_graceful_timeout_bounds_the_drain(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "1", "--graceful-timeout", "1"]) as m:
        address = m.address()
        t, out = in_background(lambda: get(address, "/sleep?30", timeout=40))
        wait_until("the slow request in the worker", lambda: sleeping(tmp_path))
        started = time.monotonic()
        m.signal(signal.SIGTERM)
        m.wait(30)
        assert 1.0 <= time.monotonic() - started < 15
        t.join(30)
        assert len(out) == 1 and isinstance(out[0], Exception), out


def test_quit_is_graceful_too(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "1"]) as m:
        address = m.address()
        assert get(address).status == 200
        m.signal(signal.SIGQUIT)
        assert m.wait(30) == 0
        assert "gracefully" in m.err()


def test_serve_with_processes_is_the_same_supervisor(tmp_path):
    """warpcore.wsgi.serve(app, processes=2): the calling process becomes the
    master; the application object is the one given (forked, not imported)."""
    script = tmp_path / "serve_it.py"
    script.write_text(
        "import os\n"
        "from warpcore.wsgi import serve\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'%d %s' % (os.getpid(), str(environ['wsgi.multiprocess']).encode())]\n"
        "serve(app, '127.0.0.1', 0, threads=2, processes=2, grace=5,\n"
        "      ready=lambda address: print('listening on', address, flush=True))\n"
        "print('served', flush=True)\n"
    )
    import sys

    with Master(tmp_path, [], command=[sys.executable, str(script)], app="") as m:
        address = m.address()
        workers = m.wait_workers("two workers", lambda p: len(p) == 2)
        pid, multiprocess = get(address).body.split()
        assert int(pid) in workers and multiprocess == b"True"
        m.signal(signal.SIGTERM)
        assert m.wait(30) == 0
        assert "served" in m.out()
        for pid in workers:
            wait_until(f"worker {pid} gone", lambda: not alive(pid))

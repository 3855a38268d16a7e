"""The ``warpcore`` command line (``python -m warpcore``, ``python -m
warpcore.wsgi``): every flag, over real processes and sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from typing import Any, Dict

import pytest

from warpcore import _config, _worker
from warpcore._config import ConfigError

from .conftest import child_env
from .supervise import Master, alive, get, in_background, wait_until

pytestmark = pytest.mark.timeout(180)


def environ_of(address: str, path: str = "/environ", headers: Dict[str, str] = None) -> Dict[str, Any]:
    r = get(address, path, headers=headers)
    assert r.status == 200, r
    return json.loads(r.body)


# --- settings: flags, config file, defaults -------------------------------------------


def test_flags_parse_as_gunicorn_names_them():
    cfg = _config.load(["app:app", "-w", "3", "--threads", "4", "--loops", "2", "-b", "127.0.0.1:9000",
                        "--bind", "unix:/tmp/x.sock", "-b", "fd://3", "--timeout", "5", "--graceful-timeout", "7",
                        "--keep-alive", "2", "--max-requests", "100", "--max-requests-jitter", "10",
                        "--limit-request-line", "4094", "--limit-request-fields", "50",
                        "--limit-request-field_size", "8190", "--forwarded-allow-ips", "10.0.0.0/8",
                        "--root-path", "/app/", "--pid", "x.pid", "--access-logfile", "-", "--error-logfile",
                        "e.log", "--log-level", "debug", "--reload", "--interface", "wsgi", "--backlog", "64"])
    assert (cfg.workers, cfg.threads, cfg.loops) == (3, 4, 2)
    assert cfg.bind == ["127.0.0.1:9000", "unix:/tmp/x.sock", "fd://3"]
    assert (cfg.timeout, cfg.graceful_timeout, cfg.keepalive) == (5.0, 7.0, 2.0)
    assert (cfg.max_requests, cfg.max_requests_jitter) == (100, 10)
    assert (cfg.limit_request_line, cfg.limit_request_fields, cfg.limit_request_field_size) == (4094, 50, 8190)
    assert cfg.forwarded_allow_ips == "10.0.0.0/8" and cfg.root_path == "/app"
    assert (cfg.pidfile, cfg.accesslog, cfg.errorlog, cfg.loglevel) == ("x.pid", "-", "e.log", "debug")
    assert cfg.reload is True and cfg.interface == "wsgi" and cfg.backlog == 64 and cfg.wsgi_app == "app:app"
    # --processes is -w; gunicorn's address forms.
    cfg = _config.load(["app", "--processes", "2", "-b", "localhost", "-b", ":8001", "-b", "[::1]:80",
                        "-b", "unix:///run/a.sock", "-b", "tcp://10.1.2.3:5"])
    assert cfg.workers == 2
    assert cfg.bind == ["localhost:8000", "0.0.0.0:8001", "[::1]:80", "unix:/run/a.sock", "10.1.2.3:5"]
    # Defaults.
    cfg = _config.load(["app:app"])
    assert (cfg.workers, cfg.threads, cfg.loops, cfg.timeout, cfg.bind) == (1, 8, 1, 30.0, ["127.0.0.1:8000"])


@pytest.mark.parametrize("argv, message", [
    (["app", "-w", "0"], "--workers"),
    (["app", "--threads", "x"], "--threads"),
    (["app", "-b", "host:notaport"], "--bind"),
    (["app", "-b", "unix:"], "--bind"),
    (["app", "-b", "fd://99999999999999999999"], "--bind"),
    (["app", "-b", "fd://2147483648"], "--bind"),
    (["app", "-b", "fd://\u00b3"], "--bind"),
    (["app", "--limit-request-fields", "101"], "--limit-request-fields"),
    (["app", "--timeout", "-1"], "--timeout"),
    (["app", "--interface", "cgi"], "--interface"),
    (["app", "--forwarded-allow-ips", "10.0.0.0/33"], "--forwarded-allow-ips"),
    (["app", "--forwarded-allow-ips", "127.0.0.1,proxy.example"], "--forwarded-allow-ips"),
    ([], "no application"),
])
def test_bad_settings_are_named(argv, message):
    with pytest.raises(ConfigError, match=message):
        _config.load(argv)


def test_descriptor_numbers_out_of_range_are_address_errors(monkeypatch):
    """What the command line cannot name (huge, negative) and a LISTEN_FDS
    that is no count of descriptors: an AddressError (the master's "cannot
    listen"), not an OverflowError out of the master, nor a list of 10^8
    descriptor numbers."""
    from warpcore import _sockets

    for fd in (2**31, 2**70, -1):
        with pytest.raises(_sockets.AddressError):
            _sockets.inherit(fd)
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "100000000")
    with pytest.raises(_sockets.AddressError, match="LISTEN_FDS"):
        _sockets.systemd_fds()


def test_forwarded_allow_ips_are_checked_when_read(monkeypatch, tmp_path):
    """A bad proxy list is a configuration error when the settings are read
    (at start, and on SIGHUP: then nothing changes), not workers that fail
    to boot; a config file may give a list, as gunicorn's."""
    conf = tmp_path / "c.py"
    conf.write_text("forwarded_allow_ips = ['10.0.0.1', ' 192.168.0.0/16']\n")
    assert _config.load(["app:app", "-c", str(conf)]).forwarded_allow_ips == "10.0.0.1,192.168.0.0/16"
    conf.write_text("forwarded_allow_ips = '10.0.0.1,10.0.0.300'\n")
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        _config.load(["app:app", "-c", str(conf)])
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "not-an-address")
    with pytest.raises(ConfigError, match="FORWARDED_ALLOW_IPS"):
        _config.load(["app:app"])
    assert _config.load(["app:app", "--forwarded-allow-ips", "*"]).forwarded_allow_ips == "*"


def test_the_config_file_and_the_command_line_over_it(tmp_path):
    conf = tmp_path / "warpcore.conf.py"
    conf.write_text(
        "import multiprocessing\n"
        "bind = ['127.0.0.1:0', 'unix:%s']\n"
        "workers = 3\n"
        "threads = 2\n"
        "keepalive = 4\n"
        "root_path = '/mounted'\n"
        "wsgi_app = 'APP:app'\n"
        "def post_fork(server, worker):\n"
        "    pass\n" % (tmp_path / "c.sock")
    )
    cfg = _config.load(["-c", str(conf), "-w", "1"])
    assert cfg.workers == 1 and cfg.threads == 2 and cfg.keepalive == 4.0 and cfg.root_path == "/mounted"
    assert cfg.bind == ["127.0.0.1:0", f"unix:{tmp_path / 'c.sock'}"] and cfg.wsgi_app == "APP:app"
    assert any("post_fork" in w for w in cfg.warnings)
    # Served: -w from the command line, the rest from the file.
    with Master(tmp_path, ["-c", str(conf), "-w", "1"]) as m:
        tcp, unix = m.addresses(2)
        assert unix == f"unix:{tmp_path / 'c.sock'}"
        m.wait_workers("one worker", lambda p: len(p) == 1)
        assert environ_of(tcp, "/mounted/environ")["SCRIPT_NAME"] == "/mounted"
        assert environ_of(unix, "/mounted/environ")["PATH_INFO"] == "/environ"
        assert "post_fork is not supported" in m.err()
    bad = tmp_path / "bad.conf.py"
    bad.write_text("workers = 'many'\n")
    with pytest.raises(ConfigError, match="workers"):
        _config.load(["-c", str(bad), "APP:app"])
    bad.write_text("syntax error here\n")
    with pytest.raises(ConfigError, match="SyntaxError"):
        _config.load(["-c", str(bad), "APP:app"])


def test_hup_rereads_the_config_file(tmp_path):
    conf = tmp_path / "warpcore.conf.py"
    conf.write_text("workers = 1\nbind = '127.0.0.1:0'\n")
    with Master(tmp_path, ["-c", str(conf), "APP:app"]) as m:
        address = m.address()
        (first,) = m.wait_workers("one worker", lambda p: len(p) == 1)
        sock = tmp_path / "added.sock"
        conf.write_text(f"workers = 2\nbind = ['{address}', 'unix:{sock}']\n")
        m.signal(__import__("signal").SIGHUP)
        m.wait_workers("two new workers", lambda p: len(p) == 2 and first not in p)
        # The TCP socket kept (same address), the Unix one added.
        assert get(address).status == 200
        assert get(f"unix:{sock}").status == 200
        # A config file that no longer reads changes nothing.
        conf.write_text("workers = \n")
        m.signal(__import__("signal").SIGHUP)
        m.wait_log("cannot be read")
        assert len(m.workers()) == 2 and get(address).status == 200


def test_bad_command_lines_exit_2(tmp_path):
    p = subprocess.run([sys.executable, "-m", "warpcore", "APP:app", "--threads", "lots"], capture_output=True,
                       env=child_env(), cwd=tmp_path, timeout=60)
    assert p.returncode == 2 and b"--threads" in p.stderr
    p = subprocess.run([sys.executable, "-m", "warpcore", "APP:app", "--error-logfile", str(tmp_path / "no" / "e.log")],
                       capture_output=True, env=child_env(), cwd=tmp_path, timeout=60)
    assert p.returncode == 1 and b"cannot open the error log" in p.stderr
    p = subprocess.run([sys.executable, "-m", "warpcore.wsgi", "--help"], capture_output=True, env=child_env(),
                       cwd=tmp_path, timeout=60)
    assert p.returncode == 0
    for flag in (b"--workers", b"--threads", b"--loops", b"--bind", b"--access-logfile", b"--error-logfile",
                 b"--timeout", b"--graceful-timeout", b"--keep-alive", b"--max-requests", b"--max-requests-jitter",
                 b"--limit-request-line", b"--limit-request-fields", b"--limit-request-field_size",
                 b"--forwarded-allow-ips", b"--root-path", b"--pid", b"--config", b"--reload", b"--interface",
                 b"--log-level"):
        assert flag in p.stdout, flag


def test_an_address_in_use_is_an_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "warpcore", "APP:app", "-b", f"127.0.0.1:{port}"],
                           capture_output=True, env=child_env(), cwd=tmp_path, timeout=60)
    assert p.returncode == 1 and b"cannot listen" in p.stderr


# --- processes, threads, loops ----------------------------------------------------------


def test_workers_threads_and_loops(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "2", "--threads", "3", "--loops", "2"]) as m:
        address = m.address()
        workers = m.wait_workers("two workers", lambda p: len(p) == 2)
        names = json.loads(get(address, "/threads").body)
        assert sum(n.startswith("warpcore-wsgi-") for n in names) == 3
        assert sum(n.startswith("warpcore-worker-") for n in names) == 2
        assert int(get(address, "/pid").body) in workers
        env = environ_of(address)
        assert env["wsgi.multiprocess"] is True and env["wsgi.multithread"] is True


def test_threads_0_runs_on_the_loops(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "--threads", "0"]) as m:
        names = json.loads(get(m.address(), "/threads").body)
        assert not any(n.startswith("warpcore-wsgi-") for n in names)
        env = environ_of(m.address())
        assert env["wsgi.multiprocess"] is False


# --- limits and timeouts --------------------------------------------------------------


def test_limits(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "--limit-request-line", "200",
                           "--limit-request-fields", "8", "--limit-request-field_size", "100"]) as m:
        address = m.address()
        assert get(address, "/" + "a" * 150).status == 200
        assert get(address, "/" + "a" * 250).status == 414
        assert get(address, headers={f"X-H{i}": "v" for i in range(5)}).status == 200
        assert get(address, headers={f"X-H{i}": "v" for i in range(12)}).status == 431
        assert get(address, headers={"X-Big": "v" * 80}).status == 200
        r = get(address, headers={"X-Big": "v" * 120})
        assert r.status == 431 and b"X-Big" in r.body


def test_keep_alive_closes_idle_connections(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "--keep-alive", "1"]) as m:
        host, _, port = m.address().rpartition(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"hello" not in data:
                data += s.recv(4096)
            idle_from = time.monotonic()
            assert s.recv(4096) == b""  # closed by the server when idle
            assert 0.5 <= time.monotonic() - idle_from < 8


# --- logs and the PID file ----------------------------------------------------------


def test_access_log_to_stdout_and_error_log_level(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "--access-logfile", "-", "--log-level", "debug"]) as m:
        address = m.address()
        get(address, "/logged-path")
        wait_until("the access line on standard output", lambda: "/logged-path" in m.out())
        assert "started worker" in m.err()  # a debug line
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "--log-level", "warning"]) as m:
        m.address()
        m.signal(__import__("signal").SIGTTIN)
        m.wait_workers("two workers", lambda p: len(p) == 2)
        assert "SIGTTIN" not in m.err()  # info, below the level


def test_pid_file(tmp_path):
    pidfile = tmp_path / "run" / "w.pid"
    pidfile.parent.mkdir()
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-p", str(pidfile)]) as m:
        m.address()
        assert int(pidfile.read_text()) == m.pid
        m.signal(__import__("signal").SIGTERM)
        assert m.wait(30) == 0
    assert not pidfile.exists()


def test_the_pid_file_is_written_through_a_file_nobody_could_plant(tmp_path):
    """The PID file is written to a temporary file then renamed over: one
    with a name another user could guess (the PID) and put a symbolic link
    at, in a shared directory, would make the master write through it."""
    from warpcore._arbiter import Arbiter

    pidfile = tmp_path / "w.pid"
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    planted = tmp_path / f"w.pid.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    arbiter = Arbiter(_config.Config.defaults(pidfile=str(pidfile), wsgi_app="APP:app"), lambda cfg: None)
    arbiter._write_pidfile()
    assert pidfile.read_text() == f"{os.getpid()}\n" and not pidfile.is_symlink()
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim", "w.pid", planted.name]


# --- the proxy headers and the root path ------------------------------------------------


def test_forwarded_headers_from_allowed_proxies_only(tmp_path):
    fwd = {"X-Forwarded-For": "203.0.113.9, 127.0.0.1", "X-Forwarded-Proto": "https"}
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0"]) as m:  # default: loopback allowed
        env = environ_of(m.address(), headers=fwd)
        assert env["REMOTE_ADDR"] == "203.0.113.9" and env["wsgi.url_scheme"] == "https"
        env = environ_of(m.address())
        assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"
        r = get(m.address(), "/environ", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"})
        assert r.status == 400  # the scheme headers disagree
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "--forwarded-allow-ips", "10.0.0.0/8"]) as m:
        env = environ_of(m.address(), headers=fwd)
        assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"
    env_var = dict(child_env(), FORWARDED_ALLOW_IPS="*")
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0"], env=env_var) as m:
        env = environ_of(m.address(), headers={"X-Forwarded-For": "198.51.100.1, 10.0.0.1"})
        assert env["REMOTE_ADDR"] == "198.51.100.1"  # all allowed: the leftmost


def test_root_path(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "--root-path", "/app"]) as m:
        env = environ_of(m.address(), "/app/x/environ?q=1")
        assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == ("/app", "/x/environ", "q=1")
        assert get(m.address(), "/other").status == 500
        assert get(m.address(), "/application").status == 500  # not under /app
        assert "does not start with SCRIPT_NAME" in m.wait_log("SCRIPT_NAME")


# --- --reload ----------------------------------------------------------------------------


def test_reload_replaces_the_worker_when_a_source_file_changes(tmp_path):
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "--reload"]) as m:
        address = m.address()
        (first,) = m.wait_workers("a worker", lambda p: len(p) == 1)
        assert get(address, "/version").body == b"v1"
        app = tmp_path / "APP.py"
        app.write_text(app.read_text().replace('b"v1"', 'b"v2"'))
        wait_until("the new code served", lambda: get(address, "/version").body == b"v2")
        wait_until("the first worker gone", lambda: not alive(first))
        # A broken file: the error is served, and fixing it brings the app back.
        good = app.read_text()
        app.write_text(good + "\ndef broken(:\n")
        wait_until("the error served", lambda: get(address, "/version").status == 500)
        assert b"SyntaxError" in get(address, "/version").body
        app.write_text(good.replace('b"v2"', 'b"v3"'))
        wait_until("the fixed code served", lambda: get(address, "/version").body == b"v3")


# --- the interface dispatch ------------------------------------------------------------


def test_interface_asgi_needs_warpcore_asgi(monkeypatch, tmp_path):
    import types

    monkeypatch.setitem(sys.modules, "warpcore.asgi", None)  # as if absent
    with pytest.raises(ConfigError, match="warpcore.asgi"):
        _worker.server_factory("asgi")
    fake = types.ModuleType("warpcore.asgi")
    monkeypatch.setitem(sys.modules, "warpcore.asgi", fake)
    with pytest.raises(ConfigError, match="worker_server"):
        _worker.server_factory("asgi")
    fake.worker_server = lambda app, **options: ("asgi", app, options)
    assert _worker.server_factory("asgi")("APP", bind=["fd://3"])[0] == "asgi"


def test_interface_asgi_on_the_command_line(tmp_path):
    try:
        import warpcore.asgi  # noqa: F401
    except ImportError:
        p = subprocess.run([sys.executable, "-m", "warpcore", "APP:app", "--interface", "asgi"],
                           capture_output=True, env=child_env(), cwd=tmp_path, timeout=60)
        assert p.returncode == 2 and b"warpcore.asgi" in p.stderr
        return
    (tmp_path / "asgiapp.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})\n"
        "    await send({'type': 'http.response.body', 'body': b'asgi'})\n"
    )
    with Master(tmp_path, ["asgiapp:app", "-b", "127.0.0.1:0", "--interface", "asgi"]) as m:
        assert get(m.address()).body == b"asgi"


def test_interface_asgi_worker_with_a_blocked_loop_is_replaced(tmp_path):
    """--timeout watches an ASGI worker's event loop: an application call
    that blocks it gets the worker replaced; USR1 reaches its access log."""
    (tmp_path / "blockapp.py").write_text(
        "import os, time\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    if scope['path'] == '/block':\n"
        "        time.sleep(60)\n"
        "    body = str(os.getpid()).encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})\n"
        "    await send({'type': 'http.response.body', 'body': body})\n"
    )
    with Master(tmp_path, ["blockapp:app", "-b", "127.0.0.1:0", "--interface", "asgi", "--timeout", "2",
                           "--graceful-timeout", "1", "--access-logfile", str(tmp_path / "access.log")]) as m:
        address = m.address()
        (first,) = m.wait_workers("a worker", lambda p: len(p) == 1)
        assert int(get(address).body) == first
        (tmp_path / "access.log").rename(tmp_path / "access.log.1")
        m.signal(__import__("signal").SIGUSR1)
        wait_until("the access log reopened", lambda: (tmp_path / "access.log").exists(), timeout=20)
        blocked, results = in_background(lambda: get(address, "/block", timeout=30))
        (new,) = m.wait_workers("a new worker", lambda p: len(p) == 1 and first not in p, timeout=30)
        assert int(get(address).body) == new
        assert "event loop has not run" in m.wait_log("timed out")
        blocked.join(10)


# --- the console command -----------------------------------------------------------------


def test_python_m_warpcore_wsgi_is_the_same_command(tmp_path):
    command = [sys.executable, "-m", "warpcore.wsgi", "APP:app", "-b", "127.0.0.1:0", "--processes", "2"]
    with Master(tmp_path, [], command=command) as m:
        m.wait_workers("two workers", lambda p: len(p) == 2)
        assert get(m.address()).status == 200


def test_workers_die_with_a_master_killed_before_they_boot(tmp_path):
    (tmp_path / "slowapp.py").write_text("import time\ntime.sleep(60)\n")
    with Master(tmp_path, ["slowapp:app", "-b", "127.0.0.1:0", "-w", "2"]) as m:
        workers = m.wait_workers("two booting workers", lambda p: len(p) == 2)
        m.signal(__import__("signal").SIGKILL)
        m.wait(10)
        for pid in workers:
            wait_until(f"worker {pid} to die", lambda: not alive(pid), timeout=20)


def test_a_worker_that_cannot_load_the_app_stops_the_master(tmp_path):
    p = subprocess.run([sys.executable, "-m", "warpcore", "nosuchmodule:app", "-b", "127.0.0.1:0"],
                       capture_output=True, env=child_env(), cwd=tmp_path, timeout=60)
    assert p.returncode == 1 and b"cannot load nosuchmodule:app" in p.stderr
    assert os.path.exists(tmp_path)  # nothing left behind to check: the master waited for its workers

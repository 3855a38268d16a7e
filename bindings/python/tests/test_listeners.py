"""Listeners: ``Server(bind=[...])`` on TCP, Unix socket paths and
descriptors handed in (the engine's listener API), ``reload(bind=...)``,
and the command line on a Unix socket (driven by ``curl --unix-socket``) and
under systemd-style socket activation (``LISTEN_FDS``/``LISTEN_PID`` set by
the test)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap

import pytest

import warpcore
from warpcore.wsgi import WSGIServer

from .conftest import child_env
from .supervise import Master, get, listening_socket, wait_until

pytestmark = pytest.mark.timeout(120)


def hello(request: warpcore.Request) -> warpcore.Response:
    return warpcore.Response(200, [("Content-Type", "text/plain")], f"hello {request.peer[0]}".encode())


def test_bind_tcp_unix_and_fd(tmp_path):
    path = str(tmp_path / "s.sock")
    handed = listening_socket()
    handed_port = handed.getsockname()[1]
    with warpcore.Server(hello, bind=["127.0.0.1:0", f"unix:{path}", f"fd://{handed.detach()}"]) as s:
        tcp, unix, fd = s.addresses
        assert tcp.startswith("127.0.0.1:") and int(tcp.rpartition(":")[2]) == s.port
        assert unix == f"unix:{path}" and s.address == tcp
        assert fd == f"127.0.0.1:{handed_port}"
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert get(tcp).body == b"hello 127.0.0.1"
        assert get(unix).body == b"hello unix:"  # a Unix socket's peer, as nginx's $remote_addr
        assert get(fd).status == 200
    assert not os.path.exists(path)  # removed at the end
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", handed_port), timeout=5)  # the server owned and closed it


def test_unix_socket_mode_and_stale_files(tmp_path):
    path = str(tmp_path / "m.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # a socket file nobody listens on: replaced
    stale.close()
    with warpcore.Server(hello, bind=[f"unix:{path}"], unix_socket_mode=0o600) as s:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert get(s.address).status == 200
        # A live one is refused.
        with pytest.raises(warpcore.WarpcoreError) as err:
            warpcore.Server(hello, bind=[f"unix:{path}"]).start()
        assert err.value.name == "ADDRESS_IN_USE"
    regular = tmp_path / "file"
    regular.write_text("not a socket")
    with pytest.raises(warpcore.WarpcoreError) as err:
        warpcore.Server(hello, bind=[f"unix:{regular}"]).start()
    assert regular.read_text() == "not a socket"


def test_an_owner_without_a_mode_keeps_the_mode_of_the_umask(tmp_path):
    """unix_socket_owner alone changes the owner only: the file keeps the
    mode the umask gives a new socket (not one open to every local user)."""
    path = str(tmp_path / "o.sock")
    old = os.umask(0o027)
    try:
        with warpcore.Server(hello, bind=[f"unix:{path}"], unix_socket_owner=(-1, os.getgid())) as s:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o750
            assert os.stat(path).st_gid == os.getgid()
            assert get(s.address).status == 200
    finally:
        os.umask(old)
    with pytest.raises(ValueError):
        warpcore.Server(hello, bind=[f"unix:{path}"], unix_socket_owner=(2**32 - 1, -1))


@pytest.mark.parametrize("bind", [["nonsense"], ["unix:"], ["fd://x"], ["127.0.0.1:99999"]])
def test_bad_addresses_are_refused(bind):
    with pytest.raises(warpcore.WarpcoreError) as err:
        warpcore.Server(hello, bind=bind).start()
    assert err.value.name == "INVALID_ADDRESS"


def test_bind_argument_types():
    with pytest.raises(TypeError):
        warpcore.Server(hello, bind="127.0.0.1:0")
    with pytest.raises(TypeError):
        warpcore.Server(hello, bind=[("127.0.0.1", 0)])
    with pytest.raises(ValueError):
        warpcore.Server(hello, bind=[])
    with pytest.raises(ValueError):
        warpcore.Server(hello, bind=["unix:/x"], unix_socket_mode=0o17777)


def test_reload_adds_and_removes_listeners(tmp_path):
    path = str(tmp_path / "r.sock")
    with warpcore.Server(hello, bind=["127.0.0.1:0"]) as s:
        tcp = s.address
        s.reload(bind=["127.0.0.1:0", f"unix:{path}"])  # port 0 again: the same listener
        assert s.addresses == [tcp, f"unix:{path}"]
        assert get(tcp).status == 200 and get(f"unix:{path}").status == 200
        s.reload(bind=[f"unix:{path}"])
        assert s.addresses == [f"unix:{path}"]
        wait_until("the TCP listener closed", lambda: _refused(tcp))
        s.reload(max_body_size=10)  # keeps the listeners
        assert s.addresses == [f"unix:{path}"] and get(f"unix:{path}").status == 200


def _refused(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_wsgi_server_on_a_unix_socket_names_the_server_from_host(tmp_path):
    path = str(tmp_path / "w.sock")

    def app(environ, start_response):
        start_response("200 OK", [])
        return [f"{environ['SERVER_NAME']} {environ['SERVER_PORT']} {environ['REMOTE_ADDR']}".encode()]

    with WSGIServer(app, bind=[f"unix:{path}"], threads=1) as s:
        assert get(s.address, headers={"Host": "example.org:8443"}).body == b"example.org 8443 unix:"
        assert get(s.address, headers={"Host": "example.org"}).body == b"example.org 80 unix:"


# --- the command line ---------------------------------------------------------------------


def test_curl_over_the_unix_socket_of_the_command_line(tmp_path):
    curl = shutil.which("curl")
    assert curl, "curl is needed (scripts/test-deps.sh installs it)"
    path = tmp_path / "app.sock"
    with Master(tmp_path, ["APP:app", "-b", f"unix:{path}", "-w", "2"]) as m:
        assert m.address() == f"unix:{path}"
        p = subprocess.run([curl, "-sS", "--unix-socket", str(path), "http://localhost/pid"], capture_output=True,
                           timeout=30)
        assert p.returncode == 0 and int(p.stdout) in m.workers()
        # A proxy on the Unix socket (trusted, as in gunicorn) sets the client's address.
        p = subprocess.run([curl, "-sS", "--unix-socket", str(path), "-H", "X-Forwarded-For: 192.0.2.7",
                            "http://localhost/environ"], capture_output=True, timeout=30)
        assert b'"REMOTE_ADDR": "192.0.2.7"' in p.stdout
        m.signal(__import__("signal").SIGTERM)
        assert m.wait(30) == 0
    assert not path.exists()  # the master removed its socket file


def test_a_stale_unix_socket_is_replaced_and_a_live_one_refused(tmp_path):
    path = tmp_path / "app.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    with Master(tmp_path, ["APP:app", "-b", f"unix:{path}"]) as m:
        assert get(m.address()).status == 200
        p = subprocess.run([sys.executable, "-m", "warpcore", "APP:app", "-b", f"unix:{path}"], capture_output=True,
                           env=child_env(), cwd=tmp_path, timeout=60)
        assert p.returncode == 1 and b"another server listens" in p.stderr
        assert get(m.address()).status == 200


def test_a_stale_socket_replaced_while_it_is_probed_is_left_alone(tmp_path, monkeypatch):
    """Between the look at a stale socket file and its removal another server
    may have replaced it with its live one (two starting at once): the
    command line's master then refuses, as the library does, instead of
    removing the other server's file."""
    from warpcore import _sockets

    path = str(tmp_path / "app.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    other = []
    real_socket = socket.socket

    class RacingProbe(real_socket):
        def connect(self, address):
            os.unlink(path)
            live = real_socket(socket.AF_UNIX)
            live.bind(path)
            live.listen()
            other.append(live)
            raise ConnectionRefusedError(111, "Connection refused")  # what the stale file answered

    monkeypatch.setattr(_sockets.socket, "socket", RacingProbe)
    with pytest.raises(_sockets.AddressError, match="replaced"):
        _sockets.open_listener(f"unix:{path}")
    monkeypatch.undo()
    assert os.path.exists(path)
    probe = socket.socket(socket.AF_UNIX)
    probe.connect(path)  # the other server's socket, still reachable
    probe.close()
    other[0].close()
    # At the end too: a link put in place of the master's file (to that
    # very file) is not the file the master made, and stays.
    os.unlink(path)
    lst = _sockets.open_listener(f"unix:{path}")
    os.link(path, path + ".hard")
    os.unlink(path)
    os.symlink(path + ".hard", path)
    lst.close()
    assert os.path.islink(path)


def test_systemd_socket_activation(tmp_path):
    listener = listening_socket()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    # systemd passes the socket as fd 3 and sets LISTEN_PID to the service's
    # PID, known only after the fork: a shell sets it, then becomes python
    # (bash: dash takes only one-digit descriptors in redirections).
    script = (f"exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec {sys.executable} -m warpcore APP:app "
              "-w 2 -b 127.0.0.1:1")
    with Master(tmp_path, [], command=["bash", "-c", script], pass_fds=[fd]) as m:
        listener.close()  # the server's now
        assert m.address() == f"127.0.0.1:{port}"
        workers = m.wait_workers("two workers", lambda p: len(p) == 2)
        assert int(get(m.address(), "/pid").body) in workers
        assert "LISTEN_FDS" in m.err()
        # The master took the variables out: its workers do not see them.
        assert get(m.address(), "/osenv").body == b"[]"


def test_systemd_in_the_native_server(tmp_path):
    listener = listening_socket()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    code = textwrap.dedent("""
        import os, warpcore
        s = warpcore.Server(lambda r: warpcore.Response(200, [], b"sd"), systemd=True).start()
        print(s.addresses, "LISTEN_PID" in os.environ, flush=True)
        s.reload(max_body_size=5)
        print(s.addresses, flush=True)
        s.shutdown(1)
        try:
            warpcore.Server(lambda r: None, systemd=True).start()
        except ValueError as exc:
            print("refused:", exc)
    """)
    script = f"exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec {sys.executable} -c '{code}'"
    p = subprocess.run(["bash", "-c", script], pass_fds=[fd], capture_output=True, text=True, env=child_env(),
                       timeout=60)
    listener.close()
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == f"['127.0.0.1:{port}'] False"
    assert lines[1] == f"['127.0.0.1:{port}']"
    assert lines[2].startswith("refused: systemd=True")


def test_command_line_bind_to_an_inherited_descriptor(tmp_path):
    listener = listening_socket()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    with Master(tmp_path, ["APP:app", "-b", f"fd://{fd}", "-b", "127.0.0.1:0", "-w", "2"], pass_fds=[fd]) as m:
        listener.close()  # the master's copy serves
        inherited, tcp = m.addresses(2)
        assert inherited == f"127.0.0.1:{port}"
        workers = m.wait_workers("two workers", lambda p: len(p) == 2)
        assert int(get(inherited, "/pid").body) in workers
        assert int(get(tcp, "/pid").body) in workers
    p = subprocess.run([sys.executable, "-m", "warpcore", "APP:app", "-b", "fd://99"], capture_output=True,
                       env=child_env(), cwd=tmp_path, timeout=60)
    assert p.returncode == 1 and b"fd://99" in p.stderr

"""HTTPS from the ``warpcore`` command (``python -m warpcore``): gunicorn's
``--certfile``, ``--keyfile``, ``--ca-certs``, ``--cert-reqs`` (flags and
config file names) through the master and its workers, every bound address
speaking TLS (the workers serve the master's sockets as ``fd://N``), bad
files refused before any worker starts, client certificates required, and
SIGHUP serving replaced certificate files."""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import sys
import threading

import pytest

from .conftest import child_env
from .pki import context, der, https_get_address, pki  # noqa: F401 - pki is a fixture
from .supervise import APP, Master, get, wait_until

pytestmark = pytest.mark.timeout(180)

ASGI_APP = r'''
import json

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    tls = scope["extensions"].get("tls")
    body = json.dumps({"scheme": scope["scheme"], "name": tls and tls["client_cert_name"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
'''


def _environ(address: str, ctx: ssl.SSLContext) -> dict:
    status, body, _ = https_get_address(address, ctx, "/environ")
    assert status == 200
    return json.loads(body)


def test_every_bound_address_speaks_tls_through_the_workers(tmp_path, pki):
    sock = tmp_path / "app.sock"
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-b", f"unix:{sock}", "-w", "2", "--threads", "2",
                           "--certfile", str(pki / "a.pem"), "--keyfile", str(pki / "a.key")]) as m:
        addresses = m.addresses(2)
        for address in addresses:
            env = _environ(address, context(pki))
            assert env["wsgi.url_scheme"] == "https" and env["HTTPS"] == "on" and env["SSL_PROTOCOL"] == "TLSv1.3"
            assert env["SSL_CLIENT_VERIFY"] == "NONE"
        # Plain HTTP on the TLS port gets no answer.
        with pytest.raises(Exception):
            get(addresses[0], "/", timeout=5)
    # Both workers serve TLS: with the application on the event loops, one
    # worker held in a slow request cannot accept, so the next connection is
    # the other's (no reliance on how the kernel spreads connections).
    (tmp_path / "loops").mkdir()
    with Master(tmp_path / "loops", ["APP:app", "-b", "127.0.0.1:0", "-w", "2", "--threads", "0",
                                     "--certfile", str(pki / "a.pem"), "--keyfile", str(pki / "a.key")]) as m:
        address = m.addresses(1)[0]
        held: dict = {}
        slow = threading.Thread(target=lambda: held.update(r=https_get_address(address, context(pki), "/sleep?3")))
        slow.start()
        marker = wait_until("a worker in the slow request", lambda: next((tmp_path / "loops").glob("sleeping-*"), None))
        busy = int(marker.name.split("-")[1])
        status, other, _ = https_get_address(address, context(pki), "/pid")
        slow.join(30)
        assert status == 200 and held["r"][:2] == (200, b"slept")
        assert {busy, int(other)} == m.workers()


def test_asgi_interface_over_tls_and_a_certfile_holding_the_key(tmp_path, pki):
    (tmp_path / "ASGIAPP.py").write_text(ASGI_APP)
    both = tmp_path / "both.pem"
    both.write_bytes((pki / "a.pem").read_bytes() + (pki / "a.key").read_bytes())
    with Master(tmp_path, ["ASGIAPP:app", "--interface", "asgi", "-b", "127.0.0.1:0", "--certfile", str(both)]) as m:
        status, body, _ = https_get_address(m.address(), context(pki))
        assert status == 200 and json.loads(body) == {"scheme": "https", "name": None}


def _run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "APP.py").write_text(APP)
    return subprocess.run([sys.executable, "-m", "warpcore", "APP:app", "-b", "127.0.0.1:0", *args], cwd=tmp_path,
                          capture_output=True, text=True, env=child_env(), timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--certfile", "{pki}/a.pem", "--keyfile", "{pki}/b.key"], "is not the private key"),
    (["--certfile", "{pki}/a.pem", "--keyfile", "{tmp}/missing.key"], "missing.key"),
    (["--certfile", "{pki}/a.pem", "--keyfile", "{pki}/a.pem"], "no private key"),
    (["--keyfile", "{pki}/a.key"], "--keyfile needs --certfile"),
    (["--certfile", "{pki}/a.pem", "--keyfile", "{pki}/a.key", "--cert-reqs", "2"], "--ca-certs must name"),
    (["--certfile", "{pki}/a.pem", "--keyfile", "{pki}/a.key", "--cert-reqs", "3"], "--cert-reqs"),
    (["--certfile", "{pki}/a.pem", "--keyfile", "{pki}/a.key", "--cert-reqs", "1", "--ca-certs", "{pki}/a.key"],
     "a.key"),
])
def test_bad_tls_settings_stop_the_master_before_any_worker(tmp_path, pki, args, message):
    r = _run(tmp_path, *(a.format(pki=pki, tmp=tmp_path) for a in args))
    assert r.returncode == 2, r
    assert message in r.stderr and r.stderr.startswith("python -m warpcore: error:"), r.stderr
    assert "listening on" not in r.stdout and "master " not in r.stderr


def test_required_client_certificates_from_the_config_file(tmp_path, pki):
    (tmp_path / "conf.py").write_text(
        "import ssl\n"
        f"certfile = {str(pki / 'a.pem')!r}\n"
        f"keyfile = {str(pki / 'a.key')!r}\n"
        f"ca_certs = {str(pki / 'ca.pem')!r}\n"
        "cert_reqs = ssl.CERT_REQUIRED\n"
        "ssl_version = 'TLSv1_2'\n"
    )
    with Master(tmp_path, ["APP:app", "-c", "conf.py", "-b", "127.0.0.1:0"]) as m:
        address = m.address()
        env = _environ(address, context(pki, client=True))
        assert env["SSL_CLIENT_VERIFY"] == "SUCCESS" and env["SSL_CLIENT_S_DN"] == "CN=client"
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _environ(address, context(pki))
        assert "ssl_version is deprecated" in m.err()
    # Optional (the flag, 1), and TLS 1.3 only: a 1.2 client is refused.
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "--certfile", str(pki / "a.pem"), "--keyfile",
                           str(pki / "a.key"), "--ca-certs", str(pki / "ca.pem"), "--cert-reqs", "1",
                           "--tls-min-version", "1.3"]) as m:
        address = m.address()
        assert _environ(address, context(pki, client=True))["SSL_CLIENT_VERIFY"] == "SUCCESS"
        assert _environ(address, context(pki))["SSL_CLIENT_VERIFY"] == "NONE"
        old = context(pki)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _environ(address, old)


def test_hup_serves_the_replaced_certificate_files(tmp_path, pki):
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(pki / "a.pem", live_cert)
    shutil.copy(pki / "a.key", live_key)
    with Master(tmp_path, ["APP:app", "-b", "127.0.0.1:0", "-w", "2", "--certfile", str(live_cert), "--keyfile",
                           str(live_key)]) as m:
        address = m.address()

        def served() -> bytes:
            host, _, port = address.rpartition(":")
            return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port))))

        assert served() == der(pki / "a.pem")
        old = m.wait_workers("two workers", lambda p: len(p) == 2)
        shutil.copy(pki / "b.pem", live_cert)
        shutil.copy(pki / "b.key", live_key)
        m.signal(signal.SIGHUP)
        m.wait_workers("two new workers, the old ones gone", lambda p: len(p) == 2 and not p & old)
        assert served() == der(pki / "b.pem")
        # A key that no longer matches: the reload is refused, the workers stay.
        shutil.copy(pki / "a.key", live_key)
        workers = m.workers()
        m.signal(signal.SIGHUP)
        m.wait_log("is not the private key")
        assert "nothing changes" in m.err() and m.workers() == workers
        assert served() == der(pki / "b.pem")

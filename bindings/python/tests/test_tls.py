"""HTTPS from Python: ``Server(..., tls=...)`` served to the standard
library's ``ssl`` client, what ``Request.tls`` says, client certificates,
a name required (SNI), certificates reloaded, bad files refused with ``TLSError``, WSGI's and ASGI's
https scheme, and ``python -m warpcore.asgi --certfile/--keyfile``.
Certificates are made at test time with openssl(1); no key is committed."""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Tuple

import pytest

import warpcore
from warpcore.wsgi import WSGIServer

from .conftest import TIMEOUT, child_env, wait_for_line


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, two server certificates for localhost (ECDSA P-256) and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=test CA", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    for name, ext in (("a", "subjectAltName=DNS:localhost"), ("b", "subjectAltName=DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", *ec, "-subj", f"/CN={name}", "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                 "-CAcreateserial", "-days", "2", "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))
    return d


def _context(pki: Path, client: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    ctx.set_alpn_protocols(["http/1.1"])
    if client:
        ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return ctx


def _get(port: int, ctx: ssl.SSLContext, path: str = "/") -> Tuple[int, bytes, bytes]:
    """GET over TLS to localhost: status, body, the server certificate's DER."""
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        der = conn.sock.getpeercert(binary_form=True)
        return r.status, r.read(), der
    finally:
        conn.close()


def _der(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


def tls_view(request: warpcore.Request) -> warpcore.Response:
    t = request.tls
    text = "plain" if t is None else f"{t.version} {t.server_name} {t.alpn} certs={len(t.peer_certs)}"
    return warpcore.Response(200, [("Content-Type", "text/plain")], text.encode())


def test_https_is_served_and_the_request_sees_its_tls(serve, pki):
    s = serve(tls_view, tls=(pki / "a.pem", pki / "a.key"))
    status, body, der = _get(s.port, _context(pki))
    assert (status, body) == (200, b"TLSv1.3 localhost http/1.1 certs=0")
    assert der == _der(pki / "a.pem")
    # TLS 1.2 too.
    ctx = _context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _get(s.port, ctx)[1] == b"TLSv1.2 localhost http/1.1 certs=0"
    stats = s.stats()
    assert stats["tls_handshakes"] == 2 and stats["tls_handshake_failures"] == 0


def test_a_plain_client_costs_only_its_connection(serve, pki):
    s = serve(tls_view, tls=(pki / "a.pem", pki / "a.key"))
    with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        got = c.recv(100)
        assert got == b"" or got[0] == 21  # nothing, or a TLS alert
    assert _get(s.port, _context(pki))[0] == 200
    assert s.stats()["tls_handshake_failures"] == 1


def test_client_certificates_required_reach_the_handler(serve, pki):
    tls = warpcore.TLS(pki / "a.pem", pki / "a.key", client_auth="required", ca=pki / "ca.pem")
    s = serve(tls_view, tls=tls)
    # The client's certificate, and the CA's that OpenSSL sends after it.
    assert _get(s.port, _context(pki, client=True))[1].endswith((b"certs=1", b"certs=2"))
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        _get(s.port, _context(pki))


def test_a_name_no_certificate_has_is_refused_when_required(serve, pki):
    tls = warpcore.TLS(pki / "a.pem", pki / "a.key", require_sni_match=True)
    s = serve(tls_view, tls=tls)
    assert _get(s.port, _context(pki))[0] == 200
    # By address: no SNI, so the unrecognized_name alert.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as raw:
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            ctx.wrap_socket(raw)
    assert s.stats()["tls_handshake_failures"] == 1


def test_pem_in_memory_and_bad_files(pki, tmp_path):
    tls = warpcore.TLS((pki / "a.pem").read_bytes(), (pki / "a.key").read_bytes())
    with warpcore.Server(tls_view, port=0, tls=tls) as s:
        assert _get(s.port, _context(pki))[0] == 200
    with pytest.raises(warpcore.TLSError, match="is not the private key"):
        warpcore.TLS(pki / "a.pem", pki / "b.key")
    with pytest.raises(warpcore.TLSError, match="no private key"):
        warpcore.TLS(pki / "a.pem", pki / "a.pem")
    with pytest.raises(warpcore.TLSError, match="cannot read"):
        warpcore.TLS(tmp_path / "missing.pem", pki / "a.key")
    with pytest.raises(ValueError):
        warpcore.TLS(pki / "a.pem", pki / "a.key", client_auth="required")
    with pytest.raises(TypeError):
        warpcore.Server(tls_view, port=0, tls="cert.pem")
    # A file broken between the setup and the start: refused at start, named.
    shutil.copy(pki / "a.pem", tmp_path / "c.pem")
    shutil.copy(pki / "a.key", tmp_path / "c.key")
    server = warpcore.Server(tls_view, port=0, tls=(tmp_path / "c.pem", tmp_path / "c.key"))
    (tmp_path / "c.key").write_text("garbage\n")
    with pytest.raises(warpcore.TLSError, match="c.key"):
        server.start()


def test_reload_installs_the_new_certificate_files(serve, pki, tmp_path):
    shutil.copy(pki / "a.pem", tmp_path / "live.pem")
    shutil.copy(pki / "a.key", tmp_path / "live.key")
    tls = warpcore.TLS(tmp_path / "live.pem", tmp_path / "live.key")
    s = serve(tls_view, tls=tls)
    assert _get(s.port, _context(pki))[2] == _der(pki / "a.pem")
    shutil.copy(pki / "b.pem", tmp_path / "live.pem")
    shutil.copy(pki / "b.key", tmp_path / "live.key")
    s.reload(tls=tls)
    assert _get(s.port, _context(pki))[2] == _der(pki / "b.pem")
    with pytest.raises(ValueError):
        s.reload(tls=None)


def test_wsgi_says_https(pki):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode()]

    with WSGIServer(app, port=0, tls=(pki / "a.pem", pki / "a.key")) as s:
        assert _get(s.port, _context(pki))[1] == b"https"


def test_python_m_warpcore_asgi_serves_https(pki, tmp_path):
    (tmp_path / "tlsapp.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': scope['scheme'].encode()})\n"
    )
    cmd = [sys.executable, "-m", "warpcore.asgi", "tlsapp:app", "--port", "0", "--lifespan", "off", "--no-access-log",
           "--app-dir", str(tmp_path), "--certfile", str(pki / "a.pem"), "--keyfile", str(pki / "a.key")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    try:
        line = wait_for_line(proc, "listening on")
        port = int(line.rsplit(":", 1)[1])
        assert _get(port, _context(pki))[1] == b"https"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    bad = subprocess.run([sys.executable, "-m", "warpcore.asgi", "tlsapp:app", "--app-dir", str(tmp_path), "--certfile", "x.pem"],
                         capture_output=True, env=child_env(), timeout=30)
    assert bad.returncode == 2 and b"go together" in bad.stderr

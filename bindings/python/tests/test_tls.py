"""HTTPS from Python: ``Server(..., tls=...)`` served to the standard
library's ``ssl`` client, what ``Request.tls`` says, client certificates,
a name required (SNI), certificates reloaded, bad files refused with
``TLSError``, WSGI's and ASGI's https scheme, the connection's TLS in WSGI's
environ (mod_ssl's variables) and ASGI's ``tls`` extension, RFC 4514 names,
and ``python -m warpcore.asgi --certfile/--keyfile/--ssl-cert-reqs``.
Certificates are made at test time with openssl(1); no key is committed."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys

import pytest

import warpcore
from warpcore.wsgi import WSGIServer

from .conftest import TIMEOUT, child_env, wait_for_line
from .pki import context as _context, der as _der, https_get as _get, https_get_address, openssl, pki  # noqa: F401 - pki is a fixture


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
        "    name = scope['extensions']['tls']['client_cert_name']\n"
        "    await send({'type': 'http.response.body', 'body': f\"{scope['scheme']} {name}\".encode()})\n"
    )
    cmd = [sys.executable, "-m", "warpcore.asgi", "tlsapp:app", "--port", "0", "--lifespan", "off", "--no-access-log",
           "--app-dir", str(tmp_path), "--certfile", str(pki / "a.pem"), "--keyfile", str(pki / "a.key")]
    for client_auth in ([], ["--ssl-ca-certs", str(pki / "ca.pem"), "--ssl-cert-reqs", "2"]):
        proc = subprocess.Popen(cmd + client_auth, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
        try:
            line = wait_for_line(proc, "listening on")
            port = int(line.rsplit(":", 1)[1])
            if not client_auth:
                assert _get(port, _context(pki))[1] == b"https None"
            else:
                assert _get(port, _context(pki, client=True))[1] == b"https CN=client"
                with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
                    _get(port, _context(pki))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    bad = subprocess.run([sys.executable, "-m", "warpcore.asgi", "tlsapp:app", "--app-dir", str(tmp_path), "--certfile", "x.pem"],
                         capture_output=True, env=child_env(), timeout=30)
    assert bad.returncode == 2 and b"go together" in bad.stderr
    bad = subprocess.run(cmd + ["--ssl-cert-reqs", "1"], capture_output=True, env=child_env(), timeout=30)
    assert bad.returncode == 2 and b"needs --ssl-ca-certs" in bad.stderr


# --- the connection's TLS as WSGI and ASGI applications see it ------------------------------


def _ssl_environ(environ, start_response):
    keep = {k: v for k, v in environ.items() if k.startswith("SSL_") or k == "HTTPS"}
    t = environ.get("warpcore.tls")
    keep["alpn"] = t.alpn if t is not None else None
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(keep).encode()]


def test_wsgi_environ_has_mod_ssl_variables_and_the_client_certificate(pki):
    tls = warpcore.TLS(pki / "a.pem", pki / "a.key", client_auth="optional", ca=pki / "ca.pem")
    with WSGIServer(_ssl_environ, port=0, tls=tls) as s:
        address = f"127.0.0.1:{s.port}"
        status, body, facts = https_get_address(address, _context(pki, client=True))
        env = json.loads(body)
        assert status == 200
        assert env["HTTPS"] == "on" and env["SSL_PROTOCOL"] == facts["version"] == "TLSv1.3"
        assert env["SSL_CIPHER"] == facts["cipher"]
        assert env["SSL_TLS_SNI"] == "localhost" and env["alpn"] == "http/1.1"
        assert env["SSL_SESSION_RESUMED"] == "Initial"
        assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
        assert ssl.PEM_cert_to_DER_cert(env["SSL_CLIENT_CERT"]) == _der(pki / "client.pem")
        assert env["SSL_CLIENT_S_DN"] == "CN=client" and env["SSL_CLIENT_I_DN"] == "CN=test CA"
        # The rest of the chain the client sent (OpenSSL sends the CA's when it has it).
        chain = [env[k] for k in sorted(env) if k.startswith("SSL_CLIENT_CERT_CHAIN_")]
        assert all(ssl.PEM_cert_to_DER_cert(c) == _der(pki / "ca.pem") for c in chain)
        # Without a certificate (optional): verified nothing, no certificate entries.
        env = json.loads(https_get_address(address, _context(pki))[1])
        assert env["SSL_CLIENT_VERIFY"] == "NONE" and "SSL_CLIENT_CERT" not in env and "SSL_CLIENT_S_DN" not in env
        # TLS 1.2, and a session resumed by its ID.
        ctx = _context(pki)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        _, body, facts = https_get_address(address, ctx)
        env = json.loads(body)
        assert env["SSL_PROTOCOL"] == "TLSv1.2" and env["SSL_CIPHER"] == facts["cipher"]
        _, body, again = https_get_address(address, ctx, session=facts["session"])
        assert again["reused"] and json.loads(body)["SSL_SESSION_RESUMED"] == "Resumed"
    # A plain server has none of them.
    with WSGIServer(_ssl_environ, port=0) as s:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=TIMEOUT)
        conn.request("GET", "/")
        assert json.loads(conn.getresponse().read()) == {"alpn": None}
        conn.close()


def test_asgi_scope_has_the_tls_extension(pki):
    from warpcore.asgi import ASGIServer

    seen = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        seen.append((scope["type"], scope["scheme"], scope["extensions"].get("tls")))
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    tls = warpcore.TLS(pki / "a.pem", pki / "a.key", client_auth="optional", ca=pki / "ca.pem")
    s = ASGIServer(app, port=0, tls=tls, lifespan="off", access_log=False).start()
    try:
        _, _, facts = https_get_address(f"127.0.0.1:{s.port}", _context(pki, client=True))
        kind, scheme, ext = seen.pop()
        assert (kind, scheme) == ("http", "https")
        assert ext["server_cert"] == ssl.DER_cert_to_PEM_cert(_der(pki / "a.pem"))
        assert ssl.PEM_cert_to_DER_cert(ext["client_cert_chain"][0]) == _der(pki / "client.pem")
        assert ext["client_cert_name"] == "CN=client" and ext["client_cert_error"] is None
        assert ext["tls_version"] == 0x0304
        names = {0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384", 0x1303: "TLS_CHACHA20_POLY1305_SHA256"}
        assert names[ext["cipher_suite"]] == facts["cipher"]
        https_get_address(f"127.0.0.1:{s.port}", _context(pki))
        ext = seen.pop()[2]
        assert list(ext["client_cert_chain"]) == [] and ext["client_cert_name"] is None
        # A WebSocket over TLS (wss) carries it too.
        from websockets.sync.client import connect

        with connect(f"wss://localhost:{s.port}/ws", ssl=_context(pki, client=True), open_timeout=TIMEOUT) as ws:
            with pytest.raises(Exception):
                ws.recv(timeout=TIMEOUT)
        kind, scheme, ext = seen.pop()
        assert (kind, scheme, ext["client_cert_name"]) == ("websocket", "wss", "CN=client")
    finally:
        s.shutdown(2.0)
    # Without TLS the extension is absent (the spec forbids it there).
    s = ASGIServer(app, port=0, lifespan="off", access_log=False).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=TIMEOUT)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
        assert seen.pop()[2] is None
    finally:
        s.shutdown(2.0)


def test_control_characters_in_a_client_certificates_names_are_escaped(tmp_path):
    """A CA-signed client certificate whose subject has CR, LF and ESC: the
    environ's SSL_CLIENT_S_DN and ASGI's client_cert_name give them as RFC
    4514 hex pairs, as OpenSSL's RFC 2253 output (mod_ssl) does."""
    from warpcore import _tls_request

    d = tmp_path
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=test\x7fCA", "-keyout", str(d / "ca.key"),
            "-out", str(d / "ca.pem"))
    for name, subj, ext in (("srv", "/CN=localhost", "subjectAltName=DNS:localhost"),
                            ("cli", "/CN=alice\r\nX-Admin: 1/O=Ex\x1b[31m\u0085", "extendedKeyUsage=clientAuth")):
        openssl("req", *ec, "-utf8", "-subj", subj, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                "-CAcreateserial", "-days", "2", "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))
    tls = warpcore.TLS(d / "srv.pem", d / "srv.key", client_auth="required", ca=d / "ca.pem")
    ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
    ctx.load_cert_chain(str(d / "cli.pem"), str(d / "cli.key"))
    with WSGIServer(_ssl_environ, port=0, tls=tls) as s:
        status, body, _ = https_get_address(f"127.0.0.1:{s.port}", ctx)
    env = json.loads(body)
    assert status == 200 and env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    want = "O=Ex\\1B[31m\\C2\\85,CN=alice\\0D\\0AX-Admin: 1"
    assert env["SSL_CLIENT_S_DN"] == want and env["SSL_CLIENT_I_DN"] == "CN=test\\7FCA"
    rfc2253 = subprocess.run(["openssl", "x509", "-in", str(d / "cli.pem"), "-noout", "-subject", "-nameopt", "RFC2253"],
                             capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    assert rfc2253.strip() == "subject=" + want
    info = warpcore.TLSInfo("TLSv1.3", 0x1301, "", "", False, (_der(d / "cli.pem"),))
    assert _tls_request.asgi_extension(info, None)["client_cert_name"] == want
    # A certificate that does not read (never one the library verified)
    # still has the entries, empty, beside SUCCESS.
    junk = _tls_request.wsgi_entries(warpcore.TLSInfo("TLSv1.3", 0x1301, "", "", False, (b"junk",)))
    assert (junk["SSL_CLIENT_VERIFY"], junk["SSL_CLIENT_S_DN"], junk["SSL_CLIENT_I_DN"]) == ("SUCCESS", "", "")


def test_distinguished_names_follow_rfc_4514(tmp_path):
    from warpcore import _x509

    # A multi-valued RDN, characters to escape, UTF-8 and a leading space.
    subj = '/DC=org/DC=example/O=Ex, Inc.+OU=R&D/CN= Zo\u00eb #1;"<>\\\\/UID=zz'
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-utf8", "-multivalue-rdn", "-subj", subj, "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"))
    cert = _der(tmp_path / "c.pem")
    name = 'UID=zz,CN=\\ Zo\u00eb #1\\;\\"\\<\\>\\\\,OU=R&D+O=Ex\\, Inc.,DC=example,DC=org'
    assert _x509.subject(cert) == name and _x509.issuer(cert) == name  # self-signed
    # A value whose bytes are not what its type says: RFC 4514's # hex form.
    bad = cert.replace(b"\x0c\x02zz", b"\x0c\x02\xff\xfe")
    assert bad != cert and _x509.subject(bad) == "UID=#0c02fffe," + name.split(",", 1)[1]
    assert _x509.subject(b"\x30\x82\xff") is None and _x509.subject(b"") is None and _x509.issuer(cert[:40]) is None


def test_distinguished_names_use_openssls_short_names(tmp_path):
    """Attributes beyond RFC 4514's own (e-mail, serial number, EV
    jurisdiction...) get the short names OpenSSL's RFC 2253 output (mod_ssl's
    SSL_CLIENT_S_DN) gives them, not dotted OIDs."""
    from warpcore import _x509

    subj = ("/CN=a/emailAddress=a@b.c/serialNumber=42/SN=Doe/GN=Jo/title=Dr/initials=J/pseudonym=jd/postalCode=75001"
            "/businessCategory=Private Organization/name=Jo Doe/dnQualifier=q/generationQualifier=III/jurisdictionC=FR"
            "/jurisdictionST=IdF/jurisdictionL=Paris/organizationIdentifier=VATFR-1/street=1 rue/DC=org/UID=u")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", subj, "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"))
    rfc2253 = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "c.pem"), "-noout", "-subject", "-nameopt",
                              "RFC2253"], capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    assert "emailAddress=a@b.c" in rfc2253 and "jurisdictionC=FR" in rfc2253
    assert "subject=" + _x509.subject(_der(tmp_path / "c.pem")) == rfc2253.strip()

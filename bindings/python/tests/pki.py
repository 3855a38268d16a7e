"""Throwaway certificates for the TLS tests, made at test time with
openssl(1) (no key is committed), and an HTTPS client on the standard
library's ``ssl``."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest

from .conftest import TIMEOUT


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, two server certificates for localhost (ECDSA P-256) and a client
    certificate (``CN=client``), all signed by the CA (``CN=test CA``)."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=test CA", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    for name, ext in (("a", "subjectAltName=DNS:localhost"), ("b", "subjectAltName=DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", *ec, "-subj", f"/CN={name}", "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                "-CAcreateserial", "-days", "2", "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))
    return d


def context(pki: Path, client: bool = False) -> ssl.SSLContext:
    """A client context trusting the test CA, offering http/1.1 by ALPN,
    with the client certificate when ``client``."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    ctx.set_alpn_protocols(["http/1.1"])
    if client:
        ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return ctx


def https_get(port: int, ctx: ssl.SSLContext, path: str = "/") -> Tuple[int, bytes, bytes]:
    """GET over TLS to localhost: status, body, the server certificate's DER."""
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        der = conn.sock.getpeercert(binary_form=True)
        return r.status, r.read(), der
    finally:
        conn.close()


def https_get_address(address: str, ctx: ssl.SSLContext, path: str = "/",
                      session: Optional[ssl.SSLSession] = None) -> Tuple[int, bytes, Dict[str, Any]]:
    """GET over TLS to ``HOST:PORT`` or ``unix:PATH`` (the name checked is
    localhost), resuming ``session`` if given: status, body, and what the
    connection negotiated (``cipher``, ``version``, ``session``, ``reused``)."""
    if address.startswith("unix:"):
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(TIMEOUT)
        raw.connect(address[len("unix:") :])
    else:
        host, _, port = address.rpartition(":")
        raw = socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        r = http.client.HTTPResponse(s)  # type: ignore[arg-type]
        r.begin()
        body = r.read()
        r.close()
        facts = {"cipher": s.cipher()[0], "version": s.version(), "session": s.session, "reused": s.session_reused}
    return r.status, body, facts


def der(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())

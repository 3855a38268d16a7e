"""A TLS connection's facts as WSGI and ASGI applications see them.

WSGI has no standard for them; this takes Apache mod_ssl's variable names,
which mod_wsgi passes on and CherryPy's cheroot sets too (gunicorn and
uWSGI give none): ``HTTPS``, ``SSL_PROTOCOL``, ``SSL_CIPHER``,
``SSL_SESSION_RESUMED``, ``SSL_TLS_SNI``, ``SSL_CLIENT_VERIFY``,
``SSL_CLIENT_CERT`` (PEM), ``SSL_CLIENT_CERT_CHAIN_n``, ``SSL_CLIENT_S_DN``
and ``SSL_CLIENT_I_DN`` (RFC 4514), plus ``warpcore.tls``, the
:class:`~warpcore.TLSInfo` itself (ALPN, the cipher's number, DER). ASGI
has its TLS extension (asgiref's ``specs/tls.rst``): ``scope["extensions"]["tls"]``.

The entries of a connection are the same for each of its requests: they
are made once per distinct ``TLSInfo`` (a bounded cache), so a keep-alive
client with a certificate costs its PEM and name parsing once.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Tuple

from . import _x509
from ._request import TLSInfo

__all__ = ["wsgi_entries", "asgi_extension"]

_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@functools.lru_cache(maxsize=256)
def wsgi_entries(info: TLSInfo) -> Dict[str, Any]:
    """The environ entries of a TLS request (shared: copy, do not change)."""
    env: Dict[str, Any] = {
        "HTTPS": "on",
        "SSL_PROTOCOL": info.version,
        "SSL_CIPHER": info.cipher_name,
        "SSL_SESSION_RESUMED": "Resumed" if info.resumed else "Initial",
        # The library verified any certificate it passed on; a refused one
        # ended the handshake (mod_ssl's FAILED never reaches an application).
        "SSL_CLIENT_VERIFY": "SUCCESS" if info.peer_certs else "NONE",
        "warpcore.tls": info,
    }
    if info.server_name:
        env["SSL_TLS_SNI"] = info.server_name
    if info.peer_certs:
        leaf = info.peer_certs[0]
        env["SSL_CLIENT_CERT"] = _x509.pem(leaf)
        for i, der in enumerate(info.peer_certs[1:]):
            env[f"SSL_CLIENT_CERT_CHAIN_{i}"] = _x509.pem(der)
        # A verified certificate always has names; one that does not read
        # (it cannot happen, see _x509) gives "" rather than no entry beside
        # SSL_CLIENT_VERIFY's SUCCESS. A value that does not decode is in
        # RFC 4514's # hex form.
        env["SSL_CLIENT_S_DN"] = _x509.subject(leaf) or ""
        env["SSL_CLIENT_I_DN"] = _x509.issuer(leaf) or ""
    return env


@functools.lru_cache(maxsize=256)
def _client(certs: Tuple[bytes, ...]) -> Tuple[Tuple[str, ...], Optional[str]]:
    if not certs:
        return (), None
    return tuple(_x509.pem(der) for der in certs), _x509.subject(certs[0])


def asgi_extension(info: TLSInfo, server_cert: Optional[str]) -> Dict[str, Any]:
    """``scope["extensions"]["tls"]`` of a TLS request (a new dict each time:
    the application may change its scope)."""
    chain, name = _client(info.peer_certs)
    return {
        "server_cert": server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _VERSIONS.get(info.version) or int(info.version, 16),
        "cipher_suite": info.cipher,
    }

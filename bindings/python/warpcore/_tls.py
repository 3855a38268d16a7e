"""``TLS``: how a server's listener speaks TLS (``Server(..., tls=...)``).

The library does the TLS (rustls) on its event loops; this only describes it:
certificates (files, read again at every start and reload, or PEM text), the
client certificates asked for, ALPN, session tickets, kernel TLS and the
lowest version. Errors in the certificates raise :class:`TLSError` (a
:class:`~warpcore.WarpcoreError` with ``name == "TLS"``) when the server
starts or reloads, naming the file.
"""

from __future__ import annotations

import os
import ssl
from ctypes import byref, c_void_p
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

from . import _ffi
from ._ffi import F, check

__all__ = ["TLS", "TLSError"]

PathOrPem = Union[str, bytes, "os.PathLike[str]"]

_CLIENT_AUTH = {
    "none": _ffi.TLS_CLIENT_AUTH_NONE,
    "optional": _ffi.TLS_CLIENT_AUTH_OPTIONAL,
    "required": _ffi.TLS_CLIENT_AUTH_REQUIRED,
}
_VERSIONS = {"1.2": 0x0303, "1.3": 0x0304}


TLSError = _ffi.TLSError


def _is_pem(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray)) and b"-----BEGIN" in value


class TLS:
    """A TLS setup for :class:`~warpcore.Server` (``tls=TLS(...)``; a
    ``(certfile, keyfile)`` pair is taken as ``TLS(certfile, keyfile)``).

    ``certfile`` and ``keyfile``: the certificate chain (PEM, the server's
    certificate first) and its private key (PEM), as paths, or as PEM
    ``bytes``. ``more_certs``: further ``(cert, key)`` pairs, chosen by the
    name a client asks for (SNI); the first certificate is the default.
    Files are read again at every start and :meth:`Server.reload`, so that
    replacing them and reloading installs new certificates without dropping
    a connection.

    ``client_auth``: ``"none"`` (default), ``"optional"`` or ``"required"``
    client certificates, checked against the CA certificates ``ca`` (a PEM
    path or PEM bytes); the handler sees them in ``Request.tls.peer_certs``.
    ``alpn``: the protocols offered (``("http/1.1",)``; ``()`` turns ALPN off).
    ``session_tickets``: resumption by tickets (default True). ``ktls``: let
    the kernel encrypt records after the handshake where it can (default True).
    ``min_version``: ``"1.2"`` (default) or ``"1.3"``. ``require_sni_match``:
    refuse (``unrecognized_name``) a client that asks for a name no
    certificate has, or for none (default False: it gets the first certificate).
    """

    def __init__(
        self,
        certfile: PathOrPem,
        keyfile: PathOrPem,
        *,
        more_certs: Iterable[Tuple[PathOrPem, PathOrPem]] = (),
        client_auth: str = "none",
        ca: Optional[PathOrPem] = None,
        alpn: Sequence[str] = ("http/1.1",),
        session_tickets: bool = True,
        ktls: bool = True,
        min_version: str = "1.2",
        require_sni_match: bool = False,
    ) -> None:
        self.certs: List[Tuple[PathOrPem, PathOrPem]] = [(certfile, keyfile)] + list(more_certs)
        if client_auth not in _CLIENT_AUTH:
            raise ValueError(f"client_auth must be one of {', '.join(_CLIENT_AUTH)}, not {client_auth!r}")
        if client_auth != "none" and ca is None:
            raise ValueError("client certificates need the CA certificates to check them against (ca=)")
        if min_version not in _VERSIONS:
            raise ValueError(f"min_version must be '1.2' or '1.3', not {min_version!r}")
        self.client_auth = client_auth
        self.ca = ca
        self.alpn = tuple(alpn)
        self.session_tickets = bool(session_tickets)
        self.ktls = bool(ktls)
        self.min_version = min_version
        self.require_sni_match = bool(require_sni_match)
        # Checked now, as the library checks them (the files are read again at start).
        self._make()

    @classmethod
    def of(cls, value: Union["TLS", Tuple[PathOrPem, PathOrPem], None]) -> Optional["TLS"]:
        """``tls=`` as a :class:`Server` takes it: a TLS, a pair, or None."""
        if value is None or isinstance(value, TLS):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(value[0], value[1])
        raise TypeError("tls must be a warpcore.TLS or a (certfile, keyfile) pair")

    def _make(self) -> c_void_p:
        """A new ``warpcore_tls`` for this setup (the caller frees it)."""
        tls = c_void_p()
        check(F.tls_new(byref(tls)), "warpcore_tls_new")
        try:
            for cert, key in self.certs:
                if _is_pem(cert) or _is_pem(key):
                    c, k = bytes(cert), bytes(key)  # type: ignore[arg-type]
                    check(F.tls_add_cert_pem(tls, c, len(c), k, len(k)), "warpcore_tls_add_cert_pem")
                else:
                    c, k = os.fsencode(cert), os.fsencode(key)  # type: ignore[arg-type]
                    check(F.tls_add_cert_files(tls, c, len(c), k, len(k)), "warpcore_tls_add_cert_files")
            names = [p.encode("ascii") for p in self.alpn]
            array = (_ffi.warpcore_str * max(len(names), 1))()
            for i, n in enumerate(names):
                array[i].ptr = _ffi.ctypes.cast(_ffi.ctypes.c_char_p(n), c_void_p).value
                array[i].len = len(n)
            check(F.tls_set_alpn(tls, _ffi.ctypes.addressof(array), len(names)), "warpcore_tls_set_alpn")
            mode = _CLIENT_AUTH[self.client_auth]
            if self.ca is None:
                check(F.tls_set_client_auth_pem(tls, mode, None, 0), "warpcore_tls_set_client_auth_pem")
            elif _is_pem(self.ca):
                ca = bytes(self.ca)  # type: ignore[arg-type]
                check(F.tls_set_client_auth_pem(tls, mode, ca, len(ca)), "warpcore_tls_set_client_auth_pem")
            else:
                path = os.fsencode(self.ca)  # type: ignore[arg-type]
                check(F.tls_set_client_auth_file(tls, mode, path, len(path)), "warpcore_tls_set_client_auth_file")
            check(F.tls_set_session_tickets(tls, self.session_tickets), "warpcore_tls_set_session_tickets")
            check(F.tls_set_ktls(tls, self.ktls), "warpcore_tls_set_ktls")
            check(F.tls_set_min_version(tls, _VERSIONS[self.min_version]), "warpcore_tls_set_min_version")
            check(F.tls_set_require_sni_match(tls, self.require_sni_match), "warpcore_tls_set_require_sni_match")
        except BaseException:
            F.tls_free(tls)
            raise
        return tls

    def add_to(self, cfg: c_void_p, address: bytes) -> None:
        """Makes listener ``address`` of config ``cfg`` speak TLS as this says."""
        tls = self._make()
        try:
            check(F.config_add_tls_listener(cfg, address, len(address), tls), "warpcore_config_add_tls_listener")
        finally:
            F.tls_free(tls)

    def served_cert(self) -> Optional[str]:
        """The certificate this setup serves, as PEM text (the first of its
        chain, read now: call after a start or reload, which read the files),
        for the ASGI TLS extension's ``server_cert``. None with several
        certificates (the one a connection got depends on its SNI, which the
        library chose and does not report) or when it cannot be read."""
        if len(self.certs) != 1:
            return None
        cert = self.certs[0][0]
        try:
            if _is_pem(cert):
                text = bytes(cert)  # type: ignore[arg-type]
            else:
                with open(cert, "rb") as f:  # type: ignore[arg-type]
                    text = f.read()
            begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
            start = text.index(begin)
            block = text[start : text.index(end, start) + len(end)].decode("ascii")
            return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(block))
        except (OSError, ValueError):
            return None

    def __repr__(self) -> str:
        return f"<TLS {len(self.certs)} certificate(s), client_auth={self.client_auth}, min_version={self.min_version}>"

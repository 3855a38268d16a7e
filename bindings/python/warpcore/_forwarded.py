"""Proxy headers: which peers may set them, and what they mean.

As gunicorn: only a peer in ``forwarded_allow_ips`` (addresses and CIDR
networks, comma separated; ``*`` for any; by default ``$FORWARDED_ALLOW_IPS``
or ``127.0.0.1,::1``) may set the scheme, through ``X-Forwarded-Proto:
https``, ``X-Forwarded-Protocol: ssl`` or ``X-Forwarded-Ssl: on`` (headers
that disagree are a 400); a peer on a Unix socket has no address and is
allowed, whatever the list. From an allowed peer, ``X-Forwarded-For`` also
gives ``REMOTE_ADDR`` (gunicorn leaves that to the application; uvicorn
does it so): the rightmost address in it that is not itself an allowed
proxy, or the leftmost when all are.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Dict, Iterable, List, Optional, Union

__all__ = ["Trust", "DEFAULT_ALLOW", "SCHEME_HEADERS", "CONFLICT", "client_address"]

#: gunicorn's default: the FORWARDED_ALLOW_IPS environment variable, or loopback.
DEFAULT_ALLOW = "127.0.0.1,::1"

#: gunicorn's secure_scheme_headers: header (lower case) -> the value that means https.
SCHEME_HEADERS = {"x-forwarded-protocol": "ssl", "x-forwarded-proto": "https", "x-forwarded-ssl": "on"}

#: The scheme when the scheme headers of one request disagree.
CONFLICT = "conflict"

_CACHE_MAX = 1024


def default_allow() -> str:
    return os.environ.get("FORWARDED_ALLOW_IPS", DEFAULT_ALLOW)


class Trust:
    """``trust(peer)``: whether a peer (the engine's text: an IP address, or
    ``unix:`` for a Unix socket) may set proxy headers."""

    def __init__(self, allow: Union[None, str, Iterable[str]] = None) -> None:
        if allow is None:
            allow = default_allow()
        items = [a.strip() for a in (allow.split(",") if isinstance(allow, str) else allow)]
        items = [a for a in items if a]
        self.all = "*" in items
        self.addresses = set()
        self.networks: List[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]] = []
        for item in items:
            if item == "*":
                continue
            try:
                if "/" in item:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                else:
                    self.addresses.add(ipaddress.ip_address(item))
            except ValueError:
                raise ValueError(f"forwarded_allow_ips: {item!r} is not an IP address or network") from None
        self._known: Dict[str, bool] = {}

    def __call__(self, peer: str) -> bool:
        if self.all:
            return True
        known = self._known.get(peer)
        if known is None:
            known = self._decide(peer)
            if len(self._known) >= _CACHE_MAX:
                self._known.clear()
            self._known[peer] = known
        return known

    def _decide(self, peer: str) -> bool:
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            # No IP address: a Unix socket's peer (gunicorn allows those).
            return peer.startswith("unix:")
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip in self.addresses or any(ip in net for net in self.networks)


def client_address(forwarded_for: str, trust: Trust) -> Optional[str]:
    """The client's address in an ``X-Forwarded-For`` value (from an
    allowed peer): the rightmost entry that is not an allowed proxy, or the
    leftmost when all are; None when there is no entry."""
    hops = [h.strip() for h in forwarded_for.split(",")]
    hops = [h for h in hops if h]
    if not hops:
        return None
    for hop in reversed(hops):
        if not trust(_strip_port(hop)):
            return _strip_port(hop)
    return _strip_port(hops[0])


def _strip_port(hop: str) -> str:
    """``1.2.3.4:5678`` -> ``1.2.3.4``, ``[::1]:80`` -> ``::1`` (some proxies
    add the port); anything else as it is."""
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


def scheme_of(values: Dict[str, List[str]]) -> Optional[str]:
    """The scheme the scheme headers say (``{name: [values]}``), CONFLICT
    when they disagree, None when there are none."""
    scheme = None
    for name, expected in SCHEME_HEADERS.items():
        for value in values.get(name, ()):
            s = "https" if value.strip() == expected else "http"
            if scheme is not None and s != scheme:
                return CONFLICT
            scheme = s
    return scheme

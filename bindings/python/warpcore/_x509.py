"""Certificates as the request side shows them: PEM text and the subject's
and issuer's distinguished names (RFC 4514), read from the DER the library
hands over (``TLSInfo.peer_certs``), with no dependency.

Only the names are parsed: a certificate is a SEQUENCE whose first element
(tbsCertificate) holds, in order, an optional ``[0]`` version, the serial
number, the signature algorithm, the issuer, the validity and the subject
(RFC 5280, 4.1). A certificate that does not read so has no name (None);
the library verified the chain before the request reached Python, so that
does not happen with a client certificate. A value whose bytes do not
decode as its string type says is given in RFC 4514's ``#`` hex form, as
is a value of a type that is not a string, so a name never goes missing
for one bad value.
"""

from __future__ import annotations

import ssl
from typing import List, Optional, Tuple

__all__ = ["pem", "subject", "issuer"]

# The short names OpenSSL's RFC 2253 output gives (what mod_ssl puts in
# SSL_CLIENT_S_DN): RFC 4514, 3's own, and the other attributes certificates
# commonly carry (e-mail, serial number, the EV jurisdiction fields...).
# Another attribute type is written as its dotted OID (RFC 4514, 2.3).
_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "street",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
    "1.2.840.113549.1.9.1": "emailAddress",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.12": "title",
    "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}

# ASN.1 string types and how their bytes decode.
_STRINGS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x12: "ascii",  # NumericString
    0x14: "latin-1",  # TeletexString (T61), as OpenSSL reads it
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}


def pem(der: bytes) -> str:
    """The certificate ``der`` as PEM text."""
    return ssl.DER_cert_to_PEM_cert(der)


def _tlv(data: bytes, at: int, end: int) -> Tuple[int, int, int]:
    """The tag, the start and the end of the contents of the element at ``at``."""
    if at + 2 > end:
        raise ValueError("truncated")
    tag, n = data[at], data[at + 1]
    at += 2
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k <= 4 or at + k > end:
            raise ValueError("bad length")
        n = int.from_bytes(data[at : at + k], "big")
        at += k
    if at + n > end:
        raise ValueError("truncated")
    return tag, at, at + n


def _items(data: bytes, start: int, end: int) -> List[Tuple[int, int, int, int]]:
    """The elements between ``start`` and ``end``: (tag, contents start,
    contents end, element start) each."""
    out = []
    at = start
    while at < end:
        tag, s, e = _tlv(data, at, end)
        out.append((tag, s, e, at))
        at = e
    return out


def _oid(b: bytes) -> str:
    parts: List[int] = []
    n = 0
    for byte in b:
        n = (n << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(n)
            n = 0
    if not parts:
        raise ValueError("empty OID")
    first = parts[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(p) for p in head + parts[1:])


def _escape(value: str) -> str:
    """RFC 4514, 2.4: the characters a value string escapes, and control
    characters (C0, DEL, C1: NUL included) as hex pairs of their UTF-8 bytes
    (``\\0D\\0A``, as OpenSSL's RFC 2253 output), so that none reaches an
    environ entry or a log raw."""
    out = []
    for i, c in enumerate(value):
        if c in '"+,;<>\\' or (c == "#" and i == 0) or (c == " " and (i == 0 or i == len(value) - 1)):
            out.append("\\" + c)
        elif c < " " or "\x7f" <= c <= "\x9f":
            out.append("".join(f"\\{b:02X}" for b in c.encode("utf-8")))
        else:
            out.append(c)
    return "".join(out)


def _name(data: bytes, start: int, end: int) -> str:
    """A Name (a SEQUENCE of SETs of type-and-value SEQUENCEs) as an RFC 4514
    string: the last RDN first, multi-valued ones joined with ``+``."""
    rdns = []
    for tag, s, e, _ in _items(data, start, end):
        if tag != 0x31:
            raise ValueError("not a SET")
        parts = []
        for atag, a_s, a_e, _ in _items(data, s, e):
            if atag != 0x30:
                raise ValueError("not a SEQUENCE")
            (otag, os_, oe, _), (vtag, vs, ve, vat) = _items(data, a_s, a_e)[:2]
            if otag != 0x06:
                raise ValueError("not an OID")
            oid = _oid(data[os_:oe])
            encoding = _STRINGS.get(vtag)
            try:
                value = _escape(data[vs:ve].decode(encoding)) if encoding else None
            except UnicodeDecodeError:
                value = None
            if value is None:
                # RFC 4514, 2.4: a value of another type, or one whose bytes
                # do not decode as its type says, is its BER encoding in hex.
                value = "#" + data[vat:ve].hex()
            parts.append(f"{_SHORT_NAMES.get(oid, oid)}={value}")
        rdns.append("+".join(parts))
    return ",".join(reversed(rdns))


def _names(der: bytes) -> Tuple[str, str]:
    """(issuer, subject) of a certificate."""
    tag, s, e = _tlv(der, 0, len(der))
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, s, e = _tlv(der, s, e)
    if tag != 0x30:
        raise ValueError("no tbsCertificate")
    fields = _items(der, s, e)
    if fields and fields[0][0] == 0xA0:  # the version
        fields = fields[1:]
    if len(fields) < 5:
        raise ValueError("too few fields")
    issuer_f, subject_f = fields[2], fields[4]
    return _name(der, issuer_f[1], issuer_f[2]), _name(der, subject_f[1], subject_f[2])


def subject(der: bytes) -> Optional[str]:
    """The certificate's subject as an RFC 4514 string (``CN=alice,O=Example``),
    or None when ``der`` does not read as a certificate."""
    try:
        return _names(der)[1]
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


def issuer(der: bytes) -> Optional[str]:
    """The certificate's issuer as an RFC 4514 string, or None."""
    try:
        return _names(der)[0]
    except (ValueError, IndexError, UnicodeDecodeError):
        return None

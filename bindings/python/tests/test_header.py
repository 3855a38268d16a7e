"""Every function, callback type, struct and result code of include/warpcore.h
is declared in the ctypes layer, with matching types."""

from __future__ import annotations

import ctypes
import re
from ctypes import POINTER, c_bool, c_char_p, c_int64, c_size_t, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p
from typing import Dict, List, Tuple

import pytest

from warpcore import _ffi

from .conftest import ROOT

HEADER = (ROOT / "include" / "warpcore.h").read_text()


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)  # preprocessor lines


CODE = _strip_comments(HEADER)


def _split_param(param: str) -> Tuple[str, str]:
    """'const struct warpcore_header *headers' -> ('const struct warpcore_header *', 'headers')."""
    param = " ".join(param.replace("*", " * ").split())
    m = re.match(r"^(.*?)(\w+)$", param)
    assert m, param
    typ, name = m.group(1).strip(), m.group(2)
    if not typ:  # an unnamed parameter
        return name, ""
    return typ, name


def _parse_functions() -> Dict[str, Tuple[str, List[str]]]:
    out = {}
    for m in re.finditer(r"([A-Za-z_][\w\s\*]*?)\b(warpcore_\w+)\s*\(([^()]*)\)\s*;", CODE):
        ret = " ".join(m.group(1).split())
        if ret.startswith("typedef"):
            continue
        params = [p.strip() for p in m.group(3).split(",") if p.strip()]
        if params == ["void"]:
            params = []
        out[m.group(2)] = (ret, [_split_param(p)[0] for p in params])
    return out


def _parse_callbacks() -> Dict[str, Tuple[str, List[str]]]:
    out = {}
    for m in re.finditer(r"typedef\s+([\w\s\*]+?)\s*\(\s*\*\s*(\w+)\s*\)\s*\(([^()]*)\)\s*;", CODE):
        params = [_split_param(p.strip())[0] for p in m.group(3).split(",") if p.strip()]
        out[m.group(2)] = (" ".join(m.group(1).split()), params)
    return out


def _parse_structs() -> Dict[str, List[Tuple[str, str]]]:
    out = {}
    for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*\w+\s*;", CODE, flags=re.S):
        fields = [_split_param(f.strip()) for f in m.group(2).split(";") if f.strip()]
        out[m.group(1)] = [(name, typ) for typ, name in fields]
    return out


FUNCTIONS = _parse_functions()
CALLBACKS = _parse_callbacks()
STRUCTS = _parse_structs()

_SCALARS = {
    "warpcore_result": {c_uint32},
    "uint8_t": {c_uint8},
    "uint16_t": {c_uint16},
    "uint32_t": {c_uint32},
    "uint64_t": {c_uint64},
    "int64_t": {c_int64},
    "size_t": {c_size_t},
    "bool": {c_bool},
    "void": {None},
    "warpcore_handler_cb": {_ffi.warpcore_handler_cb},
    "warpcore_release_cb": {_ffi.warpcore_release_cb},
    "warpcore_access_log_cb": {_ffi.warpcore_access_log_cb},
    "warpcore_error_log_cb": {_ffi.warpcore_error_log_cb},
    "warpcore_answering_cb": {_ffi.warpcore_answering_cb},
    "warpcore_upgrade_cb": {_ffi.warpcore_upgrade_cb},
    "warpcore_websocket_cb": {_ffi.warpcore_websocket_cb},
    "warpcore_connection_open_cb": {_ffi.warpcore_connection_open_cb},
    "warpcore_connection_close_cb": {_ffi.warpcore_connection_close_cb},
    "warpcore_close_cb": {_ffi.warpcore_close_cb},
    "warpcore_body_ready_cb": {_ffi.warpcore_body_ready_cb},
}
_OPAQUE = {
    "warpcore_config",
    "warpcore_server",
    "warpcore_response",
    "warpcore_prepared",
    "warpcore_body",
    "warpcore_upgraded",
    "warpcore_websocket",
    "warpcore_tls",
}
_STRUCTS = {
    "warpcore_str": _ffi.warpcore_str,
    "warpcore_header": _ffi.warpcore_header,
    "warpcore_request": _ffi.warpcore_request,
    "warpcore_shutdown_report": _ffi.warpcore_shutdown_report,
    "warpcore_file_cache_stats": _ffi.warpcore_file_cache_stats,
    "warpcore_stats": _ffi.warpcore_stats,
    "warpcore_connection_info": _ffi.warpcore_connection_info,
}


def accepted(ctype: str) -> set:
    """The ctypes types that faithfully stand for C type ``ctype``."""
    words = [w for w in ctype.replace("*", " * ").split() if w not in ("const", "struct")]
    stars = words.count("*")
    base = " ".join(w for w in words if w != "*")
    if stars == 0:
        if base in _SCALARS:
            return _SCALARS[base]
        if base in _STRUCTS:
            return {_STRUCTS[base]}
    if stars == 1:
        if base in ("uint8_t", "char"):
            return {c_char_p, c_void_p, POINTER(c_uint8)}
        if base == "void":
            return {c_void_p}
        if base in _OPAQUE:
            return {c_void_p}
        if base in _STRUCTS:
            return {c_void_p, POINTER(_STRUCTS[base])}
        if base in ("size_t", "uint32_t", "uint64_t"):  # outputs
            return {POINTER(next(iter(_SCALARS[base])))}
    if stars == 2 and base in _OPAQUE:
        return {POINTER(c_void_p)}
    raise AssertionError(f"the test does not know C type {ctype!r}: teach accepted() about it")


def test_header_was_parsed():
    # A broken parser must not pass vacuously.
    assert len(FUNCTIONS) >= 25, sorted(FUNCTIONS)
    assert {"warpcore_respond", "warpcore_server_start", "warpcore_version"} <= set(FUNCTIONS)
    assert {"warpcore_handler_cb", "warpcore_release_cb"} <= set(CALLBACKS)
    assert {"warpcore_str", "warpcore_header", "warpcore_request"} <= set(STRUCTS)


def test_every_callback_type_and_struct_is_declared():
    assert set(CALLBACKS) <= set(_SCALARS), f"callback types not bound: {set(CALLBACKS) - set(_SCALARS)}"
    assert set(STRUCTS) == set(_STRUCTS), f"structs not bound: {set(STRUCTS) ^ set(_STRUCTS)}"


def test_every_header_function_is_declared():
    missing = sorted(set(FUNCTIONS) - set(_ffi.FUNCTIONS))
    assert not missing, f"declared in warpcore.h but not in warpcore/_ffi.py: {missing}"
    extra = sorted(set(_ffi.FUNCTIONS) - set(FUNCTIONS))
    assert not extra, f"declared in warpcore/_ffi.py but not in warpcore.h: {extra}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_types_match(name):
    ret, params = FUNCTIONS[name]
    restype, argtypes = _ffi.FUNCTIONS[name]
    assert restype in accepted(ret), f"{name} returns {ret}, bound as {restype}"
    assert len(argtypes) == len(params), f"{name} takes {len(params)} arguments, bound with {len(argtypes)}"
    for i, (c, py) in enumerate(zip(params, argtypes)):
        assert py in accepted(c), f"{name} argument {i} is {c}, bound as {py}"
    fn = getattr(_ffi.LIB, name)
    assert fn.restype is restype and list(fn.argtypes) == list(argtypes), f"{name} is not configured as declared"


@pytest.mark.parametrize("name", sorted(CALLBACKS))
def test_callback_types_match(name):
    ret, params = CALLBACKS[name]
    cb = getattr(_ffi, name)
    assert cb._restype_ in accepted(ret)
    assert len(cb._argtypes_) == len(params)
    for c, py in zip(params, cb._argtypes_):
        assert py in accepted(c), f"{name}: {c} bound as {py}"


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_struct_layout_matches(name):
    fields = STRUCTS[name]
    bound = _STRUCTS[name]._fields_
    assert [f for f, _ in fields] == [f for f, _ in bound], f"{name} field names or order differ"
    for (field, ctype), (_, py) in zip(fields, bound):
        assert py in accepted(ctype), f"{name}.{field} is {ctype}, bound as {py}"


def test_request_view_size_is_what_the_reader_unpacks():
    from warpcore import _request

    # The fast reader takes the view up to the TLS flag (the 0.2 struct's
    # size); the TLS fields after it are read when asked for.
    assert _request._VIEW.size == _ffi.warpcore_request.tls_version.offset == 124
    assert ctypes.sizeof(_ffi.warpcore_request) == _request._OFF_TLS + _request._TLS_VIEW.size == 176


def test_result_codes_match():
    codes = {m.group(1): int(m.group(2)) for m in re.finditer(r"WARPCORE_RESULT_(\w+)\s*=\s*(\d+)", CODE)}
    assert codes, "no result codes parsed"
    assert codes == {name: code for code, name in _ffi.RESULT_NAMES.items()}
    for name, code in codes.items():
        assert getattr(_ffi, name) == code


def test_log_levels_match():
    codes = {m.group(1): int(m.group(2)) for m in re.finditer(r"WARPCORE_LOG_LEVEL_(\w+)\s*=\s*(\d+)", CODE)}
    assert codes == {"ERROR": 0, "WARNING": 1, "INFO": 2}
    for name, code in codes.items():
        assert getattr(_ffi, "LOG_LEVEL_" + name) == code


def test_timeout_codes_match():
    codes = {m.group(1): int(m.group(2)) for m in re.finditer(r"WARPCORE_TIMEOUT_(\w+)\s*=\s*(\d+)", CODE)}
    assert codes == {"HEADER": 0, "IDLE": 1, "BODY": 2, "WRITE": 3, "ANSWER": 4}
    for name, code in codes.items():
        assert getattr(_ffi, "TIMEOUT_" + name) == code


@pytest.mark.parametrize("enum, prefix", [
    ("WARPCORE_UPGRADE_EVENT_", "UPGRADE_EVENT_"),
    ("WARPCORE_WEBSOCKET_EVENT_", "WEBSOCKET_EVENT_"),
    ("WARPCORE_WEBSOCKET_KIND_", "WEBSOCKET_KIND_"),
    ("WARPCORE_PROXY_PROTOCOL_", "PROXY_PROTOCOL_"),
    ("WARPCORE_TLS_CLIENT_AUTH_", "TLS_CLIENT_AUTH_"),
])
def test_upgrade_and_websocket_enums_match(enum, prefix):
    codes = {m.group(1): int(m.group(2)) for m in re.finditer(enum + r"(\w+)\s*=\s*(\d+)", CODE)}
    assert codes, f"no {enum}* values parsed"
    bound = {name[len(prefix):]: value for name, value in vars(_ffi).items() if name.startswith(prefix)}
    assert codes == bound


def test_every_enum_of_the_header_is_checked():
    # A new enum in the header needs its constants bound and a test above.
    enums = set(re.findall(r"\benum\s+(warpcore_\w+)\s*(?::\s*\w+\s*)?\{", CODE))
    assert enums == {
        "warpcore_result",
        "warpcore_timeout",
        "warpcore_log_level",
        "warpcore_upgrade_event",
        "warpcore_websocket_event",
        "warpcore_websocket_kind",
        "warpcore_proxy_protocol",
        "warpcore_tls_client_auth",
    }, enums


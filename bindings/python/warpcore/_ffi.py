"""The ctypes layer: finds libwarpcore, declares every C function of
``include/warpcore.h`` with its argument and return types, and turns result
codes into Python exceptions.

Everything else in the package goes through this module; nothing else touches
``ctypes.CDLL`` or raw result codes.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import platform
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "LIB",
    "LIBRARY_PATH",
    "LibraryNotFoundError",
    "WarpcoreError",
    "ClientClosedError",
    "check",
    "error_for",
]

if sys.platform == "darwin":
    _LIB_NAME = "libwarpcore.dylib"
else:
    _LIB_NAME = "libwarpcore.so"

# bindings/python/warpcore/_ffi.py -> the checkout's root is three levels up.
_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT_LIB = _PACKAGE_DIR.parents[2] / "target" / "release" / _LIB_NAME


class LibraryNotFoundError(ImportError):
    """libwarpcore could not be loaded; the message names every place tried."""


def _candidates() -> List[Tuple[str, str]]:
    """(how, path-or-name) in lookup order."""
    env = os.environ.get("WARPCORE_LIBRARY")
    if env:
        # An explicit choice is the only one tried: a typo must not silently
        # load some other build.
        return [("WARPCORE_LIBRARY", env)]
    out = [
        ("inside the package (pip install)", str(_PACKAGE_DIR / _LIB_NAME)),
        ("the checkout's target/release", str(_CHECKOUT_LIB)),
    ]
    import ctypes.util

    found = ctypes.util.find_library("warpcore")
    out.append(("the system loader", found or _LIB_NAME))
    return out


def _load() -> Tuple[ctypes.CDLL, str]:
    tried = []
    for how, path in _candidates():
        is_path = os.sep in path
        if is_path and not os.path.exists(path):
            tried.append(f"{path} ({how}: no such file)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as exc:
            tried.append(f"{path} ({how}: {exc})")
    raise LibraryNotFoundError(
        "cannot load libwarpcore; tried:\n  "
        + "\n  ".join(tried)
        + "\nbuild it with `make` in the checkout, install the package with "
        "`pip install ./bindings/python`, or set WARPCORE_LIBRARY to the library's path"
    )


LIB, LIBRARY_PATH = _load()

# --- types -------------------------------------------------------------------


class warpcore_str(Structure):
    """A byte string: ``len`` bytes at ``ptr``, not NUL-terminated."""

    _fields_ = [("ptr", c_void_p), ("len", c_size_t)]


class warpcore_header(Structure):
    """One header field."""

    _fields_ = [("name", warpcore_str), ("value", warpcore_str)]


class warpcore_request(Structure):
    """The borrowed request view passed to the handler."""

    _fields_ = [
        ("method", warpcore_str),
        ("target", warpcore_str),
        ("path", warpcore_str),
        ("query", warpcore_str),
        ("headers", POINTER(warpcore_header)),
        ("header_count", c_size_t),
        ("body", warpcore_str),
        ("peer_ip", warpcore_str),
        ("peer_port", c_uint16),
        ("version_major", c_uint8),
        ("version_minor", c_uint8),
        ("worker_index", c_uint32),
        # Added in 0.2 (the struct only grows at its end): the body streams.
        ("body_follows", c_bool),
        # Added in 0.3: the connection's TLS (0, empty, NULL when plain).
        ("tls", c_bool),
        ("tls_resumed", c_bool),
        ("tls_version", c_uint16),
        ("tls_cipher", c_uint16),
        ("tls_sni", warpcore_str),
        ("tls_alpn", warpcore_str),
        ("tls_peer_certs", POINTER(warpcore_str)),
        ("tls_peer_cert_count", c_size_t),
    ]


class warpcore_connection_info(Structure):
    """The borrowed view of a connection passed to the connection hooks."""

    _fields_ = [
        ("peer_ip", warpcore_str),
        ("peer_port", c_uint16),
        ("worker_index", c_uint32),
        ("id", c_uint64),
    ]


# Opaque handles are plain addresses on the Python side.
warpcore_config_p = c_void_p
warpcore_server_p = c_void_p
warpcore_response_p = c_void_p
warpcore_body_p = c_void_p
warpcore_upgraded_p = c_void_p
warpcore_websocket_p = c_void_p
warpcore_tls_p = c_void_p
warpcore_result = c_uint32
warpcore_timeout = c_uint32


#: void (*)(void *userdata, const warpcore_request *request, warpcore_response *response)
# The response handle arrives as a plain int (c_void_p's getfunc): no ctypes
# object is made per call. Untyped calls take it through ``RAW``, whose first
# argument is declared (an int wider than 32 bits would not pass untyped).
warpcore_handler_cb = CFUNCTYPE(None, c_void_p, c_void_p, c_void_p)
#: const warpcore_prepared *(*)(void *userdata, const warpcore_request *, warpcore_response *)
warpcore_answering_cb = CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_void_p)
#: void (*)(void *userdata, const uint8_t *data, size_t len)
warpcore_release_cb = CFUNCTYPE(None, c_void_p, c_void_p, c_size_t)
#: void (*)(void *userdata, const uint8_t *lines, size_t len)
warpcore_access_log_cb = CFUNCTYPE(None, c_void_p, c_void_p, c_size_t)
#: void (*)(void *userdata, uint32_t level, const uint8_t *message, size_t len)
warpcore_error_log_cb = CFUNCTYPE(None, c_void_p, c_uint32, c_void_p, c_size_t)
#: bool (*)(void *userdata, const warpcore_connection_info *connection)
warpcore_connection_open_cb = CFUNCTYPE(c_bool, c_void_p, c_void_p)
#: void (*)(void *userdata, const warpcore_connection_info *connection)
warpcore_connection_close_cb = CFUNCTYPE(None, c_void_p, c_void_p)
#: void (*)(void *userdata, warpcore_upgraded *upgraded, uint32_t events)
warpcore_upgrade_cb = CFUNCTYPE(None, c_void_p, c_void_p, c_uint32)
#: void (*)(void *userdata, warpcore_websocket *websocket, uint32_t events)
warpcore_websocket_cb = CFUNCTYPE(None, c_void_p, c_void_p, c_uint32)
#: void (*)(void *userdata, warpcore_response *res): a request ended before
#: its answer was complete (``warpcore_response_on_close``, on the worker).
warpcore_close_cb = CFUNCTYPE(None, c_void_p, c_void_p)
#: void (*)(void *userdata): a body whose ``warpcore_body_try_read`` said
#: WOULD_BLOCK may be read on (``warpcore_body_on_readable``, on the worker).
warpcore_body_ready_cb = CFUNCTYPE(None, c_void_p)


class _Sized(Structure):
    """A struct the caller allocates and the library fills: it starts with
    ``size_t size``, the size of the struct as this binding declares it (set
    on creation, as the header's ``WARPCORE_*_INIT`` macros do). The library
    writes only the fields that fit in ``size``, so a newer library never
    overruns it, and sets ``size`` to the bytes it wrote."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.size = ctypes.sizeof(self)


class warpcore_file_cache_stats(_Sized):
    """Hit and miss counts of the file caches."""

    _fields_ = [
        ("size", c_size_t),
        ("info_hits", c_uint64),
        ("info_misses", c_uint64),
        ("fd_hits", c_uint64),
        ("fd_misses", c_uint64),
    ]


class warpcore_shutdown_report(_Sized):
    """What a graceful shutdown did."""

    _fields_ = [("size", c_size_t), ("requests_finished", c_uint64), ("connections_cut", c_uint64)]


class warpcore_stats(_Sized):
    """The server's counters, summed over every worker."""

    _fields_ = [("size", c_size_t)] + [
        (name, c_uint64)
        for name in (
            "connections_accepted",
            "connections_active",
            "connections_timed_out",
            "requests",
            "responses_1xx",
            "responses_2xx",
            "responses_3xx",
            "responses_4xx",
            "responses_5xx",
            "bytes_in",
            "bytes_out",
            "parse_errors",
            "fd_cache_hits",
            "fd_cache_misses",
            "info_cache_hits",
            "info_cache_misses",
            "coalesce_naps",
            # Added in 0.2 (the struct only grows at its end).
            "upgrades",
            # Added in 0.3.
            "tls_handshakes",
            "tls_handshake_failures",
            "tls_kernel",
        )
    ]

# Result codes (stable numbers, see enum warpcore_result).
RESULT_NAMES: Dict[int, str] = {
    0: "OK",
    1: "INVALID_ARGUMENT",
    2: "NULL_ARGUMENT",
    3: "INVALID_ADDRESS",
    4: "ADDRESS_IN_USE",
    5: "IO_ERROR",
    6: "SHUTTING_DOWN",
    7: "INVALID_STATE",
    8: "ALREADY_ANSWERED",
    9: "CLOSED",
    10: "INVALID_STATUS",
    11: "INVALID_HEADER",
    12: "PANIC",
    13: "LENGTH_MISMATCH",
    14: "WOULD_BLOCK",
    15: "BUFFER_TOO_SMALL",
    16: "TLS",
}
OK = 0
INVALID_ARGUMENT = 1
NULL_ARGUMENT = 2
INVALID_ADDRESS = 3
ADDRESS_IN_USE = 4
IO_ERROR = 5
SHUTTING_DOWN = 6
INVALID_STATE = 7
ALREADY_ANSWERED = 8
CLOSED = 9
INVALID_STATUS = 10
INVALID_HEADER = 11
PANIC = 12
LENGTH_MISMATCH = 13
WOULD_BLOCK = 14
BUFFER_TOO_SMALL = 15
TLS = 16

# enum warpcore_tls_client_auth.
TLS_CLIENT_AUTH_NONE = 0
TLS_CLIENT_AUTH_OPTIONAL = 1
TLS_CLIENT_AUTH_REQUIRED = 2

LOG_LEVEL_ERROR = 0
LOG_LEVEL_WARNING = 1
LOG_LEVEL_INFO = 2

TIMEOUT_HEADER = 0
TIMEOUT_IDLE = 1
TIMEOUT_BODY = 2
TIMEOUT_WRITE = 3
TIMEOUT_ANSWER = 4

# enum warpcore_upgrade_event: bits of an upgraded connection's callback.
PROXY_PROTOCOL_NONE = 0
PROXY_PROTOCOL_REQUIRED = 1
PROXY_PROTOCOL_OPTIONAL = 2
UPGRADE_EVENT_READABLE = 1
UPGRADE_EVENT_WRITABLE = 2
UPGRADE_EVENT_CLOSED = 4
UPGRADE_EVENT_DRAINING = 8
UPGRADE_EVENT_QUIET = 16

# enum warpcore_websocket_event: bits of a WebSocket's callback.
WEBSOCKET_EVENT_MESSAGE = 1
WEBSOCKET_EVENT_WRITABLE = 2
WEBSOCKET_EVENT_CLOSED = 4
WEBSOCKET_EVENT_DRAINING = 8

# enum warpcore_websocket_kind: what a message carries.
WEBSOCKET_KIND_TEXT = 1
WEBSOCKET_KIND_BINARY = 2
WEBSOCKET_KIND_CLOSE = 8

# --- functions -----------------------------------------------------------------

_u8p = c_char_p  # const uint8_t * input: bytes pass without a copy
_hdrp = c_void_p  # const struct warpcore_header *: an array's address

#: name -> (restype, argtypes), exactly the prototypes of include/warpcore.h
#: (tests/test_header.py parses the header and compares).
FUNCTIONS: Dict[str, Tuple[object, Sequence[object]]] = {
    "warpcore_config_new": (warpcore_result, [POINTER(warpcore_config_p)]),
    "warpcore_config_free": (None, [warpcore_config_p]),
    "warpcore_config_set_listen": (warpcore_result, [warpcore_config_p, _u8p, c_size_t]),
    "warpcore_config_set_workers": (warpcore_result, [warpcore_config_p, c_uint32]),
    "warpcore_config_set_external_workers": (warpcore_result, [warpcore_config_p, c_bool]),
    "warpcore_config_set_share_port": (warpcore_result, [warpcore_config_p, c_bool]),
    "warpcore_config_add_listener": (warpcore_result, [warpcore_config_p, _u8p, c_size_t]),
    "warpcore_config_clear_listeners": (warpcore_result, [warpcore_config_p]),
    "warpcore_config_set_unix_socket_mode": (warpcore_result, [warpcore_config_p, c_uint32, c_int64, c_int64]),
    "warpcore_config_add_systemd_listeners": (warpcore_result, [warpcore_config_p, POINTER(c_uint32)]),
    "warpcore_config_set_handler": (warpcore_result, [warpcore_config_p, warpcore_handler_cb, c_void_p]),
    "warpcore_config_set_server_name": (warpcore_result, [warpcore_config_p, _u8p, c_size_t]),
    "warpcore_config_set_max_body_size": (warpcore_result, [warpcore_config_p, c_uint64]),
    "warpcore_config_set_whole_body_max": (warpcore_result, [warpcore_config_p, c_uint64]),
    "warpcore_config_set_max_head_size": (warpcore_result, [warpcore_config_p, c_uint32]),
    "warpcore_config_set_max_request_line": (warpcore_result, [warpcore_config_p, c_uint32]),
    "warpcore_config_set_max_header_count": (warpcore_result, [warpcore_config_p, c_uint32]),
    "warpcore_config_set_stream_high_water": (warpcore_result, [warpcore_config_p, c_uint64]),
    "warpcore_config_set_max_connections": (warpcore_result, [warpcore_config_p, c_uint32]),
    "warpcore_config_set_backlog": (warpcore_result, [warpcore_config_p, c_uint32]),
    "warpcore_config_set_coalesce_wait": (warpcore_result, [warpcore_config_p, c_uint32]),
    "warpcore_config_set_access_log_file": (warpcore_result, [warpcore_config_p, _u8p, c_size_t]),
    "warpcore_config_set_access_log_callback": (
        warpcore_result,
        [warpcore_config_p, warpcore_access_log_cb, c_void_p],
    ),
    "warpcore_config_set_error_log": (warpcore_result, [warpcore_config_p, warpcore_error_log_cb, c_void_p]),
    "warpcore_config_set_timeout": (warpcore_result, [warpcore_config_p, c_uint32, c_uint64]),
    "warpcore_config_add_static": (warpcore_result, [warpcore_config_p, _u8p, c_size_t, _u8p, c_size_t]),
    "warpcore_config_set_file_cache": (warpcore_result, [warpcore_config_p, c_uint64, c_uint64]),
    "warpcore_config_set_static_dotfiles": (warpcore_result, [warpcore_config_p, c_bool]),
    "warpcore_config_set_sched_batch": (warpcore_result, [warpcore_config_p, c_bool]),
    "warpcore_thread_set_sched_batch": (warpcore_result, [c_bool]),
    "warpcore_respond_file": (warpcore_result, [warpcore_response_p, c_uint16, _hdrp, c_size_t, _u8p, c_size_t]),
    "warpcore_server_file_cache_stats": (
        warpcore_result,
        [warpcore_server_p, POINTER(warpcore_file_cache_stats)],
    ),
    "warpcore_respond": (
        warpcore_result,
        [warpcore_response_p, c_uint16, _hdrp, c_size_t, _u8p, c_size_t],
    ),
    "warpcore_respond_buffer": (
        warpcore_result,
        [warpcore_response_p, c_uint16, _hdrp, c_size_t, _u8p, c_size_t, warpcore_release_cb, c_void_p],
    ),
    "warpcore_response_start": (warpcore_result, [warpcore_response_p, c_uint16, _hdrp, c_size_t, c_int64]),
    "warpcore_response_write": (warpcore_result, [warpcore_response_p, _u8p, c_size_t]),
    "warpcore_response_write_buffer": (
        warpcore_result,
        [warpcore_response_p, _u8p, c_size_t, warpcore_release_cb, c_void_p],
    ),
    "warpcore_response_end": (warpcore_result, [warpcore_response_p]),
    "warpcore_response_abort": (warpcore_result, [warpcore_response_p]),
    "warpcore_response_set_reason": (warpcore_result, [warpcore_response_p, _u8p, c_size_t]),
    "warpcore_response_pause_timeout": (warpcore_result, [warpcore_response_p]),
    # WARPCORE_0.5. Through F only (CDLL: the GIL is released): a call that
    # replaces a callback waits for it while it runs, and it runs Python.
    "warpcore_response_on_close": (warpcore_result, [warpcore_response_p, warpcore_close_cb, c_void_p]),
    "warpcore_config_set_proxy_protocol": (warpcore_result, [warpcore_config_p, c_uint32]),
    "warpcore_config_set_listener_proxy_protocol": (warpcore_result, [warpcore_config_p, _u8p, c_size_t, c_uint32]),
    "warpcore_config_set_connection_hooks": (
        warpcore_result,
        [warpcore_config_p, warpcore_connection_open_cb, warpcore_connection_close_cb, c_void_p],
    ),
    "warpcore_response_body": (warpcore_result, [warpcore_response_p, POINTER(warpcore_body_p)]),
    # buf is a writable buffer's address (a ctypes array or an int).
    "warpcore_body_read": (warpcore_result, [warpcore_body_p, c_void_p, c_size_t, POINTER(c_size_t)]),
    # WARPCORE_0.5: reads that never wait, and the readiness callback.
    # Through F only (CDLL: the GIL is released): body_free, and on_readable
    # when it replaces a callback, wait for one running on a worker, and it
    # runs Python.
    "warpcore_body_try_read": (warpcore_result, [warpcore_body_p, c_void_p, c_size_t, POINTER(c_size_t)]),
    "warpcore_body_on_readable": (warpcore_result, [warpcore_body_p, warpcore_body_ready_cb, c_void_p]),
    "warpcore_body_free": (None, [warpcore_body_p]),
    # WARPCORE_0.6.
    "warpcore_config_set_client_fin_ends_request": (warpcore_result, [warpcore_config_p, c_bool]),
    "warpcore_result_str": (c_char_p, [c_uint32]),
    "warpcore_last_error_message": (c_size_t, [c_char_p, c_size_t]),
    "warpcore_version": (c_char_p, []),
    "warpcore_server_start": (warpcore_result, [warpcore_config_p, POINTER(warpcore_server_p)]),
    "warpcore_server_port": (c_uint16, [warpcore_server_p]),
    "warpcore_server_workers": (c_uint32, [warpcore_server_p]),
    # TLS listeners.
    "warpcore_tls_new": (warpcore_result, [POINTER(warpcore_tls_p)]),
    "warpcore_tls_free": (None, [warpcore_tls_p]),
    "warpcore_tls_add_cert_files": (warpcore_result, [warpcore_tls_p, _u8p, c_size_t, _u8p, c_size_t]),
    "warpcore_tls_add_cert_pem": (warpcore_result, [warpcore_tls_p, _u8p, c_size_t, _u8p, c_size_t]),
    "warpcore_tls_set_alpn": (warpcore_result, [warpcore_tls_p, c_void_p, c_size_t]),
    "warpcore_tls_set_client_auth_pem": (warpcore_result, [warpcore_tls_p, c_uint32, _u8p, c_size_t]),
    "warpcore_tls_set_client_auth_file": (warpcore_result, [warpcore_tls_p, c_uint32, _u8p, c_size_t]),
    "warpcore_tls_set_session_tickets": (warpcore_result, [warpcore_tls_p, c_bool]),
    "warpcore_tls_set_ktls": (warpcore_result, [warpcore_tls_p, c_bool]),
    "warpcore_tls_set_min_version": (warpcore_result, [warpcore_tls_p, c_uint16]),
    "warpcore_tls_set_require_sni_match": (warpcore_result, [warpcore_tls_p, c_bool]),
    "warpcore_config_add_tls_listener": (warpcore_result, [warpcore_config_p, _u8p, c_size_t, warpcore_tls_p]),
    "warpcore_server_listener_count": (c_uint32, [warpcore_server_p]),
    # buf is a writable buffer's address (a ctypes array).
    "warpcore_server_listener_address": (
        warpcore_result,
        [warpcore_server_p, c_uint32, c_void_p, c_size_t, POINTER(c_size_t)],
    ),
    "warpcore_server_run_worker": (warpcore_result, [warpcore_server_p, c_uint32]),
    "warpcore_server_shutdown": (warpcore_result, [warpcore_server_p, c_uint32]),
    "warpcore_server_shutdown_report": (warpcore_result, [warpcore_server_p, POINTER(warpcore_shutdown_report)]),
    "warpcore_server_reload": (warpcore_result, [warpcore_server_p, warpcore_config_p]),
    "warpcore_server_stats": (warpcore_result, [warpcore_server_p, POINTER(warpcore_stats)]),
    "warpcore_server_reopen_logs": (warpcore_result, [warpcore_server_p]),
    "warpcore_server_wait": (warpcore_result, [warpcore_server_p]),
    "warpcore_server_free": (None, [warpcore_server_p]),
    "warpcore_prepared_new": (
        warpcore_result,
        [c_uint16, _hdrp, c_size_t, _u8p, c_size_t, POINTER(c_void_p)],
    ),
    "warpcore_prepared_free": (None, [c_void_p]),
    "warpcore_respond_prepared": (warpcore_result, [warpcore_response_p, c_void_p]),
    "warpcore_config_set_answering_handler": (warpcore_result, [warpcore_config_p, warpcore_answering_cb, c_void_p]),
    # Upgrades: the connection's bytes after 101 (or after nothing, take_over).
    "warpcore_response_upgrade": (
        warpcore_result,
        [warpcore_response_p, _hdrp, c_size_t, warpcore_upgrade_cb, c_void_p, POINTER(warpcore_upgraded_p)],
    ),
    "warpcore_response_take_over": (
        warpcore_result,
        [warpcore_response_p, warpcore_upgrade_cb, c_void_p, POINTER(warpcore_upgraded_p)],
    ),
    # buf is a writable buffer's address (a ctypes array or an int).
    "warpcore_upgraded_read": (warpcore_result, [warpcore_upgraded_p, c_void_p, c_size_t, POINTER(c_size_t)]),
    "warpcore_upgraded_write": (warpcore_result, [warpcore_upgraded_p, _u8p, c_size_t]),
    "warpcore_upgraded_write_buffer": (
        warpcore_result,
        [warpcore_upgraded_p, _u8p, c_size_t, warpcore_release_cb, c_void_p],
    ),
    "warpcore_upgraded_shutdown_write": (warpcore_result, [warpcore_upgraded_p]),
    "warpcore_upgraded_close": (warpcore_result, [warpcore_upgraded_p]),
    "warpcore_upgraded_set_nonblocking": (warpcore_result, [warpcore_upgraded_p, c_bool]),
    "warpcore_upgraded_set_idle_timeout": (warpcore_result, [warpcore_upgraded_p, c_uint64]),
    "warpcore_upgraded_set_quiet_notice": (warpcore_result, [warpcore_upgraded_p, c_bool]),
    "warpcore_upgraded_draining": (warpcore_result, [warpcore_upgraded_p, POINTER(c_uint64)]),
    "warpcore_upgraded_free": (None, [warpcore_upgraded_p]),
    # WebSockets.
    "warpcore_websocket_accept": (
        warpcore_result,
        [warpcore_response_p, _hdrp, c_size_t, c_uint64, warpcore_websocket_cb, c_void_p, POINTER(warpcore_websocket_p)],
    ),
    "warpcore_websocket_recv": (
        warpcore_result,
        [warpcore_websocket_p, c_void_p, c_size_t, POINTER(c_size_t), POINTER(c_uint32)],
    ),
    "warpcore_websocket_send": (warpcore_result, [warpcore_websocket_p, c_uint32, _u8p, c_size_t]),
    "warpcore_websocket_close": (warpcore_result, [warpcore_websocket_p, c_uint16, _u8p, c_size_t]),
    "warpcore_websocket_set_nonblocking": (warpcore_result, [warpcore_websocket_p, c_bool]),
    "warpcore_websocket_set_idle_timeout": (warpcore_result, [warpcore_websocket_p, c_uint64]),
    "warpcore_websocket_draining": (warpcore_result, [warpcore_websocket_p, POINTER(c_uint64)]),
    "warpcore_websocket_free": (None, [warpcore_websocket_p]),
}


class _Functions:
    """The declared foreign functions, as attributes named without the
    ``warpcore_`` prefix (``F.respond``)."""


F = _Functions()
_missing = [n for n in FUNCTIONS if not hasattr(LIB, n)]
if _missing:
    raise LibraryNotFoundError(
        f"{LIBRARY_PATH} lacks {', '.join(_missing)}: it is older than this package; "
        "rebuild it (`make`) or point WARPCORE_LIBRARY at a current build"
    )
for _name, (_res, _args) in FUNCTIONS.items():
    _fn = getattr(LIB, _name)
    _fn.restype = _res
    _fn.argtypes = list(_args)
    setattr(F, _name[len("warpcore_"):], _fn)

# The response calls once more, without releasing the GIL around the call.
# Only for the worker thread inside the handler call, where they never block
# (the library says so): there, releasing and retaking the GIL is pure cost.
# Anywhere else they can wait for a worker that needs the GIL: use F there.
# Not warpcore_respond_file: it opens and stats a file, which may take a
# while (a slow or network file system), and other threads should run then.
INLINE = _Functions()
_LIB_KEEP_GIL = ctypes.PyDLL(LIBRARY_PATH)
for _name in (
    "warpcore_respond",
    "warpcore_respond_buffer",
    "warpcore_response_start",
    "warpcore_response_write",
    "warpcore_response_write_buffer",
    "warpcore_response_end",
    "warpcore_response_abort",
):
    _res, _args = FUNCTIONS[_name]
    _fn = getattr(_LIB_KEEP_GIL, _name)
    _fn.restype = _res
    _fn.argtypes = list(_args)
    setattr(INLINE, _name[len("warpcore_"):], _fn)

# ``warpcore_respond`` once more, keeping the GIL, with only its first
# argument declared: the per-argument from_param conversions cost more than
# the rest of the call. Its callers pass the response handle as an int (the
# one declared argument, converted by c_void_p), the header array as the
# ``byref`` of a ctypes array kept by ``HeaderArray.pointer`` (passed as is:
# no object is made per call) or None, the body as bytes (passed as a pointer
# to its buffer), the status, header count and body length as ints below
# 2**31 (passed as C int, which libffi widens to the full register: a
# uint16_t or size_t callee reads the same value). Only on 64-bit x86 and ARM,
# where that holds; elsewhere it is the typed INLINE call.
RAW = _Functions()
if ctypes.sizeof(c_void_p) == 8 and platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64"):
    _raw = ctypes.PyDLL(LIBRARY_PATH).warpcore_respond
    _raw.restype = warpcore_result
    _raw.argtypes = (warpcore_response_p,)  # the rest untyped: ctypes allows more for cdecl
    RAW.respond = _raw
    # The same, releasing the GIL: for answers from other threads (deferred).
    _raw = ctypes.CDLL(LIBRARY_PATH).warpcore_respond
    _raw.restype = warpcore_result
    _raw.argtypes = (warpcore_response_p,)
    RAW.respond_deferred = _raw
    RAW_UNTYPED = True
else:  # pragma: no cover - other machines
    RAW.respond = INLINE.respond
    RAW.respond_deferred = F.respond
    RAW_UNTYPED = False
del _name, _res, _args, _fn

# --- worker threads ----------------------------------------------------------------

# The Python threads that run a worker's event loop (``Server._run_worker``):
# handlers and event callbacks run there, and nothing there may wait.
_worker = threading.local()


def mark_worker_thread() -> None:
    """Marks the calling thread as one that runs a worker's event loop."""
    _worker.active = True


def on_worker_thread() -> bool:
    """Whether the calling thread runs a worker's event loop (a handler or a
    library callback runs on it): calls that would wait must not, there."""
    return getattr(_worker, "active", False)


# --- calls from threads that may outlive the interpreter ---------------------------

# Stream and WSGI application threads are daemon threads: the interpreter does
# not wait for them at exit. A library call can call back into Python on the
# calling thread (a zero-copy buffer's release when the call fails, the log
# callbacks); at finalization such a callback ends its thread with
# pthread_exit, whose unwinding through the library's frames aborts the
# process ("FATAL: exception not rethrown"). So the response calls those
# threads make go through ``guarded``: at exit (``close_calls``) the calls
# under way are waited for and later ones return CLOSED without reaching the
# library. Registered before a call is checked, so a call either is seen by
# close_calls or sees it.
_calls_under_way: List[int] = []  # list.append/pop: atomic under the GIL
_calls_closed = False


def guarded(fn):  # type: ignore[no-untyped-def]
    """``fn`` (a response call taking the handle first), refused with CLOSED
    once ``close_calls`` ran."""
    under_way = _calls_under_way

    def call(*args):  # type: ignore[no-untyped-def]
        under_way.append(1)
        try:
            if _calls_closed:
                return CLOSED
            return fn(*args)
        finally:
            under_way.pop()

    call.__wrapped__ = fn  # type: ignore[attr-defined]
    return call


def close_calls(timeout: float) -> bool:
    """At exit: refuses guarded calls from now on and waits up to ``timeout``
    seconds for the ones under way (the servers are shut down, so blocked
    writes return at once); whether none is left."""
    global _calls_closed
    _calls_closed = True
    import time

    deadline = time.monotonic() + timeout
    while _calls_under_way and time.monotonic() < deadline:
        time.sleep(0.001)
    return not _calls_under_way


# --- errors --------------------------------------------------------------------


class WarpcoreError(Exception):
    """A libwarpcore call failed.

    ``code`` is the ``warpcore_result`` number, ``name`` its name without the
    ``WARPCORE_RESULT_`` prefix, ``message`` the library's message for the call.
    """

    def __init__(self, code: int, message: str, call: str = "") -> None:
        self.code = code
        self.name = RESULT_NAMES.get(code, f"RESULT_{code}")
        self.message = message
        self.call = call
        what = f"{call}: " if call else ""
        super().__init__(f"{what}{message} [{self.name}]")


class ClientClosedError(WarpcoreError):
    """The client went away before the response was finished."""


class TLSError(WarpcoreError):
    """A certificate, key or other TLS setting is unusable
    (``WARPCORE_RESULT_TLS``): the message names the file and the reason."""


def last_error_message() -> str:
    """The calling thread's message for its last failed call."""
    n = F.last_error_message(None, 0)
    if n == 0:
        return ""
    buf = ctypes.create_string_buffer(n + 1)
    F.last_error_message(buf, n + 1)
    return buf.value.decode("utf-8", "replace")


def error_for(code: int, call: str = "") -> WarpcoreError:
    """The exception for result ``code`` (read right after the failed call, on
    the same thread, so the message is that call's)."""
    message = last_error_message() or F.result_str(code).decode("utf-8", "replace")
    cls = ClientClosedError if code == CLOSED else TLSError if code == TLS else WarpcoreError
    return cls(code, message, call)


def check(code: int, call: str = "") -> None:
    """Raises the matching :class:`WarpcoreError` unless ``code`` is OK."""
    if code:
        raise error_for(code, call)


def version() -> str:
    """The library's version, ``"MAJOR.MINOR.PATCH"``."""
    return F.version().decode("ascii")


def thread_set_sched_batch(on: bool) -> None:
    """Moves the calling thread to Linux's ``SCHED_BATCH`` scheduling policy
    (``on``) or back to ``SCHED_OTHER``: for threads that answer deferred
    requests, with the server's ``sched_batch`` on for the workers. Threads
    the calling thread starts afterwards inherit the policy. Raises
    :class:`WarpcoreError` (``IO_ERROR``) when the system refuses (see
    ``warpcore_thread_set_sched_batch``)."""
    check(F.thread_set_sched_batch(bool(on)), "warpcore_thread_set_sched_batch")


def result_str(code: int) -> str:
    """The library's description of a result code."""
    return F.result_str(code).decode("utf-8", "replace")


# --- header arrays ---------------------------------------------------------------

HeaderPairs = Sequence[Tuple[object, object]]


def _to_bytes(v: object) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("latin-1")
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    return str(v).encode("latin-1")


class HeaderArray:
    """Header fields encoded once as a C ``warpcore_header`` array; keeps the
    bytes it points to alive."""

    __slots__ = ("array", "count", "address", "pointer", "_keep")

    def __init__(self, pairs: HeaderPairs) -> None:
        keep = []
        n = len(pairs)
        arr = (warpcore_header * max(n, 1))()
        for i, (name, value) in enumerate(pairs):
            nb = _to_bytes(name)
            vb = _to_bytes(value)
            keep.append(nb)
            keep.append(vb)
            h = arr[i]
            h.name.ptr = ctypes.cast(ctypes.c_char_p(nb), c_void_p).value
            h.name.len = len(nb)
            h.value.ptr = ctypes.cast(ctypes.c_char_p(vb), c_void_p).value
            h.value.len = len(vb)
        self.array = arr
        self.count = n
        self.address = ctypes.addressof(arr) if n else None
        # For RAW.respond: a ready-made pointer argument (ctypes passes a
        # byref() object as is, where a c_void_p would make one per call).
        self.pointer = ctypes.byref(arr) if n else None
        self._keep = keep


_EMPTY = HeaderArray(())
_cache: Dict[object, HeaderArray] = {}
_CACHE_MAX = 512


def header_array(headers: object) -> HeaderArray:
    """The C array for ``headers`` (a list of pairs, a dict, a
    :class:`~warpcore.Headers`, or None), cached by content: handlers that
    send the same headers each time pay for the encoding once."""
    if not headers:
        return _EMPTY
    if isinstance(headers, HeaderArray):
        return headers
    if isinstance(headers, tuple):
        key = pairs = headers
    elif isinstance(headers, list):
        key = pairs = tuple(headers)
    elif hasattr(headers, "items"):
        key = pairs = tuple(headers.items())  # type: ignore[attr-defined]
    else:
        key = pairs = tuple(headers)  # type: ignore[call-overload]
    for name, value in pairs:
        if not ((type(name) is str or type(name) is bytes) and (type(value) is str or type(value) is bytes)):
            # Equal keys of other types encode differently (True == 1 == 1.0
            # are sent as "True", "1", "1.0"): the types are part of the key.
            key = tuple((name, type(name), value, type(value)) for name, value in pairs)
            break
    try:
        return _cache[key]
    except KeyError:
        pass
    except TypeError:  # unhashable values (lists): encode without caching
        return HeaderArray(pairs)
    arr = HeaderArray(pairs)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = arr
    return arr


# --- zero-copy buffers -------------------------------------------------------------

# Buffers handed to the library without a copy, by token, until it releases them.
_pinned: Dict[int, object] = {}
_tokens = itertools.count(1)  # next() on it is atomic under the GIL


def _on_release(userdata: Optional[int], data: Optional[int], length: int) -> None:
    _pinned.pop(userdata or 0, None)


#: The one release callback; userdata is the pin token.
RELEASE = warpcore_release_cb(_on_release)


def pin(obj: object) -> int:
    """Keeps ``obj`` alive until the library releases the token returned."""
    token = next(_tokens)
    _pinned[token] = obj
    return token


def pinned_count() -> int:
    """How many zero-copy buffers the library still holds (for tests)."""
    return len(_pinned)

"""warpcore: Python bindings for libwarpcore, a multi-core HTTP/1.1 server
engine (pure Python over ctypes).

    import warpcore

    def hello(request: warpcore.Request) -> warpcore.Response:
        return warpcore.Response(200, [("Content-Type", "text/plain")], b"Hello, World!")

    with warpcore.Server(hello, port=8080) as server:
        server.wait()

``warpcore.wsgi`` serves WSGI applications (PEP 3333). A handler accepts a
WebSocket with ``request.accept_websocket()`` (see ``warpcore.WebSocket``).

The library is looked up in this order: ``$WARPCORE_LIBRARY``; the copy
shipped inside the package by ``pip install``; the checkout's
``target/release/``; the system loader.
"""

from ._ffi import (
    LIBRARY_PATH,
    ClientClosedError,
    LibraryNotFoundError,
    WarpcoreError,
    result_str,
    thread_set_sched_batch,
    version,
)
from ._body import BodyReader, BodyWouldBlock
from ._request import Headers, Request, TLSInfo
from ._response import Deferred, FileResponse, Response, StreamResponse
from ._server import NO_LIMIT, Handler, Server
from ._tls import TLS, TLSError
from ._websocket import (
    HandshakeError,
    UpgradeEvent,
    Upgraded,
    WebSocket,
    WebSocketClosed,
    WebSocketEvent,
    WouldBlock,
    subprotocols,
)

__version__ = "0.1.0"

__all__ = [
    "Server",
    "TLS",
    "TLSError",
    "TLSInfo",
    "Request",
    "Headers",
    "BodyReader",
    "BodyWouldBlock",
    "NO_LIMIT",
    "Response",
    "FileResponse",
    "StreamResponse",
    "Deferred",
    "Handler",
    "WebSocket",
    "WebSocketEvent",
    "WebSocketClosed",
    "Upgraded",
    "UpgradeEvent",
    "WouldBlock",
    "HandshakeError",
    "subprotocols",
    "WarpcoreError",
    "ClientClosedError",
    "LibraryNotFoundError",
    "LIBRARY_PATH",
    "version",
    "result_str",
    "thread_set_sched_batch",
]

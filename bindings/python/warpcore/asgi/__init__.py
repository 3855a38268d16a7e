"""An ASGI server (ASGI 3, spec 2.4) on libwarpcore: FastAPI, Starlette and
other ASGI applications on the engine.

    python -m warpcore.asgi myproject.main:app --host 127.0.0.1 --port 8000 --workers 2

or from Python::

    from warpcore.asgi import serve, ASGIServer
    serve(app, "127.0.0.1", 8000, workers=2)          # until SIGTERM / SIGINT

    with ASGIServer(app, port=0) as server:            # on a thread of its own
        print(server.port)

What it gives the application: the ``http`` and ``websocket`` scopes (path
percent-decoded, ``raw_path``, ``query_string``, ``root_path``, headers as
lowercased bytes pairs in order with repeats kept, ``client``, ``server``,
``state`` from the lifespan), the ``lifespan`` protocol, streamed request
bodies and responses with backpressure, ``http.disconnect``, and the
``http.response.pathsend`` and ``websocket.http.response`` extensions. See
``_server.py`` for the threads and the shutdown, ``_http.py`` for the
request cycle, ``_websocket.py`` and ``_lifespan.py``.
"""

from ._cli import STARTUP_FAILURE, main, serve
from ._http import ClientDisconnected
from ._lifespan import LifespanFailed
from ._server import ASGIServer, asgi3
from ._worker import WorkerASGIServer, worker_server

__all__ = [
    "ASGIServer",
    "WorkerASGIServer",
    "serve",
    "main",
    "worker_server",
    "ClientDisconnected",
    "LifespanFailed",
    "STARTUP_FAILURE",
    "asgi3",
]

"""The ASGI server as a worker process of the ``warpcore`` command
(``warpcore --interface asgi MODULE:APP``): ``worker_server`` takes the
options the command's master gives every worker (see ``warpcore._worker``,
the same as ``warpcore.wsgi.worker_server``'s) and makes an
:class:`ASGIServer` of them.

What differs from the WSGI worker: the application runs on the process's
asyncio loop, so ``threads`` does not apply; the watchdog (``--timeout``)
watches that loop, which a blocking application stops; the proxy headers
(``--forwarded-allow-ips``) and ``--limit-request-field_size`` are not
applied by the ASGI server (a warning says so when they are set).
"""

from __future__ import annotations

import logging
import time
from typing import Any, List, Optional, Sequence, Union

from .._server import NO_LIMIT
from ._server import ASGIServer

log = logging.getLogger("warpcore.asgi")

# The loop's heartbeat: it notes the time this often while it runs.
_BEAT = 0.5


class WorkerASGIServer(ASGIServer):
    """An :class:`ASGIServer` with what the command's master asks of a
    worker: ``reopen_logs`` and ``stuck``."""

    def __init__(self, app: Any, *, watchdog: bool = False, **options: Any) -> None:
        super().__init__(app, **options)
        self._watchdog = watchdog
        self._last_beat = time.monotonic()

    def start(self) -> "WorkerASGIServer":
        super().start()
        if self._watchdog and self._loop is not None:
            self._last_beat = time.monotonic()
            self._loop.call_soon_threadsafe(self._beat)
        return self

    def _beat(self) -> None:
        self._last_beat = time.monotonic()
        if not self._done.is_set():
            self._loop.call_later(_BEAT, self._beat)

    def stuck(self, timeout: float) -> Optional[str]:
        """Why the application cannot make progress, if it cannot: the event
        loop has not run for over ``timeout`` seconds (an application call
        that blocks it). Needs ``watchdog=True``."""
        if not self._watchdog or not self.running:
            return None
        lag = time.monotonic() - self._last_beat
        if lag > timeout:
            return f"the event loop has not run for {lag:.1f} s (over {timeout:g} s)"
        return None

    def reopen_logs(self) -> None:
        """Reopens the access-log file (after log rotation moved it away)."""
        self._engine.reopen_logs()


def worker_server(
    app: Any,
    *,
    bind: List[str],
    threads: int = 8,
    loops: int = 1,
    root_path: str = "",
    forwarded_allow_ips: Union[None, str, Sequence[str]] = None,
    keepalive: Optional[float] = None,
    limit_request_line: Optional[int] = None,
    limit_request_fields: Optional[int] = None,
    limit_request_field_size: Optional[int] = None,
    max_body_size: int = NO_LIMIT,
    sched_batch: bool = False,
    access_log: Any = None,
    multiprocess: bool = False,
    watchdog: bool = False,
    **settings: Any,
) -> WorkerASGIServer:
    """The server a worker process of the command line runs with
    ``--interface asgi``: the command's settings, by their gunicorn names,
    as :class:`ASGIServer` arguments (``settings`` are more of those)."""
    del threads, multiprocess  # one asyncio loop runs the application
    if limit_request_field_size:
        log.warning("--limit-request-field_size is not applied by the ASGI server")
    if forwarded_allow_ips not in (None, "", "127.0.0.1", ["127.0.0.1"], ("127.0.0.1",)):
        log.warning("--forwarded-allow-ips: the ASGI server does not apply proxy headers")
    if limit_request_line is not None:
        settings.setdefault("max_request_line", limit_request_line)
        if limit_request_line > 32 << 10:
            settings.setdefault("max_head_size", limit_request_line)
    if limit_request_fields is not None:
        settings.setdefault("max_header_count", limit_request_fields)
    options: dict = dict(
        bind=bind,
        loops=loops,
        root_path=root_path,
        max_body_size=max_body_size,
        sched_batch=sched_batch,
        access_log=access_log if access_log is not None else False,
        watchdog=watchdog,
    )
    if keepalive is not None:
        options["timeout_keep_alive"] = keepalive
    options.update(settings)
    return WorkerASGIServer(app, **options)

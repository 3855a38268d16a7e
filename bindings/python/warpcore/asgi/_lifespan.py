"""The ASGI ``lifespan`` protocol: startup before the server listens, shutdown
after it drained.

Modes, as uvicorn's ``--lifespan``: ``on`` runs it and fails the server when
the application does not support it or fails; ``auto`` runs it, and an
application that raises on the lifespan scope before answering (one that
does not support it) is served without it; ``off`` does not run it.
``lifespan.startup.failed`` (or ``.shutdown.failed``) always fails, with the
application's message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Optional

__all__ = ["Lifespan", "LifespanFailed"]

log = logging.getLogger("warpcore.asgi")


class LifespanFailed(Exception):
    """Startup (or shutdown) failed; the message is the application's."""


class Lifespan:
    """One run of the lifespan protocol (on the event loop)."""

    def __init__(self, app: Any, mode: str, state: Dict[str, Any]) -> None:
        if mode not in ("on", "off", "auto"):
            raise ValueError(f"lifespan must be 'on', 'off' or 'auto', not {mode!r}")
        self.app = app
        self.mode = mode
        self.state = state
        self.queue: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.startup_failed: Optional[str] = None
        self.shutdown_failed: Optional[str] = None
        self.error: Optional[BaseException] = None  # the application raised
        self.task: Optional[asyncio.Task] = None

    async def startup(self) -> None:
        """Runs startup; raises LifespanFailed when the server must not start."""
        if self.mode == "off":
            return
        self.task = asyncio.get_running_loop().create_task(self._main())
        await self.queue.put({"type": "lifespan.startup"})
        await self.started.wait()
        if self.startup_failed is not None:
            raise LifespanFailed(self.startup_failed or "the application's startup failed")
        if self.error is not None and self.mode == "on":
            raise LifespanFailed(f"the application's lifespan raised {self.error!r}")

    async def shutdown(self) -> None:
        """Runs shutdown (after the server drained); raises LifespanFailed when it failed."""
        if self.mode == "off" or self.task is None or self.error is not None:
            return
        await self.queue.put({"type": "lifespan.shutdown"})
        await self.stopped.wait()
        if self.shutdown_failed is not None:
            raise LifespanFailed(self.shutdown_failed or "the application's shutdown failed")
        if self.error is not None and self.mode == "on":
            raise LifespanFailed(f"the application's lifespan raised {self.error!r}")

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            raise  # the server stops (a signal during startup): nothing to report
        except BaseException as exc:  # noqa: B902 - reported through startup/shutdown
            self.error = exc
            if self.startup_failed is not None or self.shutdown_failed is not None:
                pass
            elif self.mode == "auto" and not self.started.is_set():
                log.info("ASGI 'lifespan' protocol appears unsupported (%s: %s)", type(exc).__name__, exc)
            else:
                log.error("Exception in 'lifespan' protocol", exc_info=(type(exc), exc, exc.__traceback__))
        finally:
            self.started.set()
            self.stopped.set()

    async def receive(self) -> Dict[str, Any]:
        return await self.queue.get()

    async def send(self, message: Dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._expect(not self.started.is_set(), kind)
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self._expect(not self.started.is_set(), kind)
            self.startup_failed = str(message.get("message", "") or "")
            self.started.set()
        elif kind == "lifespan.shutdown.complete":
            self._expect(self.started.is_set() and not self.stopped.is_set(), kind)
            self.stopped.set()
        elif kind == "lifespan.shutdown.failed":
            self._expect(self.started.is_set() and not self.stopped.is_set(), kind)
            self.shutdown_failed = str(message.get("message", "") or "")
            self.stopped.set()
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} on the lifespan scope")

    @staticmethod
    def _expect(ok: bool, kind: str) -> None:
        if not ok:
            raise RuntimeError(f"Got invalid state transition on lifespan protocol: {kind!r}")

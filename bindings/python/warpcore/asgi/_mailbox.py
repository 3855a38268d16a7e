"""The hand-off from the engine's worker threads to the event loop.

The engine calls back on its worker threads (Python threads running
``warpcore_server_run_worker``); the application runs on the event loop's
thread. Everything a worker has for the loop (a new request, a WebSocket
event, a stream that drained) goes through one :class:`Mailbox`: the worker
appends ``(function, argument)`` and wakes the loop only when no wake-up is
on its way already, so a batch of requests read in one round of the engine
costs one wake-up (one ``call_soon_threadsafe``), not one each.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable, Deque, Tuple

log = logging.getLogger("warpcore.asgi")


class Mailbox:
    """Calls posted from any thread, run on ``loop`` in the order posted."""

    __slots__ = ("_loop", "_items", "_armed", "_closed", "wakeups", "posted")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._items: Deque[Tuple[Callable[[Any], Any], Any]] = collections.deque()
        # A wake-up is on its way: posts ride along. Only ever set by a
        # poster and cleared by the drain, each a single store under the GIL.
        self._armed = False
        self._closed = False
        #: Wake-ups sent and calls posted (how many calls a wake-up carries
        #: on average is the batching this buys; see ``ASGIServer.counters``).
        self.wakeups = 0
        self.posted = 0

    def post(self, fn: Callable[[Any], Any], arg: Any) -> bool:
        """Queues ``fn(arg)`` for the loop; False once the mailbox is closed
        (the loop is gone: the caller answers on its own)."""
        if self._closed:
            return False
        self._items.append((fn, arg))
        self.posted += 1
        if not self._armed:
            self._armed = True
            self.wakeups += 1
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop was closed meanwhile
                self._armed = False
                self._closed = True
                try:
                    self._items.remove((fn, arg))
                except ValueError:
                    return True  # a drain took it after all
                return False
        return True

    def _drain(self) -> None:
        # Cleared before taking: a post that comes after this either is taken
        # by this drain or arms a new wake-up.
        self._armed = False
        items = self._items
        pop = items.popleft
        while items:
            fn, arg = pop()
            try:
                fn(arg)
            except BaseException:  # noqa: B902 - one bad call must not stop the rest
                log.exception("a call handed to the event loop failed")

    def close(self) -> None:
        """Refuses later posts (calls already queued still run if the loop runs)."""
        self._closed = True

"""One WebSocket of an ASGI application, on the binding's WebSocket API.

``websocket.connect`` is the first thing ``receive`` gives. ``websocket.accept``
is ``warpcore_websocket_accept`` (with the subprotocol and headers); from then
on the handle is non-blocking and its events (run on the worker thread) are
posted to the event loop, where ``receive`` and ``send`` wait for them:
``receive`` gives ``websocket.receive`` with ``text`` or ``bytes``, then
``websocket.disconnect`` with the close code and reason; ``send`` of
``websocket.send`` waits while the peer does not read (the engine's
high-water mark) and raises :class:`ClientDisconnected` once the connection
is closed; ``websocket.close`` starts the closing handshake.

Before accepting, ``websocket.close`` denies the handshake with 403, and the
``websocket.http.response`` extension sends any HTTP response instead
(``websocket.http.response.start`` / ``.body``). An application that fails
before accepting gets a 500, after it the connection closes with 1011; one
that returns without closing closes with 1000. When the server shuts down,
open WebSockets are closed with 1012 (service restart).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional

from .. import _websocket as ws_api
from .._ffi import ClientClosedError
from .._websocket import WebSocketClosed, WouldBlock
from ._http import ClientDisconnected, HTTPCycle, _running_loop, on_loop, respond_error

__all__ = ["WebSocketCycle"]

log = logging.getLogger("warpcore.asgi")

_CONNECT = {"type": "websocket.connect"}


class WebSocketCycle:
    """One WebSocket's ``receive`` and ``send`` (on the event loop's thread)."""

    __slots__ = (
        "server",
        "loop",
        "scope",
        "res",
        "ws",
        "connect_given",
        "state",
        "end",
        "waiters",
        "denial",
        "close_sent",
        "task",
        "__weakref__",
    )

    # States: before the answer, accepted, answered otherwise (denied, failed).
    CONNECTING, ACCEPTED, DONE = 0, 1, 2

    def __init__(self, server: Any, scope: Dict[str, Any], res: int) -> None:
        self.server = server
        self.loop = server._loop
        self.scope = scope
        self.res = res
        self.ws: Optional[ws_api.WebSocket] = None
        self.connect_given = False
        self.state = self.CONNECTING
        self.end: Optional[Dict[str, Any]] = None  # the websocket.disconnect to give
        self.waiters: List[asyncio.Future] = []
        self.denial: Optional[HTTPCycle] = None
        self.close_sent = False
        self.task: Optional[asyncio.Task] = None

    # -- running the application -------------------------------------------------

    async def run(self, app: Any) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            log.debug("WebSocket client gone: %s", self.scope["path"])
        except asyncio.CancelledError:
            self._abandon(1012)
            raise
        except BaseException as exc:  # noqa: B902 - the server goes on
            log.error("Exception in ASGI application", exc_info=(type(exc), exc, exc.__traceback__))
            self._abandon(1011)
        else:
            if result is not None:
                log.error("ASGI callable should return None, but returned %r", result)
            if self.state == self.CONNECTING:
                log.error("ASGI callable returned without completing the WebSocket handshake")
            self._abandon(1000)
        finally:
            ws = self.ws
            if ws is not None:
                ws.release()
            self._wake()
            self.server._cycle_done(self)

    def _abandon(self, code: int) -> None:
        """The application is done: answer a handshake it left (500), close
        a WebSocket it left open with ``code``."""
        if self.state == self.CONNECTING:
            self.state = self.DONE
            denial = self.denial
            if denial is not None and denial.started:
                denial._fail()
            else:
                respond_error(self.res, 500, b"Internal Server Error")
        elif self.state == self.ACCEPTED and not self.close_sent and self.ws is not None:
            self.close_sent = True
            try:
                self.ws.close(code)
            except Exception:  # closed meanwhile
                pass

    # -- engine events -------------------------------------------------------------

    def _on_event(self, ws: Any, events: int) -> None:
        # On the worker thread: hand it to the loop.
        self.server._mailbox.post(WebSocketCycle._event, self)

    def _event(self) -> None:
        self._wake()

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _wait(self) -> None:
        fut = self.loop.create_future()
        self.waiters.append(fut)
        try:
            await fut
        finally:
            if fut in self.waiters:  # cancelled: leave nothing behind
                self.waiters.remove(fut)

    def shutting_down(self) -> None:
        """The server drains: close an open WebSocket with 1012."""
        if self.state == self.ACCEPTED and not self.close_sent and self.ws is not None:
            self.close_sent = True
            try:
                self.ws.close(1012)
            except Exception:
                pass
        elif self.state == self.CONNECTING:
            self._wake()

    # -- receive -------------------------------------------------------------------

    async def receive(self) -> Dict[str, Any]:
        if _running_loop() is not self.loop:
            on_loop(self.loop, "receive()")
        if not self.connect_given:
            self.connect_given = True
            return _CONNECT
        while self.state == self.CONNECTING:
            if self.server._stopping:
                return {"type": "websocket.disconnect", "code": 1012, "reason": ""}
            await self._wait()
        if self.end is not None:
            return self.end
        ws = self.ws
        if ws is None:
            self.end = {"type": "websocket.disconnect", "code": 1006, "reason": ""}
            return self.end
        while True:
            try:
                data = ws.receive_nowait()
            except WouldBlock:
                await self._wait()
                continue
            except (WebSocketClosed, ValueError) as exc:
                code = getattr(exc, "code", None)
                self.end = {
                    "type": "websocket.disconnect",
                    "code": 1005 if code is None else code,
                    "reason": getattr(exc, "reason", "") or "",
                }
                return self.end
            if type(data) is str:
                return {"type": "websocket.receive", "text": data}
            return {"type": "websocket.receive", "bytes": data}

    # -- send ----------------------------------------------------------------------

    async def send(self, message: Dict[str, Any]) -> None:
        if _running_loop() is not self.loop:
            on_loop(self.loop, "send()")
        kind = message["type"]
        state = self.state
        if state == self.ACCEPTED:
            if kind == "websocket.send":
                await self._send(message)
                return
            if kind == "websocket.close":
                if self.close_sent:
                    raise RuntimeError("Unexpected ASGI message 'websocket.close', after sending 'websocket.close'")
                code = message.get("code", 1000)
                reason = message.get("reason") or ""
                try:
                    self.ws.close(code, reason)  # type: ignore[union-attr]
                except WebSocketClosed:
                    self.close_sent = True
                    raise ClientDisconnected("the WebSocket is closed") from None
                # Only now: a code or reason refused (ValueError, TypeError)
                # sent nothing, and the application may close again.
                self.close_sent = True
                return
            raise RuntimeError(f"Expected ASGI message 'websocket.send' or 'websocket.close', but got {kind!r}")
        if state == self.CONNECTING and self.denial is None:
            if kind == "websocket.accept":
                self._accept(message)
                return
            if kind == "websocket.close":
                # Denied before accepting: 403, as uvicorn does.
                self.state = self.DONE
                self.end = {"type": "websocket.disconnect", "code": 1006, "reason": ""}
                respond_error(self.res, 403, b"")
                self._wake()
                return
            if kind == "websocket.http.response.start":
                self.denial = HTTPCycle(self.server, self.scope, self.res, None, None, None)
                await self.denial.send(dict(message, type="http.response.start"))
                return
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start', but got {kind!r}"
            )
        denial = self.denial
        if state == self.CONNECTING and denial is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body', but got {kind!r}")
            await denial.send(dict(message, type="http.response.body"))
            if denial.complete:
                self.state = self.DONE
                self.end = {"type": "websocket.disconnect", "code": 1006, "reason": ""}
                self._wake()
            return
        if self.end is not None and self.end.get("code") == 1006:
            raise ClientDisconnected("the WebSocket handshake was not accepted")
        raise RuntimeError(f"Unexpected ASGI message {kind!r}, after the WebSocket ended")

    def _accept(self, message: Dict[str, Any]) -> None:
        headers = message.get("headers") or ()
        fields = [(name, value) for name, value in headers if name.lower() != b"sec-websocket-protocol"]
        subprotocol = message.get("subprotocol")
        try:
            self.ws = ws_api.accept(self.res, fields, subprotocol, self.server._ws_max_size, self._on_event)
        except ws_api.HandshakeError as exc:
            # Not a handshake the engine takes (checked before the app ran,
            # so rare): answer as it says, and the application learns it.
            self.state = self.DONE
            self.end = {"type": "websocket.disconnect", "code": 1006, "reason": ""}
            respond_error(self.res, exc.status, exc.response.body, [(n.encode(), v.encode()) for n, v in exc.response.headers])
            self._wake()
            raise ClientDisconnected(f"the WebSocket handshake failed: {exc.message}") from None
        except ClientClosedError:
            self.state = self.DONE
            self.end = {"type": "websocket.disconnect", "code": 1006, "reason": ""}
            self._wake()
            raise ClientDisconnected("the client went away") from None
        self.state = self.ACCEPTED
        self._wake()
        if self.server._stopping:
            self.shutting_down()

    async def _send(self, message: Dict[str, Any]) -> None:
        data = message.get("bytes")
        if data is None:
            data = message.get("text")
            if data is None:
                raise RuntimeError("websocket.send needs 'bytes' or 'text'")
            if type(data) is not str:
                raise TypeError(f"websocket.send's text must be a str, not {type(data).__name__}")
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"websocket.send's bytes must be bytes, not {type(data).__name__}")
        if self.close_sent:
            raise ClientDisconnected("the WebSocket is closing")
        ws = self.ws
        while True:
            try:
                ws.send_nowait(data)  # type: ignore[union-attr]
                return
            except WouldBlock:
                await self._wait()
            except (WebSocketClosed, ValueError):
                raise ClientDisconnected("the WebSocket is closed") from None


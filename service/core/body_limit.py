"""Request body limits as pure ASGI middleware: a declared Content-Length over the limit is
refused before anything is read, and a body that streams past it is cut off, both with 413; a
body that stalls (nothing received for the idle timeout while more is due) is cut off with 408.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        limit_for: Callable[[str, str], int],
        idle_timeout_s: float | None = None,
    ) -> None:
        """`limit_for(method, path)` is the byte limit of a request; `idle_timeout_s` the longest
        wait for the next piece of a body (None: no limit)."""
        self.app = app
        self._limit_for = limit_for
        self._idle_timeout_s = idle_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["method"], scope["path"])
        message = f"request body is over the {limit}-byte limit"
        if _content_length(scope) > limit:
            await JSONResponse({"error": message}, status_code=413)(scope, receive, send)
            return
        received = 0
        body_done = False
        idle = self._idle_timeout_s

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done or idle is None:
                event = await receive()  # after the body: waits for the client to disconnect
            else:
                with anyio.move_on_after(idle) as waited:
                    event = await receive()
                if waited.cancelled_caught:
                    raise HTTPException(
                        408,
                        f"request body: nothing received for {idle:g} s (BEAR_BODY_IDLE_TIMEOUT_S)",
                        headers={"Connection": "close"},
                    )
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    raise HTTPException(413, message)
                body_done = not event.get("more_body", False)
            return event

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0

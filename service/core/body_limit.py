"""Request body size limits as pure ASGI middleware: a declared Content-Length over the limit is
refused before anything is read, and a body that streams past it is cut off, both with 413."""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]) -> None:
        """`limit_for(method, path)` is the byte limit of a request."""
        self.app = app
        self._limit_for = limit_for

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

        async def limited_receive() -> Message:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    raise HTTPException(413, message)
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

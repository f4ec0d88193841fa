"""Request body limits as pure ASGI middleware: a declared Content-Length over the limit is
refused before anything is read, and a body that streams past it is cut off, both with 413; a
body that stalls (nothing received for the idle timeout while more is due) is cut off with 408.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

IDLE_TICK_S = 1.0  # the longest a stalled body waits past its timeout


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        limit_for: Callable[[str, str], int],
        idle: IdleWatch | None = None,
    ) -> None:
        """`limit_for(method, path)` is the byte limit of a request; `idle` cuts off a body that
        stalls (None: no limit)."""
        self.app = app
        self._limit_for = limit_for
        self._idle = idle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["method"], scope["path"])
        if _content_length(scope) > limit:
            await JSONResponse({"error": _over(limit)}, status_code=413)(scope, receive, send)
            return
        received = 0
        body_done = False
        idle = self._idle

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done or idle is None:
                event = await receive()  # after the body: waits for the client to disconnect
            else:
                event = await idle.receive(receive)
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _over(limit))
                body_done = not event.get("more_body", False)
            return event

        await self.app(scope, limited_receive, send)


class IdleWatch:
    """Cuts off receives that wait longer than `timeout_s` with 408. One task per event loop
    checks the waiting receives every IDLE_TICK_S (at most) and cancels the overdue ones: a
    receive only registers its deadline, where a timer of its own would cost as much as the
    rest of a small request's limits together."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._tick = min(IDLE_TICK_S, timeout_s / 4)
        self._deadlines: dict[asyncio.Task[object], float] = {}
        self._overdue: set[asyncio.Task[object]] = set()
        self._watcher: asyncio.Task[None] | None = None

    async def receive(self, receive: Receive) -> Message:
        task = asyncio.current_task()
        assert task is not None  # ASGI apps run in tasks
        loop = task.get_loop()
        watcher = self._watcher
        if watcher is None or watcher.done() or watcher.get_loop() is not loop:
            self._watcher = loop.create_task(self._watch())
        self._deadlines[task] = loop.time() + self.timeout_s
        try:
            return await receive()
        except asyncio.CancelledError:
            if task not in self._overdue:
                raise
            self._overdue.discard(task)
            task.uncancel()
            raise HTTPException(
                408,
                f"request body: nothing received for {self.timeout_s:g} s "
                "(BEAR_BODY_IDLE_TIMEOUT_S)",
                headers={"Connection": "close"},
            ) from None
        finally:
            del self._deadlines[task]

    async def _watch(self) -> None:
        """Cancel overdue receives; ends after a tick with none waiting (the next starts it)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tick)
            if not self._deadlines:
                return
            now = loop.time()
            for task, deadline in list(self._deadlines.items()):
                if deadline <= now and task not in self._overdue:
                    self._overdue.add(task)
                    task.cancel()


def _over(limit: int) -> str:
    return f"request body is over the {limit}-byte limit"


def _content_length(scope: Scope) -> int:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0

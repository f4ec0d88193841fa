"""Per-request context as pure ASGI middleware: a request id (the client's X-Request-ID when it
is sane, else a new one) echoed in the response, one JSON log line, and the request metrics.

A client that goes away before its response starts (mid-upload, say) is logged and counted with
status 499 (nginx's "client closed request"), not as a server error with a traceback."""

from __future__ import annotations

import logging
import os
import re
import time

from prometheus_client import Counter, Histogram
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.prometheus import Metrics

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
CLIENT_CLOSED = 499


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Metrics, logger: logging.Logger) -> None:
        self.app = app
        self._metrics = metrics
        self._log = logger
        # each label set's series, looked up once (prometheus' own lookup costs microseconds)
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[str, Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        status = 500
        started = False
        disconnected = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        async def watched_receive() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect" and not started:
                disconnected = True
            return message

        try:
            await self.app(scope, watched_receive, send_with_id)
        except ClientDisconnect:
            disconnected = True  # nobody to answer; the status below says what happened
        finally:
            if disconnected:  # before the response started (an answer sent after reached nobody)
                status = CLIENT_CLOSED
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self._count(template, scope["method"], status, elapsed)
            state = scope.get("state", {})
            self._log.info(
                "client disconnected" if status == CLIENT_CLOSED else "request",
                extra={
                    "request_id": request_id.decode(),
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "model": state.get("model"),
                    "version": state.get("version"),
                },
            )

    def _count(self, template: str, method: str, status: int, elapsed: float) -> None:
        counter = self._counters.get((template, method, status))
        if counter is None:
            counter = self._metrics.requests.labels(template, method, str(status))
            self._counters[template, method, status] = counter
        counter.inc()
        timer = self._timers.get(template)
        if timer is None:
            timer = self._timers[template] = self._metrics.latency.labels(template)
        timer.observe(elapsed)


def _request_id(scope: Scope) -> bytes:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == b"x-request-id" and _REQUEST_ID.fullmatch(value):
            return value
    return os.urandom(16).hex().encode()

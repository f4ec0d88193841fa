"""Per-request context as pure ASGI middleware: a request id (the client's X-Request-ID when it
is sane, else a new one) echoed in the response, one access log line, and the request metrics
(`RequestLog`, which the predict hot path shares).

A client that goes away before its response starts (mid-upload, say) is logged and counted with
status 499 (nginx's "client closed request"), not as a server error with a traceback."""

from __future__ import annotations

import os
import re
import time

from prometheus_client import Counter, Histogram
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.access_log import AccessLog
from service.core.busy_poll import BusyPoll
from service.core.prometheus import Metrics

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
CLIENT_CLOSED = 499


class RequestLog:
    """What every answered HTTP request leaves: its metrics and its access log line."""

    def __init__(self, metrics: Metrics, access_log: AccessLog, busy_poll: BusyPoll) -> None:
        self._metrics = metrics
        self._access_log = access_log
        self._busy_poll = busy_poll
        # each label set's series, looked up once (prometheus' own lookup costs microseconds)
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[str, Histogram] = {}

    def record(
        self,
        scope: Scope,
        request_id: bytes,
        template: str,
        status: int,
        elapsed: float,
        model: str | None,
        version: str | None,
    ) -> None:
        method = scope["method"]
        counter = self._counters.get((template, method, status))
        if counter is None:
            counter = self._metrics.requests.labels(template, method, str(status))
            self._counters[template, method, status] = counter
        counter.inc()
        timer = self._timers.get(template)
        if timer is None:
            timer = self._timers[template] = self._metrics.latency.labels(template)
        timer.observe(elapsed)
        self._access_log.write(
            "client disconnected" if status == CLIENT_CLOSED else "request",
            {
                "request_id": request_id.decode(),
                "method": method,
                "path": scope["path"],
                "route": template,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "model": model,
                "version": version,
            },
        )
        self._busy_poll.kick()


class RequestContext:
    def __init__(self, app: ASGIApp, requests: RequestLog) -> None:
        self.app = app
        self._requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = request_id_of(scope)
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
            state = scope.get("state", {})
            self._requests.record(
                scope,
                request_id,
                getattr(scope.get("route"), "path", "unmatched"),
                status,
                time.perf_counter() - start,
                state.get("model"),
                state.get("version"),
            )


def request_id_of(scope: Scope) -> bytes:
    """The client's X-Request-ID when it is sane, else a new one."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == b"x-request-id" and _REQUEST_ID.fullmatch(value):
            return value
    return os.urandom(16).hex().encode()

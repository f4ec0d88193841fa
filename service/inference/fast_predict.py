"""The hot path of the predict routes: pure ASGI in front of the whole application (ServiceApp
puts it there), answering plain predict requests itself; every other request goes on unchanged.

Plain means: `POST /predict`, `/models/{name}/predict` or `/models/{name}/versions/{version}/
predict` with no inference key required, a `Content-Type: application/json` body with a
Content-Length within BEAR_MAX_BODY_BYTES that arrives in one piece and is exactly
`{"observations": [[number, ...], ...]}` with at most FAST_ROWS rows that `as_batch` accepts, for
a model version already in memory. For such a request, the middleware stack, routing,
dependency resolution and model validation cost several times the model's forward pass; here
the same checks run directly, the same JSON answer is written, and the request leaves what the
stack would have left: its X-Request-ID, metrics and access log line under the route it stands
for (`RequestLog`), and the body's idle timeout (`IdleWatch`). Anything else (another field, a
bad value, a version still to load, a key to check, a failure) reaches the application with its
body intact, so every error is answered where it always was.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.body_limit import IdleWatch
from service.core.http_errors import ServiceError
from service.core.middleware import RequestLog, request_id_of
from service.core.settings import Settings
from service.inference.model_resolvers import ModelSource
from service.inference.request_arrays import as_batch
from service.inference.served_model import ServedModel

FAST_ROWS = 64  # larger batches take the full path, whose per-request cost they amortise
TEMPLATES = ("/predict", "/models/{name}/predict", "/models/{name}/versions/{version}/predict")
_JSON = (b"content-type", b"application/json")


class FastPredict:
    def __init__(self, app: ASGIApp, requests: RequestLog, idle: IdleWatch | None) -> None:
        self.app = app
        self._requests = requests
        self._idle = idle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        length = _json_body_length(scope)
        target = None if length is None else _target(scope["path"])
        state = scope.get("state", {})
        settings: Settings | None = state.get("settings")
        if (
            target is None
            or length is None
            or settings is None
            or settings.require_key_for_inference
            or length > settings.max_body_bytes
        ):
            await self.app(scope, receive, send)
            return
        served = _in_memory(state["registry"], *target)
        if served is None or served.wants_ood(None, settings.ood_default):  # ood: the route's
            await self.app(scope, receive, send)
            return
        try:
            message = await (receive() if self._idle is None else self._idle.receive(receive))
        except HTTPException as exc:  # the idle timeout's 408: answered by the app
            await self.app(scope, _raising(exc), send)
            return
        answer = None
        if message["type"] == "http.request" and not message.get("more_body", False):
            try:
                answer = await _answer(served, message.get("body", b""), settings.max_batch)
            except Exception:  # the application answers it (and logs it) as it would
                answer = None
        if answer is None:
            await self.app(scope, _replay(message, receive), send)
            return
        request_id = request_id_of(scope)
        headers = [_JSON, (b"content-length", b"%d" % len(answer)), (b"x-request-id", request_id)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
        self._requests.record(
            scope,
            request_id,
            _template(target),
            200,
            time.perf_counter() - start,
            served.name,
            served.version,
        )


async def _answer(served: ServedModel, body: bytes, max_batch: int) -> bytes | None:
    """The JSON answer to a plain predict body; None for any other body."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # the route names what is wrong with the body
        return None
    rows = payload.get("observations") if type(payload) is dict and len(payload) == 1 else None
    if not _plain_rows(rows):
        return None
    manifest = served.bundle.manifest
    try:
        observations = as_batch(
            rows, "observations", manifest.observation_shape, manifest.observation_dtype, max_batch
        )
    except ServiceError:
        return None
    actions = await served.predict(observations)
    answer = {"actions": actions.tolist(), "model": served.name, "version": served.version}
    return json.dumps(answer, separators=(",", ":")).encode()


def _json_body_length(scope: Scope) -> int | None:
    """The Content-Length of a JSON body; None for another type or no declared length."""
    json_body, length = False, None
    for key, value in scope["headers"]:
        if key == b"content-type":
            json_body = value.partition(b";")[0].strip().lower() == b"application/json"
        elif key == b"content-length" and value.isdigit():
            length = int(value)
    return length if json_body else None


def _target(path: str) -> tuple[str | None, str | None] | None:
    """(name, version) of a predict path; None for any other path."""
    parts = path.split("/")
    if parts[-1] != "predict" or parts[0] != "":
        return None
    if len(parts) == 2:
        return None, None
    if len(parts) == 4 and parts[1] == "models":
        return parts[2], None
    if len(parts) == 6 and parts[1] == "models" and parts[3] == "versions":
        return parts[2], parts[4]
    return None


def _template(target: tuple[str | None, str | None]) -> str:
    name, version = target
    return TEMPLATES[0 if name is None else 1 if version is None else 2]


def _in_memory(source: ModelSource, name: str | None, version: str | None) -> ServedModel | None:
    """The version the path names when it is in memory (no loading on this path)."""
    try:
        return source.production(name) if version is None else source.cached(str(name), version)
    except ServiceError:
        return None


def _plain_rows(rows: Any) -> bool:
    """What PredictRequest accepts: 1..FAST_ROWS non-empty lists of ints and floats (no bools,
    no strings: strict validation refuses them)."""
    return (
        type(rows) is list
        and 0 < len(rows) <= FAST_ROWS
        and all(
            type(row) is list and row and all(type(x) is float or type(x) is int for x in row)
            for row in rows
        )
    )


def _replay(first: Message, receive: Receive) -> Receive:
    """`receive` with `first`, already taken from it, put back in front."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def _raising(exc: HTTPException) -> Receive:
    async def failed() -> Message:
        raise exc

    return failed

"""The hot path of the predict routes, as pure ASGI middleware in front of FastAPI's routing:
plain predict requests are answered here, every other request goes on unchanged.

Plain means: `POST /predict`, `/models/{name}/predict` or `/models/{name}/versions/{version}/
predict` with no inference key required, a `Content-Type: application/json` body that arrives
in one piece and is exactly `{"observations": [[number, ...], ...]}` with at most FAST_ROWS rows
that `as_batch` accepts, for a model version already in memory. For such a request, routing,
dependency resolution and model validation cost several times the model's forward pass; here
the same checks run directly and the same JSON answer is written. Anything else (another field,
a bad value, a version still to load, a key to check) reaches the FastAPI route with its body
intact, so every error is answered where it always was. The middleware sits inside the request
context (request id, metrics, access log) and the body limit, which see it as the route it
stands for.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.http_errors import ServiceError
from service.core.settings import Settings
from service.inference import inference_routes
from service.inference.model_resolvers import ModelSource
from service.inference.request_arrays import as_batch
from service.inference.served_model import ServedModel

FAST_ROWS = 64  # larger batches take the full path, whose per-request cost they amortise
TEMPLATES = ("/predict", "/models/{name}/predict", "/models/{name}/versions/{version}/predict")
_HEADERS = [(b"content-type", b"application/json")]


class FastPredict:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # the routes this stands for: metrics and logs are labelled with the request's route
        self._routes = {
            route.path: route
            for route in inference_routes.router.routes
            if isinstance(route, APIRoute) and route.path in TEMPLATES
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _json_body(scope):
            await self.app(scope, receive, send)
            return
        target = _target(scope["path"])
        state = scope.get("state", {})
        settings: Settings | None = state.get("settings")
        if target is None or settings is None or settings.require_key_for_inference:
            await self.app(scope, receive, send)
            return
        served = _in_memory(state["registry"], *target)
        if served is None or served.wants_ood(None, settings.ood_default):  # ood: the route's
            await self.app(scope, receive, send)
            return
        try:
            message = await receive()
        except HTTPException as exc:  # the body limit's 408 or 413: answered by the app
            await self.app(scope, _raising(exc), send)
            return
        answer = None
        if message["type"] == "http.request" and not message.get("more_body", False):
            answer = await _answer(served, message.get("body", b""), settings.max_batch)
        if answer is None:
            await self.app(scope, _replay(message, receive), send)
            return
        scope["route"] = self._routes[_template(target)]
        state["model"], state["version"] = served.name, served.version
        headers = [*_HEADERS, (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


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


def _json_body(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"content-type":
            return bool(value.partition(b";")[0].strip().lower() == b"application/json")
    return False


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

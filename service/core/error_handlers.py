"""Every error as JSON `{"error": message}`: the service's own errors with their status, request
validation failures naming the field (a body that is not JSON included), and HTTP exceptions
(401, 403, 404 of unknown paths, 405 with every allowed method, 413)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from service.core.http_errors import InvalidInput, ServiceError

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def add_error_handlers(app: FastAPI) -> None:
    app.exception_handler(ServiceError)(_service_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(HTTPException)(_http_error)


def _input_status(request: Request) -> int:
    """Bad input is 400 on the Open Inference Protocol paths (its convention), 422 elsewhere."""
    return 400 if request.url.path.startswith("/v2/") else 422


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    code = _input_status(request) if isinstance(exc, InvalidInput) else exc.status_code
    return JSONResponse({"error": exc.message}, status_code=code)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    message = "; ".join(_describe(e) for e in errors[:3])
    if len(errors) > 3:
        message += f" (and {len(errors) - 3} more)"
    return JSONResponse({"error": message}, status_code=_input_status(request))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    unparsable = _unparsable_json(exc)
    if unparsable is not None:
        return JSONResponse({"error": unparsable}, status_code=_input_status(request))
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=headers)


def _unparsable_json(exc: HTTPException) -> str | None:
    """FastAPI answers a JSON body that its parser rejects other than with a JSONDecodeError (not
    UTF-8, nested too deeply) with a bare 400 whose cause is that error: name the body."""
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, ValueError | RecursionError):
        return None
    if isinstance(cause, UnicodeDecodeError):
        why = "not UTF-8"
    elif isinstance(cause, RecursionError):
        why = "nested too deeply"
    else:
        why = str(cause) or "unparsable"
    return f"body: invalid JSON ({why})"


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on the request's path (Starlette's 405 names only the
    first matching route's), asked of each route through its public `matches`, so routers
    included in routers count too."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def _describe(error: dict[str, Any]) -> str:
    """'observations[0][2]: Input should be a finite number' from a pydantic error."""
    where, *loc = error.get("loc", ("body",))
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    if error.get("type") == "json_invalid":
        return f"body: invalid JSON ({error.get('ctx', {}).get('error', 'unparsable')})"
    if error.get("type") == "missing" and not loc:
        return f"{where}: required"
    return f"{field or where}: {error.get('msg', 'invalid')}"

"""Every error as JSON `{"error": message}`: the service's own errors with their status, request
validation failures naming the field, and HTTP exceptions (401, 403, 404 of unknown paths, 413)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.core.http_errors import InvalidInput, ServiceError


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
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


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

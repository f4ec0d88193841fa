"""X-API-Key checks. Model management always needs a key, and is refused outright when no key
is configured; inference needs one only when BEAR_REQUIRE_KEY_FOR_INFERENCE is set."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from service.core.settings import Settings

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
KeyHeader = Annotated[str | None, Depends(_header)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


def key_problem(key: str | None, keys: list[str]) -> str | None:
    """Why `key` (the X-API-Key header's value, None when absent) is refused; None when it is
    one of `keys`."""
    if key is None:
        return "missing X-API-Key header"
    matched = False
    for candidate in keys:  # compare with every key, in constant time each
        matched |= secrets.compare_digest(key.encode(), candidate.encode())
    return None if matched else "X-API-Key is not valid"


def _check(key: str | None, keys: list[str]) -> None:
    problem = key_problem(key, keys)
    if problem is None:
        return
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, problem, headers={"WWW-Authenticate": "APIKey"}
        )
    raise HTTPException(status.HTTP_403_FORBIDDEN, problem)


async def require_admin_key(request: Request, key: KeyHeader) -> None:
    keys = _settings(request).api_keys
    if not keys:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "model management is disabled: no API key is configured (set BEAR_API_KEYS)",
        )
    _check(key, keys)


async def require_inference_key(request: Request) -> None:
    """Reads the header itself (no sub-dependency): this runs on every inference request."""
    settings = _settings(request)
    if settings.require_key_for_inference:
        _check(request.headers.get("x-api-key"), settings.api_keys)

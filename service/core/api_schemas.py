"""Schema pieces every API shares: the request and response base models (numbers are strict, no
strings or booleans, and finite), the error body, the model name and version patterns of paths
and bodies, and the health bodies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"

NameParam = Annotated[str, Path(pattern=NAME_PATTERN, description="model name")]
VersionParam = Annotated[str, Path(pattern=VERSION_PATTERN, description="version, e.g. '2'")]


class Request(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")


class Response(BaseModel):
    pass


class ErrorResponse(Response):
    error: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting these status codes with the error body."""
    return {code: {"model": ErrorResponse} for code in codes}


class Liveness(Response):
    live: bool


class Readiness(Response):
    ready: bool

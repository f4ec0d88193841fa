"""The Open Inference Protocol's binary tensor data extension (Triton's `binary_tensor_data`).

A request body may be a JSON header of `Inference-Header-Content-Length` bytes followed by raw
little-endian tensors, one per input whose `parameters.binary_data_size` gives its byte count,
in the order of `inputs`. `BinaryBodyRoute` splits such a body: FastAPI parses and validates the
JSON header as any other body, and the bytes after it wait in the request scope
(`binary_tail`). Outputs asked for with `parameters.binary_data` (or the request's
`binary_data_output`) go back the same way (`binary_response`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from service.core.http_errors import InvalidInput

HEADER = "Inference-Header-Content-Length"
_TAIL = "bear.binary_tail"
_SIZE = re.compile(r"[0-9]{1,19}")


class _JsonHeader(Request):
    """The request with only its JSON header as the body (the tail is in the scope)."""

    def __init__(self, scope: dict[str, Any], header: bytes) -> None:
        super().__init__(scope)
        self._header = header

    async def body(self) -> bytes:
        return self._header


class BinaryBodyRoute(APIRoute):
    """A route whose body may use the binary tensor data extension."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def split(request: Request) -> Response:
            encoding = request.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                raise InvalidInput("Content-Encoding: send the request body uncompressed")
            declared = request.headers.get(HEADER)
            if declared is None:
                return await handler(request)
            body = await request.body()
            size = _header_size(declared, len(body))
            headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
            scope = {
                **request.scope,
                "headers": [*headers, (b"content-type", b"application/json")],
                _TAIL: memoryview(body)[size:],
            }
            return await handler(_JsonHeader(scope, body[:size]))

        return split


def _header_size(declared: str, body_size: int) -> int:
    if not _SIZE.fullmatch(declared.strip()) or not 0 < int(declared) <= body_size:
        raise InvalidInput(
            f"{HEADER}: must be the JSON header's size in bytes, 1..{body_size} for this body"
        )
    return int(declared)


def binary_tail(request: Request) -> memoryview | None:
    """The bytes after the JSON header; None when the request does not use the extension."""
    tail: memoryview | None = request.scope.get(_TAIL)
    return tail


def split_tail(sizes: dict[str, object], tail: memoryview | None) -> dict[str, memoryview]:
    """Each input's slice of the tail, from the inputs' declared `binary_data_size` (in input
    order), every size checked against the bytes there before anything is read."""
    if not sizes:
        if tail is not None and len(tail):
            raise InvalidInput(
                f"body: {len(tail)} bytes after the JSON header, but no input declares "
                "parameters.binary_data_size"
            )
        return {}
    if tail is None:
        raise InvalidInput(f"parameters.binary_data_size needs the {HEADER} header")
    slices: dict[str, memoryview] = {}
    offset = 0
    for name, size in sizes.items():
        field = f"inputs[{name}].parameters.binary_data_size"
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"{field}: must be a non-negative integer")
        if offset + size > len(tail):
            raise InvalidInput(
                f"{field}: {size} bytes declared, but only {len(tail) - offset} bytes of binary "
                "data are left in the body"
            )
        slices[name] = tail[offset : offset + size]
        offset += size
    if offset != len(tail):
        raise InvalidInput(
            f"body: {len(tail) - offset} bytes of binary data left over after the inputs' "
            "binary_data_size"
        )
    return slices


def binary_response(header: bytes, raw: list[bytes]) -> Response:
    """The JSON header, then each output's raw bytes."""
    return Response(
        b"".join([header, *raw]),
        media_type="application/octet-stream",
        headers={HEADER: str(len(header))},
    )

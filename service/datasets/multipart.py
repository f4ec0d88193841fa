"""One file part of a multipart/form-data request, streamed to disk and hashed as it arrives
(the body size limit is the BodyLimit middleware's). Other parts are skipped. Each chunk is
parsed and written on a worker thread, off the event loop."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePath
from typing import IO

import anyio
import anyio.to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from service.core.http_errors import InvalidInput
from service.datasets.dataset_store import Upload


class _FilePart:
    """MultipartParser callbacks that write the part named `field` to `target`."""

    def __init__(self, field: str, target: Path) -> None:
        self.field = field
        self.target = target
        self.filename: str | None = None
        self.size = 0
        self.digest = hashlib.sha256()
        self._headers: dict[bytes, bytes] = {}
        self._name = b""
        self._value = b""
        self._out: IO[bytes] | None = None

    def on_part_begin(self) -> None:
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._name.lower()] = self._value
        self._name, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == self.field.encode() and self.filename is None:
            raw = options.get(b"filename", b"upload").decode("utf-8", "replace")
            self.filename = PurePath(raw.replace("\\", "/")).name or "upload"
            self._out = open(self.target, "wb")  # noqa: SIM115 - closed in on_part_end/close

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            chunk = data[start:end]
            self._out.write(chunk)
            self.digest.update(chunk)
            self.size += len(chunk)

    def on_part_end(self) -> None:
        self.close()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def callbacks(self) -> dict[str, object]:
        names: tuple[str, ...] = ("part_begin", "header_field", "header_value", "header_end")
        names += ("headers_finished", "part_data", "part_end")
        return {f"on_{name}": getattr(self, f"on_{name}") for name in names}


async def receive_file(request: Request, field: str, target: Path) -> Upload:
    """Stream the `field` file part of the request body into `target`."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidInput(f"body: send multipart/form-data with the file in a {field!r} part")
    part = _FilePart(field, target)
    parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            await anyio.to_thread.run_sync(parser.write, chunk)
        await anyio.to_thread.run_sync(parser.finalize)
    except MultipartParseError as exc:
        raise InvalidInput(f"body: malformed multipart/form-data ({exc})") from None
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(part.close)
    if part.filename is None:
        raise InvalidInput(f"{field}: required (a file part named {field!r})")
    if part.size == 0:
        raise InvalidInput(f"file {part.filename!r}: empty")
    return Upload(target, part.filename, part.size, part.digest.hexdigest())

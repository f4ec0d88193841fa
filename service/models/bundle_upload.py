"""Bundles uploaded as .tar.gz: streamed to disk, then extracted with nothing but regular files
and directories inside the target (no absolute paths, no '..', no links or devices)."""

from __future__ import annotations

import tarfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

import anyio

from bear_core.bundle import MANIFEST_FILE
from service.core.http_errors import InvalidBundle

MAX_MEMBERS = 64


async def save_stream(chunks: AsyncIterator[bytes], target: Path) -> int:
    """Write the stream to `target` (file operations on worker threads); returns the byte
    count."""
    size = 0
    async with await anyio.open_file(target, "wb") as f:
        async for chunk in chunks:
            await f.write(chunk)
            size += len(chunk)
    return size


def extract_bundle(archive: Path, target: Path, max_bytes: int) -> Path:
    """Extract a bundle archive into `target` and return the bundle directory in it: the
    archive's root, or its single top-level directory."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _read_members(tar, max_bytes)
            tar.extractall(target, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidBundle(f"body: not a readable .tar.gz archive ({exc})") from None
    if (target / MANIFEST_FILE).is_file():
        return target
    entries = list(target.iterdir())
    if len(entries) == 1 and (entries[0] / MANIFEST_FILE).is_file():
        return entries[0]
    raise InvalidBundle(f"body: the archive holds no {MANIFEST_FILE} at its root")


def _read_members(tar: tarfile.TarFile, max_bytes: int) -> list[tarfile.TarInfo]:
    """The archive's entries, read one header at a time: refused at the first entry past
    MAX_MEMBERS or past `max_bytes` in all, before the rest of the archive is read."""
    members: list[tarfile.TarInfo] = []
    total = 0
    while (member := tar.next()) is not None:
        if len(members) == MAX_MEMBERS:
            raise InvalidBundle(f"body: the archive has more than {MAX_MEMBERS} entries")
        total += member.size
        if total > max_bytes:
            raise InvalidBundle(f"body: the archive unpacks to more than {max_bytes} bytes")
        _check_member(member)
        members.append(member)
    return members


def _check_member(member: tarfile.TarInfo) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise InvalidBundle(f"body: archive entry {member.name!r} leaves the bundle")
    if not (member.isfile() or member.isdir()):
        raise InvalidBundle(f"body: archive entry {member.name!r} is not a regular file")

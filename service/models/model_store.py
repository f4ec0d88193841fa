"""The on-disk model store: verified bundles under numbered versions, one production pointer per
model.

Layout:
    <root>/models/<name>/<version>/         a bundle directory (manifest.json + graphs), from 1
    <root>/models/<name>/production         the production version, as text
    <root>/models/<name>/.lock              locked while the pointer is checked and changed
    <root>/models/.changes                  a new random token after every change
    <root>/tmp/                             staging area on the same filesystem

A version appears by renaming a fully written and verified staging directory into place, and
the production pointer is replaced atomically, so readers (this process or another) never see a
half-written version. Changing the pointer and deleting a version hold an exclusive lock on the
model's lock file, so promotions and deletions in several processes are serialised: a promotion
with `expect` changes the pointer only while it still names that version. Every publish,
promotion and deletion then replaces the token in `.changes`, so a process that follows the
store (several API processes on one volume) learns of a change by reading 17 bytes, not by
listing every model. Names and versions
are checked against strict patterns before they touch a path, so nothing can leave the store.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bear_core.bundle import MANIFEST_FILE, BundleError, Manifest, load_bundle, read_manifest
from service.core.api_schemas import NAME_PATTERN, VERSION_PATTERN
from service.core.fsync import fsync_path
from service.core.http_errors import Conflict, InvalidBundle, NotFound, check_pattern

PRODUCTION_FILE = "production"
LOCK_FILE = ".lock"
CHANGES_FILE = ".changes"

_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)


def check_name(name: str) -> str:
    return check_pattern(name, _NAME, f"name {name!r} must match {NAME_PATTERN}")


def check_version(version: str) -> str:
    return check_pattern(
        version, _VERSION, f"version {version!r} must be a positive integer like '1'"
    )


@dataclass(frozen=True)
class VersionInfo:
    version: str
    manifest: Manifest


class ModelStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.models_dir = self.root / "models"
        self.tmp_dir = self.root / "tmp"

    def ensure(self) -> ModelStore:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self

    # --- reading --------------------------------------------------------------------------------

    def models(self) -> list[str]:
        if not self.models_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.models_dir.iterdir() if p.is_dir() and _NAME.fullmatch(p.name)
        )

    def versions(self, name: str) -> list[str]:
        """Versions of `name`, oldest first; NotFound when the model has none."""
        directory = self._model_dir(name)
        found = (
            [p.name for p in directory.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)]
            if directory.is_dir()
            else []
        )
        if not found:
            raise NotFound(f"model {name!r} not found")
        return sorted(found, key=int)

    def bundle_path(self, name: str, version: str) -> Path:
        path = self._model_dir(name) / check_version(version)
        if not path.is_dir():
            self.versions(name)  # NotFound naming the model when it has no versions at all
            raise NotFound(f"model {name!r} has no version {version!r}")
        return path

    def manifest(self, name: str, version: str) -> Manifest:
        try:
            return read_manifest(self.bundle_path(name, version), verify=False)
        except BundleError as exc:
            raise InvalidBundle(f"model {name!r} version {version!r}: {exc}") from None

    def identity(self, name: str, version: str) -> tuple[int, int, int] | None:
        """What tells this copy of a version from a later one published under the same number
        (its manifest file's inode, mtime and size); None once the version is gone."""
        try:
            stat = (self._model_dir(name) / check_version(version) / MANIFEST_FILE).stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def production(self, name: str) -> str | None:
        pointer = self._model_dir(name) / PRODUCTION_FILE
        try:
            version = pointer.read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return version if _VERSION.fullmatch(version) else None

    def changes(self) -> str | None:
        """The store's change token: it differs after every publish, promotion and deletion made
        through any ModelStore on this directory, in any process; None before the first one."""
        try:
            return (self.models_dir / CHANGES_FILE).read_text(encoding="ascii")
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    # --- writing --------------------------------------------------------------------------------

    def publish(self, name: str, bundle_dir: str | Path, promote: bool = False) -> str:
        """Verify the bundle at `bundle_dir`, copy it in as the next version of `name` and
        return that version. With promote, also make it the production version."""
        check_name(name)
        self.ensure()
        source = Path(bundle_dir)
        try:
            manifest = read_manifest(source, verify=True)
        except BundleError as exc:
            raise InvalidBundle(f"bundle rejected: {exc}") from None
        staging = Path(tempfile.mkdtemp(prefix=f"{name}.", suffix=".publish", dir=self.tmp_dir))
        try:
            for file in (MANIFEST_FILE, *manifest.files):
                shutil.copyfile(source / file, staging / file)
                fsync_path(staging / file)
            try:
                load_bundle(staging)
            except BundleError as exc:
                raise InvalidBundle(f"bundle rejected: {exc}") from None
            fsync_path(staging)
            version = self._rename_into_place(name, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if promote:
            self.set_production(name, version)
        return version

    def set_production(self, name: str, version: str, expect: str | None = None) -> str | None:
        """Make `version` the production version and return the previous one. With `expect`,
        only while production is still `expect` (Conflict naming the current one otherwise)."""
        self.bundle_path(name, version)  # NotFound before the model directory is touched
        with self._production_lock(name):
            self.bundle_path(name, version)
            previous = self.production(name)
            if expect is not None and previous != check_version(expect):
                current = f"version {previous!r}" if previous else "no version"
                raise Conflict(
                    f"model {name!r} has {current} in production, not the expected {expect!r}"
                )
            directory = self._model_dir(name)
            fd, tmp = tempfile.mkstemp(prefix=f".{PRODUCTION_FILE}.", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="ascii") as f:
                    f.write(version + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, directory / PRODUCTION_FILE)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            fsync_path(directory)
        self._changed()
        return previous

    def delete(self, name: str, version: str) -> None:
        """Remove a version; the production version is refused."""
        self.bundle_path(name, version)
        self.ensure()
        with self._production_lock(name):
            path = self.bundle_path(name, version)
            if self.production(name) == version:
                raise Conflict(
                    f"model {name!r} version {version!r} is in production; promote another first"
                )
            graveyard = Path(tempfile.mkdtemp(prefix=f"{name}.{version}.", dir=self.tmp_dir))
            os.replace(path, graveyard / "bundle")
            fsync_path(path.parent)
        self._changed()
        shutil.rmtree(graveyard, ignore_errors=True)

    def sweep_staging(self, max_age_s: float) -> list[str]:
        """Remove what uploads, publishes and deletions left in the staging area when their
        process died (kill -9): every entry in which nothing was written for `max_age_s` (an
        entry's age is that of its newest file, so an upload another process is still receiving
        is kept). Returns the names removed."""
        if not self.tmp_dir.is_dir():
            return []
        removed = []
        now = time.time()
        for entry in self.tmp_dir.iterdir():
            try:
                if now - _newest_mtime(entry) < max_age_s:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except FileNotFoundError:
                continue  # its owner finished meanwhile
            removed.append(entry.name)
        return removed

    # --- internals ------------------------------------------------------------------------------

    def _model_dir(self, name: str) -> Path:
        return self.models_dir / check_name(name)

    def _changed(self) -> None:
        """Replace the change token (atomically: readers see the old token or the new one). A
        hint, not a record: it is not fsynced, and followers also rescan now and then."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{CHANGES_FILE}.", dir=self.tmp_dir)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(8) + "\n")
            os.replace(tmp, self.models_dir / CHANGES_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextmanager
    def _production_lock(self, name: str) -> Iterator[None]:
        """An exclusive lock on the model's production pointer, across processes (flock: the
        kernel releases it when a holder dies)."""
        with open(self._model_dir(name) / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _rename_into_place(self, name: str, staging: Path) -> str:
        """Rename staging to the next free version number. A rename onto an existing version
        fails, so concurrent publishers (threads or processes) each get their own number."""
        directory = self._model_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        existing = [int(p.name) for p in directory.iterdir() if _VERSION.fullmatch(p.name)]
        candidate = max(existing, default=0) + 1
        while True:
            target = directory / str(candidate)
            try:
                os.rename(staging, target)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                candidate += 1
                continue
            fsync_path(directory)
            self._changed()
            return str(candidate)


def _newest_mtime(path: Path) -> float:
    """The newest modification time of `path` and, for a directory, of everything under it."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for parent, dirs, files in os.walk(path):
            for child in (*dirs, *files):
                try:
                    newest = max(newest, os.lstat(os.path.join(parent, child)).st_mtime)
                except FileNotFoundError:
                    continue
    return newest

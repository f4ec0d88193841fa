"""Uploaded datasets: D4RL-format HDF5 files, validated with bear_core's reader and stored under
their content hash.

Layout:
    <root>/datasets/<id>/data.h5        the file as uploaded
    <root>/datasets/<id>/dataset.json   its summary and sha256
    <root>/tmp/                         staging area (shared with the model store)

`<id>` is the first 16 hex digits of the file's sha256, so uploading the same file twice gives
the same dataset. A dataset appears by renaming a fully written staging directory into place and
disappears by renaming it out first, so readers never see half of one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bear_core.errors import DatasetError
from service.core.fsync import fsync_path
from service.core.http_errors import InvalidInput, NotFound, check_pattern
from service.datasets.dataset_check import DatasetLimits, check_upload

ID_PATTERN = r"^[0-9a-f]{16}$"
DATA_FILE = "data.h5"
SUMMARY_FILE = "dataset.json"

_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class Upload:
    """A file received into a staging directory."""

    path: Path
    filename: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DatasetInfo:
    id: str
    sha256: str
    filename: str
    size_bytes: int
    n_transitions: int
    n_episodes: int
    observation_shape: list[int]
    action_size: int
    created: str


def check_id(dataset_id: str) -> str:
    return check_pattern(dataset_id, _ID, f"dataset_id {dataset_id!r} must match {ID_PATTERN}")


class DatasetStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.datasets_dir = self.root / "datasets"
        self.tmp_dir = self.root / "tmp"

    def ensure(self) -> DatasetStore:
        self.datasets_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self

    def staging(self) -> Path:
        """A new staging directory for an upload (the caller removes it)."""
        return Path(tempfile.mkdtemp(suffix=".dataset", dir=self.ensure().tmp_dir))

    # --- reading --------------------------------------------------------------------------------

    def list(self) -> list[DatasetInfo]:
        found = []
        for directory in sorted(self.datasets_dir.glob("*")):
            if _ID.fullmatch(directory.name):
                try:
                    found.append(self.get(directory.name))
                except NotFound:
                    continue
        return sorted(found, key=lambda info: info.created)

    def get(self, dataset_id: str) -> DatasetInfo:
        try:
            summary = json.loads((self._dir(dataset_id) / SUMMARY_FILE).read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"dataset {dataset_id!r} not found") from None
        return DatasetInfo(**summary)

    def exists(self, dataset_id: str) -> bool:
        return (self._dir(dataset_id) / SUMMARY_FILE).is_file()

    def data_path(self, dataset_id: str) -> Path:
        return self._dir(dataset_id) / DATA_FILE

    # --- writing --------------------------------------------------------------------------------

    def add(self, upload: Upload, limits: DatasetLimits | None = None) -> tuple[DatasetInfo, bool]:
        """Validate the uploaded file and move it in; returns the dataset and whether it is new.
        A file bear_core cannot read, one over `limits`, or one without a usable transition is
        refused with a message naming the problem (see `dataset_check` for how the file is read
        without loading it into this process)."""
        try:
            dataset = check_upload(upload.path, limits or DatasetLimits.from_settings())
            if dataset.n_transitions == 0:
                raise DatasetError(
                    f"no usable transitions in {dataset.n_rows} rows (every episode ends by "
                    "timeout after one step and there are no next_observations)"
                )
        except DatasetError as exc:
            problem = str(exc).replace(str(upload.path), "").lstrip(": ")
            raise InvalidInput(f"file {upload.filename!r}: {problem}") from None
        info = DatasetInfo(
            id=upload.sha256[:16],
            sha256=upload.sha256,
            filename=upload.filename,
            size_bytes=upload.size,
            n_transitions=dataset.n_transitions,
            n_episodes=dataset.n_episodes,
            observation_shape=list(dataset.observation_shape),
            action_size=int(dataset.action_size),
            created=datetime.now(UTC).isoformat(timespec="milliseconds"),
        )
        if self.exists(info.id):
            return self.get(info.id), False
        staging = upload.path.parent
        os.replace(upload.path, staging / DATA_FILE)
        (staging / SUMMARY_FILE).write_text(json.dumps(asdict(info)))
        for path in (staging / DATA_FILE, staging / SUMMARY_FILE, staging):
            fsync_path(path)
        try:
            os.rename(staging, self._dir(info.id))
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            return self.get(info.id), False  # the same file, uploaded concurrently
        fsync_path(self.datasets_dir)
        return info, True

    def remove(self, dataset_id: str) -> None:
        directory = self._dir(dataset_id)
        if not directory.is_dir():
            raise NotFound(f"dataset {dataset_id!r} not found")
        graveyard = Path(tempfile.mkdtemp(prefix=f"{dataset_id}.", dir=self.ensure().tmp_dir))
        os.replace(directory, graveyard / "dataset")
        fsync_path(self.datasets_dir)
        shutil.rmtree(graveyard, ignore_errors=True)

    def _dir(self, dataset_id: str) -> Path:
        return self.datasets_dir / check_id(dataset_id)

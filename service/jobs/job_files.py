"""A training job's files on disk, and reading what its trainer wrote.

Layout:
    <root>/jobs/<id>/run/        the trainer's --out: params.json, progress.json, metrics.jsonl,
                                 <metric>.csv, checkpoint.pt, model_<epoch>.pt, and with a
                                 holdout selection.json and model_best.pt
    <root>/jobs/<id>/train.log   the trainer's and exporter's stdout and stderr, then the
                                 dispatcher's closing lines
    <root>/jobs/<id>/bundle/     the exported bundle, until it is published
    <root>/jobs/<id>/evaluation.json  the promotion gate's evaluator output (evaluation jobs,
                                 and training jobs promoted "if_better")

The trainer replaces progress.json and metrics.jsonl atomically, so a read sees a whole file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.core.http_errors import check_pattern
from service.jobs.job_db import Progress

ID_PATTERN = r"^[0-9a-f]{16}$"
CHECKPOINT = "checkpoint.pt"

_ID = re.compile(ID_PATTERN)


def check_job_id(job_id: str) -> str:
    return check_pattern(job_id, _ID, f"job id {job_id!r} must match {ID_PATTERN}")


@dataclass(frozen=True)
class LogChunk:
    offset: int
    next_offset: int
    size: int
    text: str


class JobFiles:
    def __init__(self, root: str | Path, job_id: str) -> None:
        self.directory = Path(root) / "jobs" / check_job_id(job_id)
        self.run_dir = self.directory / "run"
        self.log = self.directory / "train.log"
        self.bundle_dir = self.directory / "bundle"
        self.evaluation = self.directory / "evaluation.json"

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT

    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def progress(self) -> Progress | None:
        """progress.json, with the latest epoch's metrics from metrics.jsonl; None before the
        trainer wrote any."""
        raw = _read_json(self.run_dir / "progress.json")
        if not isinstance(raw, dict):
            return None
        records = self.metrics()
        return Progress(
            epoch=raw.get("epoch"),
            n_epochs=raw.get("n_epochs"),
            step=raw.get("step"),
            total_steps=raw.get("total_steps"),
            metrics=records[-1]["metrics"] if records else None,
        )

    def value_warning(self) -> str | None:
        """The last epoch's warning that the critics diverge (progress.json); None if none."""
        raw = _read_json(self.run_dir / "progress.json")
        warning = raw.get("value_warning") if isinstance(raw, dict) else None
        return warning if isinstance(warning, str) else None

    def selection(self) -> Any:
        """selection.json (which checkpoint the trainer chose and why); None before any."""
        return _read_json(self.run_dir / "selection.json")

    def metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl: one {"epoch", "step", "time", "metrics"} record per finished epoch."""
        try:
            lines = (self.run_dir / "metrics.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def read_log(self, offset: int, limit: int) -> LogChunk:
        """Up to `limit` bytes of the log from byte `offset`, cut back to whole UTF-8
        characters; `next_offset` is where the next read starts."""
        try:
            with open(self.log, "rb") as f:
                size = f.seek(0, 2)
                f.seek(min(offset, size))
                data = f.read(limit)
        except FileNotFoundError:
            return LogChunk(offset=offset, next_offset=offset, size=0, text="")
        data = data[: _utf8_boundary(data)] if offset + len(data) < size else data
        return LogChunk(
            offset=offset,
            next_offset=min(offset, size) + len(data),
            size=size,
            text=data.decode("utf-8", "replace"),
        )

    def append_log(self, line: str) -> None:
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")

    def last_log_line(self, prefix: str = "") -> str | None:
        """The last non-empty log line (starting with `prefix`), from the log's tail."""
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 8192))
                tail = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return None
        lines = [line.strip() for line in tail.splitlines() if line.strip().startswith(prefix)]
        return lines[-1] if lines else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _utf8_boundary(data: bytes) -> int:
    """len(data) less a multi-byte character cut at the end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): does its character fit?
            needed = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0xE else 4
            return len(data) if needed <= back else len(data) - back
    return len(data)

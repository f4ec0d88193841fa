"""What a job's record reads from the trainer's files: the critics' divergence warning."""

from __future__ import annotations

import json
from pathlib import Path

from service.jobs.job_files import JobFiles

JOB = "0123456789abcdef"


def _files(root: Path, progress: object) -> JobFiles:
    files = JobFiles(root, JOB)
    files.run_dir.mkdir(parents=True)
    (files.run_dir / "progress.json").write_text(json.dumps(progress))
    return files


def test_the_last_epochs_value_warning_is_read_from_progress(tmp_path: Path) -> None:
    warning = "epoch 7: the critics' mean Q on the data (40) is 40 above the bound ... diverging"
    files = _files(tmp_path, {"epoch": 7, "value_warning": warning})
    assert files.value_warning() == warning


def test_no_warning_without_one_or_with_a_malformed_one(tmp_path: Path) -> None:
    assert JobFiles(tmp_path, JOB).value_warning() is None  # before the trainer wrote anything
    assert _files(tmp_path / "a", {"epoch": 3, "value_warning": None}).value_warning() is None
    assert _files(tmp_path / "b", ["not", "a", "dict"]).value_warning() is None
    assert _files(tmp_path / "c", {"value_warning": 12}).value_warning() is None

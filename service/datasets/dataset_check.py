"""Checking an uploaded HDF5 file without letting it near the serving process's memory.

Two steps:

1. In the API process, `inspect_hdf5` reads metadata only (links, layouts, dtypes, shapes; no
   array data) and refuses what would be expensive or unsafe to read: external links, external
   storage, virtual datasets, non-numeric dtypes, and declared rows, row widths, chunk sizes or
   total bytes over the limits (also relative to the file's size, which catches decompression
   bombs: a few KB declaring gigabytes). This costs milliseconds and a few MB at most.
2. The values (finite numbers, 0/1 flags) and the counts (`n_transitions`, `n_episodes`) need
   the data, so they are read in a child process (`python -m service.datasets.dataset_check`)
   that first sets its own address-space limit (RLIMIT_AS) and then streams every array in
   blocks (`summarize_hdf5`).

Why a child and not chunked reads in this process: streaming alone bounds what numpy holds, but
not what HDF5's filters allocate (a deflate stream may inflate past its declared chunk size) or a
bug in the HDF5 library does with a crafted file. In the child, the worst a file can do is be
refused with MemoryError or kill that child; the serving process's RSS does not move. The cost is
one interpreter start (~0.3 s) per upload.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bear_core.dataset import Hdf5Limits, Hdf5Summary, inspect_hdf5, summarize_hdf5
from bear_core.errors import DatasetError
from service.core.settings import Settings


@dataclass(frozen=True)
class DatasetLimits:
    """What an upload may declare, and what reading its values may cost."""

    hdf5: Hdf5Limits
    memory_bytes: int
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> DatasetLimits:
        """The limits of `settings` (default: the environment's, BEAR_DATASET_*)."""
        settings = settings or Settings()
        return cls(
            hdf5=Hdf5Limits(
                max_rows=settings.dataset_max_rows,
                max_row_width=settings.dataset_max_row_width,
                max_declared_bytes=settings.dataset_max_declared_bytes,
                max_expansion=settings.dataset_max_expansion,
                max_chunk_bytes=settings.dataset_max_chunk_bytes,
            ),
            memory_bytes=settings.dataset_check_memory_bytes,
            timeout_s=settings.dataset_check_timeout_s,
        )


def check_upload(path: Path, limits: DatasetLimits) -> Hdf5Summary:
    """The file's summary, or DatasetError naming the problem (and the path). Blocking."""
    inspect_hdf5(path, limits.hdf5)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    request = json.dumps({"limits": asdict(limits.hdf5), "memory_bytes": limits.memory_bytes})
    command = [sys.executable, "-m", "service.datasets.dataset_check", str(path), request]
    try:
        child = subprocess.run(
            command, capture_output=True, text=True, timeout=limits.timeout_s, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise DatasetError(
            f"{path}: reading the values took longer than {limits.timeout_s:g} s"
        ) from None
    try:
        answer = json.loads(child.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise DatasetError(
            f"{path}: reading the values failed (the checker exited with {child.returncode}; "
            f"is the file within {limits.memory_bytes} bytes of memory?)"
        ) from None
    if "error" in answer:
        raise DatasetError(str(answer["error"]))
    summary = answer["summary"]
    summary["observation_shape"] = tuple(summary["observation_shape"])
    return Hdf5Summary(**summary)


def _child(path: str, request: dict[str, Any]) -> dict[str, Any]:
    memory = int(request["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        summary = summarize_hdf5(path, Hdf5Limits(**request["limits"]))
    except DatasetError as exc:
        return {"error": str(exc)}
    except MemoryError:
        return {"error": f"{path}: reading the values needs more than {memory} bytes of memory"}
    return {"summary": asdict(summary)}


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], json.loads(sys.argv[2]))))

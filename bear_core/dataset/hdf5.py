"""D4RL-format HDF5 files <-> `MDPDataset`. Torch-free.

Layout: datasets `observations` [N, *obs], `actions` [N, A], `rewards` [N], `terminals` [N],
optional `timeouts` [N] (default all False) and `next_observations` [N, *obs]; optional file attrs
`action_low` / `action_high` ([A] floats, both or neither) give the action bounds.

`read_hdf5` first checks the file with `inspect_hdf5` (metadata only: no external links or
storage, plain numeric datasets, declared sizes within `Hdf5Limits`) and reads arrays only after.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from bear_core.dataset.episodes import MDPDataset, validate_action_bounds
from bear_core.dataset.hdf5_inspect import Hdf5Limits, inspect_hdf5
from bear_core.errors import DatasetError
from bear_core.io_utils import atomic_write_with

_REQUIRED = ("observations", "actions", "rewards", "terminals")
_OPTIONAL = ("timeouts", "next_observations")
_BOUND_ATTRS = ("action_low", "action_high")


def read_hdf5(path: str | os.PathLike[str], limits: Hdf5Limits | None = None) -> MDPDataset:
    """Load a D4RL-format HDF5 file; DatasetError names the path and the offending key. The file
    is checked against `limits` (default: `Hdf5Limits()`) before any array is read."""
    file_path = Path(path)
    inspect_hdf5(file_path, limits)
    try:
        with h5py.File(file_path, "r") as f:
            arrays = {key: _read_dataset(f, key) for key in _REQUIRED}
            arrays.update({key: _read_dataset(f, key) for key in _OPTIONAL if key in f})
            attrs = {name: np.asarray(f.attrs[name]) for name in _BOUND_ATTRS if name in f.attrs}
        bounds = _bounds(attrs, arrays["actions"])
        return MDPDataset(**arrays, action_bounds=bounds)
    except DatasetError as err:
        raise DatasetError(f"{file_path}: {err}") from err
    except OSError as err:
        raise DatasetError(f"{file_path}: cannot read HDF5 file ({err})") from err


def write_hdf5(path: str | os.PathLike[str], dataset: MDPDataset) -> None:
    """Write `dataset` atomically as a D4RL-format HDF5 file (flags as bool, arrays float32)."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("observations", data=dataset.observations)
            f.create_dataset("actions", data=dataset.actions)
            f.create_dataset("rewards", data=dataset.rewards)
            f.create_dataset("terminals", data=dataset.terminals)
            f.create_dataset("timeouts", data=dataset.timeouts)
            if dataset.next_observations is not None:
                f.create_dataset("next_observations", data=dataset.next_observations)
            if dataset.action_bounds is not None:
                f.attrs["action_low"] = dataset.action_bounds[0]
                f.attrs["action_high"] = dataset.action_bounds[1]

    atomic_write_with(path, write)


def _bounds(
    attrs: dict[str, np.ndarray[Any, Any]], actions: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    if not attrs:
        return None
    missing = [name for name in _BOUND_ATTRS if name not in attrs]
    if missing:
        raise DatasetError(f"attribute {missing[0]} is missing (action bounds need both)")
    if actions.ndim != 2:
        return None
    return validate_action_bounds(attrs["action_low"], attrs["action_high"], actions.shape[1])


def _read_dataset(f: h5py.File, key: str) -> np.ndarray[Any, Any]:
    node = f.get(key)
    if node is None:
        raise DatasetError(f"missing key {key!r}")
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(f"key {key!r} is not a dataset")
    if node.dtype.kind not in "biuf":
        raise DatasetError(f"key {key!r} must be numeric, got dtype {node.dtype}")
    return np.asarray(node[()])

"""Checks of a D4RL-format HDF5 file that never trust what it declares. Torch-free.

`inspect_hdf5` reads metadata only (links, shapes, dtypes, storage layout; no array data) and
refuses, naming the key:

- links that leave the file (external links, user-defined links) anywhere in it, datasets with
  external raw storage or virtual layouts anywhere in it, and for the keys read (observations,
  actions, rewards, terminals, timeouts, next_observations) anything but a hard link to a plain
  dataset (a group, a soft link, a committed datatype);
- dtypes other than plain numbers of at most 8 bytes (strings, objects, compounds, arrays, ...);
- shapes that do not fit the D4RL layout, 0 rows, more rows than `Hdf5Limits.max_rows`, rows
  wider than `max_row_width` elements, HDF5 chunks above `max_chunk_bytes`;
- more declared bytes in all than `max_declared_bytes`, or than `max_expansion` times the file's
  size (a few KB of compressed or unallocated chunks may declare terabytes).

`summarize_hdf5` runs those checks, then streams every array in blocks of about `block_bytes`
(never a whole array) to check the values (finite, flags 0/1) and count the usable transitions
and the episodes the way `MDPDataset` splits them. Its memory is a few blocks plus one HDF5 chunk
(bounded by `max_chunk_bytes`); the caller that must bound it absolutely (the service) runs it in
a child process with an address-space limit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from bear_core.errors import DatasetError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
OPTIONAL_KEYS = ("timeouts", "next_observations")
BOUND_ATTRS = ("action_low", "action_high")
_FLAG_KEYS = ("terminals", "timeouts")
_COLUMN_KEYS = ("rewards", "terminals", "timeouts")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
MIB = 1 << 20
# Declared bytes below this are never refused as an expansion (tiny files have large overheads).
_EXPANSION_FLOOR = MIB


@dataclass(frozen=True)
class Hdf5Limits:
    """What a file may declare. The defaults are `read_hdf5`'s (the trainer's) safety net; the
    service checks uploads against its own settings, which may not exceed them."""

    max_rows: int = 100_000_000
    max_row_width: int = 16 * MIB  # elements in one row of one array
    max_declared_bytes: int = 64 * 1024 * MIB  # all the arrays read, as stored
    max_expansion: float = 1000.0  # declared bytes over the file's size
    max_chunk_bytes: int = 256 * MIB  # one HDF5 chunk, decompressed
    max_objects: int = 10_000  # groups, datasets and links walked in the file


@dataclass(frozen=True)
class Hdf5Layout:
    """What a file declares, once checked (no data read)."""

    n_rows: int
    observation_shape: tuple[int, ...]
    action_size: int
    keys: tuple[str, ...]
    declared_bytes: int


@dataclass(frozen=True)
class Hdf5Summary:
    """A checked file's shape and counts. `n_transitions` is the rows minus one per episode
    that ends without a successor (by timeout or at the end of the data, when the file has no
    next_observations); `n_episodes` counts the episodes left with at least one transition."""

    n_rows: int
    n_transitions: int
    n_episodes: int
    observation_shape: tuple[int, ...]
    action_size: int


def inspect_hdf5(path: str | os.PathLike[str], limits: Hdf5Limits | None = None) -> Hdf5Layout:
    """Check the file's structure and declared sizes without reading any array data;
    DatasetError names the path and the offending key."""
    file_path = _existing_hdf5(path)
    try:
        with h5py.File(file_path, "r") as f:
            return _inspect(f, file_path.stat().st_size, limits or Hdf5Limits())
    except DatasetError as err:
        raise DatasetError(f"{file_path}: {err}") from err
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise DatasetError(f"{file_path}: cannot read HDF5 file ({err})") from err


def summarize_hdf5(
    path: str | os.PathLike[str], limits: Hdf5Limits | None = None, block_bytes: int = 4 * MIB
) -> Hdf5Summary:
    """`inspect_hdf5`, then the values checked and the transitions counted in blocks of rows."""
    file_path = _existing_hdf5(path)
    limits = limits or Hdf5Limits()
    try:
        # A small chunk cache: one chunk at a time is decompressed, then dropped.
        with h5py.File(file_path, "r", rdcc_nbytes=MIB) as f:
            layout = _inspect(f, file_path.stat().st_size, limits)
            for key in layout.keys:
                if key not in _FLAG_KEYS:
                    for block in _blocks(f[key], block_bytes):
                        check_values(block, key)
            n_transitions, n_episodes = _count(f, layout, block_bytes)
    except DatasetError as err:
        raise DatasetError(f"{file_path}: {err}") from err
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise DatasetError(f"{file_path}: cannot read HDF5 file ({err})") from err
    return Hdf5Summary(
        n_rows=layout.n_rows,
        n_transitions=n_transitions,
        n_episodes=n_episodes,
        observation_shape=layout.observation_shape,
        action_size=layout.action_size,
    )


def check_values(block: np.ndarray[Any, Any], key: str) -> None:
    """Refuse NaN, inf or float values beyond float32's range."""
    if block.dtype.kind == "f" and not np.all(np.abs(block) <= _FLOAT32_MAX):
        raise DatasetError(f"{key} contains NaN, inf or values beyond the float32 range")


def _existing_hdf5(path: str | os.PathLike[str]) -> Path:
    file_path = Path(path)
    if not file_path.is_file():
        raise DatasetError(f"{file_path}: no such HDF5 file")
    if not h5py.is_hdf5(file_path):
        raise DatasetError(f"{file_path}: not an HDF5 file")
    return file_path


def _inspect(f: h5py.File, file_size: int, limits: Hdf5Limits) -> Hdf5Layout:
    _walk(f, limits.max_objects)
    datasets = {key: _plain_dataset(f, key) for key in REQUIRED_KEYS}
    datasets.update({key: _plain_dataset(f, key) for key in OPTIONAL_KEYS if key in f})
    for key, dset in datasets.items():
        _check_dataset(key, dset, limits)
    obs_shape = _check_shapes({key: dset.shape for key, dset in datasets.items()})
    n_rows = int(datasets["observations"].shape[0])
    if n_rows > limits.max_rows:
        raise DatasetError(f"observations declares {n_rows} rows, over the {limits.max_rows} limit")
    action_size = int(datasets["actions"].shape[1])
    declared = sum(_nbytes(dset.shape, dset.dtype.itemsize) for dset in datasets.values())
    if declared > limits.max_declared_bytes:
        raise DatasetError(
            f"the arrays declare {declared} bytes, over the {limits.max_declared_bytes}-byte limit"
        )
    if declared > max(limits.max_expansion * file_size, _EXPANSION_FLOOR):
        raise DatasetError(
            f"the arrays declare {declared} bytes in a {file_size}-byte file, more than "
            f"{limits.max_expansion:g} times its size"
        )
    _check_bound_attrs(f, action_size)
    return Hdf5Layout(n_rows, obs_shape, action_size, tuple(datasets), declared)


def _walk(f: h5py.File, max_objects: int) -> None:
    """Every link in the file, without following soft links: none may leave the file, and no
    dataset may keep its data outside it."""
    count = 0
    pending: list[tuple[h5py.Group, str]] = [(f, "")]
    while pending:
        group, prefix = pending.pop()
        for name in group:
            count += 1
            if count > max_objects:
                raise DatasetError(f"the file holds more than {max_objects} objects")
            key = f"{prefix}{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise DatasetError(
                    f"key {key!r} is an external link; only data stored in the file is read"
                )
            if isinstance(link, h5py.SoftLink):
                continue  # resolves inside the file; refused below where it is one of the keys
            if not isinstance(link, h5py.HardLink):
                raise DatasetError(f"key {key!r} is a user-defined link")
            node = group.get(name)
            if isinstance(node, h5py.Group):
                pending.append((node, f"{key}/"))
            elif isinstance(node, h5py.Dataset):
                _check_storage(key, node)


def _check_storage(key: str, dset: h5py.Dataset) -> None:
    if dset.is_virtual:
        raise DatasetError(
            f"key {key!r} is a virtual dataset; only data stored in the file is read"
        )
    if dset.external:
        raise DatasetError(
            f"key {key!r} has external storage; only data stored in the file is read"
        )


def _plain_dataset(f: h5py.File, key: str) -> h5py.Dataset:
    link = f.get(key, getlink=True)
    if link is None:
        raise DatasetError(f"missing key {key!r}")
    if not isinstance(link, h5py.HardLink):
        raise DatasetError(f"key {key!r} is a {type(link).__name__}, not a dataset in the file")
    node = f.get(key)
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(f"key {key!r} is not a dataset")
    _check_storage(key, node)
    return node


def _check_dataset(key: str, dset: h5py.Dataset, limits: Hdf5Limits) -> None:
    dtype = dset.dtype
    if dtype.kind not in "biuf" or dtype.itemsize > 8 or dtype.fields or dtype.subdtype:
        raise DatasetError(f"key {key!r} must be numeric, got dtype {dtype}")
    shape = dset.shape
    if shape is None or len(shape) == 0:
        raise DatasetError(f"key {key!r} must have shape [N, ...], got a scalar")
    width = math.prod(shape[1:])
    if width > limits.max_row_width:
        raise DatasetError(
            f"key {key!r} declares rows of {width} elements, over the {limits.max_row_width} limit"
        )
    if dset.chunks is not None:
        chunk = _nbytes(dset.chunks, dtype.itemsize)
        if chunk > limits.max_chunk_bytes:
            raise DatasetError(
                f"key {key!r} declares {chunk}-byte HDF5 chunks, over the "
                f"{limits.max_chunk_bytes}-byte limit"
            )


def _check_shapes(shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The D4RL layout's shape rules (those of `MDPDataset`); returns the observation shape."""
    obs = shapes["observations"]
    if len(obs) < 2:
        raise DatasetError(f"observations must have shape [N, *obs_shape], got ndim {len(obs)}")
    n = obs[0]
    if n == 0:
        raise DatasetError("observations is empty: the dataset needs at least one step")
    actions = shapes["actions"]
    if len(actions) != 2:
        raise DatasetError(f"actions must have shape [N, action_size], got ndim {len(actions)}")
    if actions[1] == 0:
        raise DatasetError("actions must have at least one column")
    if actions[0] != n:
        raise DatasetError(f"actions has {actions[0]} rows but observations has {n}")
    for key in _COLUMN_KEYS:
        shape = shapes.get(key)
        if shape is None:
            continue
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise DatasetError(f"{key} must have shape [N] or [N, 1], got {shape}")
        if shape[0] != n:
            raise DatasetError(f"{key} has {shape[0]} rows but observations has {n}")
    next_obs = shapes.get("next_observations")
    if next_obs is not None and next_obs != obs:
        raise DatasetError(
            f"next_observations must have shape {obs} like observations, got {next_obs}"
        )
    return tuple(int(d) for d in obs[1:])


def _check_bound_attrs(f: h5py.File, action_size: int) -> None:
    for name in BOUND_ATTRS:
        if name not in f.attrs:
            continue
        attr = f.attrs.get_id(name)
        dtype, shape = attr.dtype, attr.shape
        if dtype.kind not in "biuf" or dtype.itemsize > 8 or dtype.fields or dtype.subdtype:
            raise DatasetError(f"{name} must be numeric, got dtype {dtype}")
        if tuple(shape or ()) != (action_size,):
            raise DatasetError(
                f"{name} must have shape ({action_size},) to match the action width, "
                f"got {tuple(shape or ())}"
            )


def _nbytes(shape: tuple[int, ...], itemsize: int) -> int:
    return math.prod(int(d) for d in shape) * int(itemsize)


def _blocks(dset: h5py.Dataset, block_bytes: int) -> Iterator[np.ndarray[Any, Any]]:
    n = int(dset.shape[0])
    row_bytes = max(1, _nbytes(dset.shape[1:], dset.dtype.itemsize))
    step = max(1, block_bytes // row_bytes)
    for start in range(0, n, step):
        yield np.asarray(dset[start : start + step])


def _flag_blocks(f: h5py.File, key: str, n: int, step: int) -> Iterator[np.ndarray[Any, Any]]:
    if key not in f:
        for start in range(0, n, step):
            yield np.zeros(min(step, n - start), dtype=np.bool_)
        return
    dset = f[key]
    for start in range(0, n, step):
        block = np.asarray(dset[start : start + step]).reshape(-1)
        check_values(block, key)
        if not np.all((block == 0) | (block == 1)):
            raise DatasetError(f"{key} must hold only 0/1 (or bool) values")
        yield block.astype(np.bool_)


def _count(f: h5py.File, layout: Hdf5Layout, block_bytes: int) -> tuple[int, int]:
    """Usable transitions and episodes, as `MDPDataset` splits them, from the flags only."""
    n = layout.n_rows
    drop_last = "next_observations" not in layout.keys
    step = max(1, block_bytes // 8)
    n_transitions = n_episodes = 0
    start = 0  # first row of the episode under way
    blocks = zip(
        _flag_blocks(f, "terminals", n, step), _flag_blocks(f, "timeouts", n, step), strict=True
    )
    for i, (terminals, timeouts) in enumerate(blocks):
        offset = i * step
        ends = np.flatnonzero(terminals | timeouts)
        if ends.size == 0:
            continue
        starts = np.concatenate([[start - offset], ends[:-1] + 1])
        lengths = ends - starts + 1
        if drop_last:
            lengths -= ~terminals[ends]
        n_transitions += int(lengths.sum())
        n_episodes += int(np.count_nonzero(lengths > 0))
        start = offset + int(ends[-1]) + 1
    if start < n:  # the data's final chunk: an episode ended by timeout
        length = n - start - int(drop_last)
        n_transitions += length
        n_episodes += int(length > 0)
    return n_transitions, n_episodes

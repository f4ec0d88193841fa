"""Metadata-only checks of hostile HDF5 files and the streamed
summary: refused before any array is read, by `inspect_hdf5` and by `read_hdf5` alike."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from bear_core.dataset import (
    Hdf5Limits,
    MDPDataset,
    inspect_hdf5,
    read_hdf5,
    summarize_hdf5,
)
from bear_core.errors import DatasetError
from tests.hostile_hdf5 import HOSTILE, good_arrays, no_usable_transitions, write_server_file

SERVICE_LIKE = Hdf5Limits(
    max_rows=10_000_000,
    max_row_width=1 << 20,
    max_declared_bytes=8 << 30,
    max_expansion=64.0,
    max_chunk_bytes=16 << 20,
)


@pytest.fixture()
def server_file(tmp_path: Path) -> Path:
    path = tmp_path / "server-secret.h5"
    write_server_file(path)
    return path


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_are_refused_before_reading(
    tmp_path: Path, server_file: Path, name: str
) -> None:
    writer, named = HOSTILE[name]
    path = tmp_path / f"{name}.h5"
    writer(path, server_file)
    limits = SERVICE_LIKE if name in ("bomb", "written-bomb", "huge-chunk") else None
    before, started = _rss_mib(), time.perf_counter()
    for check in (inspect_hdf5, summarize_hdf5, read_hdf5):
        with pytest.raises(DatasetError) as info:
            check(path, limits)
        assert named in str(info.value) and str(path) in str(info.value), str(info.value)
    assert time.perf_counter() - started < 1.0
    assert _rss_mib() - before < 50


def test_the_trainer_defaults_refuse_the_bomb_by_expansion(
    tmp_path: Path, server_file: Path
) -> None:
    path = tmp_path / "bomb.h5"
    HOSTILE["bomb"][0](path, server_file)
    with pytest.raises(DatasetError, match="times its size"):
        read_hdf5(path)


@pytest.mark.parametrize("next_obs", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_the_streamed_summary_counts_like_mdpdataset(
    tmp_path: Path, seed: int, next_obs: bool
) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    arrays = {
        "observations": rng.normal(size=(n, 2)).astype(np.float32),
        "actions": rng.normal(size=(n, 1)).astype(np.float32),
        "rewards": rng.normal(size=(n, 1)),
        "terminals": rng.random(n) < 0.05 * seed,
        "timeouts": (rng.random(n) < 0.1 * seed).astype(np.float64),
    }
    if next_obs:
        arrays["next_observations"] = rng.normal(size=(n, 2)).astype(np.float32)
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    dataset = MDPDataset(**arrays)
    for block_bytes in (8, 64, 1 << 20):  # blocks of 1, 8 and all rows
        summary = summarize_hdf5(path, block_bytes=block_bytes)
        assert summary.n_transitions == dataset.n_transitions
        assert summary.n_episodes == len(dataset.episodes)
        assert summary.n_rows == n
        assert summary.observation_shape == dataset.observation_shape
        assert summary.action_size == dataset.action_size


def test_values_are_checked_block_by_block(tmp_path: Path) -> None:
    arrays = good_arrays()
    arrays["actions"][17, 0] = np.inf
    path = tmp_path / "inf.h5"
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    with pytest.raises(DatasetError, match="actions contains NaN"):
        summarize_hdf5(path, block_bytes=16)
    arrays = good_arrays()
    arrays["timeouts"] = np.full(20, 2.0)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    with pytest.raises(DatasetError, match="timeouts must hold only 0/1"):
        summarize_hdf5(path)


def test_zero_usable_transitions_are_counted(tmp_path: Path, server_file: Path) -> None:
    path = tmp_path / "none.h5"
    no_usable_transitions(path, server_file)
    summary = summarize_hdf5(path)
    assert (summary.n_rows, summary.n_transitions, summary.n_episodes) == (20, 0, 0)


def test_bound_attributes_are_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "attrs.h5"
    with h5py.File(path, "w") as f:
        for key, value in good_arrays().items():
            f.create_dataset(key, data=value)
        f.attrs["action_low"] = np.zeros(1000)
        f.attrs["action_high"] = np.ones(1)
    with pytest.raises(DatasetError, match=r"action_low must have shape \(1,\)"):
        inspect_hdf5(path)

"""Tests for bear_core.dataset: episodes, MDPDataset, HDF5 I/O, buffer, Pendulum generator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from bear_core.dataset import (
    Episode,
    MDPDataset,
    Transition,
    TransitionBatch,
    TransitionBuffer,
    generate_pendulum_dataset,
    read_hdf5,
    write_hdf5,
)
from bear_core.errors import DatasetError


def _flat(n: int = 10, obs_dim: int = 3, action_size: int = 2) -> dict[str, np.ndarray]:
    """Flat arrays where observations[t] = t (every column), so successors are easy to check."""
    observations = np.repeat(np.arange(n, dtype=np.float32)[:, None], obs_dim, axis=1)
    return {
        "observations": observations,
        "actions": np.full((n, action_size), 0.5, dtype=np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": np.zeros(n, dtype=bool),
    }


def _episode(length: int, obs_dim: int = 3, action_size: int = 2, start: float = 0.0) -> Episode:
    obs = np.arange(start, start + length * obs_dim, dtype=np.float32).reshape(length, obs_dim)
    return Episode(
        observations=obs,
        actions=np.ones((length, action_size), dtype=np.float32),
        rewards=np.ones(length, dtype=np.float32),
        next_observations=obs + 1.0,
        terminals=np.zeros(length, dtype=np.float32),
        timeout=True,
    )


# ---------------------------------------------------------------- Episode


def test_episode_properties_and_transitions() -> None:
    episode = _episode(4)
    assert len(episode) == 4
    assert episode.observation_shape == (3,)
    assert episode.action_size == 2
    assert episode.compute_return() == pytest.approx(4.0)
    transitions = episode.transitions
    assert len(transitions) == 4
    assert all(isinstance(t, Transition) for t in transitions)
    np.testing.assert_array_equal(transitions[2].observation, episode.observations[2])
    np.testing.assert_array_equal(transitions[2].next_observation, episode.next_observations[2])
    assert transitions[3].reward == 1.0
    assert transitions[3].terminal == 0.0


def test_episode_rejects_terminal_before_last_step() -> None:
    episode = _episode(3)
    with pytest.raises(DatasetError, match="terminals"):
        Episode(
            observations=episode.observations,
            actions=episode.actions,
            rewards=episode.rewards,
            next_observations=episode.next_observations,
            terminals=np.array([1.0, 0.0, 0.0], dtype=np.float32),
        )


# ---------------------------------------------------------------- MDPDataset episode splitting


def test_split_at_terminals_and_timeouts_without_next_observations() -> None:
    arrays = _flat(10)
    arrays["terminals"][3] = True  # episode 0: steps 0..3, terminal
    arrays["timeouts"][6] = True  # episode 1: steps 4..6, timeout -> step 6 dropped
    # episode 2: steps 7..9, end of data -> timeout, step 9 dropped
    dataset = MDPDataset(**arrays)
    episodes = dataset.episodes
    assert [len(e) for e in episodes] == [4, 2, 2]
    assert [e.timeout for e in episodes] == [False, True, True]
    assert dataset.n_transitions == 8

    terminal_ep = episodes[0]
    np.testing.assert_array_equal(terminal_ep.terminals, [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(terminal_ep.next_observations[:3, 0], [1.0, 2.0, 3.0])
    # The terminal step's successor is a copy of its own observation.
    np.testing.assert_array_equal(terminal_ep.next_observations[3], terminal_ep.observations[3])

    timeout_ep = episodes[1]
    np.testing.assert_array_equal(timeout_ep.observations[:, 0], [4.0, 5.0])
    np.testing.assert_array_equal(timeout_ep.next_observations[:, 0], [5.0, 6.0])
    np.testing.assert_array_equal(timeout_ep.terminals, [0.0, 0.0])
    assert timeout_ep.compute_return() == pytest.approx(4.0 + 5.0)

    np.testing.assert_array_equal(episodes[2].observations[:, 0], [7.0, 8.0])
    np.testing.assert_array_equal(episodes[2].next_observations[:, 0], [8.0, 9.0])


def test_length_one_timeout_episode_without_next_obs_is_dropped() -> None:
    arrays = _flat(5)
    arrays["timeouts"][0] = True  # length-1 timeout episode: dropped
    arrays["terminals"][1] = True  # length-1 terminal episode: kept
    dataset = MDPDataset(**arrays)
    assert [len(e) for e in dataset.episodes] == [1, 2]
    np.testing.assert_array_equal(dataset.episodes[0].observations[:, 0], [1.0])
    assert dataset.episodes[0].terminals[0] == 1.0
    assert not dataset.episodes[0].timeout


def test_terminal_wins_over_timeout_on_same_step() -> None:
    arrays = _flat(4)
    arrays["terminals"][3] = True
    arrays["timeouts"][3] = True
    (episode,) = MDPDataset(**arrays).episodes
    assert len(episode) == 4
    assert episode.terminals[-1] == 1.0
    assert not episode.timeout


def test_given_next_observations_are_used_and_nothing_dropped() -> None:
    arrays = _flat(6)
    arrays["timeouts"][2] = True
    next_obs = arrays["observations"] + 100.0
    dataset = MDPDataset(**arrays, next_observations=next_obs)
    assert [len(e) for e in dataset.episodes] == [3, 3]
    assert dataset.n_transitions == 6
    np.testing.assert_array_equal(dataset.episodes[0].next_observations[:, 0], [100, 101, 102])
    np.testing.assert_array_equal(dataset.episodes[1].next_observations[:, 0], [103, 104, 105])
    assert all(e.timeout for e in dataset.episodes)


def test_accepts_column_rewards_and_numeric_flags() -> None:
    arrays = _flat(4)
    arrays["rewards"] = arrays["rewards"][:, None].astype(np.float64)
    arrays["terminals"] = np.array([0, 1, 0, 0], dtype=np.int64)
    dataset = MDPDataset(
        arrays["observations"], arrays["actions"], arrays["rewards"], arrays["terminals"]
    )
    assert [len(e) for e in dataset.episodes] == [2, 1]
    assert dataset.rewards.dtype == np.float32
    assert dataset.rewards.shape == (4,)
    assert dataset.timeouts.dtype == np.bool_
    assert not dataset.timeouts.any()


def test_dataset_metadata_and_read_only_arrays() -> None:
    arrays = _flat(5, obs_dim=4, action_size=3)
    bounds = (np.full(3, -1.0), np.full(3, 1.0))
    dataset = MDPDataset(**arrays, action_bounds=bounds)
    assert dataset.observation_shape == (4,)
    assert dataset.action_size == 3
    assert dataset.action_bounds is not None
    low, high = dataset.action_bounds
    assert low.dtype == np.float32 and high.dtype == np.float32
    np.testing.assert_array_equal(high, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        dataset.observations[0, 0] = 7.0
    # The caller's arrays are copied, not frozen.
    arrays["observations"][0, 0] = 7.0
    assert dataset.observations[0, 0] == 0.0


def test_multidimensional_observations() -> None:
    arrays = _flat(6)
    arrays["observations"] = np.arange(6 * 2 * 3, dtype=np.float32).reshape(6, 2, 3)
    dataset = MDPDataset(**arrays)
    assert dataset.observation_shape == (2, 3)
    assert dataset.episodes[0].next_observations.shape == (5, 2, 3)


# ---------------------------------------------------------------- MDPDataset validation


def _bad_inputs() -> list[Any]:
    n = 6
    return [
        pytest.param("observations", {"observations": np.zeros(n, np.float32)}, id="obs-ndim"),
        pytest.param(
            "observations",
            {
                "observations": np.zeros((0, 3), np.float32),
                "actions": np.zeros((0, 2), np.float32),
                "rewards": np.zeros(0, np.float32),
                "terminals": np.zeros(0, bool),
                "timeouts": np.zeros(0, bool),
            },
            id="empty",
        ),
        pytest.param("observations", {"observations": np.full((n, 3), "x")}, id="obs-str"),
        pytest.param(
            "observations", {"observations": np.full((n, 3), np.nan, np.float32)}, id="obs-nan"
        ),
        pytest.param("actions", {"actions": np.zeros(n, np.float32)}, id="actions-ndim"),
        pytest.param("actions", {"actions": np.zeros((n - 1, 2), np.float32)}, id="actions-len"),
        pytest.param("actions", {"actions": np.full((n, 2), np.inf, np.float32)}, id="actions-inf"),
        pytest.param(
            "actions", {"actions": np.zeros((n, 2), dtype=np.complex64)}, id="actions-complex"
        ),
        pytest.param("rewards", {"rewards": np.zeros((n, 2), np.float32)}, id="rewards-ndim"),
        pytest.param("rewards", {"rewards": np.zeros(n + 1, np.float32)}, id="rewards-len"),
        pytest.param("rewards", {"rewards": np.array([np.nan] * n)}, id="rewards-nan"),
        pytest.param("rewards", {"rewards": np.array([None] * n)}, id="rewards-object"),
        pytest.param("rewards", {"rewards": np.full(n, 1e300)}, id="rewards-overflow"),
        pytest.param("terminals", {"terminals": np.zeros(n - 2, bool)}, id="terminals-len"),
        pytest.param("terminals", {"terminals": np.full(n, 2.0)}, id="terminals-values"),
        pytest.param("terminals", {"terminals": np.full(n, np.nan)}, id="terminals-nan"),
        pytest.param("timeouts", {"timeouts": np.zeros((n, 3), bool)}, id="timeouts-ndim"),
        pytest.param("timeouts", {"timeouts": np.array(["a"] * n)}, id="timeouts-str"),
        pytest.param(
            "next_observations",
            {"next_observations": np.zeros((n, 4), np.float32)},
            id="next-shape",
        ),
        pytest.param(
            "next_observations",
            {"next_observations": np.full((n, 3), np.nan, np.float32)},
            id="next-nan",
        ),
        pytest.param(
            "action_bounds",
            {"action_bounds": (np.ones(2), np.zeros(2))},
            id="bounds-low-gt-high",
        ),
        pytest.param(
            "action_bounds", {"action_bounds": (np.zeros(3), np.ones(3))}, id="bounds-width"
        ),
        pytest.param(
            "action_bounds",
            {"action_bounds": (np.array([0.0, np.nan]), np.ones(2))},
            id="bounds-nan",
        ),
        pytest.param("action_bounds", {"action_bounds": (np.zeros(2),)}, id="bounds-pair"),
    ]


@pytest.mark.parametrize(("key", "changes"), _bad_inputs())
def test_bad_inputs_raise_dataset_error_naming_the_key(key: str, changes: dict[str, Any]) -> None:
    arrays: dict[str, Any] = {**_flat(6), **changes}
    with pytest.raises(DatasetError) as info:
        MDPDataset(**arrays)
    assert key in str(info.value)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------- split / checksum


def _many_episodes(n_episodes: int = 10, length: int = 5) -> MDPDataset:
    arrays = _flat(n_episodes * length)
    arrays["terminals"][length - 1 :: length] = True
    return MDPDataset(**arrays)


def test_split_is_deterministic_disjoint_and_complete() -> None:
    dataset = _many_episodes(10)
    train, test = dataset.split(test_size=0.3, seed=3)
    train2, test2 = dataset.split(test_size=0.3, seed=3)
    assert len(test) == 3 and len(train) == 7
    assert [id(e) for e in train] == [id(e) for e in train2]
    assert [id(e) for e in test] == [id(e) for e in test2]
    assert not {id(e) for e in train} & {id(e) for e in test}
    assert {id(e) for e in train} | {id(e) for e in test} == {id(e) for e in dataset.episodes}
    other_splits = {tuple(id(e) for e in dataset.split(0.3, seed=s)[1]) for s in range(10)}
    assert len(other_splits) > 1


def test_split_keeps_one_episode_each_side() -> None:
    dataset = _many_episodes(3)
    train, test = dataset.split(test_size=0.01)
    assert (len(train), len(test)) == (2, 1)
    train, test = dataset.split(test_size=0.99)
    assert (len(train), len(test)) == (1, 2)


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.2, 1.5])
def test_split_rejects_out_of_range_test_size(test_size: float) -> None:
    with pytest.raises(ValueError, match="test_size"):
        _many_episodes(4).split(test_size=test_size)


def test_split_rejects_single_episode() -> None:
    with pytest.raises(ValueError, match="test_size"):
        _many_episodes(1).split(test_size=0.5)


def test_checksum_is_stable_and_sensitive() -> None:
    arrays = _flat(8)
    first = MDPDataset(**arrays).checksum()
    assert first == MDPDataset(**_flat(8)).checksum()
    assert len(first) == 64 and int(first, 16) >= 0
    changed = _flat(8)
    changed["rewards"][3] += 1.0
    assert MDPDataset(**changed).checksum() != first
    flagged = _flat(8)
    flagged["timeouts"][3] = True
    assert MDPDataset(**flagged).checksum() != first
    bounded = MDPDataset(**_flat(8), action_bounds=(-np.ones(2), np.ones(2)))
    assert bounded.checksum() != first


# ---------------------------------------------------------------- HDF5


def test_hdf5_round_trip_with_bounds_and_next_obs(tmp_path: Path) -> None:
    arrays = _flat(9)
    arrays["terminals"][2] = True
    arrays["timeouts"][5] = True
    dataset = MDPDataset(
        **arrays,
        next_observations=arrays["observations"] + 1.0,
        action_bounds=(np.array([-2.0, -1.0]), np.array([2.0, 1.0])),
    )
    path = tmp_path / "sub" / "data.h5"
    dataset.to_hdf5(path)
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["data.h5"]  # no temp file left behind
    loaded = MDPDataset.from_hdf5(path)
    assert loaded.checksum() == dataset.checksum()
    assert loaded.action_bounds is not None
    np.testing.assert_array_equal(loaded.action_bounds[0], [-2.0, -1.0])
    np.testing.assert_array_equal(loaded.action_bounds[1], [2.0, 1.0])
    assert [len(e) for e in loaded.episodes] == [len(e) for e in dataset.episodes]
    for a, b in zip(loaded.episodes, dataset.episodes, strict=True):
        np.testing.assert_array_equal(a.next_observations, b.next_observations)
        assert a.timeout == b.timeout
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == {
            "observations",
            "actions",
            "rewards",
            "terminals",
            "timeouts",
            "next_observations",
        }
        assert f["terminals"].dtype == np.bool_


def test_hdf5_round_trip_without_optional_parts(tmp_path: Path) -> None:
    dataset = _many_episodes(3)
    path = tmp_path / "plain.h5"
    write_hdf5(path, dataset)
    loaded = read_hdf5(path)
    assert loaded.action_bounds is None
    assert loaded.next_observations is None
    assert loaded.checksum() == dataset.checksum()


def test_hdf5_overwrite_is_atomic_replacement(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    _many_episodes(2).to_hdf5(path)
    _many_episodes(4).to_hdf5(path)
    assert len(read_hdf5(path).episodes) == 4


def test_read_hdf5_without_timeouts_defaults_to_false(tmp_path: Path) -> None:
    arrays = _flat(5)
    path = tmp_path / "d4rl.h5"
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "rewards", "terminals"):
            f.create_dataset(key, data=arrays[key])
    loaded = read_hdf5(path)
    assert not loaded.timeouts.any()
    assert [len(e) for e in loaded.episodes] == [4]


def _write_raw(path: Path, arrays: dict[str, Any], attrs: dict[str, Any] | None = None) -> None:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value


_STR = h5py.string_dtype()


@pytest.mark.parametrize(
    ("key", "change", "attrs"),
    [
        pytest.param("observations", {"observations": None}, None, id="missing-obs"),
        pytest.param("terminals", {"terminals": None}, None, id="missing-terminals"),
        pytest.param("rewards", {"rewards": np.array(["a"] * 5, dtype=_STR)}, None, id="str"),
        pytest.param("actions", {"actions": np.zeros(5, np.float32)}, None, id="shape"),
        pytest.param("actions", {"actions": np.zeros((4, 2), np.float32)}, None, id="length"),
        pytest.param("observations", {"observations": np.full((5, 3), np.nan)}, None, id="nan-obs"),
        pytest.param("timeouts", {"timeouts": np.full(5, np.nan)}, None, id="nan-timeouts"),
        pytest.param(
            "next_observations",
            {"next_observations": np.zeros((5, 1), np.float32)},
            None,
            id="next-shape",
        ),
        pytest.param("action_high", {}, {"action_low": np.zeros(2)}, id="half-bounds"),
        pytest.param(
            "action_low",
            {},
            {"action_low": np.ones(2), "action_high": np.zeros(2)},
            id="low-gt-high",
        ),
        pytest.param(
            "action_low",
            {},
            {"action_low": np.zeros(3), "action_high": np.ones(3)},
            id="bounds-width",
        ),
        pytest.param(
            "action_high",
            {},
            {"action_low": np.zeros(2), "action_high": "wide"},
            id="bounds-str",
        ),
    ],
)
def test_read_hdf5_bad_file_names_key_and_path(
    tmp_path: Path, key: str, change: dict[str, Any], attrs: dict[str, Any] | None
) -> None:
    arrays: dict[str, Any] = {**_flat(5), **change}
    path = tmp_path / "bad.h5"
    _write_raw(path, {k: v for k, v in arrays.items() if v is not None}, attrs)
    with pytest.raises(DatasetError) as info:
        read_hdf5(path)
    assert key in str(info.value)
    assert str(path) in str(info.value)


def test_read_hdf5_group_instead_of_dataset(tmp_path: Path) -> None:
    path = tmp_path / "group.h5"
    arrays = _flat(5)
    with h5py.File(path, "w") as f:
        for key in ("observations", "rewards", "terminals"):
            f.create_dataset(key, data=arrays[key])
        f.create_group("actions")
    with pytest.raises(DatasetError, match="actions"):
        read_hdf5(path)


def test_read_hdf5_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.h5"
    with pytest.raises(DatasetError, match=r"nope\.h5"):
        read_hdf5(path)


def test_read_hdf5_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "text.h5"
    path.write_text("definitely not hdf5\n")
    with pytest.raises(DatasetError, match="not an HDF5 file") as info:
        read_hdf5(path)
    assert "text.h5" in str(info.value)


# ---------------------------------------------------------------- TransitionBuffer


def test_buffer_concatenates_episodes() -> None:
    episodes = [_episode(3), _episode(2, start=100.0)]
    buffer = TransitionBuffer.from_episodes(episodes)
    assert len(buffer) == 5
    assert buffer.observations.shape == (5, 3)
    assert buffer.actions.shape == (5, 2)
    assert buffer.rewards.shape == (5, 1)
    assert buffer.terminals.shape == (5, 1)
    assert buffer.observations.flags.c_contiguous
    np.testing.assert_array_equal(buffer.observations[3], episodes[1].observations[0])
    np.testing.assert_array_equal(buffer.next_observations[:3], episodes[0].next_observations)


def test_buffer_sample_shapes_dtypes_and_determinism() -> None:
    dataset = _many_episodes(6, length=7)
    buffer = TransitionBuffer.from_episodes(dataset.episodes)
    assert len(buffer) == dataset.n_transitions
    batch = buffer.sample(32, np.random.default_rng(5))
    assert isinstance(batch, TransitionBatch)
    assert len(batch) == 32
    expected_shapes = {
        "observations": (32, 3),
        "actions": (32, 2),
        "rewards": (32, 1),
        "next_observations": (32, 3),
        "terminals": (32, 1),
    }
    for name, shape in expected_shapes.items():
        array = getattr(batch, name)
        assert array.shape == shape, name
        assert array.dtype == np.float32, name
    again = buffer.sample(32, np.random.default_rng(5))
    for name in expected_shapes:
        np.testing.assert_array_equal(getattr(batch, name), getattr(again, name))
    different = buffer.sample(32, np.random.default_rng(6))
    assert not np.array_equal(batch.observations, different.observations)
    # Consistency: each sampled row is a real transition (observation t, successor t + 1 or self).
    step = batch.next_observations[:, 0] - batch.observations[:, 0]
    assert np.all((step == 1.0) | ((step == 0.0) & (batch.terminals[:, 0] == 1.0)))


def test_buffer_sample_covers_all_transitions() -> None:
    buffer = TransitionBuffer.from_episodes([_episode(4), _episode(4, start=50.0)])
    batch = buffer.sample(2000, np.random.default_rng(0))
    assert len(np.unique(batch.observations[:, 0])) == 8


def test_buffer_rejects_empty_and_mixed() -> None:
    with pytest.raises(DatasetError, match="episodes"):
        TransitionBuffer.from_episodes([])
    with pytest.raises(DatasetError, match="observation_shape"):
        TransitionBuffer.from_episodes([_episode(2), _episode(2, obs_dim=4)])
    with pytest.raises(DatasetError, match="action_size"):
        TransitionBuffer.from_episodes([_episode(2), _episode(2, action_size=1)])


def test_buffer_rejects_bad_batch_size() -> None:
    buffer = TransitionBuffer.from_episodes([_episode(2)])
    with pytest.raises(ValueError, match="batch_size"):
        buffer.sample(0, np.random.default_rng(0))


# ---------------------------------------------------------------- Pendulum generator


@pytest.fixture(scope="module")
def pendulum_data() -> dict[str, MDPDataset]:
    kinds = ("medium", "random")
    return {kind: generate_pendulum_dataset(kind, n_episodes=6, seed=1) for kind in kinds}


def test_pendulum_dataset_structure(pendulum_data: dict[str, MDPDataset]) -> None:
    dataset = pendulum_data["medium"]
    assert dataset.observation_shape == (3,)
    assert dataset.action_size == 1
    assert len(dataset.episodes) == 6
    assert all(len(e) == 200 and e.timeout for e in dataset.episodes)
    assert dataset.n_transitions == 1200
    assert dataset.next_observations is not None
    assert int(dataset.timeouts.sum()) == 6 and not dataset.terminals.any()
    assert dataset.action_bounds is not None
    np.testing.assert_array_equal(dataset.action_bounds[0], [-2.0])
    np.testing.assert_array_equal(dataset.action_bounds[1], [2.0])
    for data in pendulum_data.values():
        assert np.all(np.abs(data.actions) <= 2.0)
    # Within an episode, next_observations[t] == observations[t + 1].
    episode = dataset.episodes[0]
    np.testing.assert_array_equal(episode.next_observations[:-1], episode.observations[1:])


def test_pendulum_medium_beats_random(pendulum_data: dict[str, MDPDataset]) -> None:
    medium = np.mean([e.compute_return() for e in pendulum_data["medium"].episodes])
    random = np.mean([e.compute_return() for e in pendulum_data["random"].episodes])
    assert medium > random + 300.0
    assert medium > -500.0
    assert random < -800.0


def test_pendulum_generation_is_seeded(pendulum_data: dict[str, MDPDataset]) -> None:
    again = generate_pendulum_dataset("medium", n_episodes=6, seed=1)
    assert again.checksum() == pendulum_data["medium"].checksum()
    other = generate_pendulum_dataset("medium", n_episodes=6, seed=2)
    assert other.checksum() != again.checksum()
    short = generate_pendulum_dataset("random", n_episodes=2, seed=0, max_episode_steps=10)
    assert [len(e) for e in short.episodes] == [10, 10]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"kind": "expert", "n_episodes": 1}, "kind"),
        ({"kind": "random", "n_episodes": 0}, "n_episodes"),
        ({"kind": "random", "n_episodes": 1, "max_episode_steps": 0}, "max_episode_steps"),
    ],
)
def test_pendulum_rejects_bad_arguments(kwargs: dict[str, Any], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        generate_pendulum_dataset(**kwargs)


def test_dataset_package_does_not_import_torch() -> None:
    code = (
        "import sys, bear_core.dataset as d; "
        "d.generate_pendulum_dataset('random', 1, max_episode_steps=3); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"

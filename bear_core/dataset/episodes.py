"""Episodes, transitions and the flat D4RL-style `MDPDataset`. Torch-free."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bear_core.dataset.batch import FloatArray
from bear_core.errors import DatasetError

BoolArray = npt.NDArray[np.bool_]
ActionBounds = tuple[FloatArray, FloatArray]

_NUMERIC_KINDS = "iuf"
_FLAG_KINDS = "biuf"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class Transition:
    """One step (s, a, r, s', d); `terminal` is 1.0 when s' is terminal (no bootstrap)."""

    observation: FloatArray
    action: FloatArray
    reward: float
    next_observation: FloatArray
    terminal: float


@dataclass(frozen=True, eq=False)
class Episode:
    """T consecutive steps of one trajectory.

    Shapes: observations and next_observations [T, *obs_shape], actions [T, A], rewards [T],
    terminals [T] (1.0 only possibly on the last step). `timeout` is True when the episode was cut
    by a time limit (or by the end of the data) rather than by a terminal state.
    """

    observations: FloatArray
    actions: FloatArray
    rewards: FloatArray
    next_observations: FloatArray
    terminals: FloatArray
    timeout: bool = False

    def __post_init__(self) -> None:
        for name in ("observations", "actions", "rewards", "next_observations", "terminals"):
            object.__setattr__(self, name, _as_float32(getattr(self, name), name))
        object.__setattr__(self, "timeout", bool(self.timeout))
        if self.observations.ndim < 2:
            raise DatasetError("Episode observations must have shape [T, *obs_shape]")
        length = self.observations.shape[0]
        if length == 0:
            raise DatasetError("Episode observations must hold at least one step")
        if self.actions.ndim != 2:
            raise DatasetError("Episode actions must have shape [T, action_size]")
        if self.rewards.ndim != 1 or self.terminals.ndim != 1:
            raise DatasetError("Episode rewards and terminals must have shape [T]")
        if self.next_observations.shape != self.observations.shape:
            raise DatasetError("Episode next_observations must have the shape of observations")
        for name in ("actions", "rewards", "terminals"):
            if getattr(self, name).shape[0] != length:
                raise DatasetError(f"Episode {name} must have {length} rows like observations")
        if np.any(self.terminals[:-1] != 0.0):
            raise DatasetError("Episode terminals may be non-zero only on the last step")

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of one observation."""
        return tuple(int(d) for d in self.observations.shape[1:])

    @property
    def action_size(self) -> int:
        """Width of one action."""
        return int(self.actions.shape[1])

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @property
    def transitions(self) -> list[Transition]:
        """The episode's steps as `Transition` objects (views into the episode arrays)."""
        return [
            Transition(
                observation=self.observations[t],
                action=self.actions[t],
                reward=float(self.rewards[t]),
                next_observation=self.next_observations[t],
                terminal=float(self.terminals[t]),
            )
            for t in range(len(self))
        ]

    def compute_return(self) -> float:
        """Undiscounted sum of the rewards."""
        return float(np.sum(self.rewards, dtype=np.float64))


class MDPDataset:
    """A logged dataset given as flat D4RL-style arrays, split into episodes.

    Episodes end at `terminals` or `timeouts`; the data's final chunk is an episode too, treated as
    ended by timeout. Without `next_observations`, the last step of a timeout-ended episode has no
    successor and is dropped; the last step of a terminal-ended episode gets a copy of its own
    observation as next observation (it is never bootstrapped).
    """

    def __init__(
        self,
        observations: npt.ArrayLike,
        actions: npt.ArrayLike,
        rewards: npt.ArrayLike,
        terminals: npt.ArrayLike,
        timeouts: npt.ArrayLike | None = None,
        next_observations: npt.ArrayLike | None = None,
        action_bounds: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    ) -> None:
        obs = _numeric(observations, "observations", _NUMERIC_KINDS)
        if obs.ndim < 2:
            raise DatasetError(f"observations must have shape [N, *obs_shape], got ndim {obs.ndim}")
        n = obs.shape[0]
        if n == 0:
            raise DatasetError("observations is empty: the dataset needs at least one step")
        acts = _numeric(actions, "actions", _NUMERIC_KINDS)
        if acts.ndim != 2:
            raise DatasetError(f"actions must have shape [N, action_size], got ndim {acts.ndim}")
        if acts.shape[1] == 0:
            raise DatasetError("actions must have at least one column")
        _check_rows(acts, "actions", n)
        rews = _column(_numeric(rewards, "rewards", _NUMERIC_KINDS), "rewards", n)
        terms = _flags(terminals, "terminals", n)
        touts = np.zeros(n, dtype=np.bool_) if timeouts is None else _flags(timeouts, "timeouts", n)
        next_obs = None
        if next_observations is not None:
            next_obs = _numeric(next_observations, "next_observations", _NUMERIC_KINDS)
            if next_obs.shape != obs.shape:
                raise DatasetError(
                    f"next_observations must have shape {obs.shape} like observations, "
                    f"got {next_obs.shape}"
                )
        bounds = None
        if action_bounds is not None:
            if len(action_bounds) != 2:
                raise DatasetError("action_bounds must be a pair (low, high)")
            bounds = validate_action_bounds(
                action_bounds[0],
                action_bounds[1],
                int(acts.shape[1]),
                "action_bounds[0] (low)",
                "action_bounds[1] (high)",
            )

        self._observations = _frozen(obs.astype(np.float32))
        self._actions = _frozen(acts.astype(np.float32))
        self._rewards = _frozen(rews.astype(np.float32))
        self._terminals = _frozen(terms)
        self._timeouts = _frozen(touts)
        self._next_observations = None if next_obs is None else _frozen(next_obs.astype(np.float32))
        self._action_bounds = bounds
        self._episodes = self._split_episodes()

    def _split_episodes(self) -> list[Episode]:
        ends = np.flatnonzero(self._terminals | self._timeouts).tolist()
        last = self._observations.shape[0] - 1
        if not ends or ends[-1] != last:
            ends.append(last)
        episodes = []
        start = 0
        for end in ends:
            episode = self._make_episode(start, end)
            if episode is not None:
                episodes.append(episode)
            start = end + 1
        return episodes

    def _make_episode(self, start: int, end: int) -> Episode | None:
        terminal = bool(self._terminals[end])
        obs = self._observations
        stop = end + 1
        if self._next_observations is not None:
            next_obs = self._next_observations[start:stop]
        elif terminal:
            next_obs = np.concatenate([obs[start + 1 : stop], obs[end : end + 1]])
        else:
            stop = end
            if stop == start:
                return None
            next_obs = obs[start + 1 : end + 1]
        terminals = np.zeros(stop - start, dtype=np.float32)
        terminals[-1] = float(terminal)
        return Episode(
            observations=obs[start:stop],
            actions=self._actions[start:stop],
            rewards=self._rewards[start:stop],
            next_observations=next_obs,
            terminals=terminals,
            timeout=not terminal,
        )

    @property
    def episodes(self) -> list[Episode]:
        """The episodes, in data order (a fresh list; the episodes are shared)."""
        return list(self._episodes)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of one observation."""
        return tuple(int(d) for d in self._observations.shape[1:])

    @property
    def action_size(self) -> int:
        """Width of one action."""
        return int(self._actions.shape[1])

    @property
    def n_transitions(self) -> int:
        """Number of usable transitions over all episodes (after dropped last steps)."""
        return sum(len(e) for e in self._episodes)

    @property
    def action_bounds(self) -> ActionBounds | None:
        """(low, high) float32 [A] arrays, or None when unknown."""
        return self._action_bounds

    @property
    def observations(self) -> FloatArray:
        """Flat read-only observations [N, *obs_shape]."""
        return self._observations

    @property
    def actions(self) -> FloatArray:
        """Flat read-only actions [N, A]."""
        return self._actions

    @property
    def rewards(self) -> FloatArray:
        """Flat read-only rewards [N]."""
        return self._rewards

    @property
    def terminals(self) -> BoolArray:
        """Flat read-only terminal flags [N]."""
        return self._terminals

    @property
    def timeouts(self) -> BoolArray:
        """Flat read-only timeout flags [N]."""
        return self._timeouts

    @property
    def next_observations(self) -> FloatArray | None:
        """Flat read-only next observations [N, *obs_shape], or None when not given."""
        return self._next_observations

    def split(self, test_size: float = 0.1, seed: int = 0) -> tuple[list[Episode], list[Episode]]:
        """Seeded episode-level (train, test) split with at least one episode on each side."""
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size must lie in (0, 1), got {test_size}")
        n = len(self._episodes)
        if n < 2:
            raise ValueError(
                f"test_size={test_size} cannot leave an episode on each side: "
                f"the dataset has {n} episode(s)"
            )
        n_test = min(max(math.ceil(n * test_size), 1), n - 1)
        order = np.random.default_rng(seed).permutation(n)
        test_idx = sorted(order[:n_test].tolist())
        train_idx = sorted(order[n_test:].tolist())
        return [self._episodes[i] for i in train_idx], [self._episodes[i] for i in test_idx]

    def checksum(self) -> str:
        """SHA-256 hex digest of the flat arrays (names, shapes and little-endian bytes)."""
        digest = hashlib.sha256()
        arrays: list[tuple[str, np.ndarray[Any, Any] | None]] = [
            ("observations", self._observations),
            ("actions", self._actions),
            ("rewards", self._rewards),
            ("terminals", self._terminals),
            ("timeouts", self._timeouts),
            ("next_observations", self._next_observations),
        ]
        if self._action_bounds is not None:
            arrays += [
                ("action_low", self._action_bounds[0]),
                ("action_high", self._action_bounds[1]),
            ]
        for name, array in arrays:
            if array is None:
                continue
            data = array.astype(array.dtype.newbyteorder("<"), copy=False)
            digest.update(f"{name}:{data.dtype.str}:{data.shape};".encode())
            digest.update(np.ascontiguousarray(data).tobytes())
        return digest.hexdigest()

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike[str]) -> MDPDataset:
        """Read a D4RL-format HDF5 file (see `bear_core.dataset.hdf5.read_hdf5`)."""
        from bear_core.dataset.hdf5 import read_hdf5

        return read_hdf5(path)

    def to_hdf5(self, path: str | os.PathLike[str]) -> None:
        """Write the dataset atomically as a D4RL-format HDF5 file."""
        from bear_core.dataset.hdf5 import write_hdf5

        write_hdf5(path, self)

    def __repr__(self) -> str:
        return (
            f"MDPDataset(n_episodes={len(self._episodes)}, n_transitions={self.n_transitions}, "
            f"observation_shape={self.observation_shape}, action_size={self.action_size})"
        )


def validate_action_bounds(
    low: npt.ArrayLike,
    high: npt.ArrayLike,
    action_size: int,
    low_name: str = "action_low",
    high_name: str = "action_high",
) -> ActionBounds:
    """Check a (low, high) pair of finite [action_size] arrays with low <= high; return float32."""
    checked = []
    for value, name in ((low, low_name), (high, high_name)):
        array = _numeric(value, name, _NUMERIC_KINDS)
        if array.shape != (action_size,):
            raise DatasetError(
                f"{name} must have shape ({action_size},) to match the action width, "
                f"got {array.shape}"
            )
        checked.append(_frozen(array.astype(np.float32)))
    if np.any(checked[0] > checked[1]):
        raise DatasetError(f"{low_name} must be <= {high_name} element-wise")
    return checked[0], checked[1]


def _numeric(value: npt.ArrayLike, name: str, kinds: str) -> np.ndarray[Any, Any]:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise DatasetError(f"{name} cannot be read as an array: {err}") from err
    if array.dtype.kind not in kinds:
        raise DatasetError(f"{name} must be numeric, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.all(np.abs(array) <= _FLOAT32_MAX):
        raise DatasetError(f"{name} contains NaN, inf or values beyond the float32 range")
    return array


def _check_rows(array: np.ndarray[Any, Any], name: str, n: int) -> None:
    if array.shape[0] != n:
        raise DatasetError(f"{name} has {array.shape[0]} rows but observations has {n}")


def _column(array: np.ndarray[Any, Any], name: str, n: int) -> np.ndarray[Any, Any]:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise DatasetError(f"{name} must have shape [N] or [N, 1], got {array.shape}")
    _check_rows(array, name, n)
    return array


def _flags(value: npt.ArrayLike, name: str, n: int) -> BoolArray:
    array = _column(_numeric(value, name, _FLAG_KINDS), name, n)
    if not np.all((array == 0) | (array == 1)):
        raise DatasetError(f"{name} must hold only 0/1 (or bool) values")
    return array.astype(np.bool_)


def _as_float32(value: npt.ArrayLike, name: str) -> FloatArray:
    return np.asarray(_numeric(value, f"Episode {name}", _FLAG_KINDS), dtype=np.float32)


def _frozen(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    array.setflags(write=False)
    return array

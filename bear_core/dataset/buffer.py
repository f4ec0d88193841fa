"""Contiguous transition storage with fast uniform sampling. Torch-free."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bear_core.dataset.batch import FloatArray, TransitionBatch
from bear_core.dataset.episodes import Episode
from bear_core.errors import DatasetError


class TransitionBuffer:
    """All transitions of some episodes in preallocated float32 arrays.

    Shapes: observations and next_observations [N, *obs_shape], actions [N, A], rewards [N, 1],
    terminals [N, 1].
    """

    def __init__(
        self,
        observations: FloatArray,
        actions: FloatArray,
        rewards: FloatArray,
        next_observations: FloatArray,
        terminals: FloatArray,
    ) -> None:
        arrays = {
            "observations": observations,
            "actions": actions,
            "rewards": rewards,
            "next_observations": next_observations,
            "terminals": terminals,
        }
        for name, array in arrays.items():
            if array.dtype != np.float32:
                raise DatasetError(f"{name} must be float32, got {array.dtype}")
        if observations.ndim < 2 or observations.shape[0] == 0:
            raise DatasetError(
                f"observations must have shape [N, *obs_shape] with N >= 1, "
                f"got {observations.shape}"
            )
        n = observations.shape[0]
        if actions.ndim != 2 or actions.shape[0] != n:
            raise DatasetError(f"actions must have shape ({n}, A), got {actions.shape}")
        for name, shape in (
            ("rewards", (n, 1)),
            ("next_observations", observations.shape),
            ("terminals", (n, 1)),
        ):
            if arrays[name].shape != shape:
                raise DatasetError(f"{name} must have shape {shape}, got {arrays[name].shape}")
        self.observations = observations
        self.actions = actions
        self.rewards = rewards
        self.next_observations = next_observations
        self.terminals = terminals
        self._size = int(n)

    @classmethod
    def from_episodes(cls, episodes: Sequence[Episode]) -> TransitionBuffer:
        """Concatenate the episodes' transitions into new contiguous arrays."""
        if len(episodes) == 0:
            raise DatasetError("episodes is empty: the buffer needs at least one episode")
        obs_shape, action_size = episodes[0].observation_shape, episodes[0].action_size
        for i, episode in enumerate(episodes):
            if episode.observation_shape != obs_shape or episode.action_size != action_size:
                raise DatasetError(
                    f"episodes[{i}] has observation_shape {episode.observation_shape} and "
                    f"action_size {episode.action_size}, but episodes[0] has {obs_shape} and "
                    f"{action_size}"
                )
        n = sum(len(e) for e in episodes)
        observations = np.empty((n, *obs_shape), dtype=np.float32)
        actions = np.empty((n, action_size), dtype=np.float32)
        rewards = np.empty((n, 1), dtype=np.float32)
        next_observations = np.empty((n, *obs_shape), dtype=np.float32)
        terminals = np.empty((n, 1), dtype=np.float32)
        start = 0
        for episode in episodes:
            stop = start + len(episode)
            observations[start:stop] = episode.observations
            actions[start:stop] = episode.actions
            rewards[start:stop, 0] = episode.rewards
            next_observations[start:stop] = episode.next_observations
            terminals[start:stop, 0] = episode.terminals
            start = stop
        return cls(observations, actions, rewards, next_observations, terminals)

    def __len__(self) -> int:
        return self._size

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of one observation."""
        return tuple(int(d) for d in self.observations.shape[1:])

    @property
    def action_size(self) -> int:
        """Width of one action."""
        return int(self.actions.shape[1])

    def sample(self, batch_size: int, rng: np.random.Generator) -> TransitionBatch:
        """`batch_size` transitions drawn uniformly with replacement using `rng`."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        idx = rng.integers(0, self._size, size=batch_size)
        return TransitionBatch(
            observations=self.observations[idx],
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            next_observations=self.next_observations[idx],
            terminals=self.terminals[idx],
        )

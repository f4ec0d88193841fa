"""Logged gymnasium episodes from a scripted controller (plus Gaussian action noise) or uniform
random actions: the shared roll-out behind the Pendulum and Reacher dataset generators.
Torch-free."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

from bear_core.dataset.episodes import MDPDataset

Controller = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
Kind = Literal["medium", "random"]


def roll_out_dataset(
    env_id: str,
    controller: Controller,
    kind: Kind,
    n_episodes: int,
    seed: int,
    noise_fraction: float,
    max_episode_steps: int | None = None,
) -> MDPDataset:
    """Roll out `n_episodes` seeded episodes of `env_id` into an `MDPDataset`.

    "random" takes uniform actions from the action space; "medium" follows `controller` plus
    Gaussian noise (std `noise_fraction` of the action range), clipped to the action bounds.
    Timeouts mark truncation; next_observations and the action space's bounds are recorded.
    """
    if kind not in ("medium", "random"):
        raise ValueError(f"kind must be 'medium' or 'random', got {kind!r}")
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if max_episode_steps is not None and max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
    import gymnasium as gym

    env = gym.make(env_id, max_episode_steps=max_episode_steps)
    action_space = env.action_space
    assert isinstance(action_space, gym.spaces.Box)
    low = np.asarray(action_space.low, dtype=np.float32)
    high = np.asarray(action_space.high, dtype=np.float32)
    rng = np.random.default_rng(seed)
    reset_seeds = rng.integers(0, 2**31 - 1, size=n_episodes)
    env.action_space.seed(int(rng.integers(0, 2**31 - 1)))
    noise_std = noise_fraction * (high - low)
    columns: dict[str, list[npt.NDArray[np.float32] | float | bool]] = {
        key: [] for key in ("obs", "act", "rew", "next", "term", "tout")
    }
    try:
        for reset_seed in reset_seeds:
            obs, _ = env.reset(seed=int(reset_seed))
            done = False
            while not done:
                if kind == "random":
                    action = np.asarray(env.action_space.sample(), dtype=np.float32)
                else:
                    noisy = controller(obs) + noise_std * rng.standard_normal(low.shape)
                    action = np.clip(noisy, low, high).astype(np.float32)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                columns["obs"].append(obs)
                columns["act"].append(action)
                columns["rew"].append(float(reward))
                columns["next"].append(next_obs)
                columns["term"].append(bool(terminated))
                columns["tout"].append(bool(truncated and not terminated))
                obs = next_obs
                done = terminated or truncated
    finally:
        env.close()
    return MDPDataset(
        observations=np.asarray(columns["obs"], dtype=np.float32),
        actions=np.asarray(columns["act"], dtype=np.float32),
        rewards=np.asarray(columns["rew"], dtype=np.float32),
        terminals=np.asarray(columns["term"], dtype=np.bool_),
        timeouts=np.asarray(columns["tout"], dtype=np.bool_),
        next_observations=np.asarray(columns["next"], dtype=np.float32),
        action_bounds=(low, high),
    )

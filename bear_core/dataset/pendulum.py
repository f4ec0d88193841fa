"""Logged Pendulum-v1 datasets from a scripted controller or random actions. Torch-free."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from bear_core.dataset.episodes import MDPDataset

# Pendulum-v1 dynamics: theta'' = 3g/(2l) sin(theta) + 3/(m l^2) u with g=10, m=l=1.
_GRAVITY_TERM = 15.0
_BALANCE_COS = 0.8
_KP = 10.0
_KD = 2.0
_K_ENERGY = 1.0
_MEDIUM_NOISE_FRACTION = 0.35


def pendulum_controller(observation: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Scripted Pendulum-v1 torque [1] for obs (cos, sin, theta_dot): energy pumping, then PD."""
    cos_th, sin_th, theta_dot = (float(v) for v in np.asarray(observation).reshape(3))
    if cos_th > _BALANCE_COS:
        torque = -(_KP * math.atan2(sin_th, cos_th) + _KD * theta_dot)
    else:
        # E = theta_dot^2 / 2 + 15 cos(theta) obeys dE/dt = 3 u theta_dot; upright at rest is 15.
        energy_gap = 0.5 * theta_dot**2 + _GRAVITY_TERM * (cos_th - 1.0)
        torque = -_K_ENERGY * energy_gap * theta_dot if abs(theta_dot) > 1e-3 else 2.0
    return np.array([np.clip(torque, -2.0, 2.0)], dtype=np.float32)


def generate_pendulum_dataset(
    kind: Literal["medium", "random"],
    n_episodes: int,
    seed: int = 0,
    max_episode_steps: int = 200,
) -> MDPDataset:
    """Roll out `n_episodes` seeded episodes of gymnasium's Pendulum-v1 into an `MDPDataset`.

    "random" takes uniform actions from the action space; "medium" follows `pendulum_controller`
    plus Gaussian noise (std 0.35 of the torque range), clipped to the action bounds. Timeouts mark
    truncation; next_observations and the action space's bounds are recorded.
    """
    if kind not in ("medium", "random"):
        raise ValueError(f"kind must be 'medium' or 'random', got {kind!r}")
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
    import gymnasium as gym

    env = gym.make("Pendulum-v1", max_episode_steps=max_episode_steps)
    action_space = env.action_space
    assert isinstance(action_space, gym.spaces.Box)
    low = np.asarray(action_space.low, dtype=np.float32)
    high = np.asarray(action_space.high, dtype=np.float32)
    rng = np.random.default_rng(seed)
    reset_seeds = rng.integers(0, 2**31 - 1, size=n_episodes)
    env.action_space.seed(int(rng.integers(0, 2**31 - 1)))
    noise_std = _MEDIUM_NOISE_FRACTION * (high - low)
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
                    noisy = pendulum_controller(obs) + noise_std * rng.standard_normal(low.shape)
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

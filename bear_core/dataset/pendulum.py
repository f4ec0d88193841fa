"""Logged Pendulum-v1 datasets from a scripted controller or random actions. Torch-free."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from bear_core.dataset.episodes import MDPDataset
from bear_core.dataset.scripted_rollouts import Kind, roll_out_dataset

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
    kind: Kind,
    n_episodes: int,
    seed: int = 0,
    max_episode_steps: int = 200,
) -> MDPDataset:
    """Roll out `n_episodes` seeded episodes of gymnasium's Pendulum-v1 into an `MDPDataset`.

    "random" takes uniform actions from the action space; "medium" follows `pendulum_controller`
    plus Gaussian noise (std 0.35 of the torque range), clipped to the action bounds. Timeouts mark
    truncation; next_observations and the action space's bounds are recorded.
    """
    return roll_out_dataset(
        "Pendulum-v1",
        pendulum_controller,
        kind,
        n_episodes,
        seed,
        _MEDIUM_NOISE_FRACTION,
        max_episode_steps,
    )

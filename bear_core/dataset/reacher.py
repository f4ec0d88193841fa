"""Logged MuJoCo Reacher-v5 datasets from a scripted controller or random actions. Torch-free
(gymnasium with mujoco runs the episodes)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from bear_core.dataset.episodes import MDPDataset
from bear_core.dataset.scripted_rollouts import Kind, roll_out_dataset

# Reacher-v5: two links of 0.1 and 0.11 m; obs = cos q, sin q, target xy, q_dot, tip - target.
_LINK_1, _LINK_2 = 0.1, 0.11
_KP = 20.0
_KD = 0.1
_MEDIUM_NOISE_FRACTION = 0.1


def reacher_controller(observation: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Scripted Reacher-v5 torques [2]: tau = J(q)^T K_p (target - tip) - K_d q_dot."""
    obs = np.asarray(observation, dtype=np.float64).reshape(10)
    cos1, cos2, sin1, sin2 = obs[0:4]
    cos12, sin12 = cos1 * cos2 - sin1 * sin2, sin1 * cos2 + cos1 * sin2
    jacobian = np.array(
        [
            [-_LINK_1 * sin1 - _LINK_2 * sin12, -_LINK_2 * sin12],
            [_LINK_1 * cos1 + _LINK_2 * cos12, _LINK_2 * cos12],
        ]
    )
    torque = _KP * jacobian.T @ (-obs[8:10]) - _KD * obs[6:8]
    return np.clip(torque, -1.0, 1.0).astype(np.float32)


def generate_reacher_dataset(kind: Kind, n_episodes: int, seed: int = 0) -> MDPDataset:
    """Roll out `n_episodes` seeded 50-step episodes of gymnasium's Reacher-v5 (mujoco).

    "random" takes uniform actions; "medium" follows `reacher_controller` plus Gaussian noise
    (std 0.1 of the torque range), clipped to the action bounds.
    """
    return roll_out_dataset(
        "Reacher-v5", reacher_controller, kind, n_episodes, seed, _MEDIUM_NOISE_FRACTION
    )

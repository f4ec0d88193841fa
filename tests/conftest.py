"""Shared fixtures: small seeded datasets and tiny BEAR configurations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from bear_core.dataset import MDPDataset

OBS_SIZE, ACTION_SIZE = 5, 2

# Small networks and budgets so the contract tests stay fast on 2 cores.
TINY: dict[str, Any] = {
    "batch_size": 32,
    "encoder_params": {"hidden_units": [32, 32]},
    "n_epochs": 1,
    "n_steps_per_epoch": 5,
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_dataset(n_episodes: int = 6, length: int = 40, seed: int = 0) -> MDPDataset:
    """Random-walk episodes; actions in [-2, 3] so the action scaler has work to do."""
    rng = np.random.default_rng(seed)
    n = n_episodes * length
    observations = rng.normal(size=(n, OBS_SIZE)).astype(np.float32) * 3.0 + 1.0
    actions = rng.uniform(-2.0, 3.0, size=(n, ACTION_SIZE)).astype(np.float32)
    rewards = (-np.abs(observations[:, 0]) - 0.1 * actions[:, 0]).astype(np.float32)
    terminals = np.zeros(n, dtype=np.float32)
    timeouts = np.zeros(n, dtype=np.float32)
    ends = np.arange(length - 1, n, length)
    terminals[ends[::2]] = 1.0
    timeouts[ends[1::2]] = 1.0
    bounds = (np.full(ACTION_SIZE, -2.0, np.float32), np.full(ACTION_SIZE, 3.0, np.float32))
    return MDPDataset(observations, actions, rewards, terminals, timeouts, action_bounds=bounds)


@pytest.fixture(scope="session")
def dataset() -> MDPDataset:
    return make_dataset()

"""The value-sanity probe: its bound, its gap and its divergence warning."""

import math

import numpy as np
import pytest

from bear_core.dataset import Episode
from bear_core.training.value_check import (
    ValueDivergenceWarning,
    ValueProbe,
    discounted_returns,
    warn_if_diverging,
)


def _episode(rewards: list[float]) -> Episode:
    t = len(rewards)
    observations = np.arange(t, dtype=np.float32).reshape(t, 1)
    return Episode(
        observations=observations,
        actions=np.zeros((t, 2), dtype=np.float32),
        rewards=np.asarray(rewards, dtype=np.float32),
        next_observations=observations + 1.0,
        terminals=np.zeros(t, dtype=np.float32),
        timeout=True,
    )


class ConstantCritic:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict_value(self, x: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.value) + 0.01 * x[:, 0]


def test_discounted_returns_sum_backwards() -> None:
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 2.0, 4.0]), 0.5), [3.0, 4.0, 4.0])


def test_bound_is_max_reward_plus_entropy_share_over_one_minus_gamma() -> None:
    probe = ValueProbe.from_episodes([_episode([-1.0, -0.5, -2.0])], gamma=0.9, seed=0)
    assert probe.reward_max == -0.5
    assert probe.bound(0.0) == pytest.approx(-5.0)
    assert probe.bound(1.0) == pytest.approx((-0.5 + 0.9 * 2 * math.log(2.0)) / 0.1)


def test_measure_reports_the_gap_and_warns_only_above_the_bound() -> None:
    probe = ValueProbe.from_episodes([_episode([-1.0] * 20)], gamma=0.9, seed=0)
    sane = probe.measure(ConstantCritic(-15.0), temperature=0.0)
    assert sane["value_excess"] < 0
    assert sane["value_return_corr"] > 0.9  # later steps: higher Q here, and higher returns
    assert warn_if_diverging(3, sane, previous_value=None) is None

    diverged = probe.measure(ConstantCritic(40.0), temperature=0.0)
    assert diverged["value_excess"] == pytest.approx(diverged["value_mean"] + 10.0)
    with pytest.warns(ValueDivergenceWarning, match="epoch 7"):
        assert "diverging" in str(warn_if_diverging(7, diverged, previous_value=30.0))
    # above the bound but coming down to it (critics start near 0): learning, no warning
    assert warn_if_diverging(8, diverged, previous_value=50.0) is None

"""Value sanity: does the critics' mean Q on the data stay inside what the rewards allow?

Every discounted value of a policy lies below

    Q_max = (r_max + gamma T |A| log 2) / (1 - gamma),

r_max the largest reward in the data and gamma T |A| log 2 the most the soft-entropy term of
the target can add per step (T the current SAC temperature; a tanh-squashed policy on
[-1, 1]^|A| has entropy at most |A| log 2). A critic whose mean Q on the data's own (s, a) goes
above Q_max, and still rising, is extrapolating its own errors: the log line, the metrics and
a `ValueDivergenceWarning` say so. The probe is a fixed, seeded sample of the training
transitions, with their Monte-Carlo discounted returns (the behaviour's values, a sanity
reference rather than a target: Q of a better policy may sit above them)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bear_core.dataset.episodes import Episode

PROBE_SIZE = 1024


class ValueDivergenceWarning(RuntimeWarning):
    """The critics' mean Q on the data went above the bound the rewards allow."""


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = sum_k gamma^k r_{t+k} over one episode's rewards [T] -> [T]."""
    returns = np.empty(len(rewards), dtype=np.float64)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        returns[t] = acc
    return returns


@dataclass(frozen=True)
class ValueProbe:
    observations: np.ndarray  # [P, *obs_shape]
    actions: np.ndarray  # [P, A]
    returns: np.ndarray  # [P] Monte-Carlo discounted returns of the data
    reward_max: float
    gamma: float

    @classmethod
    def from_episodes(
        cls, episodes: Sequence[Episode], gamma: float, seed: int, size: int = PROBE_SIZE
    ) -> ValueProbe:
        observations = np.concatenate([e.observations for e in episodes])
        actions = np.concatenate([e.actions for e in episodes])
        rewards = [np.asarray(e.rewards, dtype=np.float64).reshape(-1) for e in episodes]
        returns = np.concatenate([discounted_returns(r, gamma) for r in rewards])
        rows = np.random.default_rng(seed).permutation(len(observations))[:size]
        return cls(
            observations=observations[rows],
            actions=actions[rows],
            returns=returns[rows],
            reward_max=float(max(r.max() for r in rewards)),
            gamma=gamma,
        )

    def bound(self, temperature: float) -> float:
        """Q_max for the current temperature T."""
        entropy_share = self.gamma * temperature * self.actions.shape[1] * math.log(2.0)
        return float((self.reward_max + entropy_share) / (1.0 - self.gamma))

    def measure(self, algo: Any, temperature: float) -> dict[str, float]:
        """value_mean (mean Q on the probe), value_bound (Q_max), value_excess (their gap,
        > 0 means diverging) and value_return_corr (Q vs the data's returns)."""
        q = np.asarray(algo.predict_value(self.observations, self.actions), dtype=np.float64)
        q = q.reshape(-1)
        bound = self.bound(temperature)
        corr = np.nan
        if len(q) > 1 and q.std() > 0 and self.returns.std() > 0:
            corr = float(np.corrcoef(q, self.returns)[0, 1])
        return {
            "value_mean": float(q.mean()),
            "value_bound": bound,
            "value_excess": float(q.mean()) - bound,
            "value_return_corr": corr,
        }


def warn_if_diverging(
    epoch: int, metrics: dict[str, float], previous_value: float | None
) -> str | None:
    """Issue a ValueDivergenceWarning (and return its text) when the mean Q is above the bound
    and still rising since the previous epoch (`previous_value`). Critics start near 0, so
    with negative rewards they begin above the bound and come down to it: that is learning,
    not divergence, and does not warn."""
    excess = metrics.get("value_excess", math.nan)
    rising = previous_value is None or metrics["value_mean"] > previous_value
    if not (excess > 0 and rising):
        return None
    message = (
        f"epoch {epoch}: the critics' mean Q on the data ({metrics['value_mean']:.4g}) is "
        f"{excess:.4g} above the bound the rewards allow ({metrics['value_bound']:.4g}) "
        "and rising: the critics are diverging"
    )
    warnings.warn(message, ValueDivergenceWarning, stacklevel=2)
    return message

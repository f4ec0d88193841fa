from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium
import numpy as np
import pytest

from bear_core import scorers
from bear_core.scorers import (
    LOWER_IS_BETTER,
    SCORERS,
    WINDOW_SIZE,
    average_value_estimation_scorer,
    continuous_action_diff_scorer,
    discounted_sum_of_advantage_scorer,
    evaluate_on_environment,
    initial_state_value_estimation_scorer,
    soft_opc_scorer,
    td_error_scorer,
    value_estimation_std_scorer,
)


@dataclass(frozen=True)
class Ep:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray

    def __len__(self) -> int:
        return len(self.observations)


def make_episode(obs, actions, rewards, next_obs, terminals) -> Ep:
    return Ep(
        np.asarray(obs, dtype=np.float32),
        np.asarray(actions, dtype=np.float32),
        np.asarray(rewards, dtype=np.float32),
        np.asarray(next_obs, dtype=np.float32),
        np.asarray(terminals, dtype=np.float32),
    )


class FakeAlgo:
    """Q(s, a) = sum(s) + sum(a); pi(s) = -s[:, :A]; ensemble std = |sum(a)|."""

    def __init__(self, action_size: int, gamma: float = 0.9) -> None:
        self.gamma = gamma
        self.n_critics = 2
        self.action_size = action_size
        self.batch_sizes: list[int] = []

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(x))
        return -np.asarray(x, dtype=np.float64)[:, : self.action_size]

    def predict_value(self, x, actions, with_std=False):
        self.batch_sizes.append(len(x))
        actions = np.asarray(actions, dtype=np.float64)
        values = np.asarray(x, dtype=np.float64).sum(axis=1) + actions.sum(axis=1)
        if with_std:
            return values, np.abs(actions.sum(axis=1))
        return values


# Episode 1: Q(s,a) = [3.5, 6]; pi(s) = [-1], [-3]; Q(s,pi(s)) = [2, 4]; Q(s',pi(s')) = [4, 6].
EP1 = make_episode(
    obs=[[1, 2], [3, 4]],
    actions=[[0.5], [-1]],
    rewards=[1, 2],
    next_obs=[[3, 4], [5, 6]],
    terminals=[0, 1],
)
# Episode 2: Q(s,a) = [3]; pi(s) = [0]; Q(s,pi(s)) = [1]; Q(s',pi(s')) = [1].
EP2 = make_episode(obs=[[0, 1]], actions=[[2]], rewards=[0], next_obs=[[1, 1]], terminals=[0])


def test_td_error_masks_terminal_bootstrap() -> None:
    # targets: 1 + 0.9 * 4 = 4.6 and 2 + 0.9 * 6 * 0 = 2 -> errors 1.21 and 16.
    assert td_error_scorer(FakeAlgo(1), [EP1]) == pytest.approx((1.21 + 16.0) / 2)


def test_td_error_pools_transitions_over_episodes() -> None:
    # episode 2: target 0 + 0.9 * 1 = 0.9, error (3 - 0.9)^2 = 4.41.
    assert td_error_scorer(FakeAlgo(1), [EP1, EP2]) == pytest.approx((1.21 + 16.0 + 4.41) / 3)


def test_discounted_sum_of_advantage_discounts_within_each_episode() -> None:
    # advantages: episode 1 [1.5, 2] -> suffix sums [1.5 + 0.9 * 2, 2] = [3.3, 2]; episode 2 [2].
    result = discounted_sum_of_advantage_scorer(FakeAlgo(1), [EP1, EP2])
    assert result == pytest.approx((3.3 + 2.0 + 2.0) / 3)


def test_average_value_estimation_uses_greedy_actions() -> None:
    assert average_value_estimation_scorer(FakeAlgo(1), [EP1, EP2]) == pytest.approx(7.0 / 3)


def test_value_estimation_std_is_taken_at_greedy_actions() -> None:
    # stds |sum(pi(s))| = [1, 3] and [0]; at the data actions they would be [0.5, 1] and [2].
    assert value_estimation_std_scorer(FakeAlgo(1), [EP1, EP2]) == pytest.approx(4.0 / 3)


def test_initial_state_value_uses_first_observation_of_each_episode() -> None:
    assert initial_state_value_estimation_scorer(FakeAlgo(1), [EP1, EP2]) == pytest.approx(1.5)


def test_soft_opc_success_minus_all() -> None:
    # returns: episode 1 = 3, episode 2 = 0; Q(s, a_data) = [3.5, 6] and [3].
    algo = FakeAlgo(1)
    assert soft_opc_scorer(1.0)(algo, [EP1, EP2]) == pytest.approx(4.75 - 12.5 / 3)
    assert soft_opc_scorer(3.0)(algo, [EP1, EP2]) == pytest.approx(4.75 - 12.5 / 3)
    assert soft_opc_scorer(-1.0)(algo, [EP1, EP2]) == pytest.approx(0.0)
    assert math.isnan(soft_opc_scorer(3.5)(algo, [EP1, EP2]))


def test_continuous_action_diff_sums_over_action_dims() -> None:
    episode = make_episode(
        obs=[[1, 2, 3], [0, 0, 0]],
        actions=[[1, 1], [0.5, -2]],
        rewards=[0, 0],
        next_obs=[[0, 0, 0], [0, 0, 0]],
        terminals=[0, 1],
    )
    # pi(s) = [-1, -2] and [0, 0]: (2^2 + 3^2) and (0.5^2 + 2^2).
    assert continuous_action_diff_scorer(FakeAlgo(2), [episode]) == pytest.approx((13 + 4.25) / 2)


def test_scorers_return_python_floats() -> None:
    for name, scorer in SCORERS.items():
        assert type(scorer(FakeAlgo(1), [EP1, EP2])) is float, name


def _long_episode(length: int, seed: int = 0) -> Ep:
    rng = np.random.default_rng(seed)
    terminals = np.zeros(length)
    terminals[-1] = 1.0
    return make_episode(
        obs=rng.normal(size=(length, 3)),
        actions=rng.uniform(-1, 1, size=(length, 2)),
        rewards=rng.normal(size=length),
        next_obs=rng.normal(size=(length, 3)),
        terminals=terminals,
    )


def test_windowed_results_match_unwindowed_numpy() -> None:
    episode = _long_episode(2 * WINDOW_SIZE + 452)
    short = _long_episode(7, seed=1)
    gamma = 0.9
    episodes = [episode, short]

    def q(s, a):
        return s.astype(np.float64).sum(axis=1) + a.astype(np.float64).sum(axis=1)

    def pi(s):
        return -s[:, :2].astype(np.float64)

    obs = np.concatenate([e.observations for e in episodes])
    acts = np.concatenate([e.actions for e in episodes])
    next_obs = np.concatenate([e.next_observations for e in episodes])
    rewards = np.concatenate([e.rewards for e in episodes]).astype(np.float64)
    terms = np.concatenate([e.terminals for e in episodes]).astype(np.float64)

    targets = rewards + gamma * q(next_obs, pi(next_obs)) * (1.0 - terms)
    expected_td = np.mean((q(obs, acts) - targets) ** 2)

    suffix_sums = []
    for e in episodes:
        adv = q(e.observations, e.actions) - q(e.observations, pi(e.observations))
        running = 0.0
        sums = np.empty(len(adv))
        for t in range(len(adv) - 1, -1, -1):
            running = adv[t] + gamma * running
            sums[t] = running
        suffix_sums.append(sums)
    expected_adv = np.concatenate(suffix_sums).mean()

    starts = np.stack([e.observations[0] for e in episodes])
    expected = {
        "td_error": expected_td,
        "discounted_sum_of_advantage": expected_adv,
        "average_value_estimation": q(obs, pi(obs)).mean(),
        "value_estimation_std": np.abs(pi(obs).astype(np.float64).sum(axis=1)).mean(),
        "initial_state_value_estimation": q(starts, pi(starts)).mean(),
        "continuous_action_diff": ((acts - pi(obs)).astype(np.float64) ** 2).sum(axis=1).mean(),
    }
    for name, scorer in SCORERS.items():
        algo = FakeAlgo(2, gamma=gamma)
        assert scorer(algo, episodes) == pytest.approx(expected[name], rel=1e-9), name
        assert max(algo.batch_sizes) <= WINDOW_SIZE, name


def test_advantage_sum_carries_across_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    episode = _long_episode(10)
    whole = discounted_sum_of_advantage_scorer(FakeAlgo(2), [episode])
    monkeypatch.setattr(scorers, "WINDOW_SIZE", 3)
    algo = FakeAlgo(2)
    assert discounted_sum_of_advantage_scorer(algo, [episode]) == pytest.approx(whole, rel=1e-12)
    assert max(algo.batch_sizes) == 3


def test_initial_state_ignores_window_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scorers, "WINDOW_SIZE", 2)
    episode = make_episode(
        obs=[[1, 2], [10, 20], [30, 40]],
        actions=[[0], [0], [0]],
        rewards=[0, 0, 0],
        next_obs=[[0, 0], [0, 0], [0, 0]],
        terminals=[0, 0, 1],
    )
    assert initial_state_value_estimation_scorer(FakeAlgo(1), [episode]) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "scorer", [*SCORERS.values(), soft_opc_scorer(0.0)], ids=[*SCORERS, "soft_opc"]
)
def test_empty_episode_list_is_rejected(scorer) -> None:
    with pytest.raises(ValueError, match="episodes"):
        scorer(FakeAlgo(1), [])


def test_lower_is_better_names_the_negated_reference_scorers() -> None:
    negated = {
        "td_error",
        "discounted_sum_of_advantage",
        "average_value_estimation",
        "value_estimation_std",
        "continuous_action_diff",
    }
    assert negated == LOWER_IS_BETTER
    assert SCORERS.keys() >= LOWER_IS_BETTER
    assert "initial_state_value_estimation" not in LOWER_IS_BETTER


class ZeroAlgo:
    gamma = 0.99
    n_critics = 2

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert x.shape == (1, 3)
        return np.zeros((len(x), 1), dtype=np.float32)


def _zero_torque_returns(seed: int, n_trials: int) -> float:
    env = gymnasium.make("Pendulum-v1")
    returns = []
    for trial in range(n_trials):
        env.reset(seed=seed + trial)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(np.zeros(1, dtype=np.float32))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def test_evaluate_on_environment_matches_manual_rollout() -> None:
    env = gymnasium.make("Pendulum-v1")
    scorer = evaluate_on_environment(env, n_trials=2, seed=5)
    first = scorer(ZeroAlgo(), [EP1])
    assert first == pytest.approx(_zero_torque_returns(seed=5, n_trials=2), rel=1e-12)
    assert scorer(ZeroAlgo()) == first
    assert evaluate_on_environment(env, n_trials=2, seed=6)(ZeroAlgo()) != pytest.approx(first)


def test_evaluate_on_environment_epsilon_is_seeded_and_changes_returns() -> None:
    env = gymnasium.make("Pendulum-v1")
    greedy = evaluate_on_environment(env, n_trials=2, seed=3)(ZeroAlgo())
    noisy = evaluate_on_environment(env, n_trials=2, epsilon=1.0, seed=3)
    first = noisy(ZeroAlgo())
    assert first != pytest.approx(greedy)
    assert noisy(ZeroAlgo()) == first
    mixed = evaluate_on_environment(env, n_trials=2, epsilon=0.5, seed=3)(ZeroAlgo())
    assert mixed != pytest.approx(greedy)
    assert mixed != pytest.approx(first)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_trials": 0}, "n_trials"),
        ({"n_trials": 2.5}, "n_trials"),
        ({"epsilon": -0.1}, "epsilon"),
        ({"epsilon": 1.5}, "epsilon"),
        ({"epsilon": float("nan")}, "epsilon"),
    ],
)
def test_evaluate_on_environment_rejects_invalid_arguments(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        evaluate_on_environment(gymnasium.make("Pendulum-v1"), **kwargs)

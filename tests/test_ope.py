"""Fitted Q evaluation (`bear_core.ope`): it recovers known values of hand-written policies on a
tiny MDP (through timeouts and up to terminals), it evaluates a BEAR policy through BEAR's
scalers with the scorers working on it, and it refuses bad arguments by name."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from bear_core import BEAR
from bear_core.dataset import Episode, generate_pendulum_dataset
from bear_core.errors import NotBuiltError
from bear_core.ope import FQE, PolicyValueEstimate, estimate_policy_value
from bear_core.scorers import (
    initial_state_value_estimation_scorer,
    soft_opc_scorer,
    td_error_scorer,
)

# The tiny MDP: two states s in {-1, 1} that alternate whatever the action; the reward of action
# a in state s is 1 - (a - 0.5 s)^2, so the best action is 0.5 s (reward 1) and -0.5 s earns 0.
GAMMA = 0.8
TINY_FQE = {"hidden_units": (32, 32), "batch_size": 64}  # the defaults' learning rate and interval


class StatePolicy:
    """A hand-written policy: a = sign * 0.5 * s."""

    def __init__(self, sign: float) -> None:
        self.sign = sign

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.sign * 0.5 * np.sign(np.asarray(x)[:, :1])).astype(np.float32)


def alternating_episodes(n: int, length: int, terminal: bool, seed: int) -> list[Episode]:
    """Episodes of uniform random actions. With `terminal`, each ends in a terminal state after
    `length` steps and the observation carries the time t / length; otherwise each is cut by a
    time limit after `length` steps (the MDP itself never ends) and the observation is s alone."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n):
        s = rng.choice([-1.0, 1.0])
        states = s * (-1.0) ** np.arange(length + 1)
        observations = states[:, None]
        if terminal:
            observations = np.stack([states, np.arange(length + 1) / length], axis=1)
        actions = rng.uniform(-1.0, 1.0, size=(length, 1))
        rewards = 1.0 - (actions[:, 0] - 0.5 * states[:-1]) ** 2
        terminals = np.zeros(length)
        terminals[-1] = float(terminal)
        episodes.append(
            Episode(
                observations[:-1],
                actions,
                rewards,
                observations[1:],
                terminals,
                timeout=not terminal,
            )
        )
    return episodes


def test_fqe_recovers_the_discounted_value_through_timeouts() -> None:
    # The MDP never ends: V = 1 / (1 - gamma) = 5 for the best policy, 0 for the wrong one.
    # Treating the time limits (every 4 steps) as terminals would give 1 + .8 + .64 + .512 = 2.95.
    episodes = alternating_episodes(40, length=4, terminal=False, seed=0)
    good = estimate_policy_value(
        StatePolicy(1.0), episodes, n_steps=800, gamma=GAMMA, **TINY_FQE
    ).estimate
    wrong = estimate_policy_value(
        StatePolicy(-1.0), episodes, n_steps=800, gamma=GAMMA, **TINY_FQE
    ).estimate
    assert good == pytest.approx(1.0 / (1.0 - GAMMA), abs=0.25)
    # a per-step error e of the fitted reward costs e / (1 - gamma) = 5 e in the value
    assert wrong == pytest.approx(0.0, abs=0.5)


def test_fqe_stops_bootstrapping_at_terminals() -> None:
    episodes = alternating_episodes(40, length=3, terminal=True, seed=1)
    estimate = estimate_policy_value(
        StatePolicy(1.0), episodes, n_steps=600, gamma=GAMMA, **TINY_FQE
    ).estimate
    assert estimate == pytest.approx(1.0 + GAMMA + GAMMA**2, abs=0.15)


@pytest.fixture(scope="module")
def pendulum_bear(tmp_path_factory: pytest.TempPathFactory) -> tuple[BEAR, list[Episode]]:
    torch.set_num_threads(1)
    dataset = generate_pendulum_dataset("medium", n_episodes=6, seed=0, max_episode_steps=50)
    bear = BEAR(batch_size=32, n_epochs=1, n_steps_per_epoch=30, scaler="standard",
                encoder_params={"hidden_units": [16, 16]})  # fmt: skip
    bear.fit(dataset, logdir=tmp_path_factory.mktemp("runs"), verbose=False,
             show_progress=False, tensorboard=False)  # fmt: skip
    return bear, dataset.episodes


SMALL_FQE = {"hidden_units": (16, 16), "batch_size": 32}


def test_fqe_evaluates_a_bear_policy_and_the_scorers_run_on_it(
    pendulum_bear: tuple[BEAR, list[Episode]],
) -> None:
    bear, episodes = pendulum_bear
    train, held_out = episodes[:4], episodes[4:]
    fqe = FQE(bear, **SMALL_FQE)
    assert (fqe.gamma, fqe.n_critics) == (bear.gamma, 2)
    returns = sorted(e.compute_return() for e in held_out)
    history = fqe.fit(
        train,
        n_steps=60,
        n_steps_per_epoch=25,
        scorers={
            "initial_value": initial_state_value_estimation_scorer,
            "soft_opc": soft_opc_scorer(returns[-1]),
        },
        eval_episodes=held_out,
    )
    assert [epoch for epoch, _ in history] == [1, 2, 3]
    assert fqe.total_step == 60
    for _, metrics in history:
        assert set(metrics) == {"loss", "initial_value", "soft_opc"}
        assert all(math.isfinite(v) for v in metrics.values())

    observations = held_out[0].observations
    np.testing.assert_array_equal(fqe.predict(observations), bear.predict(observations))
    values = fqe.predict_value(observations, held_out[0].actions)
    values_again, stds = fqe.predict_value(observations, held_out[0].actions, with_std=True)
    assert values.shape == stds.shape == (len(observations),)
    np.testing.assert_array_equal(values, values_again)
    assert (stds >= 0).all() and stds.max() > 0  # two independently initialised critics
    starts = np.stack([e.observations[0] for e in held_out])
    assert initial_state_value_estimation_scorer(fqe, held_out) == pytest.approx(
        float(fqe.predict_value(starts, bear.predict(starts)).mean()), rel=1e-5
    )


def test_fqe_with_gamma_0_learns_the_reward(pendulum_bear: tuple[BEAR, list[Episode]]) -> None:
    # gamma = 0 makes each target the reward itself: the TD error is the reward regression error
    bear, episodes = pendulum_bear
    errors = []
    for n_steps in (1, 300):
        fqe = FQE(bear, gamma=0.0, **SMALL_FQE)
        fqe.fit(episodes, n_steps=n_steps)
        errors.append(td_error_scorer(fqe, episodes))
    assert errors[1] < 0.1 * errors[0]


def test_estimate_policy_value_is_the_fqe_initial_state_value_with_a_ci(
    pendulum_bear: tuple[BEAR, list[Episode]],
) -> None:
    bear, episodes = pendulum_bear
    estimate = estimate_policy_value(bear, episodes, n_steps=40, seed=3, **SMALL_FQE)
    assert isinstance(estimate, PolicyValueEstimate)
    assert (estimate.method, estimate.n_episodes, estimate.n_steps) == ("fqe", 6, 40)
    assert estimate.ci[0] <= estimate.estimate <= estimate.ci[1]
    assert estimate.ci[0] < estimate.ci[1]
    assert estimate.seconds > 0
    fqe = FQE(bear, seed=3, **SMALL_FQE)
    fqe.fit(episodes, n_steps=40)
    assert estimate.estimate == pytest.approx(
        initial_state_value_estimation_scorer(fqe, episodes), rel=1e-5
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        estimate.estimate = 0.0  # type: ignore[misc]


def test_the_confidence_interval_narrows_with_the_confidence() -> None:
    episodes = alternating_episodes(20, length=3, terminal=True, seed=2)
    kwargs = {"n_steps": 20, "gamma": GAMMA, **TINY_FQE}
    wide = estimate_policy_value(StatePolicy(1.0), episodes, confidence=0.99, **kwargs)
    narrow = estimate_policy_value(StatePolicy(1.0), episodes, confidence=0.5, **kwargs)
    assert wide.estimate == narrow.estimate
    assert wide.ci[0] < narrow.ci[0] < narrow.ci[1] < wide.ci[1]


class NoPredict:
    gamma = 0.9


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"algo": NoPredict()}, "algo"),
        ({"algo": StatePolicy(1.0)}, "gamma"),
        ({"gamma": 1.5}, "gamma"),
        ({"gamma": "0.9"}, "gamma"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"n_critics": 1.5}, "n_critics"),
        ({"hidden_units": ()}, "hidden_units"),
        ({"hidden_units": (16, 0)}, "hidden_units"),
        ({"target_update_interval": True}, "target_update_interval"),
        ({"seed": 0.5}, "seed"),
    ],
)
def test_fqe_refuses_bad_parameters_by_name(kwargs: dict, name: str) -> None:
    arguments = {"algo": StatePolicy(1.0), "gamma": GAMMA, **kwargs}
    if name == "gamma" and "gamma" not in kwargs:
        del arguments["gamma"]  # a hand-written policy has no gamma to default to
    with pytest.raises(ValueError, match=name):
        FQE(**arguments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_fqe_refuses_use_gpu_without_cuda() -> None:
    with pytest.raises(ValueError, match="use_gpu"):
        FQE(StatePolicy(1.0), gamma=GAMMA, use_gpu=True)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_steps": 0}, "n_steps"),
        ({"n_epochs": 0}, "n_epochs"),
        ({"n_steps_per_epoch": -1}, "n_steps_per_epoch"),
        ({"n_epochs": 2, "n_steps": 10}, "n_epochs or n_steps"),
        ({"scorers": {"td": td_error_scorer}}, "eval_episodes"),
        ({"episodes": []}, "episodes"),
        ({"episodes": [object()]}, "episodes"),
    ],
)
def test_fit_refuses_bad_arguments_by_name(kwargs: dict, name: str) -> None:
    arguments = {"episodes": alternating_episodes(2, 3, terminal=True, seed=0), **kwargs}
    with pytest.raises(ValueError, match=name):
        FQE(StatePolicy(1.0), gamma=GAMMA).fit(**arguments)


def test_fit_refuses_a_policy_whose_actions_do_not_fit_the_data() -> None:
    class WideActions:
        def predict(self, x: np.ndarray) -> np.ndarray:
            return np.zeros((len(x), 2), dtype=np.float32)

    episodes = alternating_episodes(2, 3, terminal=True, seed=0)
    with pytest.raises(ValueError, match=r"algo\.predict"):
        FQE(WideActions(), gamma=GAMMA).fit(episodes, n_steps=1)


def test_predict_value_needs_a_fit_and_well_shaped_inputs() -> None:
    fqe = FQE(StatePolicy(1.0), gamma=GAMMA, **TINY_FQE)
    with pytest.raises(NotBuiltError):
        fqe.predict_value(np.zeros((1, 2)), np.zeros((1, 1)))
    fqe.fit(alternating_episodes(2, 3, terminal=True, seed=0), n_steps=1)
    with pytest.raises(ValueError, match="x must have shape"):
        fqe.predict_value(np.zeros((1, 3)), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="actions must have shape"):
        fqe.predict_value(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="actions has 2 rows"):
        fqe.predict_value(np.zeros((1, 2)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="x contains NaN"):
        fqe.predict_value(np.full((1, 2), np.nan), np.zeros((1, 1)))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0}, "confidence"),
        ({"n_bootstrap": 0}, "n_bootstrap"),
        ({"n_steps": 0}, "n_steps"),
    ],
)
def test_estimate_policy_value_refuses_bad_arguments_by_name(kwargs: dict, name: str) -> None:
    episodes = alternating_episodes(2, 3, terminal=True, seed=0)
    with pytest.raises(ValueError, match=name):
        estimate_policy_value(StatePolicy(1.0), episodes, gamma=GAMMA, **kwargs)

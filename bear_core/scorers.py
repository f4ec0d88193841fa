"""Evaluation scorers for offline RL: Q-function diagnostics on held-out episodes, and rollouts.

Every episode scorer is a plain function ``scorer(algo, episodes) -> float``. The algorithm is
duck-typed (see `ScoredAlgo`); the episodes are duck-typed as well (see `ScoredEpisode`), so this
module needs neither torch nor the dataset module. Model calls are made on windows of at most
`WINDOW_SIZE` transitions of one episode, which bounds memory on long episodes.

Sign convention. d3rlpy 0.x returns some scorers negated (TD error, discounted sum of
advantage, average value estimation, value-estimation std and continuous action difference) so
that "higher is better" holds for every scorer, and negates them back before logging. Here every
scorer returns its natural value (e.g. `td_error_scorer` is the mean squared TD error, a
non-negative number) and `LOWER_IS_BETTER` names those that the reference negates. A logger logs
the value as returned; a model selector minimises the scorers named in `LOWER_IS_BETTER` and
maximises the others.

Deliberate differences from the reference:

* `discounted_sum_of_advantage_scorer` sums over the whole episode; the reference restarts the
  sum at every 1024-transition window.
* `initial_state_value_estimation_scorer` uses the first observation of each episode only; the
  reference also counts the first observation of every 1024-transition window as an initial state.
* `soft_opc_scorer` returns NaN when no episode reaches the return threshold (the reference takes
  the mean of an empty list, which is NaN with a RuntimeWarning).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import gymnasium

WINDOW_SIZE = 1024

__all__ = [
    "LOWER_IS_BETTER",
    "SCORERS",
    "WINDOW_SIZE",
    "EpisodeScorer",
    "ScoredAlgo",
    "ScoredEpisode",
    "average_value_estimation_scorer",
    "continuous_action_diff_scorer",
    "discounted_sum_of_advantage_scorer",
    "evaluate_on_environment",
    "initial_state_value_estimation_scorer",
    "soft_opc_scorer",
    "td_error_scorer",
    "value_estimation_std_scorer",
]


class ScoredAlgo(Protocol):
    """What a scorer needs from an algorithm."""

    gamma: float
    n_critics: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Greedy actions [N, A] for observations [N, *obs], in the data's own action range."""
        ...

    def predict_value(
        self, x: np.ndarray, actions: np.ndarray, with_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Ensemble-mean Q values [N]; with ``with_std`` also the ensemble std [N]."""
        ...

    def sample_action(self, x: np.ndarray) -> np.ndarray:
        """Actions [N, A] sampled from the policy."""
        ...


class ScoredEpisode(Protocol):
    """What a scorer needs from an episode (T transitions)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray

    def __len__(self) -> int: ...


EpisodeScorer = Callable[[ScoredAlgo, Sequence[ScoredEpisode]], float]


def _checked(episodes: Sequence[ScoredEpisode]) -> list[ScoredEpisode]:
    checked = list(episodes)
    if not checked:
        raise ValueError("episodes must not be empty")
    if all(len(episode) == 0 for episode in checked):
        raise ValueError("episodes contain no transitions")
    return checked


def _windows(episode: ScoredEpisode) -> Iterator[slice]:
    for start in range(0, len(episode), WINDOW_SIZE):
        yield slice(start, min(start + WINDOW_SIZE, len(episode)))


def _flat(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _values(algo: ScoredAlgo, x: np.ndarray, actions: np.ndarray) -> np.ndarray:
    return _flat(algo.predict_value(x, actions))


def _greedy_values(algo: ScoredAlgo, x: np.ndarray) -> np.ndarray:
    return _values(algo, x, algo.predict(x))


def _transition_mean(
    algo: ScoredAlgo,
    episodes: Sequence[ScoredEpisode],
    per_transition: Callable[[ScoredAlgo, ScoredEpisode, slice], np.ndarray],
) -> float:
    total = 0.0
    count = 0
    for episode in _checked(episodes):
        for window in _windows(episode):
            values = per_transition(algo, episode, window)
            total += float(values.sum())
            count += values.size
    return total / count


def _squared_td_errors(algo: ScoredAlgo, episode: ScoredEpisode, window: slice) -> np.ndarray:
    values = _values(algo, episode.observations[window], episode.actions[window])
    next_values = _greedy_values(algo, episode.next_observations[window])
    rewards = _flat(episode.rewards[window])
    not_terminal = 1.0 - _flat(episode.terminals[window])
    targets = rewards + algo.gamma * next_values * not_terminal
    return (values - targets) ** 2


def td_error_scorer(algo: ScoredAlgo, episodes: Sequence[ScoredEpisode]) -> float:
    """Mean squared TD error (Q(s,a) - (r + gamma * Q(s', pi(s')) * (1 - d)))^2. Lower is better."""
    return _transition_mean(algo, episodes, _squared_td_errors)


def _advantages(algo: ScoredAlgo, episode: ScoredEpisode, window: slice) -> np.ndarray:
    observations = episode.observations[window]
    advantages: np.ndarray = _values(algo, observations, episode.actions[window]) - _greedy_values(
        algo, observations
    )
    return advantages


def discounted_sum_of_advantage_scorer(
    algo: ScoredAlgo, episodes: Sequence[ScoredEpisode]
) -> float:
    """Mean over all t of sum_{k>=t} gamma^(k-t) A_k, A = Q(s,a_data) - Q(s,pi(s)). Lower is better.

    The sum runs to the end of the episode, across windows.
    """
    total = 0.0
    count = 0
    for episode in _checked(episodes):
        running = 0.0
        for window in reversed(list(_windows(episode))):
            for advantage in reversed(_advantages(algo, episode, window).tolist()):
                running = advantage + algo.gamma * running
                total += running
                count += 1
    return total / count


def _window_greedy_values(algo: ScoredAlgo, episode: ScoredEpisode, window: slice) -> np.ndarray:
    return _greedy_values(algo, episode.observations[window])


def average_value_estimation_scorer(algo: ScoredAlgo, episodes: Sequence[ScoredEpisode]) -> float:
    """Mean Q(s, pi(s)) over all transitions. Lower is better (the reference's convention)."""
    return _transition_mean(algo, episodes, _window_greedy_values)


def _value_stds(algo: ScoredAlgo, episode: ScoredEpisode, window: slice) -> np.ndarray:
    observations = episode.observations[window]
    result = algo.predict_value(observations, algo.predict(observations), with_std=True)
    if not isinstance(result, tuple):
        raise TypeError("predict_value(..., with_std=True) must return (values, stds)")
    return _flat(result[1])


def value_estimation_std_scorer(algo: ScoredAlgo, episodes: Sequence[ScoredEpisode]) -> float:
    """Mean critic-ensemble std of Q(s, pi(s)) over all transitions. Lower is better."""
    return _transition_mean(algo, episodes, _value_stds)


def _initial_values(algo: ScoredAlgo, episodes: Sequence[ScoredEpisode]) -> np.ndarray:
    starts = [episode.observations[0] for episode in episodes if len(episode) > 0]
    chunks = [
        _greedy_values(algo, np.stack(starts[i : i + WINDOW_SIZE]))
        for i in range(0, len(starts), WINDOW_SIZE)
    ]
    return np.concatenate(chunks)


def initial_state_value_estimation_scorer(
    algo: ScoredAlgo, episodes: Sequence[ScoredEpisode]
) -> float:
    """Mean Q(s0, pi(s0)) over the first observation of each episode. Higher is better.

    Unlike the reference, only true episode starts count, not the start of every window.
    """
    return float(_initial_values(algo, _checked(episodes)).mean())


def soft_opc_scorer(return_threshold: float) -> EpisodeScorer:
    """SoftOPC: mean Q(s, a_data) over transitions of episodes whose undiscounted return is
    >= `return_threshold`, minus the mean over all transitions. Higher is better.

    The returned scorer gives NaN when no episode reaches the threshold.
    """

    def scorer(algo: ScoredAlgo, episodes: Sequence[ScoredEpisode]) -> float:
        sums = {True: 0.0, False: 0.0}
        counts = {True: 0, False: 0}
        for episode in _checked(episodes):
            success = float(_flat(episode.rewards).sum()) >= return_threshold
            for window in _windows(episode):
                values = _values(algo, episode.observations[window], episode.actions[window])
                sums[success] += float(values.sum())
                counts[success] += values.size
        if counts[True] == 0:
            return float("nan")
        all_mean = (sums[True] + sums[False]) / (counts[True] + counts[False])
        return sums[True] / counts[True] - all_mean

    return scorer


def _action_diffs(algo: ScoredAlgo, episode: ScoredEpisode, window: slice) -> np.ndarray:
    data_actions = np.asarray(episode.actions[window], dtype=np.float64)
    greedy = np.asarray(algo.predict(episode.observations[window]), dtype=np.float64)
    diff = data_actions.reshape(len(data_actions), -1) - greedy.reshape(len(greedy), -1)
    squared: np.ndarray = (diff**2).sum(axis=1)
    return squared


def continuous_action_diff_scorer(algo: ScoredAlgo, episodes: Sequence[ScoredEpisode]) -> float:
    """Mean over transitions of sum_a (a_data - pi(s))^2. Lower is better."""
    return _transition_mean(algo, episodes, _action_diffs)


def evaluate_on_environment(
    env: gymnasium.Env[Any, Any], n_trials: int = 10, epsilon: float = 0.0, seed: int = 0
) -> Callable[..., float]:
    """Scorer ``scorer(algo, *args) -> float``: mean undiscounted return over `n_trials` episodes.

    Trial i starts from ``env.reset(seed=seed + i)``; each step takes a uniform action from
    ``env.action_space`` with probability `epsilon` (a numpy Generator and the action space are both
    seeded with `seed` on every call, so a call is deterministic), else the greedy
    ``algo.predict(obs[None])[0]``. An episode ends when terminated or truncated. Extra positional
    arguments (e.g. the evaluation episodes) are ignored. Higher is better.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")

    def scorer(algo: ScoredAlgo, *args: Any) -> float:
        rng = np.random.default_rng(seed)
        env.action_space.seed(seed)
        returns = []
        for trial in range(n_trials):
            observation, _ = env.reset(seed=seed + trial)
            episode_return = 0.0
            done = False
            while not done:
                if rng.random() < epsilon:
                    action = env.action_space.sample()
                else:
                    action = algo.predict(np.asarray(observation)[None])[0]
                observation, reward, terminated, truncated, _ = env.step(action)
                episode_return += float(reward)
                done = bool(terminated or truncated)
            returns.append(episode_return)
        return float(np.mean(returns))

    return scorer


SCORERS: dict[str, EpisodeScorer] = {
    "td_error": td_error_scorer,
    "discounted_sum_of_advantage": discounted_sum_of_advantage_scorer,
    "average_value_estimation": average_value_estimation_scorer,
    "value_estimation_std": value_estimation_std_scorer,
    "initial_state_value_estimation": initial_state_value_estimation_scorer,
    "continuous_action_diff": continuous_action_diff_scorer,
}

LOWER_IS_BETTER: frozenset[str] = frozenset(
    {
        "td_error",
        "discounted_sum_of_advantage",
        "average_value_estimation",
        "value_estimation_std",
        "continuous_action_diff",
    }
)

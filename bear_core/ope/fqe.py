"""Off-policy evaluation by Fitted Q Evaluation (FQE, Le, Voloshin and Yue 2019).

FQE estimates the value of a fixed policy pi from logged transitions (s, a, r, s', d) without
running it: it fits Q^pi by repeated regression onto the policy's own bootstrapped targets

    y = r + gamma (1 - d) Q'(s', pi(s'))          Q' a copy of Q, hard-updated every
                                                  `target_update_interval` steps (as d3rlpy's FQE)
    L = sum_k E_(s,a,r,s',d) [(Q_k(s, a) - y_k)^2]

and then reads off the policy's value at the episode starts,

    V^pi = E_(s_0) [Q^pi(s_0, pi(s_0))].

`d` flags true terminations only: an episode cut by a time limit bootstraps through its last
step (its next observation is recorded), so the estimate is the infinite-horizon discounted value.
Each of the K critics regresses onto its own target copy, so the K critics are K independent FQE
fits and their std (`predict_value(..., with_std=True)`) is their disagreement; d3rlpy's FQE
instead gives every critic one pessimistic target, the minimum over the critics, which biases
the value estimate downwards.

The evaluated policy is anything with ``predict(x) -> actions`` (greedy actions in the data's
action range), e.g. a fitted `BEAR`. When it has ``impl.observation_scaler`` and
``impl.action_scaler`` (torch modules, as BEAR's), the critics see observations through the same
scaler and actions in the same [-1, 1] space as the policy's own critics; a hand-written policy
without them is evaluated on raw observations and actions. Its ``gamma`` is the default discount.

Cost. The policy is fixed, so pi(s') is computed once for every next observation (batched
``predict`` calls, 29 ms for the 10,000 transitions of a Pendulum dataset with a default BEAR)
and the data is moved to the device, scaled, once; after that every step is one supervised
regression step of the critic ensemble: a forward pass of the targets, one forward and backward
pass of the critics and an Adam step, independent of the data's size. Measured on one torch
thread of this project's 2 shared CPU cores (Pendulum, batch 256, K = 2): at a load average of
8-9, 31-33 ms a step with the default (256, 256) critics (a default 3000-step fit: about 95 s)
and 7-13 ms with (64, 64) critics; at a lighter load, 8-10 ms a step with (256, 256) and 3 ms
with (64, 64), and about 1.1 ms with (64, 64) on a quieter machine.

Defaults. `learning_rate=1e-3` and `target_update_interval=20` (with `estimate_policy_value`'s
3000 steps), not d3rlpy's 1e-4 and 100: at d3rlpy's values 2000 steps barely move the critics
from their initial values, and policies of very different true returns get the same estimate.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from bear_core.bundle.runtime import value_stats
from bear_core.dataset import Episode, MDPDataset, TransitionBuffer
from bear_core.device import resolve_device
from bear_core.errors import NotBuiltError
from bear_core.networks.encoders import EncoderSpec
from bear_core.networks.q_functions import CriticEnsemble
from bear_core.training.run_logger import progress_bar

PREDICT_CHUNK = 4096  # rows per policy.predict call while precomputing pi(s')
Scorer = Callable[[Any, Sequence[Episode]], float]


class EvaluatedPolicy(Protocol):
    """What FQE needs from the policy it evaluates."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Greedy actions [N, A] for observations [N, *obs], in the data's action range."""
        ...


@dataclass(frozen=True)
class _DeviceTransitions:
    """Every transition on the device, scaled: s, a, s', pi(s') [N, ...]; r, d [N]."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    next_actions: torch.Tensor
    terminals: torch.Tensor


class FQE:
    """Fitted Q Evaluation of `algo`'s greedy policy, in the reference's style.

    `gamma` defaults to ``algo.gamma``. The critics are a `CriticEnsemble` of `n_critics`
    MLPs with `hidden_units` (convolutional encoders for pixel observations), trained with Adam
    at `learning_rate` on mini-batches of `batch_size`; the target copy is refreshed every
    `target_update_interval` steps. `seed` fixes the initialisation and the mini-batches;
    `use_gpu` picks the device as BEAR's does. Invalid values raise ValueError naming them.
    """

    def __init__(
        self,
        algo: EvaluatedPolicy,
        gamma: float | None = None,
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        n_critics: int = 2,
        hidden_units: Sequence[int] = (256, 256),
        target_update_interval: int = 20,
        seed: int = 0,
        use_gpu: bool | int | str | None = False,
    ) -> None:
        if not callable(getattr(algo, "predict", None)):
            raise ValueError(f"algo must have a predict(x) method, got {type(algo).__name__}")
        if gamma is None:
            gamma = getattr(algo, "gamma", None)
            if gamma is None:
                raise ValueError("gamma must be given: algo has no gamma attribute")
        if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not 0 <= gamma <= 1:
            raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        if not (math.isfinite(learning_rate) and learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        for name, value in (
            ("batch_size", batch_size),
            ("n_critics", n_critics),
            ("target_update_interval", target_update_interval),
        ):
            if not _is_count(value):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        units = tuple(hidden_units) if isinstance(hidden_units, Sequence) else ()
        if not units or not all(_is_count(u) for u in units):
            raise ValueError(
                f"hidden_units must be a non-empty sequence of ints >= 1, got {hidden_units!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.algo = algo
        self.gamma = float(gamma)
        self.learning_rate = float(learning_rate)
        self.batch_size = batch_size
        self.n_critics = n_critics
        self.hidden_units = units
        self.target_update_interval = target_update_interval
        self.seed = seed
        self.device = resolve_device(use_gpu)
        self.total_step = 0
        self._critics: CriticEnsemble | None = None
        self._observation_scaler: nn.Module = nn.Identity()
        self._action_scaler: nn.Module = nn.Identity()

    # --- training ---------------------------------------------------------------------------------

    def fit(
        self,
        episodes: MDPDataset | Sequence[Episode],
        n_epochs: int | None = None,
        n_steps_per_epoch: int | None = None,
        n_steps: int | None = None,
        scorers: Mapping[str, Scorer] | None = None,
        eval_episodes: Sequence[Episode] | None = None,
        verbose: bool = False,
        show_progress: bool = False,
    ) -> list[tuple[int, dict[str, float]]]:
        """Fit Q^pi on `episodes` from fresh critics; returns [(epoch, metrics)].

        An epoch is `n_steps_per_epoch` steps (None: one pass, transitions // batch_size).
        Training runs `n_epochs` epochs (None: 1) or, with `n_steps`, that many steps in all (the
        last epoch cut short); give one of the two. The metrics are the epoch's mean `loss` and
        every scorer ``scorer(self, eval_episodes)``.
        The scalers and pi(s') are taken from `algo` as it is now: refit after it changes.
        """
        if n_epochs is not None and n_steps is not None:
            raise ValueError("give n_epochs or n_steps, not both")
        for name, value in (
            ("n_epochs", n_epochs),
            ("n_steps_per_epoch", n_steps_per_epoch),
            ("n_steps", n_steps),
        ):
            if value is not None and not _is_count(value):
                raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
        if scorers and not eval_episodes:
            raise ValueError("scorers need eval_episodes to score")
        buffer = TransitionBuffer.from_episodes(_episode_list(episodes, "episodes"))
        per_epoch = n_steps_per_epoch or max(1, len(buffer) // self.batch_size)
        total = n_steps if n_steps is not None else (n_epochs or 1) * per_epoch

        self._build(buffer.observation_shape, buffer.action_size)
        data = self._device_transitions(buffer)
        critics, target = self._require_critics(), copy.deepcopy(self._require_critics())
        target.requires_grad_(False)
        optim = torch.optim.Adam(
            critics.parameters(), lr=self.learning_rate, fused=self.device.type in ("cpu", "cuda")
        )
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed)
        self.total_step = 0
        history = []
        for epoch in range(1, math.ceil(total / per_epoch) + 1):
            steps = range(min(per_epoch, total - self.total_step))
            loss_sum = torch.zeros((), device=self.device)
            critics.train()
            for _ in progress_bar(steps, f"FQE epoch {epoch}", show_progress):
                idx = torch.randint(
                    len(buffer), (self.batch_size,), generator=generator, device=self.device
                )
                loss_sum += self._update(critics, target, optim, data, idx)
                self.total_step += 1
                if self.total_step % self.target_update_interval == 0:
                    target.load_state_dict(critics.state_dict())
            critics.eval()
            metrics = {"loss": float(loss_sum) / len(steps)}
            for name, scorer in (scorers or {}).items():
                metrics[name] = float(scorer(self, eval_episodes or []))
            if verbose:
                shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
                print(f"FQE epoch={epoch} step={self.total_step} {shown}", flush=True)
            history.append((epoch, metrics))
        return history

    def _update(
        self,
        critics: CriticEnsemble,
        target: CriticEnsemble,
        optim: torch.optim.Optimizer,
        data: _DeviceTransitions,
        idx: torch.Tensor,
    ) -> torch.Tensor:
        """One regression step of every critic onto its own bootstrapped target."""
        s, a, r = data.observations[idx], data.actions[idx], data.rewards[idx]
        s_next, a_next, d = data.next_observations[idx], data.next_actions[idx], data.terminals[idx]
        with torch.no_grad():
            y = r + self.gamma * (1.0 - d) * target(s_next, a_next)  # [K, B], a' = pi(s')
        q = critics(s, a)  # [K, B]
        loss = ((q - y) ** 2).mean(dim=1).sum()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return loss.detach()

    # --- inference --------------------------------------------------------------------------------

    def predict(self, x: Any) -> np.ndarray:
        """The evaluated policy's greedy actions: ``algo.predict(x)``."""
        return np.asarray(self.algo.predict(x))

    @torch.no_grad()
    def predict_value(
        self, x: Any, actions: Any, with_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """FQE's Q^pi(s, a) [N], the mean over its critics; with_std also their std [N]."""
        critics = self._require_critics()
        obs = _batch(x, "x", critics.observation_shape)
        acts = _batch(actions, "actions", (critics.action_size,))
        if len(acts) != len(obs):
            raise ValueError(f"actions has {len(acts)} rows but x has {len(obs)}")
        q = critics(
            self._observation_scaler(self._tensor(obs)), self._action_scaler(self._tensor(acts))
        )  # [K, N]
        values, stds = value_stats(q.t().cpu().numpy(), with_std)
        return values if stds is None else (values, stds)

    # --- plumbing ---------------------------------------------------------------------------------

    def _build(self, observation_shape: tuple[int, ...], action_size: int) -> None:
        """Fresh critics (seeded, without touching torch's global generator) and the policy's
        scalers copied onto this device."""
        spec = EncoderSpec.from_params(
            observation_shape, {"hidden_units": self.hidden_units}, use_batch_norm=False
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            critics = CriticEnsemble("mean", self.n_critics, spec, action_size)
        self._critics = critics.to(self.device)
        impl = getattr(self.algo, "impl", None)
        for name in ("observation_scaler", "action_scaler"):
            scaler = getattr(impl, name, None)
            own = nn.Identity() if scaler is None else copy.deepcopy(scaler).to(self.device)
            setattr(self, f"_{name}", own.eval())

    def _device_transitions(self, buffer: TransitionBuffer) -> _DeviceTransitions:
        next_actions = self._policy_actions(buffer.next_observations, buffer.action_size)
        with torch.no_grad():
            return _DeviceTransitions(
                observations=self._observation_scaler(self._tensor(buffer.observations)),
                actions=self._action_scaler(self._tensor(buffer.actions)),
                rewards=self._tensor(buffer.rewards).reshape(-1),
                next_observations=self._observation_scaler(self._tensor(buffer.next_observations)),
                next_actions=self._action_scaler(self._tensor(next_actions)),
                terminals=self._tensor(buffer.terminals).reshape(-1),
            )

    def _policy_actions(self, observations: np.ndarray, action_size: int) -> np.ndarray:
        """pi(s) for every row, in chunks of PREDICT_CHUNK rows."""
        chunks = []
        for start in range(0, len(observations), PREDICT_CHUNK):
            rows = observations[start : start + PREDICT_CHUNK]
            actions = np.asarray(self.algo.predict(rows), dtype=np.float32)
            if actions.shape != (len(rows), action_size):
                raise ValueError(
                    f"algo.predict returned shape {list(actions.shape)} for {len(rows)} "
                    f"observations; the data's actions are [N, {action_size}]"
                )
            chunks.append(actions)
        return np.concatenate(chunks)

    def _require_critics(self) -> CriticEnsemble:
        if self._critics is None:
            raise NotBuiltError("FQE is not fitted: call fit first")
        return self._critics

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(x, dtype=np.float32), device=self.device)


@dataclass(frozen=True, kw_only=True)
class PolicyValueEstimate:
    """A policy's estimated value: the mean over episodes of Q^pi(s_0, pi(s_0)) and its
    percentile-bootstrap confidence interval over episodes (sampling error of the start states
    only, not FQE's own error), with the episodes, FQE steps and seconds it took."""

    method: str = "fqe"
    estimate: float
    ci: tuple[float, float]
    n_episodes: int
    n_steps: int
    seconds: float


def estimate_policy_value(
    algo: EvaluatedPolicy,
    episodes: MDPDataset | Sequence[Episode],
    n_steps: int = 3000,
    seed: int = 0,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    **fqe_kwargs: Any,
) -> PolicyValueEstimate:
    """Fit `FQE` (`fqe_kwargs`, seeded by `seed`) for `n_steps` steps on `episodes` and estimate
    the value of `algo`'s greedy policy from the episodes' first observations.

    The interval resamples the episodes `n_bootstrap` times (generator seeded by `seed`) and takes
    the (1 - confidence) / 2 and (1 + confidence) / 2 percentiles of the resampled means.
    """
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    if not _is_count(n_bootstrap):
        raise ValueError(f"n_bootstrap must be an int >= 1, got {n_bootstrap!r}")
    if not _is_count(n_steps):
        raise ValueError(f"n_steps must be an int >= 1, got {n_steps!r}")
    episode_list = _episode_list(episodes, "episodes")
    start = time.perf_counter()
    fqe = FQE(algo, seed=seed, **fqe_kwargs)
    fqe.fit(episode_list, n_steps=n_steps)
    starts = np.stack([episode.observations[0] for episode in episode_list])
    values = np.asarray(fqe.predict_value(starts, fqe.predict(starts)), dtype=np.float64)
    seconds = time.perf_counter() - start

    rng = np.random.default_rng(seed)
    resampled = rng.integers(0, len(values), size=(n_bootstrap, len(values)))
    means = values[resampled].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return PolicyValueEstimate(
        method="fqe",
        estimate=float(values.mean()),
        ci=(float(low), float(high)),
        n_episodes=len(episode_list),
        n_steps=n_steps,
        seconds=seconds,
    )


def _episode_list(episodes: MDPDataset | Sequence[Episode], name: str) -> list[Episode]:
    if isinstance(episodes, MDPDataset):
        return episodes.episodes
    if isinstance(episodes, Episode):
        return [episodes]
    if not isinstance(episodes, Sequence) or not all(isinstance(e, Episode) for e in episodes):
        raise ValueError(f"{name} must be an MDPDataset or a list of Episode")
    if not episodes:
        raise ValueError(f"{name} is empty")
    return list(episodes)


def _batch(x: Any, name: str, row_shape: tuple[int, ...]) -> np.ndarray:
    """A non-empty batch [N, *row_shape] of finite numbers, or a ValueError naming `name`."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from exc
    if arr.ndim < 1 or arr.shape[1:] != row_shape or arr.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape [N, {', '.join(map(str, row_shape))}] with N >= 1, "
            f"got {list(arr.shape)}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1

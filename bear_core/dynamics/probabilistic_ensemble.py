"""MOPO-style probabilistic ensemble dynamics model T(s', r | s, a) for model-based offline RL.

Model. K Gaussian MLPs (swish) run as one ensemble network (weights [K, in, out],
`bear_core.networks.layers.EnsembleLinear`).
Member k maps the standardised input x = [s, a] to the mean mu_k and log-variance l_k of the
standardised target y = [s' - s, r]. The raw log-variance is soft-clamped between learned
per-member bounds, as in PETS and MOPO:

    l = l_max - softplus(l_max - l_raw);  l = l_min + softplus(l - l_min)

Loss. Member k sees mini-batches drawn from its own bootstrap resample of the training data
(drawn once per `fit` call); the objective, minimised with Adam (L2 weight decay on the weight
matrices only), is

    L = sum_k [ mean_{b,j} 0.5 * ((y - mu_k)^2 * exp(-l_k) + l_k + log 2 pi)
                + 0.01 * sum_j (l_max_kj - l_min_kj) ]

Prediction (`predict`) is deterministic: the ensemble mean of the members' means, in data units,
s'_hat = s + mean_k delta_k and r_hat = mean_k r_k. Its variance is the members' disagreement

    v(s, a) = sum_j (1/K) sum_k (mu_kj(s, a) - mean_k' mu_k'j(s, a))^2

(the population variance over members of the predicted means of [s' - s, r] in data units,
summed over the D + 1 outputs; hence K >= 2). The rollout uncertainty is u(s, a) = sqrt(v(s, a)).

Rollouts (`rollout`) start from given states; at every step each row draws a member k uniformly
and a sample [delta, r] ~ N(mu_k, sigma_k^2), then s' = s + delta and the reward is penalised,
r_tilde = r - lambda * u(s, a). There is no termination function: terminals are all 0.

Scorers return their natural value; lower is better for all three.

Differences from the reference (d3rlpy 0.x/1.x `ProbabilisticEnsembleDynamics` / MOPO): `predict`
returns the ensemble mean instead of a sample of a random member; the targets are standardised
as well as the inputs; members train on bootstrap resamples instead of random 0/1 masks over a
shared batch. The uncertainty is the members' disagreement above, not MOPO's max_k ||sigma_k||
(the reference's 'max' variance type) nor the reference's default 'data' variance (the spread of
one sample from each member): on deterministic data such as Pendulum the learned sigma_k settles
on its lower bound on and off the data alike, so it does not flag out-of-distribution inputs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bear_core.config import _check_choice, _check_int, _check_real
from bear_core.dataset import Episode, MDPDataset, TransitionBuffer
from bear_core.device import resolve_device
from bear_core.errors import NotBuiltError
from bear_core.io_utils import atomic_write_with
from bear_core.networks.layers import EnsembleLinear
from bear_core.preprocessing.scalers import ObservationScaler
from bear_core.scorers import WINDOW_SIZE
from bear_core.training.run_logger import RunLogger, progress_bar, run_directory

__all__ = [
    "DYNAMICS_SCORERS",
    "DynamicsConfig",
    "GaussianEnsemble",
    "ProbabilisticEnsembleDynamics",
    "dynamics_observation_prediction_error_scorer",
    "dynamics_prediction_variance_scorer",
    "dynamics_reward_prediction_error_scorer",
]

LOGVAR_MAX_INIT, LOGVAR_MIN_INIT = 0.5, -10.0  # initial soft bounds of the log-variance (PETS)
BOUND_WEIGHT = 0.01  # weight of the bound regulariser sum_j (l_max - l_min)
LOG_2PI = math.log(2.0 * math.pi)
PREDICT_CHUNK = 4096  # rows per forward pass in `predict`
CHECKPOINT_FORMAT = 1

Policy = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DynamicsConfig:
    """Parameters of `ProbabilisticEnsembleDynamics`; bad values raise ValueError naming them."""

    n_ensembles: int = 5  # K >= 2
    hidden_units: tuple[int, ...] = (200, 200, 200, 200)  # swish layers of every member
    learning_rate: float = 1e-3
    batch_size: int = 100  # per member
    n_epochs: int = 30
    n_steps_per_epoch: int | None = None  # None: len(data) // batch_size
    eps: float = 1e-8  # Adam epsilon
    weight_decay: float = 1e-4  # L2 on the weight matrices
    use_gpu: bool | int | str | None = False
    seed: int = 0  # initialisation, bootstrap resamples and mini-batches
    scaler: str | None = "standard"  # standardise inputs [s, a] and targets [s' - s, r]
    discrete_action: bool = False  # continuous actions only

    def __post_init__(self) -> None:
        _check_int("n_ensembles", self.n_ensembles, low=2)
        for name in ("batch_size", "n_epochs"):
            _check_int(name, getattr(self, name), low=1)
        if self.n_steps_per_epoch is not None:
            _check_int("n_steps_per_epoch", self.n_steps_per_epoch, low=1)
        _check_int("seed", self.seed, low=0)
        units = self.hidden_units
        if (
            not isinstance(units, list | tuple)
            or not units
            or not all(isinstance(u, int) and not isinstance(u, bool) and u >= 1 for u in units)
        ):
            raise ValueError(
                f"hidden_units must be a non-empty list of positive ints, got {units!r}"
            )
        object.__setattr__(self, "hidden_units", tuple(units))
        for name in ("learning_rate", "eps"):
            _check_real(name, getattr(self, name), low=0.0, strict=True)
        _check_real("weight_decay", self.weight_decay, low=0.0)
        if self.scaler is not None:
            _check_choice("scaler", self.scaler, ("standard",))
        if not isinstance(self.discrete_action, bool):
            raise ValueError(f"discrete_action must be a bool, got {self.discrete_action!r}")
        if self.discrete_action:
            raise ValueError("discrete_action=True is not supported: continuous actions only")
        gpu = self.use_gpu
        if not (
            gpu is None
            or isinstance(gpu, bool)
            or (isinstance(gpu, int) and gpu >= 0)
            or (isinstance(gpu, str) and (gpu == "cpu" or gpu.startswith("cuda")))
        ):
            raise ValueError(
                f"use_gpu must be a bool, a CUDA device id or a device string, got {gpu!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able parameters."""
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        params["hidden_units"] = list(self.hidden_units)
        return params


DYNAMICS_FIELDS = tuple(f.name for f in dataclasses.fields(DynamicsConfig))


class GaussianEnsemble(nn.Module):
    """K Gaussian MLPs: x [K, N, in] -> mean and soft-clamped log-variance, each [K, N, out]."""

    def __init__(
        self, n_ensembles: int, in_size: int, out_size: int, hidden_units: Sequence[int]
    ) -> None:
        super().__init__()
        sizes = [in_size, *hidden_units]
        self.hidden = nn.ModuleList(EnsembleLinear(n_ensembles, i, o) for i, o in pairwise(sizes))
        self.head = EnsembleLinear(n_ensembles, sizes[-1], 2 * out_size)
        self.max_logvar = nn.Parameter(torch.full((n_ensembles, 1, out_size), LOGVAR_MAX_INIT))
        self.min_logvar = nn.Parameter(torch.full((n_ensembles, 1, out_size), LOGVAR_MIN_INIT))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        for layer in self.hidden:
            h = F.silu(layer(h))
        mean, raw_logvar = self.head(h).chunk(2, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: weight decay on the weight matrices, none on biases and bounds."""
        weights = [layer.weight for layer in [*self.hidden, self.head]]
        others = [p for p in self.parameters() if all(p is not w for w in weights)]
        return [
            {"params": weights, "weight_decay": weight_decay},
            {"params": others, "weight_decay": 0.0},
        ]


class DynamicsNetworks(nn.Module):
    """The ensemble with its three scalers (s, a and the targets [s' - s, r]): one state dict."""

    def __init__(self, config: DynamicsConfig, observation_size: int, action_size: int) -> None:
        super().__init__()
        self.n_ensembles = config.n_ensembles
        self.observation_size, self.action_size = observation_size, action_size
        self.observation_scaler = ObservationScaler(config.scaler, (observation_size,))
        self.action_scaler = ObservationScaler(config.scaler, (action_size,))
        self.target_scaler = ObservationScaler(config.scaler, (observation_size + 1,))
        self.ensemble = GaussianEnsemble(
            config.n_ensembles,
            observation_size + action_size,
            observation_size + 1,
            config.hidden_units,
        )

    def inputs(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """[N, D], [N, A] in data units -> standardised [N, D + A]."""
        return torch.cat([self.observation_scaler(observations), self.action_scaler(actions)], -1)

    def moments(
        self, observations: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's mean and std of [s' - s, r] in data units, each [K, N, D + 1]."""
        x = self.inputs(observations, actions).expand(self.n_ensembles, -1, -1)
        mean, logvar = self.ensemble(x)
        scale = self.target_scaler.scale
        return mean * scale + self.target_scaler.shift, torch.exp(0.5 * logvar) * scale


class DynamicsPredictor(Protocol):
    """What the dynamics scorers need."""

    def predict(
        self, observations: Any, actions: Any, with_variance: bool = False
    ) -> tuple[np.ndarray, ...]: ...


class ProbabilisticEnsembleDynamics:
    """MOPO's probabilistic ensemble dynamics model (see the module docstring for the math).

    The keyword parameters are `DynamicsConfig`'s, with its defaults; it validates them (bad
    values raise ValueError naming the parameter). Numpy in and out, except `rollout`, which
    works on tensors on the model's device for a training loop.
    """

    def __init__(
        self,
        *,
        n_ensembles: int = 5,
        hidden_units: Sequence[int] = (200, 200, 200, 200),
        learning_rate: float = 1e-3,
        batch_size: int = 100,
        n_epochs: int = 30,
        n_steps_per_epoch: int | None = None,
        eps: float = 1e-8,
        weight_decay: float = 1e-4,
        use_gpu: bool | int | str | None = False,
        seed: int = 0,
        scaler: str | None = "standard",
        discrete_action: bool = False,
    ) -> None:
        # every argument is a DynamicsConfig field (tests/test_dynamics.py checks that names,
        # order and defaults agree); DynamicsConfig validates them
        arguments = locals()
        self._config = DynamicsConfig(**{name: arguments[name] for name in DYNAMICS_FIELDS})
        self._networks: DynamicsNetworks | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._generator: torch.Generator | None = None
        self._fitted = False  # scalers fitted on training data
        self.epoch = 0  # completed epochs
        self.total_step = 0  # completed gradient steps

    # --- parameters -------------------------------------------------------------------------------

    @property
    def config(self) -> DynamicsConfig:
        return self._config

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters as a JSON-able dict (for params.json)."""
        return self._config.to_dict()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ProbabilisticEnsembleDynamics:
        """A new, unbuilt model with these parameters (the inverse of `get_params`); a name that
        is not a parameter raises ValueError naming it."""
        unknown = sorted(set(params) - set(DYNAMICS_FIELDS))
        if unknown:
            raise ValueError(f"unknown dynamics parameter(s): {unknown}")
        return cls(**params)

    @property
    def observation_size(self) -> int | None:
        return None if self._networks is None else self._networks.observation_size

    @property
    def action_size(self) -> int | None:
        return None if self._networks is None else self._networks.action_size

    @property
    def device(self) -> torch.device:
        return self._require_networks().target_scaler.shift.device

    # --- building ---------------------------------------------------------------------------------

    def build(self, observation_size: int, action_size: int) -> None:
        """Create the networks, optimizer and generator (fit and load_model do it when needed)."""
        for name, size in (("observation_size", observation_size), ("action_size", action_size)):
            if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
                raise ValueError(f"{name} must be a positive int, got {size!r}")
        cfg = self._config
        device = resolve_device(cfg.use_gpu)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            networks = DynamicsNetworks(cfg, int(observation_size), int(action_size))
        self._networks = networks.to(device)
        self._optimizer = torch.optim.Adam(
            self._networks.ensemble.parameter_groups(cfg.weight_decay),
            lr=cfg.learning_rate,
            eps=cfg.eps,
        )
        self._generator = torch.Generator(device=device)
        self._generator.manual_seed(cfg.seed)
        self._fitted = cfg.scaler is None
        self.epoch = self.total_step = 0

    def _require_networks(self) -> DynamicsNetworks:
        if self._networks is None:
            raise NotBuiltError("the dynamics model is not built: call fit, build or load_model")
        return self._networks

    # --- training ---------------------------------------------------------------------------------

    def fit(
        self,
        episodes: MDPDataset | Sequence[Episode],
        experiment_name: str | None = None,
        with_timestamp: bool = True,
        logdir: str | Path = "d3rlpy_logs",
        verbose: bool = True,
        show_progress: bool = True,
        tensorboard: bool = True,
        eval_episodes: MDPDataset | Sequence[Episode] | None = None,
        save_interval: int = 1,
        scorers: Mapping[str, Callable[[Any, Sequence[Any]], float]] | None = None,
        *,
        n_epochs: int | None = None,
        run_dir: str | Path | None = None,
    ) -> list[tuple[int, dict[str, float]]]:
        """Train for `n_epochs` (default: the config's); returns [(epoch, metrics)] with the
        epoch's mean 'loss' (L above) and 'nll' (mean per-member NLL), plus the scorers on
        `eval_episodes` (default scorers: `DYNAMICS_SCORERS`). Epochs count from 1 and continue
        across calls; the scalers are fitted by the first call.

        The logging arguments are `BEAR.fit`'s and write the same run directory, with the same
        logger: `<logdir>/<experiment_name or 'ProbabilisticEnsembleDynamics'>[_<timestamp>]/`
        (or `run_dir` exactly, an extension) holds params.json (`get_params()`, which
        `from_params` reads back), `<metric>.csv` (epoch,step,value) and metrics.jsonl per
        epoch, progress.json, TensorBoard events under tensorboard/ with `tensorboard`, and
        `model_<epoch>.pt` (a `save_model` file) every `save_interval` epochs. `verbose` prints
        each epoch's metrics; `show_progress` draws a progress bar over each epoch's steps."""
        if (
            isinstance(save_interval, bool)
            or not isinstance(save_interval, int)
            or save_interval < 1
        ):
            raise ValueError(f"save_interval must be an int >= 1, got {save_interval!r}")
        epochs = self._config.n_epochs if n_epochs is None else n_epochs
        _check_int("n_epochs", epochs, low=1)
        train = _episode_list(episodes, "episodes")
        evaluation = (
            None if eval_episodes is None else _episode_list(eval_episodes, "eval_episodes")
        )
        if scorers and evaluation is None:
            raise ValueError("scorers need eval_episodes to score")
        if evaluation is not None and scorers is None:
            scorers = DYNAMICS_SCORERS
        buffer = TransitionBuffer.from_episodes(train)
        if len(buffer.observation_shape) != 1:
            raise ValueError(
                f"episodes must have vector observations, got shape {buffer.observation_shape}"
            )
        sizes = (buffer.observation_shape[0], buffer.action_size)
        if self._networks is None:
            self.build(*sizes)
        elif sizes != (self.observation_size, self.action_size):
            raise ValueError(
                f"episodes have observation size {sizes[0]} and action size {sizes[1]}, but the "
                f"model was built for {self.observation_size} and {self.action_size}"
            )
        net, optimizer, generator = self._networks, self._optimizer, self._generator
        assert net is not None and optimizer is not None and generator is not None
        device = self.device

        targets_np = np.concatenate(
            [buffer.next_observations - buffer.observations, buffer.rewards], axis=1
        )
        if not self._fitted:
            net.observation_scaler.fit(buffer.observations)
            net.action_scaler.fit(buffer.actions)
            net.target_scaler.fit(targets_np)
            self._fitted = True
        with torch.no_grad():
            inputs = net.inputs(
                _tensor(buffer.observations, device), _tensor(buffer.actions, device)
            )
            targets = net.target_scaler(_tensor(targets_np, device))

        cfg, n, k = self._config, len(buffer), self._config.n_ensembles
        steps = cfg.n_steps_per_epoch or max(1, n // cfg.batch_size)
        bootstrap = torch.randint(n, (k, n), generator=generator, device=device)
        directory = run_directory(
            run_dir, logdir, experiment_name, with_timestamp, type(self).__name__
        )
        logger = RunLogger(directory, tensorboard=tensorboard, verbose=verbose)
        logger.write_params(self.get_params())
        history: list[tuple[int, dict[str, float]]] = []
        first_epoch, last_epoch, start = self.epoch + 1, self.epoch + epochs, time.monotonic()
        try:
            for epoch in range(first_epoch, last_epoch + 1):
                net.train()
                sums = torch.zeros(2, device=device)
                for _ in progress_bar(range(steps), f"epoch {epoch}", show_progress):
                    picks = torch.randint(
                        n, (k, cfg.batch_size), generator=generator, device=device
                    )
                    rows = bootstrap.gather(1, picks)  # [K, B]: member k's own resample
                    loss, nll = self._loss(inputs[rows], targets[rows])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    sums += torch.stack([loss.detach(), nll.detach()])
                    self.total_step += 1
                self.epoch = epoch
                mean_loss, mean_nll = (sums / steps).tolist()
                metrics = {"loss": mean_loss, "nll": mean_nll}
                for name, scorer in (scorers or {}).items():
                    metrics[name] = float(scorer(self, evaluation or []))
                history.append((epoch, metrics))
                logger.log_epoch(epoch, self.total_step, metrics)
                if epoch % save_interval == 0:
                    self.save_model(directory / f"model_{epoch}.pt")
                logger.write_progress(
                    state="running" if epoch < last_epoch else "finished",
                    epoch=epoch,
                    n_epochs=last_epoch,
                    step=self.total_step,
                    total_steps=self.total_step + (last_epoch - epoch) * steps,
                    elapsed_s=time.monotonic() - start,
                    metrics=metrics,
                )
        finally:
            logger.close()
        return history

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [K, B, D + A], y [K, B, D + 1] standardised -> (L, mean_k NLL_k)."""
        ensemble = self._require_networks().ensemble
        mean, logvar = ensemble(x)
        nll = 0.5 * ((y - mean).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)
        per_member = nll.mean(dim=(1, 2))
        bounds = (ensemble.max_logvar - ensemble.min_logvar).sum(dim=(1, 2))
        return (per_member + BOUND_WEIGHT * bounds).sum(), per_member.mean()

    # --- inference --------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self, observations: Any, actions: Any, with_variance: bool = False
    ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ensemble-mean next observations [N, D] and rewards [N, 1]; with_variance also the
        members' disagreement v [N, 1] (module docstring)."""
        net = self._require_networks()
        obs = _check_batch(observations, "observations", self.observation_size)
        act = _check_batch(actions, "actions", self.action_size)
        if len(act) != len(obs):
            raise ValueError(f"actions has {len(act)} rows but observations has {len(obs)}")
        net.eval()
        device = self.device
        parts = []
        for start in range(0, len(obs), PREDICT_CHUNK):
            rows = slice(start, start + PREDICT_CHUNK)
            o, a = _tensor(obs[rows], device), _tensor(act[rows], device)
            mean, _ = net.moments(o, a)
            average = mean.mean(dim=0)
            variance = _disagreement(mean)
            parts.append(torch.cat([o + average[:, :-1], average[:, -1:], variance], dim=-1))
        out = torch.cat(parts).cpu().numpy()
        d = obs.shape[1]
        next_observations, rewards, variances = out[:, :d], out[:, d : d + 1], out[:, d + 1 :]
        if with_variance:
            return next_observations, rewards, variances
        return next_observations, rewards

    @torch.no_grad()
    def rollout(
        self,
        observations: torch.Tensor,
        policy: Policy,
        horizon: int,
        generator: torch.Generator,
        reward_penalty: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """MOPO model rollouts of `horizon` steps from observations [B, D] (data units, on the
        model's device); `policy` maps observations [B, D] to actions [B, A] in data units.

        Returns tensors with H * B rows, step-major (row t * B + i is step t from start i):
        observations, actions, rewards (r - reward_penalty * u), next_observations, terminals
        (zeros) and uncertainties u = sqrt(v); rewards, terminals and uncertainties
        are [H * B, 1]. All randomness comes from `generator`.
        """
        net = self._require_networks()
        device = self.device
        d, a = self.observation_size, self.action_size
        if not isinstance(observations, torch.Tensor) or observations.ndim != 2:
            raise ValueError("observations must be a tensor [B, D]")
        if observations.shape[1] != d or observations.shape[0] == 0:
            raise ValueError(
                f"observations must have shape [B, {d}] with B >= 1, got {list(observations.shape)}"
            )
        if observations.device != device:
            raise ValueError(f"observations are on {observations.device}, the model on {device}")
        if not torch.isfinite(observations).all():
            raise ValueError("observations contain NaN or infinite values")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        if not isinstance(generator, torch.Generator) or generator.device.type != device.type:
            raise ValueError(f"generator must be a torch.Generator on {device.type}")
        _check_real("reward_penalty", reward_penalty, low=0.0)

        net.eval()
        b = observations.shape[0]
        arange = torch.arange(b, device=device)
        obs = observations.float()
        names = ("observations", "actions", "rewards", "next_observations", "uncertainties")
        columns: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        for _ in range(horizon):
            actions = policy(obs)
            if not isinstance(actions, torch.Tensor) or tuple(actions.shape) != (b, a):
                shape = list(actions.shape) if isinstance(actions, torch.Tensor) else actions
                raise ValueError(f"policy must return a tensor [{b}, {a}], got {shape!r}")
            actions = actions.float()
            mean, std = net.moments(obs, actions)  # [K, B, D + 1]
            member = torch.randint(net.n_ensembles, (b,), generator=generator, device=device)
            noise = torch.randn((b, d + 1), generator=generator, device=device)
            sample = mean[member, arange] + std[member, arange] * noise
            uncertainty = _disagreement(mean).sqrt()
            next_obs = obs + sample[:, :d]
            reward = sample[:, d:] - reward_penalty * uncertainty
            step = (obs, actions, reward, next_obs, uncertainty)
            for name, value in zip(names, step, strict=True):
                columns[name].append(value)
            obs = next_obs
        out = {name: torch.cat(values) for name, values in columns.items()}
        out["terminals"] = torch.zeros_like(out["rewards"])
        return out

    # --- persistence ------------------------------------------------------------------------------

    def save_model(self, fname: str | Path) -> None:
        """Atomically torch.save the config, sizes, networks with scalers, optimizer, generator
        and counters; `load_model` restores them."""
        net = self._require_networks()
        assert self._optimizer is not None and self._generator is not None
        state = {
            "format": CHECKPOINT_FORMAT,
            "params": self.get_params(),
            "observation_size": self.observation_size,
            "action_size": self.action_size,
            "networks": net.state_dict(),
            "optimizer": self._optimizer.state_dict(),
            "generator": self._generator.get_state(),
            "fitted": self._fitted,
            "epoch": self.epoch,
            "total_step": self.total_step,
        }
        atomic_write_with(fname, lambda tmp: torch.save(state, tmp))

    def load_model(self, fname: str | Path) -> None:
        """Load a `save_model` file; an unbuilt model takes the file's config (keeping its own
        use_gpu) and sizes."""
        state = torch.load(fname, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"fname={str(fname)!r} is not a dynamics model file")
        sizes = (state["observation_size"], state["action_size"])
        if self._networks is None:
            self._config = DynamicsConfig(**{**state["params"], "use_gpu": self._config.use_gpu})
            self.build(*sizes)
        elif sizes != (self.observation_size, self.action_size):
            raise ValueError(
                f"fname={str(fname)!r} holds a model for observation size {sizes[0]} and action "
                f"size {sizes[1]}, but this one was built for {self.observation_size} and "
                f"{self.action_size}"
            )
        net, optimizer, generator = self._networks, self._optimizer, self._generator
        assert net is not None and optimizer is not None and generator is not None
        try:
            net.load_state_dict(state["networks"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ValueError(f"fname={str(fname)!r} does not fit this model: {exc}") from exc
        generator.set_state(state["generator"])
        self._fitted = bool(state["fitted"])
        self.epoch, self.total_step = int(state["epoch"]), int(state["total_step"])


# --- scorers --------------------------------------------------------------------------------------


def _predictions(
    dynamics: DynamicsPredictor, episodes: Sequence[Any]
) -> Iterator[tuple[Any, slice, tuple[np.ndarray, ...]]]:
    """(episode, window, predict(...) with variance) over windows of at most WINDOW_SIZE rows."""
    if isinstance(episodes, MDPDataset):
        episodes = episodes.episodes
    if len(episodes) == 0 or all(len(e) == 0 for e in episodes):
        raise ValueError("episodes contain no transitions")
    for episode in episodes:
        for start in range(0, len(episode), WINDOW_SIZE):
            window = slice(start, min(start + WINDOW_SIZE, len(episode)))
            prediction = dynamics.predict(
                episode.observations[window], episode.actions[window], with_variance=True
            )
            yield episode, window, prediction


def _transition_mean(
    dynamics: DynamicsPredictor,
    episodes: Sequence[Any],
    per_transition: Callable[[Any, slice, tuple[np.ndarray, ...]], np.ndarray],
) -> float:
    total, count = 0.0, 0
    for episode, window, prediction in _predictions(dynamics, episodes):
        values = per_transition(episode, window, prediction)
        total += float(values.sum())
        count += values.size
    return total / count


def dynamics_observation_prediction_error_scorer(
    dynamics: DynamicsPredictor, episodes: Sequence[Any]
) -> float:
    """mean_t ||s'_hat_t - s'_t||_2^2 over all transitions (squared error summed over the
    observation dimensions, as the reference). Lower is better."""

    def errors(episode: Any, window: slice, prediction: tuple[np.ndarray, ...]) -> np.ndarray:
        target = np.asarray(episode.next_observations[window], dtype=np.float64)
        return ((prediction[0].astype(np.float64) - target) ** 2).sum(axis=1)

    return _transition_mean(dynamics, episodes, errors)


def dynamics_reward_prediction_error_scorer(
    dynamics: DynamicsPredictor, episodes: Sequence[Any]
) -> float:
    """mean_t (r_hat_t - r_t)^2 over all transitions. Lower is better."""

    def errors(episode: Any, window: slice, prediction: tuple[np.ndarray, ...]) -> np.ndarray:
        target = np.asarray(episode.rewards[window], dtype=np.float64).reshape(-1)
        return (prediction[1].astype(np.float64).reshape(-1) - target) ** 2

    return _transition_mean(dynamics, episodes, errors)


def dynamics_prediction_variance_scorer(
    dynamics: DynamicsPredictor, episodes: Sequence[Any]
) -> float:
    """mean_t v(s_t, a_t), the predicted variance of `predict`. Lower is better."""

    def variances(episode: Any, window: slice, prediction: tuple[np.ndarray, ...]) -> np.ndarray:
        return prediction[2].astype(np.float64).reshape(-1)

    return _transition_mean(dynamics, episodes, variances)


DYNAMICS_SCORERS: dict[str, Callable[[Any, Sequence[Any]], float]] = {
    "observation_error": dynamics_observation_prediction_error_scorer,
    "reward_error": dynamics_reward_prediction_error_scorer,
    "prediction_variance": dynamics_prediction_variance_scorer,
}


# --- helpers --------------------------------------------------------------------------------------


def _episode_list(episodes: MDPDataset | Sequence[Episode], name: str) -> list[Episode]:
    if isinstance(episodes, MDPDataset):
        episodes = episodes.episodes
    elif isinstance(episodes, Episode):
        episodes = [episodes]
    if not isinstance(episodes, Sequence) or not all(isinstance(e, Episode) for e in episodes):
        raise ValueError(f"{name} must be an MDPDataset or a list of Episode")
    if not episodes:
        raise ValueError(f"{name} is empty")
    return list(episodes)


def _check_batch(x: Any, name: str, width: int | None) -> np.ndarray:
    """A non-empty finite float32 batch [N, width], or a ValueError naming `name`."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from exc
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != width:
        raise ValueError(f"{name} must have shape [N, {width}] with N >= 1, got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _disagreement(means: torch.Tensor) -> torch.Tensor:
    """Members' means [K, N, D + 1] -> v = sum_j Var_k(mu_kj), population variance, [N, 1]."""
    return means.var(dim=0, correction=0).sum(dim=-1, keepdim=True)


def _tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.array(x, dtype=np.float32), device=device)

"""BEAR: the reference's public API over BEARModules (networks) and `update.update_step`.

Scalers live at this boundary: observations are scaled and actions mapped between the data's own
range and tanh's [-1, 1] here, never inside the math.

`predict` is deterministic: the greedy action tanh(mu(s)) of the policy, mapped back to the data's
action range. Same input, same output, and exported graphs reproduce it exactly.
`sample_action` draws a ~ pi_phi(.|s) from the model's own seeded generator.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bear_core.bear.modules import BEARModules, TorchBatch
from bear_core.bear.update import metrics_to_floats, update_step
from bear_core.bundle.ood import CalibrationSample
from bear_core.bundle.runtime import value_stats
from bear_core.config import (
    NO_ENCODER_PARAMS,
    BEARConfig,
    ImitatorType,
    MMDKernel,
    QFuncType,
)
from bear_core.dataset import Episode, MDPDataset
from bear_core.dataset.batch import TransitionBatch
from bear_core.device import resolve_device
from bear_core.errors import NotBuiltError
from bear_core.io_utils import atomic_write_with
from bear_core.training.selection import (
    DEFAULT_FQE_STEPS,
    DEFAULT_KEEP_CHECKPOINTS,
    DEFAULT_SELECT_CANDIDATES,
)

# Parameters that shape the networks: fixed once they are built.
STRUCTURAL = frozenset(
    {
        "n_critics",
        "n_quantiles",
        "embed_size",
        "use_batch_norm",
        "q_func_type",
        "encoder_params",
        "imitator_type",
        "scaler",
        "action_scaler",
        "use_gpu",
        "bootstrap",
        "share_encoder",
        "augmentation",
        "dynamics",
        "vae_kl_weight",
    }
)
OPTIMIZER_RATES = {
    "actor_learning_rate": "actor_optim",
    "critic_learning_rate": "critic_optim",
    "imitator_learning_rate": "imitator_optim",
    "temp_learning_rate": "temp_optim",
    "alpha_learning_rate": "alpha_optim",
}
CHECKPOINT_FORMAT = 2  # 2: each network's heads are its last layer
Scorer = Callable[[Any, Sequence[Episode]], float]
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(BEARConfig))


class BEAR:
    """Bootstrapping Error Accumulation Reduction (Kumar et al. 2019), d3rlpy-0.x style API.

    The positional parameters are the reference's, in its order and with its defaults; the
    keyword-only ones after `impl` are this project's extensions. `BEARConfig` documents and
    validates every one of them (invalid values raise ValueError naming the parameter).
    Two reference defaults are mutable there (`augmentation=[]`, `encoder_params={}`); here they
    are the same empty values as immutable objects, `()` and a read-only empty mapping, so no
    call can change the default another call sees.
    `impl` takes already-built networks (`BEARModules`), as `get_params(deep=...)` returns them.
    """

    def __init__(
        self,
        actor_learning_rate: float = 3e-4,
        critic_learning_rate: float = 3e-4,
        imitator_learning_rate: float = 1e-3,
        temp_learning_rate: float = 0.0,
        alpha_learning_rate: float = 1e-3,
        batch_size: int = 100,
        gamma: float = 0.99,
        tau: float = 0.005,
        n_critics: int = 2,
        bootstrap: bool = False,
        share_encoder: bool = False,
        update_actor_interval: int = 1,
        initial_temperature: float = 0.0,
        initial_alpha: float = 1.0,
        alpha_threshold: float = 0.05,
        lam: float = 0.75,
        n_action_samples: int = 4,
        mmd_sigma: float = 20.0,
        rl_start_epoch: int = 0,
        eps: float = 1e-8,
        use_batch_norm: bool = False,
        q_func_type: QFuncType = "mean",
        n_epochs: int = 1000,
        use_gpu: bool | int | str | None = False,
        scaler: str | Mapping[str, Any] | None = None,
        augmentation: Sequence[Any] = (),
        n_augmentations: int = 1,
        encoder_params: Mapping[str, Any] = NO_ENCODER_PARAMS,
        dynamics: Any = None,
        impl: BEARModules | None = None,
        *,
        imitator_type: ImitatorType = "regressor",
        mmd_kernel: MMDKernel = "laplacian",
        vae_kl_weight: float = 0.5,
        action_scaler: str | Mapping[str, Any] | None = "min_max",
        n_steps_per_epoch: int | None = None,
        seed: int = 0,
        rollout_interval: int = 1000,
        rollout_horizon: int = 5,
        rollout_batch_size: int = 1000,
        real_ratio: float = 0.5,
        reward_penalty: float = 0.0,
        n_quantiles: int = 32,
        embed_size: int = 64,
    ) -> None:
        # every argument but self and impl is a BEARConfig field (tests/test_bear_api.py checks
        # that names, order and defaults agree); BEARConfig validates them
        arguments = locals()
        self._config = BEARConfig(**{name: arguments[name] for name in CONFIG_FIELDS})
        self._impl = impl
        self._dynamics = self._make_dynamics()
        self._observation_shape: tuple[int, ...] | None = None
        self._action_size: int | None = None
        if impl is not None:
            self._observation_shape = impl.observation_shape
            self._action_size = impl.action_size
        self.epoch = 0  # completed epochs
        self.total_step = 0  # completed gradient steps
        self.provenance: dict[str, Any] = {}  # dataset checksum and final metrics, set by fit
        # training rows the bundle's out-of-distribution detector is calibrated on, set by fit
        self.ood_sample: CalibrationSample | None = None

    # --- parameters -------------------------------------------------------------------------------

    @property
    def config(self) -> BEARConfig:
        return self._config

    @property
    def impl(self) -> BEARModules | None:
        return self._impl

    @property
    def dynamics(self) -> Any:
        """The dynamics model whose rollouts join training (None without `dynamics`)."""
        return self._dynamics

    def _make_dynamics(self) -> Any:
        spec = self._config.dynamics
        if spec is None or not isinstance(spec, dict):
            return spec
        from bear_core.dynamics.probabilistic_ensemble import ProbabilisticEnsembleDynamics

        try:
            return ProbabilisticEnsembleDynamics.from_params(spec["params"])
        except ValueError as exc:
            raise ValueError(f"dynamics: {exc}") from exc

    @property
    def observation_shape(self) -> tuple[int, ...] | None:
        return self._observation_shape

    @property
    def action_size(self) -> int | None:
        return self._action_size

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in BEARConfig.__dataclass_fields__:
            raise AttributeError(name)
        return getattr(self._config, name)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Every constructor parameter; `BEAR(**bear.get_params())` builds an equal algorithm."""
        params = self._config.to_dict()
        params["impl"] = copy.deepcopy(self._impl) if deep else self._impl
        return params

    def set_params(self, **params: Any) -> BEAR:
        """Set parameters (validated like the constructor). Learning rates also retune the
        optimizers of a built model; parameters that shape the networks are fixed once built."""
        if "impl" in params:
            self._impl = params.pop("impl")
        if self._impl is not None:
            fixed = sorted(STRUCTURAL & set(params))
            if fixed:
                raise ValueError(
                    f"{fixed[0]} cannot change once the networks are built; create a new BEAR"
                )
        self._config = self._config.replace(**params)
        if "dynamics" in params:
            self._dynamics = self._make_dynamics()
        if self._impl is not None:
            for name, optim_name in OPTIMIZER_RATES.items():
                for group in getattr(self._impl, optim_name).param_groups:
                    group["lr"] = getattr(self._config, name)
        return self

    # --- building ---------------------------------------------------------------------------------

    def create_impl(self, observation_shape: Sequence[int], action_size: int) -> None:
        """Build the networks and optimizers for these shapes (fit does this on its own)."""
        shape = tuple(int(d) for d in observation_shape)
        if len(shape) not in (1, 3) or any(d < 1 for d in shape):
            raise ValueError(
                "observation_shape must be [D] (vector) or [C, H, W] (pixels), "
                f"got {observation_shape!r}"
            )
        pixel_keys = sorted({"filters", "feature_size"} & set(self._config.encoder_params))
        if len(shape) == 1 and pixel_keys:
            raise ValueError(
                f"encoder_params {pixel_keys} are for pixel observations, but observation_shape "
                f"is {list(shape)}"
            )
        if (
            isinstance(action_size, bool)
            or not isinstance(action_size, int | np.integer)
            or (action_size < 1)
        ):
            raise ValueError(f"action_size must be a positive int, got {action_size!r}")
        device = resolve_device(self._config.use_gpu)
        self._impl = BEARModules.build(self._config, shape, int(action_size), device)
        self._observation_shape, self._action_size = shape, int(action_size)
        if isinstance(self._config.scaler, dict):
            self._impl.observation_scaler.load_dict(self._config.scaler)
        if isinstance(self._config.action_scaler, dict):
            self._impl.action_scaler.load_dict(self._config.action_scaler)

    def _require_impl(self) -> BEARModules:
        if self._impl is None:
            raise NotBuiltError(
                "the networks are not built: call fit, create_impl or BEAR.from_json first"
            )
        return self._impl

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
        eval_episodes: Sequence[Episode] | None = None,
        save_interval: int = 1,
        scorers: Mapping[str, Scorer] | None = None,
        *,
        run_dir: str | Path | None = None,
        should_stop: Callable[[], bool] | None = None,
        action_bounds: tuple[Any, Any] | None = None,
        holdout: float = 0.0,
        select: str = "last",
        keep_checkpoints: int | None = DEFAULT_KEEP_CHECKPOINTS,
        select_candidates: int = DEFAULT_SELECT_CANDIDATES,
        fqe_steps: int = DEFAULT_FQE_STEPS,
        holdout_seed: int | None = None,
    ) -> list[tuple[int, dict[str, float]]]:
        """Train for n_epochs; returns [(epoch, metrics)]. The positional arguments are the
        reference's `fit`; the keyword-only ones are extensions. See
        `bear_core.training.loop.fitter` for all of them. With `holdout` > 0 the returned
        model is the selected checkpoint (`select`), its held-out estimate in
        `provenance["evaluation"]`."""
        return list(
            self.fitter(
                episodes, experiment_name, with_timestamp, logdir, verbose, show_progress,
                tensorboard, eval_episodes, save_interval, scorers,
                run_dir=run_dir, should_stop=should_stop, action_bounds=action_bounds,
                holdout=holdout, select=select, keep_checkpoints=keep_checkpoints,
                select_candidates=select_candidates, fqe_steps=fqe_steps,
                holdout_seed=holdout_seed,
            )
        )  # fmt: skip

    def fitter(
        self,
        episodes: MDPDataset | Sequence[Episode],
        experiment_name: str | None = None,
        with_timestamp: bool = True,
        logdir: str | Path = "d3rlpy_logs",
        verbose: bool = True,
        show_progress: bool = True,
        tensorboard: bool = True,
        eval_episodes: Sequence[Episode] | None = None,
        save_interval: int = 1,
        scorers: Mapping[str, Scorer] | None = None,
        *,
        run_dir: str | Path | None = None,
        should_stop: Callable[[], bool] | None = None,
        action_bounds: tuple[Any, Any] | None = None,
        holdout: float = 0.0,
        select: str = "last",
        keep_checkpoints: int | None = DEFAULT_KEEP_CHECKPOINTS,
        select_candidates: int = DEFAULT_SELECT_CANDIDATES,
        fqe_steps: int = DEFAULT_FQE_STEPS,
        holdout_seed: int | None = None,
    ) -> Iterator[tuple[int, dict[str, float]]]:
        """`fit` as a generator of (epoch, metrics), one item per finished epoch."""
        from bear_core.training.loop import fitter

        return fitter(
            self, episodes, experiment_name, with_timestamp, logdir, verbose, show_progress,
            tensorboard, eval_episodes, save_interval, scorers,
            run_dir=run_dir, should_stop=should_stop, action_bounds=action_bounds,
            holdout=holdout, select=select, keep_checkpoints=keep_checkpoints,
            select_candidates=select_candidates, fqe_steps=fqe_steps,
            holdout_seed=holdout_seed,
        )  # fmt: skip

    def update(self, epoch: int, total_step: int, batch: TransitionBatch) -> dict[str, float]:
        """One gradient step on a mini-batch in the data's own units; returns the losses,
        temperature, alpha and MMD by name. `epoch` gates the warm-up (rl_start_epoch) and
        `total_step` the actor interval."""
        m = self._require_impl()
        observations = self._check_observations(batch.observations, "batch.observations")
        next_observations = self._check_observations(
            batch.next_observations, "batch.next_observations"
        )
        actions = self._check_actions(batch.actions, len(observations), "batch.actions")
        with torch.no_grad():
            torch_batch = TorchBatch(
                observations=m.observation_scaler(self._tensor(observations)),
                actions=m.action_scaler(self._tensor(actions)),
                rewards=self._tensor(batch.rewards).reshape(-1),
                next_observations=m.observation_scaler(self._tensor(next_observations)),
                terminals=self._tensor(batch.terminals).reshape(-1),
            )
        return metrics_to_floats(self.update_on_device(epoch, total_step, torch_batch))

    def update_on_device(
        self, epoch: int, total_step: int, batch: TorchBatch
    ) -> dict[str, torch.Tensor]:
        """`update` for a batch already scaled and on the device (the training loop's path)."""
        m = self._require_impl()
        m.train()
        return update_step(
            m,
            self._config,
            batch,
            rl_started=epoch >= self._config.rl_start_epoch,
            update_actor=total_step % self._config.update_actor_interval == 0,
        )

    # --- inference --------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, x: Any) -> np.ndarray:
        """Greedy actions [N, A] in the data's action range: tanh(mu(s)), deterministic."""
        m = self._require_impl()
        m.eval()
        obs = m.observation_scaler(self._tensor(self._check_observations(x, "x")))
        return self._numpy(m.action_scaler.reverse(m.policy.best_action(obs)))

    @torch.no_grad()
    def sample_action(self, x: Any) -> np.ndarray:
        """Actions [N, A] sampled from pi_phi(.|s), in the data's action range."""
        m = self._require_impl()
        m.eval()
        obs = m.observation_scaler(self._tensor(self._check_observations(x, "x")))
        noise = m.noise(obs.shape[0], 1, int(self._action_size or 0))
        _, actions, _ = m.policy.sample_n(obs, noise)
        return self._numpy(m.action_scaler.reverse(actions[:, 0]))

    @torch.no_grad()
    def predict_value(
        self, x: Any, action: Any, with_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Q(s, a) [N] as the mean over the critic ensemble; with_std also returns the
        ensemble's population std [N] (uncertainty)."""
        m = self._require_impl()
        m.eval()
        obs = self._check_observations(x, "x")
        actions = self._check_actions(action, len(obs), "action")
        q = m.critics(
            m.observation_scaler(self._tensor(obs)), m.action_scaler(self._tensor(actions))
        )  # [K, N]
        values, stds = value_stats(self._numpy(q.t()), with_std)
        return values if stds is None else (values, stds)

    # --- persistence ------------------------------------------------------------------------------

    def save_model(self, fname: str | Path) -> None:
        """Save the complete training state (networks, optimizers, log T, log alpha, scalers,
        counters, random state) atomically; `load_model` resumes from it exactly."""
        atomic_write_with(fname, lambda tmp: torch.save(self.checkpoint(), tmp))

    def checkpoint(self) -> dict[str, Any]:
        m = self._require_impl()
        return {
            "format": CHECKPOINT_FORMAT,
            "params": json.loads(json.dumps(self.params_json())),
            "modules": m.state_dict(),
            "epoch": self.epoch,
            "total_step": self.total_step,
            "provenance": json.loads(json.dumps(self.provenance)),
            "ood_sample": None
            if self.ood_sample is None
            else {k: torch.from_numpy(v) for k, v in vars(self.ood_sample).items()},
        }

    def load_model(self, fname: str | Path) -> None:
        """Load a file written by save_model (or fit's model_<epoch>.pt) into this algorithm.
        When the networks are not built yet, the file's parameters and shapes build them."""
        state = torch.load(fname, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"fname={str(fname)!r} is not a BEAR model file")
        saved = dict(state["params"])
        if self._impl is None:
            shape, action_size = saved.pop("observation_shape"), saved.pop("action_size")
            self._config = BEARConfig(**{**saved, "use_gpu": self._config.use_gpu})
            self.create_impl(shape, action_size)
        elif (list(self._observation_shape or ()), self._action_size) != (
            saved["observation_shape"],
            saved["action_size"],
        ):
            raise ValueError(
                f"fname={str(fname)!r} holds a model for observation_shape "
                f"{saved['observation_shape']} and action_size {saved['action_size']}, but this "
                f"BEAR was built for {list(self._observation_shape or ())} and {self._action_size}"
            )
        m = self._require_impl()
        try:
            m.load_state_dict(state["modules"])
        except (RuntimeError, ValueError) as exc:
            raise ValueError(
                f"fname={str(fname)!r} does not fit this BEAR's networks: {exc}"
            ) from exc
        self.epoch, self.total_step = int(state["epoch"]), int(state["total_step"])
        self.provenance = dict(state.get("provenance", {}))
        sample = state.get("ood_sample")  # absent from files of earlier versions
        self.ood_sample = (
            None
            if sample is None
            else CalibrationSample(**{k: v.numpy() for k, v in sample.items()})
        )

    def params_json(self) -> dict[str, Any]:
        """What params.json holds: the parameters, the fitted scalers and the shapes."""
        params = self._config.to_dict()
        if self._dynamics is not None:
            params["dynamics"] = {"type": "probabilistic_ensemble",
                                  "params": self._dynamics.get_params()}  # fmt: skip
        params["observation_shape"] = list(self._observation_shape or ())
        params["action_size"] = self._action_size
        if self._impl is not None:
            params["scaler"] = self._impl.observation_scaler.to_dict()
            params["action_scaler"] = self._impl.action_scaler.to_dict()
        return params

    @classmethod
    def from_json(cls, fname: str | Path, use_gpu: bool | int | str | None = False) -> BEAR:
        """Rebuild an algorithm (networks included, untrained) from a params.json of `fit`;
        then `load_model` the weights."""
        path = Path(fname)
        try:
            params = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"fname={str(fname)!r} is not a readable params.json: {exc}") from exc
        observation_shape = params.pop("observation_shape", None)
        action_size = params.pop("action_size", None)
        params["use_gpu"] = use_gpu
        check_param_names(params)
        algo = cls(**params)
        if observation_shape and action_size:
            algo.create_impl(observation_shape, action_size)
        return algo

    def save_policy(self, fname: str | Path, as_onnx: bool = False) -> None:
        """Save the greedy policy (scalers included, output in the data's action range) as
        TorchScript or, with as_onnx, ONNX. Both run without bear_core."""
        from bear_core.export.bundle_export import save_greedy_policy

        save_greedy_policy(self._require_impl(), fname, as_onnx=as_onnx)

    def export_bundle(self, path: str | Path) -> Path:
        """Write a policy bundle directory (policy, sampler and critic ensemble as ONNX plus
        manifest.json) for the torch-free runtime `bear_core.bundle.load_bundle`. Atomic.
        A held-out estimate of this policy (from fit with a holdout) becomes the manifest's
        `evaluation`; the training rows `fit` kept calibrate its out-of-distribution detector."""
        from bear_core.export.bundle_export import export_bundle

        provenance = {**self.provenance, "epochs": self.epoch, "total_steps": self.total_step}
        evaluation = provenance.pop("evaluation", None)  # the manifest's own field
        params = json.loads(json.dumps(self.params_json()))
        return export_bundle(
            self._require_impl(), path, params, provenance, evaluation,
            ood_sample=self.ood_sample, ood_seed=self._config.seed,
        )  # fmt: skip

    # --- input checks -----------------------------------------------------------------------------

    def _check_observations(self, x: Any, name: str) -> np.ndarray:
        shape = self._observation_shape
        return check_array(x, name, None if shape is None else shape)

    def _check_actions(self, actions: Any, n: int, name: str) -> np.ndarray:
        arr = check_array(actions, name, (self._action_size,) if self._action_size else None)
        if len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} rows but the observations have {n}")
        return arr

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        if not x.flags.writeable:  # torch refuses to share read-only memory
            x = x.copy()
        return torch.as_tensor(x, dtype=torch.float32, device=self._require_impl().device)

    @staticmethod
    def _numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()


def check_param_names(params: Mapping[str, Any]) -> None:
    """ValueError naming any key of `params` that is not a BEAR parameter (for parameters read
    from files or command lines; a direct `BEAR(...)` call raises Python's TypeError)."""
    unknown = sorted(set(params) - set(CONFIG_FIELDS))
    if unknown:
        raise ValueError(f"unknown BEAR parameter(s): {unknown}")


def check_array(x: Any, name: str, row_shape: tuple[int, ...] | None) -> np.ndarray:
    """A batch [N, *row_shape] of finite float32 numbers, or a ValueError naming `name`."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from exc
    if row_shape is not None and arr.shape[1:] != row_shape:
        raise ValueError(
            f"{name} must have shape [N, {', '.join(map(str, row_shape))}], got {list(arr.shape)}"
        )
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch [N, ...], got shape {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr

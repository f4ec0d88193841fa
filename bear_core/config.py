"""BEARConfig: every constructor parameter of the reference BEAR, its default and its validation.

The reference parameters keep their names and defaults. A few keyword parameters are added, each
documented below under "extensions". `BEAR.__init__` lists the same parameters in the same order
with the same defaults (a test holds the two together). The reference's mutable defaults
(`augmentation=[]`, `encoder_params={}`) are the same empty values as immutable objects: `()` and
`NO_ENCODER_PARAMS`, a read-only empty mapping. Invalid values raise `ValueError` naming the
parameter; values whose feature is not built yet raise `NotImplementedError` naming it.
Torch-free: the `use_gpu` value is resolved to a device in `bear_core.device`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

QFuncType = Literal["mean", "qr", "iqn", "fqf"]
ImitatorType = Literal["regressor", "vae"]
MMDKernel = Literal["gaussian", "laplacian"]

SCALERS = ("pixel", "min_max", "standard")
DYNAMICS_TYPE = "probabilistic_ensemble"
ACTION_SCALERS = ("min_max",)
Q_FUNC_TYPES = ("mean", "qr", "iqn", "fqf")
NO_ENCODER_PARAMS: Mapping[str, Any] = MappingProxyType({})  # the reference's `encoder_params={}`
DEFAULT_HIDDEN_UNITS = (256, 256)  # vector encoders
DEFAULT_FILTERS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))  # pixel: (out_channels, kernel, stride)
DEFAULT_FEATURE_SIZE = 512  # pixel: size of the linear layer after the convolutions
VECTOR_ENCODER_KEYS = frozenset({"hidden_units", "activation"})
PIXEL_ENCODER_KEYS = frozenset({"filters", "feature_size"})
ACTIVATIONS = ("relu", "tanh", "swish")
AUGMENTATION_NAMES = (
    "single_amplitude_scaling",
    "multiple_amplitude_scaling",
    "random_shift",
    "cutout",
    "horizontal_flip",
    "vertical_flip",
    "random_rotation",
    "intensity",
    "color_jitter",
)


@dataclass(frozen=True)
class BEARConfig:
    # --- the reference parameters ---
    actor_learning_rate: float = 3e-4  # policy pi_phi
    critic_learning_rate: float = 3e-4  # Q ensemble
    imitator_learning_rate: float = 1e-3  # behaviour model pi_beta
    temp_learning_rate: float = 0.0  # SAC temperature T (0 freezes it); reference 3e-4
    alpha_learning_rate: float = 1e-3  # Lagrange multiplier alpha (0 freezes it)
    batch_size: int = 100
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak coefficient of the target critics
    n_critics: int = 2  # ensemble size K
    bootstrap: bool = False  # per-critic bootstrap masks
    share_encoder: bool = False  # one encoder for the whole ensemble
    update_actor_interval: int = 1  # actor/temperature/alpha/targets every N steps
    initial_temperature: float = 0.0  # 0: no entropy term (the paper's BEAR); reference 1.0
    initial_alpha: float = 1.0
    alpha_threshold: float = 0.05  # epsilon of the MMD constraint
    lam: float = 0.75  # target = lam * min_k Q_k + (1 - lam) * max_k Q_k
    n_action_samples: int = 4  # samples of pi(.|s') for the target and of pi, pi_beta for the MMD
    mmd_sigma: float = 20.0  # kernel bandwidth
    rl_start_epoch: int = 0  # epochs of warm-up (imitator + MMD-only actor) before RL updates
    eps: float = 1e-8  # Adam epsilon
    use_batch_norm: bool = False
    q_func_type: QFuncType = "mean"
    n_epochs: int = 1000
    use_gpu: bool | int | str | None = False
    # 'min_max' | 'standard' | 'pixel' (or a fitted scaler dict)
    scaler: str | Mapping[str, Any] | None = None
    augmentation: tuple[Any, ...] = ()  # names, {"type", "params"} dicts or objects
    n_augmentations: int = 1
    encoder_params: Mapping[str, Any] = field(default_factory=dict)
    dynamics: Any = None  # a dynamics model, or its {"type", "params"} spec: MOPO-style rollouts
    # --- extensions (keyword parameters the reference does not have) ---
    imitator_type: ImitatorType = (
        "regressor"  # L2 regressor (reference) or conditional VAE (paper code)
    )
    mmd_kernel: MMDKernel = "laplacian"  # as in the paper code; the reference's is 'gaussian'
    vae_kl_weight: float = 0.5  # KL weight of the VAE imitator's loss
    # map the data's action range to tanh's [-1, 1] and back (or a fitted scaler dict)
    action_scaler: str | Mapping[str, Any] | None = "min_max"
    n_steps_per_epoch: int | None = None  # None: one pass over the transitions per epoch
    seed: int = 0  # network initialisation, mini-batch sampling and sampled actions
    rollout_interval: int = 1000  # dynamics: gradient steps between model rollouts
    rollout_horizon: int = 5  # dynamics: steps per model rollout
    rollout_batch_size: int = 1000  # dynamics: dataset states each rollout starts from
    real_ratio: float = 0.5  # dynamics: share of each mini-batch drawn from the dataset
    reward_penalty: float = 0.0  # dynamics: MOPO's lambda, r - lambda * model uncertainty
    n_quantiles: int = 32  # quantiles (qr), sampled fractions (iqn), proposed fractions (fqf)
    embed_size: int = 64  # cosine embedding size of the fractions (iqn, fqf)

    def __post_init__(self) -> None:
        for name in (
            "actor_learning_rate",
            "critic_learning_rate",
            "imitator_learning_rate",
            "temp_learning_rate",
            "alpha_learning_rate",
            "vae_kl_weight",
        ):
            _check_real(name, getattr(self, name), low=0.0)
        for name in ("initial_alpha", "mmd_sigma", "eps"):
            _check_real(name, getattr(self, name), low=0.0, strict=True)
        _check_real("initial_temperature", self.initial_temperature, low=0.0)
        if self.initial_temperature == 0.0 and self.temp_learning_rate > 0.0:
            raise ValueError(
                "initial_temperature must be > 0 when temp_learning_rate > 0 (a temperature of "
                "0 means no entropy term and cannot be tuned)"
            )
        _check_real("gamma", self.gamma, low=0.0, high=1.0)
        _check_real("tau", self.tau, low=0.0, high=1.0)
        _check_real("lam", self.lam, low=0.0, high=1.0)
        _check_real("alpha_threshold", self.alpha_threshold)
        _check_real("real_ratio", self.real_ratio, low=0.0, high=1.0, strict=True)
        _check_real("reward_penalty", self.reward_penalty, low=0.0)
        for name in (
            "batch_size",
            "n_critics",
            "update_actor_interval",
            "n_action_samples",
            "n_epochs",
            "n_augmentations",
            "n_quantiles",
            "embed_size",
            "rollout_interval",
            "rollout_horizon",
            "rollout_batch_size",
        ):
            _check_int(name, getattr(self, name), low=1)
        _check_int("rl_start_epoch", self.rl_start_epoch, low=0)
        _check_int("seed", self.seed, low=0)
        if self.n_steps_per_epoch is not None:
            _check_int("n_steps_per_epoch", self.n_steps_per_epoch, low=1)
        for name in ("bootstrap", "share_encoder", "use_batch_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        _check_choice("imitator_type", self.imitator_type, ("regressor", "vae"))
        _check_choice("mmd_kernel", self.mmd_kernel, ("gaussian", "laplacian"))
        _check_choice("q_func_type", self.q_func_type, Q_FUNC_TYPES)
        self._check_scalers()
        self._check_encoder_params()
        self._check_use_gpu()
        object.__setattr__(self, "augmentation", _augmentation_specs(self.augmentation))
        self._check_dynamics()

    def _check_scalers(self) -> None:
        if isinstance(self.scaler, Mapping):
            _check_choice("scaler", self.scaler.get("type"), SCALERS)
        elif self.scaler is not None:
            _check_choice("scaler", self.scaler, SCALERS)
        if isinstance(self.action_scaler, Mapping):
            _check_choice("action_scaler", self.action_scaler.get("type"), ACTION_SCALERS)
        elif self.action_scaler is not None:
            _check_choice("action_scaler", self.action_scaler, ACTION_SCALERS)

    def _check_encoder_params(self) -> None:
        params = self.encoder_params
        if not isinstance(params, Mapping):
            raise ValueError(f"encoder_params must be a dict, got {params!r}")
        unknown = set(params) - VECTOR_ENCODER_KEYS - PIXEL_ENCODER_KEYS
        if unknown:
            raise ValueError(f"encoder_params has unknown keys {sorted(unknown)}")
        units = params.get("hidden_units", DEFAULT_HIDDEN_UNITS)
        if not _positive_ints(units):
            raise ValueError(
                f"encoder_params['hidden_units'] must be a non-empty list of positive ints, "
                f"got {units!r}"
            )
        filters = params.get("filters", DEFAULT_FILTERS)
        if (
            not isinstance(filters, list | tuple)
            or not filters
            or not all(
                isinstance(f, list | tuple) and len(f) == 3 and _positive_ints(f) for f in filters
            )
        ):
            raise ValueError(
                "encoder_params['filters'] must be a non-empty list of "
                f"(out_channels, kernel_size, stride) positive ints, got {filters!r}"
            )
        feature_size = params.get("feature_size", DEFAULT_FEATURE_SIZE)
        if not _positive_ints([feature_size]):
            raise ValueError(
                f"encoder_params['feature_size'] must be a positive int, got {feature_size!r}"
            )
        _check_choice("encoder_params['activation']", params.get("activation", "relu"), ACTIVATIONS)
        normalised = dict(params, hidden_units=list(units))
        if "filters" in params:
            normalised["filters"] = [list(f) for f in filters]
        object.__setattr__(self, "encoder_params", normalised)

    def _check_use_gpu(self) -> None:
        value = self.use_gpu
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, int) and value >= 0:
            return
        if isinstance(value, str) and (value == "cpu" or value.startswith("cuda")):
            return
        raise ValueError(
            f"use_gpu must be a bool, a CUDA device id or a device string, got {value!r}"
        )

    def _check_dynamics(self) -> None:
        spec = self.dynamics
        if spec is None or callable(getattr(spec, "rollout", None)):
            return
        if (
            not isinstance(spec, Mapping)
            or spec.get("type") != DYNAMICS_TYPE
            or not isinstance(spec.get("params", {}), Mapping)
            or set(spec) - {"type", "params"}
        ):
            raise ValueError(
                "dynamics must be a dynamics model (ProbabilisticEnsembleDynamics) or "
                f"{{'type': '{DYNAMICS_TYPE}', 'params': {{...}}}}, got {spec!r}"
            )
        object.__setattr__(
            self, "dynamics", {"type": DYNAMICS_TYPE, "params": dict(spec.get("params", {}))}
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able parameters (what get_params and params.json hold)."""
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        params["augmentation"] = [
            dict(a, params=dict(a["params"])) if isinstance(a, Mapping) else a
            for a in self.augmentation
        ]
        params["encoder_params"] = dict(self.encoder_params)
        return params

    def replace(self, **changes: Any) -> BEARConfig:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown BEAR parameter(s): {sorted(unknown)}")
        return dataclasses.replace(self, **changes)


_SCALERS = ("scaler", "action_scaler")


def changed_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The BEAR parameters of a params.json-style mapping whose value differs from BEARConfig's
    default. A fitted scaler (`{"type", "params"}`) counts, and is given, as its type; entries
    that are not BEAR parameters (shapes and the like) are left out."""
    changed = {}
    for name, default in BEARConfig().to_dict().items():
        if name not in params:
            continue
        value = params[name]
        as_set = value.get("type") if name in _SCALERS and isinstance(value, Mapping) else value
        if as_set != default:
            changed[name] = as_set
    return changed


def _check_real(
    name: str, value: Any, low: float | None = None, high: float | None = None, strict: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value <= low if strict else value < low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")


def _augmentation_specs(value: Any) -> tuple[Any, ...]:
    """Names, {"type", "params"} dicts and augmentation objects -> a tuple of names and dicts.
    Names are checked here; parameter values when the networks are built."""
    if isinstance(value, str | Mapping) or not isinstance(value, list | tuple):
        value = [value] if isinstance(value, str | Mapping) or hasattr(value, "to_dict") else value
    if not isinstance(value, list | tuple):
        raise ValueError(f"augmentation must be a list of augmentations, got {value!r}")
    specs: list[Any] = []
    for item in value:
        spec = item.to_dict() if hasattr(item, "to_dict") else item
        name = (
            spec
            if isinstance(spec, str)
            else spec.get("type")
            if isinstance(spec, Mapping)
            else None
        )
        if name not in AUGMENTATION_NAMES:
            raise ValueError(
                f"augmentation {item!r} is not one of {list(AUGMENTATION_NAMES)} "
                "(a name, a {'type', 'params'} dict or an augmentation object)"
            )
        if isinstance(spec, Mapping):
            params = spec.get("params") or {}
            if not isinstance(params, Mapping) or set(spec) - {"type", "params"}:
                raise ValueError(
                    f"augmentation {item!r} must be {{'type': name, 'params': {{...}}}}"
                )
            spec = {"type": name, "params": dict(params)}
        specs.append(spec)
    return tuple(specs)


def _positive_ints(values: Any) -> bool:
    return (
        isinstance(values, list | tuple)
        and len(values) > 0
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)
    )


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")

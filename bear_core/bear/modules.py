"""BEARModules: every network, learnable scalar and optimizer of one BEAR, in one place.

Checkpointing, train/eval modes and target updates are derived from the fields, so adding a
module cannot forget to save it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bear_core.augmentations import AugmentationPipeline
from bear_core.config import BEARConfig
from bear_core.networks.encoders import EncoderSpec
from bear_core.networks.imitators import RegressorImitator, VAEImitator
from bear_core.networks.policies import SquashedGaussianPolicy
from bear_core.networks.q_functions import CriticEnsemble
from bear_core.preprocessing.scalers import ActionScaler, ObservationScaler


@dataclass(frozen=True)
class TorchBatch:
    """A mini-batch on the training device, observations scaled and actions in [-1, 1].
    observations/next_observations [B, D], actions [B, A], rewards/terminals [B]."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor


class LogScalar(nn.Module):
    """One learnable value kept as its log (log T, log alpha); an initial 0 is log 0 = -inf
    (a temperature of 0: no entropy term, never tuned)."""

    def __init__(self, initial: float) -> None:
        super().__init__()
        log_initial = math.log(initial) if initial > 0 else -math.inf
        self.value = nn.Parameter(torch.tensor(log_initial, dtype=torch.float32))

    @torch.no_grad()
    def clamp_(self, low: float, high: float) -> None:
        self.value.clamp_(low, high)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Let gradients flow through `module` to its inputs without accumulating in its weights."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@dataclass(frozen=True)
class BEARModules:
    config: BEARConfig
    device: torch.device
    observation_shape: tuple[int, ...]
    action_size: int
    observation_scaler: ObservationScaler
    action_scaler: ActionScaler
    policy: SquashedGaussianPolicy
    imitator: RegressorImitator | VAEImitator
    critics: CriticEnsemble
    target_critics: CriticEnsemble
    log_temp: LogScalar
    log_alpha: LogScalar
    actor_optim: torch.optim.Optimizer
    critic_optim: torch.optim.Optimizer
    imitator_optim: torch.optim.Optimizer
    temp_optim: torch.optim.Optimizer
    alpha_optim: torch.optim.Optimizer
    generator: torch.Generator
    augmentation: AugmentationPipeline

    @classmethod
    def build(
        cls,
        config: BEARConfig,
        observation_shape: tuple[int, ...],
        action_size: int,
        device: torch.device,
    ) -> BEARModules:
        augmentation = AugmentationPipeline.from_spec(list(config.augmentation))
        augmentation.check_observation_shape(observation_shape)
        names = {a.name for a in augmentation.augmentations}
        if "color_jitter" in names and _kind(config.scaler) != "pixel":
            raise ValueError("augmentation 'color_jitter' needs scaler='pixel' (values in [0, 1])")
        torch.manual_seed(config.seed)
        spec = EncoderSpec.from_params(
            observation_shape, dict(config.encoder_params), config.use_batch_norm
        )
        policy = SquashedGaussianPolicy(spec, action_size)
        imitator: RegressorImitator | VAEImitator
        if config.imitator_type == "vae":
            imitator = VAEImitator(spec, action_size, kl_weight=config.vae_kl_weight)
        else:
            imitator = RegressorImitator(spec, action_size)
        critics = CriticEnsemble(
            config.q_func_type,
            config.n_critics,
            spec,
            action_size,
            share_encoder=config.share_encoder,
            n_quantiles=config.n_quantiles,
            embed_size=config.embed_size,
        )
        target_critics = copy.deepcopy(critics)
        target_critics.requires_grad_(False)
        log_temp, log_alpha = LogScalar(config.initial_temperature), LogScalar(config.initial_alpha)
        modules = [policy, imitator, critics, target_critics, log_temp, log_alpha]
        for module in modules:
            module.to(device)
        observation_scaler = ObservationScaler(_kind(config.scaler), observation_shape).to(device)
        action_scaler = ActionScaler(_kind(config.action_scaler), action_size).to(device)

        def adam(module: nn.Module, lr: float) -> torch.optim.Optimizer:
            fused = device.type in ("cpu", "cuda")
            return torch.optim.Adam(module.parameters(), lr=lr, eps=config.eps, fused=fused)

        generator = torch.Generator(device=device)
        generator.manual_seed(config.seed)
        return cls(
            config=config,
            device=device,
            observation_shape=tuple(observation_shape),
            action_size=action_size,
            observation_scaler=observation_scaler,
            action_scaler=action_scaler,
            policy=policy,
            imitator=imitator,
            critics=critics,
            target_critics=target_critics,
            log_temp=log_temp,
            log_alpha=log_alpha,
            actor_optim=adam(policy, config.actor_learning_rate),
            critic_optim=adam(critics, config.critic_learning_rate),
            imitator_optim=adam(imitator, config.imitator_learning_rate),
            temp_optim=adam(log_temp, config.temp_learning_rate),
            alpha_optim=adam(log_alpha, config.alpha_learning_rate),
            generator=generator,
            augmentation=augmentation,
        )

    # --- randomness ---------------------------------------------------------------------------

    def noise(self, *shape: int) -> torch.Tensor:
        """Standard normal noise from this model's own generator."""
        return torch.randn(shape, generator=self.generator, device=self.device)

    def bootstrap_masks(self, batch_size: int) -> torch.Tensor:
        """One {0, 1} mask per critic and transition, [K, B]."""
        shape = (self.critics.n_critics, batch_size)
        return torch.randint(0, 2, shape, generator=self.generator, device=self.device).float()

    @property
    def imitator_noise_size(self) -> int:
        return getattr(self.imitator, "noise_size", self.imitator.action_size)

    # --- targets and modes ----------------------------------------------------------------------

    @torch.no_grad()
    def update_targets(self, tau: float) -> None:
        torch._foreach_lerp_(self._target_pairs[1], self._target_pairs[0], tau)

    @functools.cached_property
    def _target_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every floating-point tensor of the critics (parameters and buffers, such as batch
        norm statistics) and its counterpart in the target critics."""
        online = [t for t in self.critics.state_dict().values() if t.is_floating_point()]
        target = [t for t in self.target_critics.state_dict().values() if t.is_floating_point()]
        return online, target

    def _networks(self) -> list[nn.Module]:
        return [self.policy, self.imitator, self.critics]

    def train(self) -> None:
        networks = self._networks()
        if all(module.training for module in networks) and not self.target_critics.training:
            return  # already set: skip walking every submodule on each update
        for module in networks:
            module.train()
        self.target_critics.eval()

    def eval(self) -> None:
        for module in [*self._networks(), self.target_critics]:
            module.eval()

    # --- checkpoints ----------------------------------------------------------------------------

    def _stateful(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), nn.Module | torch.optim.Optimizer)
        }

    def state_dict(self) -> dict[str, Any]:
        state = {name: obj.state_dict() for name, obj in self._stateful().items()}
        state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self._stateful()) - set(state)
        if missing:
            raise ValueError(f"checkpoint is missing {sorted(missing)}")
        for name, obj in self._stateful().items():
            obj.load_state_dict(state[name])
        if "generator" in state:
            self.generator.set_state(state["generator"].cpu())
        self.observation_scaler.fitted = True
        self.action_scaler.fitted = True


def _kind(spec: Any) -> str | None:
    if isinstance(spec, dict):
        return str(spec["type"])
    return spec

"""Observation encoders from `encoder_params`: an MLP for vector observations, a convolutional
stack for pixel observations [C, H, W] (stacked frames are channels), each optionally taking an
extra input (an action, a latent code) that joins after the observation features.

`build_encoder` makes one network; `build_ensemble_encoder` makes K of them evaluated together
(ensemble layers for vectors, grouped convolutions for pixels), returning [K, M, out_size].
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from bear_core.config import DEFAULT_FEATURE_SIZE, DEFAULT_FILTERS, DEFAULT_HIDDEN_UNITS
from bear_core.networks.kernels.fused_linear import Linear, ensemble_mlp
from bear_core.networks.kernels.fused_linear import mlp as mlp_kernel
from bear_core.networks.layers import Activation, EnsembleBatchNorm, EnsembleLinear, activate, mlp


@dataclass(frozen=True)
class EncoderSpec:
    observation_shape: tuple[int, ...]
    hidden_units: tuple[int, ...]
    filters: tuple[tuple[int, int, int], ...]
    feature_size: int
    activation: str
    use_batch_norm: bool

    @classmethod
    def from_params(
        cls, observation_shape: tuple[int, ...], params: dict[str, Any], use_batch_norm: bool
    ) -> EncoderSpec:
        return cls(
            observation_shape=tuple(observation_shape),
            hidden_units=tuple(params.get("hidden_units", DEFAULT_HIDDEN_UNITS)),
            filters=tuple(tuple(f) for f in params.get("filters", DEFAULT_FILTERS)),
            feature_size=int(params.get("feature_size", DEFAULT_FEATURE_SIZE)),
            activation=str(params.get("activation", "relu")),
            use_batch_norm=use_batch_norm,
        )

    @property
    def is_pixel(self) -> bool:
        return len(self.observation_shape) == 3

    @property
    def out_size(self) -> int:
        return self.feature_size if self.is_pixel else self.hidden_units[-1]


Heads = tuple[nn.Linear, ...]


def apply_heads(h: torch.Tensor, heads: Heads) -> torch.Tensor:
    """h itself without heads, else [head_1(h), ..., head_n(h)] concatenated on the last dim."""
    return torch.cat([head(h) for head in heads], dim=-1) if heads else h


class VectorEncoder(nn.Module):
    """MLP on [s, extra]: [M, D], [M, E] -> [M, H]."""

    def __init__(self, spec: EncoderSpec, extra_size: int = 0) -> None:
        super().__init__()
        in_size = spec.observation_shape[0] + extra_size
        self.mlp = mlp(in_size, list(spec.hidden_units), spec.activation, spec.use_batch_norm)
        self.fused = spec.activation == "relu" and not spec.use_batch_norm

    def forward(
        self, obs: torch.Tensor, extra: torch.Tensor | None = None, heads: Heads = ()
    ) -> torch.Tensor:
        """Features [M, H], or the heads' outputs side by side (one node with them)."""
        h = obs if extra is None else torch.cat([obs, extra], dim=-1)
        if not self.fused:
            return apply_heads(self.mlp(h), heads)
        layers = [m for m in self.mlp if isinstance(m, Linear)]  # each ReLU fused into its Linear
        weights, biases = [lin.weight for lin in layers], [lin.bias for lin in layers]
        relus = (True,) * len(layers)
        if heads:  # the heads as one more layer: its rows are all the heads' rows
            weights.append(torch.cat([head.weight for head in heads]))
            biases.append(torch.cat([head.bias for head in heads]))
            relus += (False,)
        return mlp_kernel(h, weights, biases, relus)


def conv_stack(spec: EncoderSpec, groups: int = 1) -> tuple[nn.Sequential, int]:
    """Conv -> activation (-> BatchNorm2d) per filter; returns it and the flattened size per
    group. With groups=K the stack holds K independent networks side by side."""
    channels, height, width = spec.observation_shape
    layers: list[nn.Module] = []
    in_channels = channels
    for out_channels, kernel, stride in spec.filters:
        layers += [
            nn.Conv2d(groups * in_channels, groups * out_channels, kernel, stride, groups=groups),
            Activation(spec.activation),
        ]
        if spec.use_batch_norm:
            layers.append(nn.BatchNorm2d(groups * out_channels))
        height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        if height < 1 or width < 1:
            raise ValueError(
                f"encoder_params['filters'] {list(spec.filters)} shrink a "
                f"{list(spec.observation_shape)} observation to nothing"
            )
        in_channels = out_channels
    return nn.Sequential(*layers), in_channels * height * width


class PixelEncoder(nn.Module):
    """Convolutions on s, then Linear on [flatten(conv(s)), extra]: -> [M, feature_size]."""

    def __init__(self, spec: EncoderSpec, extra_size: int = 0) -> None:
        super().__init__()
        self.convs, flat = conv_stack(spec)
        self.fc = Linear(flat + extra_size, spec.feature_size)
        self.activation = spec.activation
        self.norm = nn.BatchNorm1d(spec.feature_size) if spec.use_batch_norm else nn.Identity()

    def forward(
        self, obs: torch.Tensor, extra: torch.Tensor | None = None, heads: Heads = ()
    ) -> torch.Tensor:
        h = self.convs(obs).flatten(start_dim=1)
        if extra is not None:
            h = torch.cat([h, extra], dim=-1)
        return apply_heads(self.norm(activate(self.fc(h), self.activation)), heads)


class EnsembleVectorEncoder(nn.Module):
    """K separate MLPs on [s, extra] as ensemble layers (see kernels.fused_linear): -> [K, M, H]."""

    def __init__(self, n: int, spec: EncoderSpec, extra_size: int = 0) -> None:
        super().__init__()
        self.n, self.activation = n, spec.activation
        sizes = [spec.observation_shape[0] + extra_size, *spec.hidden_units]
        self.layers = nn.ModuleList(EnsembleLinear(n, i, o) for i, o in pairwise(sizes))
        self.norms = nn.ModuleList(
            EnsembleBatchNorm(n, o) if spec.use_batch_norm else nn.Identity()
            for o in spec.hidden_units
        )

        self.fused = spec.activation == "relu" and not spec.use_batch_norm

    def forward(
        self,
        obs: torch.Tensor,
        extra: torch.Tensor | None = None,
        head: EnsembleLinear | None = None,
    ) -> torch.Tensor:
        """Features [K, M, H], or head(features) when a head is given (one node with it)."""
        h = obs if extra is None else torch.cat([obs, extra], dim=-1)  # shared by all members
        if self.fused:
            layers = [*self.layers, *([head] if head is not None else [])]
            relus = (True,) * len(self.layers) + ((False,) if head is not None else ())
            return ensemble_mlp(h, [x.weight for x in layers], [x.bias for x in layers], relus)
        relu = self.activation == "relu"
        for layer, norm in zip(self.layers, self.norms, strict=True):
            h = norm(layer(h, relu=True) if relu else activate(layer(h), self.activation))
        return h if head is None else head(h)


class EnsemblePixelEncoder(nn.Module):
    """K separate convolutional encoders as grouped convolutions: -> [K, M, feature_size]."""

    def __init__(self, n: int, spec: EncoderSpec, extra_size: int = 0) -> None:
        super().__init__()
        self.n, self.activation = n, spec.activation
        self.convs, flat = conv_stack(spec, groups=n)
        self.fc = EnsembleLinear(n, flat + extra_size, spec.feature_size)
        self.norm = (
            EnsembleBatchNorm(n, spec.feature_size) if spec.use_batch_norm else nn.Identity()
        )

    def forward(
        self,
        obs: torch.Tensor,
        extra: torch.Tensor | None = None,
        head: EnsembleLinear | None = None,
    ) -> torch.Tensor:
        m = obs.shape[0]
        h = self.convs(obs.repeat(1, self.n, 1, 1))  # [M, K * C', h, w]
        h = h.reshape(m, self.n, -1).transpose(0, 1)  # [K, M, flat]
        if extra is not None:
            h = torch.cat([h, extra.unsqueeze(0).expand(self.n, -1, -1)], dim=-1)
        h = self.norm(activate(self.fc(h.contiguous()), self.activation))
        return h if head is None else head(h)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


class SharedEncoder(nn.Module):
    """One encoder for all K members, its gradient divided by K: -> [K, M, out] (a view)."""

    def __init__(self, n: int, spec: EncoderSpec, extra_size: int = 0) -> None:
        super().__init__()
        self.n = n
        self.encoder = build_encoder(spec, extra_size)

    def forward(
        self,
        obs: torch.Tensor,
        extra: torch.Tensor | None = None,
        head: EnsembleLinear | None = None,
    ) -> torch.Tensor:
        h = _ScaleGrad.apply(self.encoder(obs, extra), 1.0 / self.n)
        h = h.unsqueeze(0).expand(self.n, -1, -1)
        return h if head is None else head(h)


def build_encoder(spec: EncoderSpec, extra_size: int = 0) -> nn.Module:
    return PixelEncoder(spec, extra_size) if spec.is_pixel else VectorEncoder(spec, extra_size)


def build_ensemble_encoder(
    n: int, spec: EncoderSpec, extra_size: int = 0, shared: bool = False
) -> nn.Module:
    if shared:
        return SharedEncoder(n, spec, extra_size)
    if spec.is_pixel:
        return EnsemblePixelEncoder(n, spec, extra_size)
    return EnsembleVectorEncoder(n, spec, extra_size)

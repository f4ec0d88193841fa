"""Observation encoders from `encoder_params`: an MLP for vector observations, a convolutional
stack for pixel observations [C, H, W] (stacked frames are channels), each optionally taking an
extra input (an action, a latent code) that joins after the observation features, and optionally
ending in an output layer (`output_sizes`: heads side by side, no activation), so that a network
and its heads are one MLP.

`build_encoder` makes one network; `build_ensemble_encoder` makes K of them evaluated together
(ensemble layers for vectors, grouped convolutions for pixels), returning [K, M, out]. Their
linear layers live in `layers.MLP` / `layers.EnsembleMLP`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bear_core.config import DEFAULT_FEATURE_SIZE, DEFAULT_FILTERS, DEFAULT_HIDDEN_UNITS
from bear_core.networks.layers import MLP, Activation, EnsembleLinear, EnsembleMLP


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


class VectorEncoder(nn.Module):
    """MLP on [s, extra]: [M, D], [M, E] -> [M, H] (or [M, sum(output_sizes)])."""

    def __init__(
        self, spec: EncoderSpec, extra_size: int = 0, output_sizes: Sequence[int] = ()
    ) -> None:
        super().__init__()
        in_size = spec.observation_shape[0] + extra_size
        self.mlp = MLP(
            in_size, spec.hidden_units, spec.activation, spec.use_batch_norm, output_sizes
        )

    def forward(self, obs: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.mlp(obs if extra is None else torch.cat([obs, extra], dim=-1))


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
    """Convolutions on s, then an MLP (one hidden layer of feature_size) on
    [flatten(conv(s)), extra]: -> [M, feature_size] (or [M, sum(output_sizes)])."""

    def __init__(
        self, spec: EncoderSpec, extra_size: int = 0, output_sizes: Sequence[int] = ()
    ) -> None:
        super().__init__()
        self.convs, flat = conv_stack(spec)
        self.mlp = MLP(
            flat + extra_size,
            (spec.feature_size,),
            spec.activation,
            spec.use_batch_norm,
            output_sizes,
        )

    def forward(self, obs: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = self.convs(obs).flatten(start_dim=1)
        if extra is not None:
            h = torch.cat([h, extra], dim=-1)
        return self.mlp(h)


class EnsembleVectorEncoder(nn.Module):
    """K separate MLPs on [s, extra] as ensemble layers: -> [K, M, H] (or
    [K, M, sum(output_sizes)])."""

    def __init__(
        self, n: int, spec: EncoderSpec, extra_size: int = 0, output_sizes: Sequence[int] = ()
    ) -> None:
        super().__init__()
        self.n = n
        in_size = spec.observation_shape[0] + extra_size
        self.mlp = EnsembleMLP(
            n, in_size, spec.hidden_units, spec.activation, spec.use_batch_norm, output_sizes
        )

    def forward(self, obs: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = obs if extra is None else torch.cat([obs, extra], dim=-1)  # shared by all members
        return self.mlp(h)


class EnsemblePixelEncoder(nn.Module):
    """K separate convolutional encoders as grouped convolutions, then K MLPs as ensemble layers:
    -> [K, M, feature_size] (or [K, M, sum(output_sizes)])."""

    def __init__(
        self, n: int, spec: EncoderSpec, extra_size: int = 0, output_sizes: Sequence[int] = ()
    ) -> None:
        super().__init__()
        self.n = n
        self.convs, flat = conv_stack(spec, groups=n)
        self.mlp = EnsembleMLP(
            n,
            flat + extra_size,
            (spec.feature_size,),
            spec.activation,
            spec.use_batch_norm,
            output_sizes,
        )

    def forward(self, obs: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        m = obs.shape[0]
        h = self.convs(obs.repeat(1, self.n, 1, 1))  # [M, K * C', h, w]
        h = h.reshape(m, self.n, -1).transpose(0, 1)  # [K, M, flat]
        if extra is not None:
            h = torch.cat([h, extra.unsqueeze(0).expand(self.n, -1, -1)], dim=-1)
        return self.mlp(h.contiguous())


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


class SharedEncoder(nn.Module):
    """One encoder for all K members, its gradient divided by K: -> [K, M, out] (a view); with
    `output_sizes`, each member's own output layer on top: -> [K, M, sum(output_sizes)]."""

    def __init__(
        self, n: int, spec: EncoderSpec, extra_size: int = 0, output_sizes: Sequence[int] = ()
    ) -> None:
        super().__init__()
        self.n = n
        self.encoder = build_encoder(spec, extra_size)
        self.head = EnsembleLinear(n, spec.out_size, sum(output_sizes)) if output_sizes else None

    def forward(self, obs: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = _ScaleGrad.apply(self.encoder(obs, extra), 1.0 / self.n)
        h = h.unsqueeze(0).expand(self.n, -1, -1)
        return h if self.head is None else self.head(h)


def build_encoder(
    spec: EncoderSpec, extra_size: int = 0, output_sizes: Sequence[int] = ()
) -> nn.Module:
    """One network: [M, ...], [M, extra_size] -> [M, spec.out_size or sum(output_sizes)]."""
    if spec.is_pixel:
        return PixelEncoder(spec, extra_size, output_sizes)
    return VectorEncoder(spec, extra_size, output_sizes)


def build_ensemble_encoder(
    n: int,
    spec: EncoderSpec,
    extra_size: int = 0,
    shared: bool = False,
    output_sizes: Sequence[int] = (),
) -> nn.Module:
    """K networks: [M, ...], [M, extra_size] -> [K, M, spec.out_size or sum(output_sizes)]."""
    if shared:
        return SharedEncoder(n, spec, extra_size, output_sizes)
    if spec.is_pixel:
        return EnsemblePixelEncoder(n, spec, extra_size, output_sizes)
    return EnsembleVectorEncoder(n, spec, extra_size, output_sizes)

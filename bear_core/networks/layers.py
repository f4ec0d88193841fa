"""Layer building blocks of every network: activations, the plain MLP stack, and the ensemble
layers the critics and dynamics models are built from (K members evaluated together)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bear_core.networks.kernels.fused_linear import Linear, ensemble_linear


class Activation(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate(x, self.name)


def mlp(
    in_size: int, hidden_units: list[int], activation: str, use_batch_norm: bool
) -> nn.Sequential:
    """Linear -> activation (-> BatchNorm) for every hidden layer; output size hidden_units[-1]."""
    layers: list[nn.Module] = []
    for units in hidden_units:
        layers += [Linear(in_size, units), Activation(activation)]
        if use_batch_norm:
            layers.append(nn.BatchNorm1d(units))
        in_size = units
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """K independent linear layers: [K, M, in] (or one [M, in] for all) -> [K, M, out]."""

    def __init__(self, n: int, in_size: int, out_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_size, out_size))
        self.bias = nn.Parameter(torch.empty(n, 1, out_size))
        bound = 1.0 / math.sqrt(in_size)  # nn.Linear's default initialisation, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        """x W + b, followed by ReLU when `relu` (fused into the product where possible)."""
        return ensemble_linear(x, self.weight, self.bias, relu)


class EnsembleBatchNorm(nn.Module):
    """BatchNorm1d per member and feature of a [K, M, H] tensor."""

    def __init__(self, n: int, size: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n * size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b, h = x.shape
        y = self.norm(x.transpose(0, 1).reshape(b, k * h))
        return y.reshape(b, k, h).transpose(0, 1)


def activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    """The activation, in place where autograd allows it (relu, tanh keep only their output)."""
    if activation == "relu":
        return torch.relu_(x)
    if activation == "tanh":
        return torch.tanh_(x)
    return F.silu(x)

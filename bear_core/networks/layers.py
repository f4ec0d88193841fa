"""Layer building blocks of every network: activations, the ensemble layers the critics and
dynamics models are built from (K members evaluated together), and the two MLP modules every
vector network hands its linear chain to: `MLP` (one network) and `EnsembleMLP` (K networks
side by side), each an nn.Sequential of its layers, optionally ending in an output layer that
holds the network's heads side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Activation(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate(x, self.name)

    def extra_repr(self) -> str:
        return self.name


def activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    """The activation, in place where autograd allows it (relu, tanh keep only their output)."""
    if activation == "relu":
        return torch.relu_(x)
    if activation == "tanh":
        return torch.tanh_(x)
    return F.silu(x)


class EnsembleLinear(nn.Module):
    """K independent linear layers: [K, M, in] (or one [M, in] for all) -> [K, M, out]."""

    def __init__(
        self, n: int, in_size: int, out_size: int, device: torch.device | str | None = None
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_size, out_size, device=device))
        self.bias = nn.Parameter(torch.empty(n, 1, out_size, device=device))
        bound = 1.0 / math.sqrt(in_size)  # nn.Linear's default initialisation, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x W + b."""
        if x.dim() == 2:
            x = x.expand(len(self.weight), -1, -1)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleBatchNorm(nn.Module):
    """BatchNorm1d per member and feature of a [K, M, H] tensor."""

    def __init__(self, n: int, size: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n * size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b, h = x.shape
        y = self.norm(x.transpose(0, 1).reshape(b, k * h))
        return y.reshape(b, k, h).transpose(0, 1)


class MLP(nn.Sequential):
    """Linear -> activation (-> BatchNorm1d) per hidden layer, then, with `output_sizes`, one
    output Linear without activation: [..., in] -> [..., hidden_units[-1] or sum(output_sizes)].

    `output_sizes` lists heads that share the output layer side by side (a policy's mean and
    log-std); each head's rows are initialised as its own nn.Linear would be, in order.
    """

    def __init__(
        self,
        in_size: int,
        hidden_units: Sequence[int],
        activation: str = "relu",
        use_batch_norm: bool = False,
        output_sizes: Sequence[int] = (),
    ) -> None:
        layers: list[nn.Module] = []
        for units in hidden_units:
            layers += [nn.Linear(in_size, units), Activation(activation)]
            if use_batch_norm:
                layers.append(nn.BatchNorm1d(units))
            in_size = units
        if output_sizes:
            layers.append(_output_layer(nn.Linear, output_sizes, in_size, sum(output_sizes)))
        super().__init__(*layers)


class EnsembleMLP(nn.Sequential):
    """K separate MLPs of `MLP`'s form as ensemble layers: [K, M, in] (or [M, in], the same input
    for every member) -> [K, M, hidden_units[-1] or sum(output_sizes)]."""

    def __init__(
        self,
        n: int,
        in_size: int,
        hidden_units: Sequence[int],
        activation: str = "relu",
        use_batch_norm: bool = False,
        output_sizes: Sequence[int] = (),
    ) -> None:
        layers: list[nn.Module] = []
        for units in hidden_units:
            layers += [EnsembleLinear(n, in_size, units), Activation(activation)]
            if use_batch_norm:
                layers.append(EnsembleBatchNorm(n, units))
            in_size = units
        if output_sizes:
            layers.append(
                _output_layer(EnsembleLinear, output_sizes, n, in_size, sum(output_sizes))
            )
        super().__init__(*layers)


def _output_layer(
    layer_type: type[nn.Linear] | type[EnsembleLinear], sizes: Sequence[int], *args: int
) -> nn.Module:
    """An output layer holding heads of `sizes` side by side. With several heads, each head's
    rows are initialised as the layer type would initialise a layer of its own, head after
    head, weight then bias: the values separate heads built in that order would get."""
    if len(sizes) < 2:
        return layer_type(*args)
    layer = nn.utils.skip_init(layer_type, *args)  # no draws here: the heads draw below
    row_dim = 0 if layer_type is nn.Linear else -1  # [out, in], or [K, in, out]
    in_size = layer.weight.shape[1] if row_dim == 0 else layer.weight.shape[-2]
    bound = 1.0 / math.sqrt(in_size)
    start = 0
    with torch.no_grad():
        for size in sizes:
            rows = layer.weight.narrow(row_dim, start, size)
            if row_dim == 0:
                nn.init.kaiming_uniform_(rows, a=math.sqrt(5))  # nn.Linear.reset_parameters
            else:
                rows.uniform_(-bound, bound)
            layer.bias.narrow(-1, start, size).uniform_(-bound, bound)
            start += size
    return layer

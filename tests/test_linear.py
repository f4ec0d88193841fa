"""The layer building blocks: ensemble layers are K independent nn.Linear layers, ensemble MLPs
K independent MLPs, and heads sharing an output layer start as separate layers would."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bear_core.networks.layers import MLP, EnsembleLinear, EnsembleMLP


@pytest.mark.parametrize("shared", [False, True], ids=["per-member", "shared-input"])
def test_ensemble_linear_is_k_linear_layers(shared: bool) -> None:
    torch.manual_seed(0)
    k = 3
    layer = EnsembleLinear(k, 23, 64)
    x = torch.randn(96, 23) if shared else torch.randn(k, 96, 23)
    y = layer(x)
    assert y.shape == (k, 96, 64)
    for member in range(k):
        x_k = x if shared else x[member]
        want = F.linear(x_k, layer.weight[member].t(), layer.bias[member, 0])
        torch.testing.assert_close(y[member], want)


def test_ensemble_mlp_is_k_mlps() -> None:
    torch.manual_seed(0)
    k = 3
    ensemble = EnsembleMLP(k, 7, (32, 32), output_sizes=(2,))
    x = torch.randn(50, 7)
    y = ensemble(x)
    for member in range(k):
        single = MLP(7, (32, 32), output_sizes=(2,))
        linears = [m for m in single if isinstance(m, nn.Linear)]
        members = [m for m in ensemble if isinstance(m, EnsembleLinear)]
        with torch.no_grad():
            for lin, ens in zip(linears, members, strict=True):
                lin.weight.copy_(ens.weight[member].t())
                lin.bias.copy_(ens.bias[member, 0])
        torch.testing.assert_close(y[member], single(x))


def test_batch_norm_sits_after_each_hidden_activation() -> None:
    net = MLP(5, (16, 16), "tanh", use_batch_norm=True, output_sizes=(3,))
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "Activation", "BatchNorm1d"] * 2 + ["Linear"]


def test_heads_of_the_output_layer_start_as_separate_layers_would() -> None:
    """A policy's mean and log-std heads share one output layer; built in order, they get the
    values two nn.Linear heads built after the hidden layers get."""
    torch.manual_seed(0)
    net = MLP(5, (16,), output_sizes=(2, 3))
    torch.manual_seed(0)
    hidden, first, second = nn.Linear(5, 16), nn.Linear(16, 2), nn.Linear(16, 3)
    torch.testing.assert_close(net[0].weight, hidden.weight, rtol=0, atol=0)
    torch.testing.assert_close(net[2].weight, torch.cat([first.weight, second.weight]))
    torch.testing.assert_close(net[2].bias, torch.cat([first.bias, second.bias]))

"""The CPU products (kernels.fused_linear) give what torch's own ops give, gradients included,
and the MLP modules run a Linear/ReLU chain as one node and anything else layer by layer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import pytest
import torch
from torch import nn

from bear_core.networks import kernels
from bear_core.networks.kernels import fused_linear as fast
from bear_core.networks.kernels.fused_linear import (
    Linear,
    ensemble_linear,
    ensemble_mlp,
    linear,
    mlp,
)
from bear_core.networks.layers import MLP, EnsembleMLP

ONEDNN = pytest.mark.skipif(not kernels.ONEDNN_AVAILABLE, reason="no oneDNN linear on this CPU")


@pytest.fixture(autouse=True)
def _fast_kernels() -> Iterator[None]:
    """These tests compare the fast kernels with torch's ops, whatever BEAR_KERNELS says."""
    with kernels.use("fast"):
        yield


def _outputs_and_grads(fn, inputs: list[torch.Tensor], portable: bool) -> list[torch.Tensor]:
    for t in inputs:
        t.grad = None
    with kernels.use("portable" if portable else "fast"):
        y = fn()
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    (y * weights).sum().backward()
    return [y.detach().clone()] + [t.grad.clone() for t in inputs]


@pytest.mark.parametrize("shared", [False, True], ids=["per-member", "shared-input"])
@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize(("rows", "in_size", "out_size"), [(256, 23, 256), (96, 64, 64), (5, 7, 1)])
def test_ensemble_linear_matches_baddbmm(
    shared: bool, relu: bool, rows: int, in_size: int, out_size: int
) -> None:
    torch.manual_seed(0)
    k = 3
    x = torch.randn((rows, in_size) if shared else (k, rows, in_size), requires_grad=True)
    w = torch.randn(k, in_size, out_size, requires_grad=True)
    b = torch.randn(k, 1, out_size, requires_grad=True)

    def run() -> torch.Tensor:
        return ensemble_linear(x, w, b, relu)

    got = _outputs_and_grads(run, [x, w, b], portable=False)
    want = _outputs_and_grads(run, [x, w, b], portable=True)
    for g, e in zip(got, want, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5 * float(e.abs().max()))


@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize("shape", [(256, 64), (4, 32, 64), (3, 64)])
def test_linear_matches_f_linear(shape: tuple[int, ...], relu: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=True)
    layer = Linear(64, 48)

    def run() -> torch.Tensor:
        return linear(x, layer.weight, layer.bias, relu)

    got = _outputs_and_grads(run, [x, layer.weight, layer.bias], portable=False)
    want = _outputs_and_grads(run, [x, layer.weight, layer.bias], portable=True)
    for g, e in zip(got, want, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5 * float(e.abs().max()))


def test_backward_formulas_pass_gradcheck() -> None:
    """The hand-written backward passes, checked numerically in float64."""
    torch.manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    xs = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 1, 4, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    b2 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    for relu in (False, True):
        assert torch.autograd.gradcheck(fast._MLP.apply, (x, (relu,), w2, b2))
        for inputs in (x, xs):
            assert torch.autograd.gradcheck(fast._EnsembleMLP.apply, (inputs, (relu,), w, b))


@ONEDNN
def test_cpu_training_takes_the_onednn_path_and_export_does_not() -> None:
    x = torch.randn(64, 64)
    layer = Linear(64, 64)
    assert type(linear(x, layer.weight, layer.bias).grad_fn).__name__ == "_MLPBackward"
    w = torch.randn(2, 64, 64, requires_grad=True)
    b = torch.zeros(2, 1, 64, requires_grad=True)
    assert type(ensemble_linear(x, w, b).grad_fn).__name__ == "_EnsembleMLPBackward"
    with kernels.portable():
        assert type(layer(x).grad_fn).__name__ == "AddmmBackward0"
    traced = torch.jit.trace(layer.eval(), x)
    assert "mkldnn" not in str(traced.graph)
    assert "aten::linear" in str(traced.graph)


def test_narrow_products_stay_on_torch() -> None:
    """Below ONEDNN_MIN_DIM rows or ONEDNN_MIN_OUT outputs a plain nn.Linear autograd node is
    kept (no custom node)."""
    narrow = Linear(64, fast.ONEDNN_MIN_OUT - 1)
    assert type(narrow(torch.randn(64, 64)).grad_fn).__name__ == "AddmmBackward0"
    layer = Linear(64, 64)
    assert (
        type(layer(torch.randn(fast.ONEDNN_MIN_DIM - 1, 64)).grad_fn).__name__ == "AddmmBackward0"
    )


def _close(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    for g, e in zip(got, want, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5 * float(e.abs().max()))


@pytest.mark.parametrize("relus", [(True, True, False), (True, True, True)], ids=["head", "relu"])
@pytest.mark.parametrize("sizes", [(23, 256, 256, 12), (7, 32, 48, 1)], ids=["wide", "narrow"])
def test_mlp_matches_layer_by_layer(sizes: tuple[int, ...], relus: tuple[bool, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(128, sizes[0], requires_grad=True)
    layers = [Linear(i, o) for i, o in pairwise(sizes)]
    weights, biases = [lin.weight for lin in layers], [lin.bias for lin in layers]

    def run() -> torch.Tensor:
        return mlp(x, weights, biases, relus)

    inputs = [x, *weights, *biases]
    _close(_outputs_and_grads(run, inputs, False), _outputs_and_grads(run, inputs, True))


@pytest.mark.parametrize("shared", [False, True], ids=["per-member", "shared-input"])
@pytest.mark.parametrize("relus", [(True, True, False), (True, True, True)], ids=["head", "relu"])
def test_ensemble_mlp_matches_layer_by_layer(shared: bool, relus: tuple[bool, ...]) -> None:
    torch.manual_seed(0)
    k, sizes = 3, (23, 64, 64, 1)
    x = torch.randn((96, 23) if shared else (k, 96, 23), requires_grad=True)
    pairs = list(pairwise(sizes))
    weights = [torch.randn(k, i, o, requires_grad=True) for i, o in pairs]
    biases = [torch.randn(k, 1, o, requires_grad=True) for _, o in pairs]

    def run() -> torch.Tensor:
        return ensemble_mlp(x, weights, biases, relus)

    inputs = [x, *weights, *biases]
    _close(_outputs_and_grads(run, inputs, False), _outputs_and_grads(run, inputs, True))


def test_frozen_networks_pass_gradients_to_their_inputs_only() -> None:
    """The actor's path through the critics: weights without grad, the input with it."""
    torch.manual_seed(0)
    x = torch.randn(64, 23, requires_grad=True)
    weights = [torch.randn(2, 23, 64), torch.randn(2, 64, 1)]
    biases = [torch.randn(2, 1, 64), torch.randn(2, 1, 1)]

    def run() -> torch.Tensor:
        return ensemble_mlp(x, weights, biases, (True, False))

    _close(_outputs_and_grads(run, [x], False), _outputs_and_grads(run, [x], True))
    assert all(w.grad is None for w in weights)


def test_network_backward_formulas_pass_gradcheck() -> None:
    torch.manual_seed(0)
    f64 = {"dtype": torch.float64, "requires_grad": True}
    x, xs = torch.randn(6, 5, **f64), torch.randn(2, 6, 5, **f64)
    single = (torch.randn(4, 5, **f64), torch.randn(4, **f64))
    single += (torch.randn(3, 4, **f64), torch.randn(3, **f64))
    members = (torch.randn(2, 5, 4, **f64), torch.randn(2, 1, 4, **f64))
    members += (torch.randn(2, 4, 3, **f64), torch.randn(2, 1, 3, **f64))
    for relus in ((True, False), (True, True)):
        assert torch.autograd.gradcheck(fast._MLP.apply, (x, relus, *single))
        for inputs in (x, xs):
            assert torch.autograd.gradcheck(fast._EnsembleMLP.apply, (inputs, relus, *members))


@ONEDNN
def test_training_networks_are_one_node_each() -> None:
    x = torch.randn(64, 64)
    weights = [torch.randn(64, 64, requires_grad=True)] * 2
    biases = [torch.zeros(64, requires_grad=True)] * 2
    assert type(mlp(x, weights, biases, (True, True)).grad_fn).__name__ == "_MLPBackward"
    members = [torch.randn(2, 64, 64, requires_grad=True)] * 2
    member_biases = [torch.zeros(2, 1, 64, requires_grad=True)] * 2
    y = ensemble_mlp(x, members, member_biases, (True, False))
    assert type(y.grad_fn).__name__ == "_EnsembleMLPBackward"
    with kernels.portable():
        assert "Addmm" in type(mlp(x, weights, biases, (True, False)).grad_fn).__name__


def test_linear_without_bias_matches_f_linear() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 32, requires_grad=True)
    weight = torch.randn(48, 32, requires_grad=True)

    def run() -> torch.Tensor:
        return linear(x, weight, None, relu=True)

    inputs = [x, weight]
    _close(_outputs_and_grads(run, inputs, False), _outputs_and_grads(run, inputs, True))


def test_plain_outputs_may_be_activated_in_place() -> None:
    """Encoders apply their activation in place on a layer's output (`activate`); the nodes
    must not keep an output they only return."""
    torch.manual_seed(0)
    x = torch.randn(64, 32, requires_grad=True)
    w, b = torch.randn(48, 32, requires_grad=True), torch.randn(48, requires_grad=True)
    ws, bs = torch.randn(2, 32, 48, requires_grad=True), torch.randn(2, 1, 48, requires_grad=True)
    for layer in (lambda: linear(x, w, b), lambda: ensemble_linear(x, ws, bs)):

        def run(layer=layer) -> torch.Tensor:
            return torch.tanh_(layer())

        _close(_outputs_and_grads(run, [x], False), _outputs_and_grads(run, [x], True))


# --- the MLP modules: one fused node for Linear/ReLU chains, layer by layer otherwise ----------


def _spy_on_nodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every whole-network node the MLP modules start."""
    calls: list[str] = []
    for name in ("mlp", "ensemble_mlp"):
        real = getattr(fast, name)

        def spy(*args: Any, _real: Any = real, _name: str = name) -> torch.Tensor:
            calls.append(_name)
            return _real(*args)

        monkeypatch.setattr(fast, name, spy)
    return calls


def _networks(ensemble: bool) -> tuple[nn.Sequential, torch.Tensor]:
    torch.manual_seed(0)
    if ensemble:
        net: nn.Sequential = EnsembleMLP(3, 23, (64, 64), output_sizes=(1,))
        return net, torch.randn(96, 23, requires_grad=True)
    return MLP(23, (64, 64), output_sizes=(6, 6)), torch.randn(96, 23, requires_grad=True)


def _run_network(net: nn.Module, x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    torch.manual_seed(7)  # the same dropout masks in both modes
    return _outputs_and_grads(lambda: net(x), [x, *net.parameters()], portable=mode == "portable")


@pytest.mark.parametrize("ensemble", [False, True], ids=["mlp", "ensemble"])
def test_linear_relu_chains_run_as_one_node_on_the_fast_kernels(
    ensemble: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, x = _networks(ensemble)
    calls = _spy_on_nodes(monkeypatch)
    portable = _run_network(net, x, "portable")
    assert calls == []
    _close(_run_network(net, x, "fast"), portable)
    assert calls == ["ensemble_mlp" if ensemble else "mlp"]


EXTRA_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "layer_norm": lambda: nn.LayerNorm(64),
    "dropout": lambda: nn.Dropout(0.5),
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


@pytest.mark.parametrize("extra", sorted(EXTRA_LAYERS))
@pytest.mark.parametrize("ensemble", [False, True], ids=["mlp", "ensemble"])
def test_any_other_layer_sends_the_chain_layer_by_layer_and_is_never_skipped(
    ensemble: bool, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layer the fused node cannot run, inserted after construction, is read off the module
    at call time: fast and portable agree, no whole-network node starts, and the layer acts."""
    net, x = _networks(ensemble)
    without = _run_network(net, x, "portable")[0]
    net.insert(2, EXTRA_LAYERS[extra]())
    calls = _spy_on_nodes(monkeypatch)
    got, want = _run_network(net, x, "fast"), _run_network(net, x, "portable")
    _close(got, want)
    assert calls == []
    if extra != "identity":
        assert not torch.allclose(got[0], without)


def test_a_forward_hook_sends_the_chain_layer_by_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = _networks(ensemble=False)
    seen: list[torch.Size] = []
    net[2].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    calls = _spy_on_nodes(monkeypatch)
    _run_network(net, x, "fast")
    assert calls == [] and seen == [torch.Size([96, 64])]


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

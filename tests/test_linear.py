"""bear_core.linear: the CPU products give what torch's own ops give, gradients included."""

from __future__ import annotations

import pytest
import torch

from bear_core import linear as fast
from bear_core.linear import Linear, ensemble_linear, linear, portable_kernels

ONEDNN = pytest.mark.skipif(not fast._ONEDNN_AVAILABLE, reason="no oneDNN linear on this CPU")


def _outputs_and_grads(fn, inputs: list[torch.Tensor], portable: bool) -> list[torch.Tensor]:
    for t in inputs:
        t.grad = None
    if portable:
        with portable_kernels():
            y = fn()
    else:
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
        assert torch.autograd.gradcheck(fast._Linear.apply, (x, w2, b2, relu))
        for inputs in (x, xs):
            assert torch.autograd.gradcheck(fast._EnsembleLinear.apply, (inputs, w, b, relu))


@ONEDNN
def test_cpu_training_takes_the_onednn_path_and_export_does_not() -> None:
    x = torch.randn(64, 64)
    layer = Linear(64, 64)
    assert type(linear(x, layer.weight, layer.bias).grad_fn).__name__ == "_LinearBackward"
    w = torch.randn(2, 64, 64, requires_grad=True)
    b = torch.zeros(2, 1, 64, requires_grad=True)
    assert type(ensemble_linear(x, w, b).grad_fn).__name__ == "_EnsembleLinearBackward"
    with portable_kernels():
        assert type(layer(x).grad_fn).__name__ == "AddmmBackward0"
    traced = torch.jit.trace(layer.eval(), x)
    assert "mkldnn" not in str(traced.graph)
    assert "aten::linear" in str(traced.graph)


def test_narrow_products_stay_on_torch() -> None:
    """Below ONEDNN_MIN_DIM a plain nn.Linear autograd node is kept (no custom node)."""
    layer = Linear(64, fast.ONEDNN_MIN_DIM - 1)
    assert type(layer(torch.randn(8, 64)).grad_fn).__name__ == "AddmmBackward0"

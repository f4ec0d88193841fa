"""kernels.fused_adam: lean Adam steps are torch's optimizer steps, bit for bit, state included."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from bear_core.networks import kernels
from bear_core.networks.kernels import fused_adam


@pytest.fixture(autouse=True)
def _fast_kernels() -> Iterator[None]:
    """The lean step is the `fast` kernels' path, whatever BEAR_KERNELS says."""
    with kernels.use("fast"):
        yield


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))


def _train(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    lean: bool,
    steps: int = 6,
    frozen_bias: bool = False,
) -> None:
    """A few steps on seeded data; optionally the last bias gets no gradient."""
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 5, generator=generator)
        fused_adam.zero_grad(optimizer) if lean else optimizer.zero_grad(set_to_none=True)
        net(x).pow(2).mean().backward()
        if frozen_bias:
            net[2].bias.grad = None
        fused_adam.step(optimizer) if lean else optimizer.step()


def _same(a: nn.Module, b: nn.Module, oa: torch.optim.Optimizer, ob: torch.optim.Optimizer) -> None:
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for key in sa:
        for name in sa[key]:
            assert torch.equal(sa[key][name], sb[key][name]), (key, name)


ADAMS: dict[str, Callable[[nn.Module], torch.optim.Optimizer]] = {
    "fused": lambda net: torch.optim.Adam(net.parameters(), lr=3e-4, eps=1e-8, fused=True),
    "fused_weight_decay": lambda net: torch.optim.Adam(
        net.parameters(), lr=1e-3, weight_decay=1e-2, betas=(0.8, 0.99), fused=True
    ),
    "amsgrad": lambda net: torch.optim.Adam(net.parameters(), amsgrad=True, fused=True),
    "foreach": lambda net: torch.optim.Adam(net.parameters(), foreach=True),
    "sgd": lambda net: torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
}


@pytest.mark.parametrize("kind", sorted(ADAMS))
@pytest.mark.parametrize("frozen_bias", [False, True])
def test_lean_step_equals_torch_step(kind: str, frozen_bias: bool) -> None:
    reference, lean = _net(), _net()
    ref_opt, lean_opt = ADAMS[kind](reference), ADAMS[kind](lean)
    _train(reference, ref_opt, lean=False, frozen_bias=frozen_bias)
    _train(lean, lean_opt, lean=True, frozen_bias=frozen_bias)
    _same(reference, lean, ref_opt, lean_opt)
    if frozen_bias:
        assert not lean_opt.state[lean[2].bias]  # never stepped, as torch leaves it


def test_lean_step_takes_the_fused_kernel_after_the_first_step(monkeypatch) -> None:
    net = _net()
    optimizer = ADAMS["fused"](net)
    _train(net, optimizer, lean=True, steps=1)  # creates the state through torch
    calls = []
    monkeypatch.setattr(optimizer, "step", lambda *a, **k: calls.append("torch"))
    _train(net, optimizer, lean=True, steps=2)
    assert calls == []
    assert optimizer.state[net[0].weight]["step"].item() == 3


def test_resuming_from_a_state_dict_continues_identically() -> None:
    reference, lean = _net(), _net()
    ref_opt, lean_opt = ADAMS["fused"](reference), ADAMS["fused"](lean)
    _train(reference, ref_opt, lean=False, steps=3)
    _train(lean, lean_opt, lean=True, steps=3)
    resumed = copy.deepcopy(lean)
    resumed_opt = ADAMS["fused"](resumed)
    resumed_opt.load_state_dict(copy.deepcopy(lean_opt.state_dict()))
    _train(reference, ref_opt, lean=False, steps=3)
    _train(resumed, resumed_opt, lean=True, steps=3)
    _same(reference, resumed, ref_opt, resumed_opt)


def test_step_hooks_still_run() -> None:
    net = _net()
    optimizer = ADAMS["fused"](net)
    seen = []
    optimizer.register_step_pre_hook(lambda *args: seen.append("pre"))
    optimizer.register_step_post_hook(lambda *args: seen.append("post"))
    _train(net, optimizer, lean=True, steps=2)
    assert seen == ["pre", "post"] * 2


def test_zero_grad_drops_every_gradient() -> None:
    net = _net()
    optimizer = ADAMS["fused"](net)
    net(torch.randn(3, 5)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    fused_adam.zero_grad(optimizer)
    assert all(p.grad is None for p in net.parameters())


def test_a_new_group_without_state_steps_every_group_once() -> None:
    reference, lean = _net(), _net()
    ref_opt = torch.optim.Adam(reference[0].parameters(), lr=1e-3, fused=True)
    lean_opt = torch.optim.Adam(lean[0].parameters(), lr=1e-3, fused=True)
    _train(reference, ref_opt, lean=False, steps=2)
    _train(lean, lean_opt, lean=True, steps=2)
    ref_opt.add_param_group({"params": list(reference[2].parameters()), "lr": 3e-4})
    lean_opt.add_param_group({"params": list(lean[2].parameters()), "lr": 3e-4})
    _train(reference, ref_opt, lean=False, steps=3)
    _train(lean, lean_opt, lean=True, steps=3)
    _same(reference, lean, ref_opt, lean_opt)
    assert lean_opt.state[lean[0].weight]["step"].item() == 5

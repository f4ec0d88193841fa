"""The kernels switch, BEAR_KERNELS=fast|portable: read in one place, refused when invalid,
honoured by the layers and the optimizer, and the two modes train the same model.

Equivalence tolerance: after 300 seeded update steps the fast and portable runs must agree to
rtol=1e-4, atol=1e-5 on every parameter and every logged loss. The two modes compute the same
math in float32 with different kernels (oneDNN vs MKL products, different summation orders), so
they differ by rounding only: about 1e-7 at the first step, measured at most 6e-8 absolute
(4e-6 relative) on the parameters after 300 steps on an AMD EPYC, which leaves a margin of over
100x. A real difference is far outside it: a layer dropped by the fused path changes outputs at
O(1), and an optimizer step off by 1% in its learning rate or bias correction moves the
parameters by about 1e-3 over 300 steps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bear_core import BEAR
from bear_core.dataset.batch import TransitionBatch
from bear_core.networks import kernels
from bear_core.networks.kernels import fused_adam

RTOL, ATOL = 1e-4, 1e-5
STEPS = 300
OBS, ACT, BATCH = 5, 2, 32
REPO_ROOT = Path(__file__).resolve().parent.parent


def _batches(n: int, seed: int = 0) -> list[TransitionBatch]:
    rng = np.random.default_rng(seed)
    return [
        TransitionBatch(
            observations=rng.standard_normal((BATCH, OBS)).astype(np.float32),
            actions=rng.uniform(-1.0, 1.0, (BATCH, ACT)).astype(np.float32),
            rewards=rng.standard_normal((BATCH, 1)).astype(np.float32),
            next_observations=rng.standard_normal((BATCH, OBS)).astype(np.float32),
            terminals=(rng.random((BATCH, 1)) < 0.05).astype(np.float32),
        )
        for _ in range(n)
    ]


def _train(
    mode: str, steps: int, **params: Any
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """A seeded BEAR ([64, 64] hidden units, batch 32) after `steps` updates on `mode`: its
    parameters by name and the metrics of every step."""
    with kernels.use(mode):
        bear = BEAR(batch_size=BATCH, encoder_params={"hidden_units": [64, 64]}, seed=0, **params)
        bear.create_impl((OBS,), ACT)
        metrics = [bear.update(0, step, batch) for step, batch in enumerate(_batches(steps))]
    m = bear.impl
    assert m is not None
    networks = {"policy": m.policy, "imitator": m.imitator, "critics": m.critics,
                "target_critics": m.target_critics, "log_temp": m.log_temp,
                "log_alpha": m.log_alpha}  # fmt: skip
    named = {
        f"{name}.{key}": value.detach().clone()
        for name, module in networks.items()
        for key, value in module.state_dict().items()
        if value.is_floating_point()
    }
    return named, metrics


@pytest.mark.parametrize(
    "params",
    [{}, {"imitator_type": "vae", "q_func_type": "qr", "n_quantiles": 8, "n_critics": 3}],
    ids=["regressor-mean", "vae-qr"],
)
def test_fast_and_portable_train_the_same_model(params: dict[str, Any]) -> None:
    fast_params, fast_metrics = _train("fast", STEPS, **params)
    portable_params, portable_metrics = _train("portable", STEPS, **params)
    assert fast_params.keys() == portable_params.keys()
    for name, value in fast_params.items():
        torch.testing.assert_close(
            value, portable_params[name], rtol=RTOL, atol=ATOL, msg=lambda m, n=name: f"{n}: {m}"
        )
    assert "critic_loss" in fast_metrics[-1] and "actor_loss" in fast_metrics[-1]
    for step, (got, want) in enumerate(zip(fast_metrics, portable_metrics, strict=True)):
        assert got.keys() == want.keys()
        for name in got:
            np.testing.assert_allclose(
                got[name], want[name], rtol=RTOL, atol=ATOL, err_msg=f"{name} at step {step}"
            )
    moved = _train("portable", 0, **params)[0]  # the initial parameters: training moved them
    assert any(not torch.allclose(moved[n], v, atol=1e-3) for n, v in portable_params.items())


# --- the switch itself --------------------------------------------------------------------------


def test_the_environment_variable_selects_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    assert kernels.mode() == kernels.default_mode()
    assert kernels.default_mode() == ("fast" if kernels.ONEDNN_AVAILABLE else "portable")
    for value, expected in (("portable", "portable"), ("fast", "fast"), (" Fast ", "fast")):
        monkeypatch.setenv(kernels.ENV_VAR, value)
        assert kernels.mode() == expected
    monkeypatch.setenv(kernels.ENV_VAR, "fast")
    with kernels.use("portable"):
        assert kernels.mode() == "portable" and not kernels.fast()
        with kernels.use("fast"):
            assert kernels.fast()
        assert not kernels.fast()
    with kernels.portable():
        assert kernels.mode() == "portable"
    assert kernels.mode() == "fast"


def test_an_invalid_mode_is_refused_naming_bear_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kernels.ENV_VAR, "bogus")
    with pytest.raises(ValueError, match="BEAR_KERNELS='bogus'"):
        kernels.mode()
    with pytest.raises(ValueError, match="bogus"), kernels.use("bogus"):
        pass
    env = {**os.environ, kernels.ENV_VAR: "bogus"}
    done = subprocess.run(
        [sys.executable, "-c", "from bear_core import BEAR"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "ValueError: BEAR_KERNELS='bogus'" in done.stderr


class _Calls:
    """Counts the calls of the oneDNN product and of torch's fused Adam kernel made directly
    from bear_core's kernels (torch.optim's own step may call the latter)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.onednn = 0
        self.fused_adam_direct = 0
        real_linear = torch.ops.mkldnn._linear_pointwise
        real_adam = torch._fused_adam_

        def linear(*args: Any, **kwargs: Any) -> Any:
            self.onednn += 1
            return real_linear(*args, **kwargs)

        def adam(*args: Any, **kwargs: Any) -> Any:
            if sys._getframe(1).f_globals.get("__name__") == fused_adam.__name__:
                self.fused_adam_direct += 1
            return real_adam(*args, **kwargs)

        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", linear)
        monkeypatch.setattr(torch, "_fused_adam_", adam)


def _train_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(kernels.ENV_VAR, value)
    bear = BEAR(batch_size=BATCH, encoder_params={"hidden_units": [64, 64]}, seed=0)
    bear.create_impl((OBS,), ACT)
    for step, batch in enumerate(_batches(4)):
        bear.update(0, step, batch)


def test_portable_mode_calls_neither_onednn_nor_the_fused_adam_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _Calls(monkeypatch)
    _train_from_the_environment(monkeypatch, "portable")
    assert (calls.onednn, calls.fused_adam_direct) == (0, 0)


def test_fast_mode_takes_both_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the test above: the counters do see the fast kernels."""
    calls = _Calls(monkeypatch)
    _train_from_the_environment(monkeypatch, "fast")
    assert calls.fused_adam_direct > 0
    if kernels.ONEDNN_AVAILABLE:
        assert calls.onednn > 0


def test_portable_optimizer_steps_are_torch_optim_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    seen: list[str] = []
    optimizer.register_step_pre_hook(lambda *args: seen.append("step"))
    for mode in ("portable", "portable", "fast"):
        with kernels.use(mode):
            fused_adam.zero_grad(optimizer)
            net(torch.randn(4, 3)).sum().backward()
            fused_adam.step(optimizer)
    assert seen == ["step", "step", "step"]  # a hook always takes torch's step
    optimizer._optimizer_step_pre_hooks.clear()
    steps: list[str] = []
    real_step = optimizer.step
    monkeypatch.setattr(optimizer, "step", lambda: steps.append("torch") or real_step())
    for mode in ("portable", "fast"):
        with kernels.use(mode):
            fused_adam.step(optimizer)
    assert steps == ["torch"]

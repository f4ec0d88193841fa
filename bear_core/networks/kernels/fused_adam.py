"""Optimizer steps on the hot path: with the `fast` kernels, torch's own fused Adam kernel
without the per-call bookkeeping of `torch.optim.Optimizer.step` (profiler records, hooks, device
and dtype grouping).

A step here is torch's fused Adam step exactly: the same kernel on the same state tensors, so
`state_dict()`, checkpoints and resuming are unchanged. With the `portable` kernels, and whenever
the fast path does not apply (first step, which creates the state; hooks; other optimizers or
options; mixed devices or dtypes), the optimizer's own `step()` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import optimizer as torch_optimizer

from bear_core.networks import kernels


def zero_grad(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.zero_grad(set_to_none=True)."""
    if not kernels.fast():
        optimizer.zero_grad(set_to_none=True)
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


@torch.no_grad()
def step(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.step()."""
    batches = _fused_batches(optimizer) if kernels.fast() else None
    if batches is None:
        optimizer.step()
        return
    for batch in batches:
        torch._foreach_add_(batch.steps, 1)
        beta1, beta2 = batch.group["betas"]
        torch._fused_adam_(
            batch.params,
            [p.grad for p in batch.params],
            batch.exp_avgs,
            batch.exp_avg_sqs,
            [],
            batch.steps,
            amsgrad=False,
            lr=batch.group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=batch.group["weight_decay"],
            eps=batch.group["eps"],
            maximize=batch.group["maximize"],
            grad_scale=None,
            found_inf=None,
        )


@dataclass
class _Batch:
    """One parameter group's tensors for one fused kernel call."""

    group: dict[str, Any]
    params: list[torch.Tensor]
    exp_avgs: list[torch.Tensor]
    exp_avg_sqs: list[torch.Tensor]
    steps: list[torch.Tensor]


def _fused_batches(optimizer: torch.optim.Optimizer) -> list[_Batch] | None:
    """Every group's kernel call, or None where torch's own step must run (decided for all
    groups before any is stepped)."""
    if type(optimizer) is not torch.optim.Adam:
        return None
    if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
        return None
    if torch_optimizer._global_optimizer_pre_hooks or torch_optimizer._global_optimizer_post_hooks:
        return None
    batches = []
    for group in optimizer.param_groups:
        if not _plain_fused(group):
            return None
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        states = [optimizer.state[p] for p in params]
        if not all(states) or not _one_device_and_dtype(params):
            return None  # lazy state creation, or a case torch groups itself
        batches.append(
            _Batch(
                group,
                params,
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [s["step"] for s in states],
            )
        )
    return batches


def _plain_fused(group: dict[str, Any]) -> bool:
    return (
        bool(group.get("fused"))
        and not group["amsgrad"]
        and not group["differentiable"]
        and not group.get("decoupled_weight_decay", False)
        and isinstance(group["lr"], float)
        and isinstance(group["betas"][0], float)
        and isinstance(group["betas"][1], float)
    )


def _one_device_and_dtype(params: list[torch.Tensor]) -> bool:
    first = params[0]
    return all(p.device == first.device and p.dtype == first.dtype for p in params)

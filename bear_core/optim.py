"""Optimizer steps on the hot path: torch's own fused Adam kernel, without the per-call
bookkeeping of `torch.optim.Optimizer.step` (profiler records, hooks, device and dtype grouping).

A step here is torch's fused Adam step exactly: the same kernel on the same state tensors, so
`state_dict()`, checkpoints and resuming are unchanged. Whenever the fast path does not apply
(first step, which creates the state; hooks; other optimizers or options; mixed devices or
dtypes) the optimizer's own `step()` runs.
"""

from __future__ import annotations

import torch
from torch.optim import optimizer as torch_optimizer


def zero_grad(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.zero_grad(set_to_none=True)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


@torch.no_grad()
def step(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.step()."""
    if not _fast_path_applies(optimizer):
        optimizer.step()
        return
    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        states = [optimizer.state[p] for p in params]
        if not all(states) or not _one_device_and_dtype(params):
            optimizer.step()  # lazy state creation, or a case torch groups itself
            return
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        beta1, beta2 = group["betas"]
        torch._fused_adam_(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
            grad_scale=None,
            found_inf=None,
        )


def _fast_path_applies(optimizer: torch.optim.Optimizer) -> bool:
    if type(optimizer) is not torch.optim.Adam:
        return False
    if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
        return False
    if torch_optimizer._global_optimizer_pre_hooks or torch_optimizer._global_optimizer_post_hooks:
        return False
    return all(_plain_fused(group) for group in optimizer.param_groups)


def _plain_fused(group: dict) -> bool:
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

"""The optimizer calls of the update step: torch's own `zero_grad(set_to_none=True)` and `step()`
(the optimizers are torch.optim.Adam, with torch's fused implementation on CPU and CUDA)."""

from __future__ import annotations

import torch


def zero_grad(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.zero_grad(set_to_none=True)."""
    optimizer.zero_grad(set_to_none=True)


def step(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.step()."""
    optimizer.step()

"""Linear layers on the fastest exact fp32 matmul torch offers on the CPU.

On x86 CPUs torch's `F.linear`/`baddbmm` call MKL, which runs its AVX2 kernels on non-Intel
processors (AMD EPYC: ~90 GFLOP/s on one core) and whose batched GEMM is slow for narrow outputs
(a [K, 256, 256] x [K, 256, 1] critic head takes 5x longer than K separate products). torch's own
oneDNN entry point `mkldnn._linear_pointwise` runs AVX-512 kernels there (~195 GFLOP/s) in full
fp32 precision. That op has no autograd formula, so the functions here carry their own backward
(dL/dx = g W, dL/dW = g^T x, dL/db = sum g), each product again on the faster kernel.

`linear` takes nn.Linear's layout (weight [out, in]); `ensemble_linear` K independent layers
(weight [K, in, out], bias [K, 1, out]) as K products inside one autograd node. Each product
runs on oneDNN when every dimension is at least ONEDNN_MIN_DIM (below that its per-call set-up
costs more than its kernel saves) and on torch's own matmul otherwise. Everywhere else (CUDA,
tracing and export, `portable_kernels()`) they are the plain torch ops, which is also what
exported graphs contain.
"""

from __future__ import annotations

import contextlib
import contextvars
import platform
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ONEDNN_MIN_DIM = 16
_ONEDNN_AVAILABLE = (
    platform.machine().lower() in ("x86_64", "amd64")
    and torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)
_PORTABLE: contextvars.ContextVar[bool] = contextvars.ContextVar("portable", default=False)


@contextlib.contextmanager
def portable_kernels() -> Iterator[None]:
    """Use torch's standard ops only (tracing, export, reference checks)."""
    token = _PORTABLE.set(True)
    try:
        yield
    finally:
        _PORTABLE.reset(token)


def _cpu_kernels(x: torch.Tensor) -> bool:
    """Whether the CPU products below apply: a CPU tensor, outside tracing and export."""
    return (
        x.device.type == "cpu"
        and not _PORTABLE.get()
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.compiler.is_compiling()
    )


def _onednn_pays(x: torch.Tensor, weight: torch.Tensor) -> bool:
    rows = x.numel() // max(x.shape[-1], 1)
    return (
        _ONEDNN_AVAILABLE
        and x.dtype == weight.dtype == torch.float32
        and min(rows, weight.shape[0], weight.shape[1]) >= ONEDNN_MIN_DIM
    )


def _gemm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False
) -> torch.Tensor:
    """x @ weight^T (+ bias) (then ReLU, fused on oneDNN); x [..., in], weight [out, in], any
    strides."""
    if _onednn_pays(x, weight):
        post_op = "relu" if relu else "none"
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, post_op, [], "")
    y = F.linear(x, weight, bias)
    return y.relu_() if relu else y


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


def _save(ctx: Any, x: torch.Tensor, weight: torch.Tensor, y: torch.Tensor, relu: bool) -> None:
    ctx.save_for_backward(x, weight, y if relu else None)


def _saved(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, weight, gradient before the activation) from what `_save` kept."""
    x, weight, y = ctx.saved_tensors
    if y is not None:
        grad = torch.ops.aten.threshold_backward(grad, y, 0)  # ReLU: g 1[y > 0]
    return x, weight, grad


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool
    ) -> torch.Tensor:
        y = _gemm(x, weight, bias, relu)
        _save(ctx, x, weight, y, relu)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, grad = _saved(ctx, grad)
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        grad_x = _gemm(grad, weight.t()) if need_x else None  # g W
        grad_w = _gemm(_rows(grad).t(), _rows(x).t()) if need_w else None  # g^T x
        grad_b = _rows(grad).sum(dim=0) if need_b else None
        return grad_x, grad_w, grad_b, None


def _member_inputs(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """Each member's input: x [K, M, in] per member, or x [M, in] shared by all."""
    return [x] * n if x.dim() == 2 else list(x)


def _ensemble_gemm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, relu: bool
) -> torch.Tensor:
    members = zip(_member_inputs(x, len(weight)), weight, bias, strict=True)
    return torch.stack([_gemm(x_k, w.t(), b[0], relu) for x_k, w, b in members])


class _EnsembleLinear(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, relu: bool
    ) -> torch.Tensor:
        y = _ensemble_gemm(x, weight, bias, relu)
        _save(ctx, x, weight, y, relu)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, grad = _saved(ctx, grad)
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        grad_x = grad_w = grad_b = None
        if need_x:
            grads_x = [_gemm(g, w) for g, w in zip(grad, weight, strict=True)]  # g_k W_k
            grad_x = sum(grads_x[1:], grads_x[0]) if x.dim() == 2 else torch.stack(grads_x)
        if need_w:
            members = zip(_member_inputs(x, len(weight)), grad, strict=True)
            grad_w = torch.stack([_gemm(x_k.t(), g.t()) for x_k, g in members])  # x_k^T g_k
        if need_b:
            grad_b = grad.sum(dim=1, keepdim=True)
        return grad_x, grad_w, grad_b, None


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool = False
) -> torch.Tensor:
    """F.linear: x [..., in], weight [out, in], bias [out] -> [..., out], followed by ReLU when
    `relu`."""
    if not (_cpu_kernels(x) and _onednn_pays(x, weight)):
        y = F.linear(x, weight, bias)
        return torch.relu(y) if relu else y
    if _needs_grad(x, weight, bias):
        return _Linear.apply(x, weight, bias, relu)
    return _gemm(x, weight, bias, relu)


def ensemble_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, relu: bool = False
) -> torch.Tensor:
    """x [K, M, in] (or [M, in], the same input for every member) @ weight [K, in, out]
    + bias [K, 1, out] -> [K, M, out], followed by ReLU when `relu`."""
    if _cpu_kernels(x):
        if _needs_grad(x, weight, bias):
            return _EnsembleLinear.apply(x, weight, bias, relu)
        return _ensemble_gemm(x, weight, bias, relu)
    if x.dim() == 2:
        x = x.expand(len(weight), -1, -1)
    y = torch.baddbmm(bias, x, weight)
    return torch.relu(y) if relu else y


class Linear(nn.Linear):
    """nn.Linear (same parameters and state_dict) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

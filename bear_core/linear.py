"""Linear layers on the fastest exact fp32 matmul torch offers on the CPU.

On x86 CPUs torch's `F.linear`/`baddbmm` call MKL, which runs its AVX2 kernels on non-Intel
processors (AMD EPYC: ~90 GFLOP/s on one core) and whose batched GEMM is slow for narrow outputs
(a [K, 256, 256] x [K, 256, 1] critic head takes 5x longer than K separate products). torch's own
oneDNN entry point `mkldnn._linear_pointwise` runs AVX-512 kernels there (~195 GFLOP/s) in full
fp32 precision. That op has no autograd formula, so the functions here carry their own backward
(dL/dx = g W, dL/dW = g^T x, dL/db = sum g), each product again on the faster kernel.

`linear` takes nn.Linear's layout (weight [out, in]); `ensemble_linear` K independent layers
(weight [K, in, out], bias [K, 1, out]) as K products inside one autograd node; `mlp` and
`ensemble_mlp` whole chains of such layers as one node. A product [M, K] x [K, N] runs on
oneDNN when M and K are at least ONEDNN_MIN_DIM and N at least ONEDNN_MIN_OUT (below that
its per-call set-up costs more than its kernel saves) and on torch's own matmul otherwise.
Everywhere else (CUDA, tracing and export, `portable_kernels()`) they are the plain torch ops,
which is also what exported graphs contain.
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
ONEDNN_MIN_OUT = 8
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
    """For x [M, K] @ weight^T, weight [N, K]."""
    rows = x.numel() // max(x.shape[-1], 1)
    return (
        _ONEDNN_AVAILABLE
        and x.dtype == weight.dtype == torch.float32
        and min(rows, weight.shape[1]) >= ONEDNN_MIN_DIM
        and weight.shape[0] >= ONEDNN_MIN_OUT
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


def _weight_grad(x: torch.Tensor, grad: torch.Tensor, in_out: bool) -> torch.Tensor:
    """dL/dW for y = x W^T: grad^T x, [out, in] (or its transpose with `in_out`). Of the two
    equal products the one whose transposed left operand (copied by oneDNN) is narrower runs."""
    x, grad = _rows(x), _rows(grad)
    if x.shape[1] < grad.shape[1]:
        w = _gemm(x.t(), grad.t())  # x^T g, [in, out]
        return w if in_out else w.t()
    w = _gemm(grad.t(), x.t())  # g^T x, [out, in]
    return w.t() if in_out else w


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
        grad_w = _weight_grad(x, grad, in_out=False) if need_w else None  # g^T x
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
            grad_w = torch.stack([_weight_grad(x_k, g, in_out=True) for x_k, g in members])
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


# --- whole networks: one autograd node per MLP ------------------------------------------------


def _forward_chain(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    relus: tuple[bool, ...],
) -> list[torch.Tensor]:
    """[x, h_1, ..., h_L] for h_l = relu?(h_{l-1} W_l^T + b_l), weights [out, in]."""
    hs = [x]
    for w, b, relu in zip(weights, biases, relus, strict=True):
        hs.append(_gemm(hs[-1], w, b, relu))
    return hs


def _backward_chain(
    hs: list[torch.Tensor],
    weights: list[torch.Tensor],
    relus: tuple[bool, ...],
    grad: torch.Tensor,
    need_x: bool,
    need_params: bool,
    in_out: bool,
) -> tuple[torch.Tensor | None, list[torch.Tensor], list[torch.Tensor]]:
    """Back through `_forward_chain`: (dL/dx, [dL/dW_l], [dL/db_l]); the weight gradients in
    [out, in] layout, or [in, out] with `in_out`."""
    grads_w: list[torch.Tensor] = []
    grads_b: list[torch.Tensor] = []
    for layer in reversed(range(len(weights))):
        if relus[layer]:
            grad = torch.ops.aten.threshold_backward(grad, hs[layer + 1], 0)  # g 1[h > 0]
        if need_params:
            grads_w.append(_weight_grad(hs[layer], grad, in_out))
            grads_b.append(_rows(grad).sum(dim=0))
        if layer > 0 or need_x:
            grad = _gemm(grad, weights[layer].t())  # g W
    return (grad if need_x else None), grads_w[::-1], grads_b[::-1]


class _MLP(torch.autograd.Function):
    """y = f_L(... f_1(x)) with f_l(h) = relu?(h W_l^T + b_l): one node for a whole network."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, relus: tuple[bool, ...], *params: torch.Tensor
    ) -> torch.Tensor:
        weights, biases = list(params[::2]), list(params[1::2])
        hs = _forward_chain(x, weights, biases, relus)
        ctx.relus = relus
        ctx.save_for_backward(*hs, *weights)
        return hs[-1]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = ctx.saved_tensors
        n = len(ctx.relus)
        hs, weights = list(saved[: n + 1]), list(saved[n + 1 :])
        need_params = any(ctx.needs_input_grad[2:])
        grad_x, grads_w, grads_b = _backward_chain(
            hs, weights, ctx.relus, grad, ctx.needs_input_grad[0], need_params, in_out=False
        )
        params: list[torch.Tensor | None] = [None] * (2 * n)
        if need_params:
            params[::2], params[1::2] = grads_w, grads_b
        return grad_x, None, *params


class _EnsembleMLP(torch.autograd.Function):
    """K networks of `_MLP`'s form side by side, member by member: [K, M, out] (only the output
    is stacked); weights [K, in, out], biases [K, 1, out]; x [K, M, in] or shared [M, in]."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, relus: tuple[bool, ...], *params: torch.Tensor
    ) -> torch.Tensor:
        chains = _ensemble_chains(x, params, relus)
        ctx.relus, ctx.members = relus, len(chains)
        ctx.save_for_backward(x, *[h for hs in chains for h in hs[1:]], *params[::2])
        return torch.stack([hs[-1] for hs in chains])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = ctx.saved_tensors
        x, n, k = saved[0], len(ctx.relus), ctx.members
        weights = saved[1 + k * n :]
        need_x, need_params = ctx.needs_input_grad[0], any(ctx.needs_input_grad[2:])
        grads_x: list[torch.Tensor] = []
        grads_w: list[list[torch.Tensor]] = []
        grads_b: list[list[torch.Tensor]] = []
        for member, x_k in enumerate(_member_inputs(x, k)):
            hs = [x_k, *saved[1 + member * n : 1 + (member + 1) * n]]
            member_weights = [w[member].t() for w in weights]
            g_x, g_w, g_b = _backward_chain(
                hs, member_weights, ctx.relus, grad[member], need_x, need_params, in_out=True
            )
            if g_x is not None:
                grads_x.append(g_x)
            grads_w.append(g_w)
            grads_b.append(g_b)
        grad_x = None
        if need_x:
            grad_x = sum(grads_x[1:], grads_x[0]) if x.dim() == 2 else torch.stack(grads_x)
        params: list[torch.Tensor | None] = [None] * (2 * n)
        if need_params:
            for layer in range(n):
                params[2 * layer] = torch.stack([g[layer] for g in grads_w])
                params[2 * layer + 1] = torch.stack([g[layer] for g in grads_b]).unsqueeze(1)
        return grad_x, None, *params


def _ensemble_chains(
    x: torch.Tensor, params: tuple[torch.Tensor, ...], relus: tuple[bool, ...]
) -> list[list[torch.Tensor]]:
    weights, biases = params[::2], params[1::2]
    return [
        _forward_chain(x_k, [w[k].t() for w in weights], [b[k, 0] for b in biases], relus)
        for k, x_k in enumerate(_member_inputs(x, len(weights[0])))
    ]


def mlp(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    relus: tuple[bool, ...],
) -> torch.Tensor:
    """A chain of `linear` layers (weights [out, in]), ReLU after layer l when relus[l], as one
    autograd node on the CPU kernels."""
    if not _cpu_kernels(x):
        for w, b, relu in zip(weights, biases, relus, strict=True):
            x = linear(x, w, b, relu)
        return x
    params = [p for pair in zip(weights, biases, strict=True) for p in pair]
    if _needs_grad(x, *params):
        return _MLP.apply(x, relus, *params)
    return _forward_chain(x, weights, list(biases), relus)[-1]


def ensemble_mlp(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    relus: tuple[bool, ...],
) -> torch.Tensor:
    """A chain of `ensemble_linear` layers (weights [K, in, out]), ReLU after layer l when
    relus[l], as one autograd node on the CPU kernels: [K, M, in] or [M, in] -> [K, M, out]."""
    if not _cpu_kernels(x):
        for w, b, relu in zip(weights, biases, relus, strict=True):
            x = ensemble_linear(x, w, b, relu)
        return x
    params = tuple(p for pair in zip(weights, biases, strict=True) for p in pair)
    if _needs_grad(x, *params):
        return _EnsembleMLP.apply(x, relus, *params)
    return torch.stack([hs[-1] for hs in _ensemble_chains(x, params, relus)])


class Linear(nn.Linear):
    """nn.Linear (same parameters and state_dict) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

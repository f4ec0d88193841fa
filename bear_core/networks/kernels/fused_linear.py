"""Linear layers on the fastest exact fp32 matmul torch offers on the CPU (the `fast` kernels).

On x86 CPUs torch's `F.linear`/`baddbmm` call MKL, which runs its AVX2 kernels on non-Intel
processors (AMD EPYC: ~90 GFLOP/s on one core) and whose batched GEMM is slow for narrow outputs
(a [K, 256, 256] x [K, 256, 1] critic head takes 5x longer than K separate products). torch's own
oneDNN entry point `mkldnn._linear_pointwise` runs AVX-512 kernels there (~195 GFLOP/s) in full
fp32 precision. That op has no autograd formula, so the functions here carry their own backward
(dL/dx = g W, dL/dW = g^T x, dL/db = sum g), each product again on the faster kernel.

`mlp` runs a chain of layers in nn.Linear's layout (weight [out, in]) as one autograd node,
`ensemble_mlp` K independent chains (weights [K, in, out], biases [K, 1, out]) member by member
in one node; `linear` and `ensemble_linear` are their one-layer cases. A product
[M, K] x [K, N] runs on oneDNN when M and K are at least ONEDNN_MIN_DIM and N at least
ONEDNN_MIN_OUT (below that its per-call set-up costs more than its kernel saves) and on torch's
own matmul otherwise.
Everywhere else (the `portable` kernels, CUDA, tracing and export: see `applies`) they are the
plain torch ops, which is also what exported graphs contain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bear_core.networks import kernels

ONEDNN_MIN_DIM = 16
ONEDNN_MIN_OUT = 8


def applies(x: torch.Tensor) -> bool:
    """Whether the fast products apply to x: the `fast` kernels, a CPU tensor, outside tracing,
    scripting, compiling and export."""
    return (
        x.device.type == "cpu"
        and kernels.fast()
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.compiler.is_compiling()
    )


def _onednn_pays(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """For x [M, K] @ weight^T, weight [N, K]."""
    rows = x.numel() // max(x.shape[-1], 1)
    return (
        kernels.ONEDNN_AVAILABLE
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
    """t as a matrix [M, last dim]."""
    return t if t.dim() == 2 else t.reshape(-1, t.shape[-1])


def _weight_grad(x: torch.Tensor, grad: torch.Tensor, in_out: bool) -> torch.Tensor:
    """dL/dW for y = x W^T: grad^T x, [out, in] (or its transpose with `in_out`). Of the two
    equal products the one whose transposed left operand (copied by oneDNN) is narrower runs;
    on a tie, the one that yields the requested layout (no transposed copy later)."""
    x, grad = _rows(x), _rows(grad)
    if x.shape[1] < grad.shape[1] or (x.shape[1] == grad.shape[1] and in_out):
        w = _gemm(x.t(), grad.t())  # x^T g, [in, out]
        return w if in_out else w.t()
    w = _gemm(grad.t(), x.t())  # g^T x, [out, in]
    return w.t() if in_out else w


def _member_inputs(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """Each member's input: x [K, M, in] per member, or x [M, in] shared by all."""
    return [x] * n if x.dim() == 2 else list(x)


def _member_weights(weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each member's weight [out, in] (a view) of an ensemble weight [K, in, out]."""
    return weight.transpose(1, 2).unbind(0)


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool = False
) -> torch.Tensor:
    """F.linear: x [..., in], weight [out, in], bias [out] -> [..., out], followed by ReLU when
    `relu`."""
    if not (applies(x) and _onednn_pays(x, weight)):
        y = F.linear(x, weight, bias)
        return torch.relu(y) if relu else y
    return _run(_MLP, x, [weight], [bias], (relu,))


def ensemble_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, relu: bool = False
) -> torch.Tensor:
    """x [K, M, in] (or [M, in], the same input for every member) @ weight [K, in, out]
    + bias [K, 1, out] -> [K, M, out], followed by ReLU when `relu`."""
    if applies(x):
        return _run(_EnsembleMLP, x, [weight], [bias], (relu,))
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


def _requested(
    ctx: Any, grads_w: list[torch.Tensor], grads_b: list[torch.Tensor]
) -> list[torch.Tensor | None]:
    """The parameter gradients (w_1, b_1, w_2, ...) autograd asked for, None elsewhere."""
    needed = ctx.needs_input_grad[2:]
    if not any(needed):
        return [None] * len(needed)
    grads = [g for pair in zip(grads_w, grads_b, strict=True) for g in pair]
    return [g if need else None for g, need in zip(grads, needed, strict=True)]


def _kept(hs: list[torch.Tensor], relus: tuple[bool, ...]) -> list[torch.Tensor | None]:
    """What backward needs of a chain: every input, and the output only for its ReLU mask (so
    callers may modify a plain output in place)."""
    return [*hs[:-1], hs[-1] if relus[-1] else None]


class _MLP(torch.autograd.Function):
    """y = f_L(... f_1(x)) with f_l(h) = relu?(h W_l^T + b_l): one node for a whole network."""

    @staticmethod
    def evaluate(
        x: torch.Tensor, params: tuple[torch.Tensor, ...], relus: tuple[bool, ...]
    ) -> list[torch.Tensor]:
        """The chain [x, h_1, ..., h_L]."""
        return _forward_chain(x, list(params[::2]), list(params[1::2]), relus)

    @staticmethod
    def output(
        x: torch.Tensor, params: tuple[torch.Tensor, ...], relus: tuple[bool, ...]
    ) -> torch.Tensor:
        return _MLP.evaluate(x, params, relus)[-1]

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, relus: tuple[bool, ...], *params: torch.Tensor
    ) -> torch.Tensor:
        hs = _MLP.evaluate(x, params, relus)
        ctx.relus = relus
        ctx.save_for_backward(*_kept(hs, relus), *params[::2])
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
        return grad_x, None, *_requested(ctx, grads_w, grads_b)


class _EnsembleMLP(torch.autograd.Function):
    """K networks of `_MLP`'s form side by side, member by member: [K, M, out] (only the output
    is stacked); weights [K, in, out], biases [K, 1, out]; x [K, M, in] or shared [M, in]."""

    @staticmethod
    def evaluate(
        x: torch.Tensor, params: tuple[torch.Tensor, ...], relus: tuple[bool, ...]
    ) -> list[list[torch.Tensor]]:
        """Each member's chain [x_k, h_1, ..., h_L]."""
        weights = list(zip(*(_member_weights(w) for w in params[::2]), strict=True))
        biases = list(zip(*(b.squeeze(1).unbind(0) for b in params[1::2]), strict=True))
        return [
            _forward_chain(x_k, list(weights[k]), list(biases[k]), relus)
            for k, x_k in enumerate(_member_inputs(x, len(weights)))
        ]

    @staticmethod
    def output(
        x: torch.Tensor, params: tuple[torch.Tensor, ...], relus: tuple[bool, ...]
    ) -> torch.Tensor:
        return torch.stack([hs[-1] for hs in _EnsembleMLP.evaluate(x, params, relus)])

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, relus: tuple[bool, ...], *params: torch.Tensor
    ) -> torch.Tensor:
        chains = _EnsembleMLP.evaluate(x, params, relus)
        ctx.relus, ctx.members = relus, len(chains)
        kept = [h for hs in chains for h in _kept(hs, relus)[1:]]
        ctx.save_for_backward(x, *kept, *params[::2])
        return torch.stack([hs[-1] for hs in chains])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = ctx.saved_tensors
        x, n, k = saved[0], len(ctx.relus), ctx.members
        weights = saved[1 + k * n :]
        need_x, need_params = ctx.needs_input_grad[0], any(ctx.needs_input_grad[2:])
        grads_x: list[torch.Tensor] = []
        member_w: list[list[torch.Tensor]] = []
        member_b: list[list[torch.Tensor]] = []
        member_weights = list(zip(*(_member_weights(w) for w in weights), strict=True))
        for member, x_k in enumerate(_member_inputs(x, k)):
            hs = [x_k, *saved[1 + member * n : 1 + (member + 1) * n]]
            weights_k = list(member_weights[member])
            g_x, g_w, g_b = _backward_chain(
                hs, weights_k, ctx.relus, grad[member], need_x, need_params, in_out=True
            )
            if g_x is not None:
                grads_x.append(g_x)
            member_w.append(g_w)
            member_b.append(g_b)
        grad_x = None
        if need_x:
            grad_x = sum(grads_x[1:], grads_x[0]) if x.dim() == 2 else torch.stack(grads_x)
        grads_w = [torch.stack(layer) for layer in zip(*member_w, strict=True)]
        grads_b = [torch.stack(layer).unsqueeze(1) for layer in zip(*member_b, strict=True)]
        return grad_x, None, *_requested(ctx, grads_w, grads_b)


def _run(
    node: type[_MLP] | type[_EnsembleMLP],
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    relus: tuple[bool, ...],
) -> torch.Tensor:
    """The network on the CPU kernels: one autograd node when gradients are needed, the bare
    forward chain otherwise."""
    params = tuple(p for pair in zip(weights, biases, strict=True) for p in pair)
    if _needs_grad(x, *params):
        return node.apply(x, relus, *params)
    return node.output(x, params, relus)


def _network(
    node: type[_MLP] | type[_EnsembleMLP],
    layer: Callable[..., torch.Tensor],
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    relus: tuple[bool, ...],
) -> torch.Tensor:
    """`node` on the CPU kernels; elsewhere the chain layer by layer with `layer`."""
    if applies(x):
        return _run(node, x, weights, biases, relus)
    for w, b, relu in zip(weights, biases, relus, strict=True):
        x = layer(x, w, b, relu)
    return x


def mlp(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    relus: tuple[bool, ...],
) -> torch.Tensor:
    """A chain of `linear` layers (weights [out, in]), ReLU after layer l when relus[l], as one
    autograd node on the CPU kernels."""
    return _network(_MLP, linear, x, weights, biases, relus)


def ensemble_mlp(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    relus: tuple[bool, ...],
) -> torch.Tensor:
    """A chain of `ensemble_linear` layers (weights [K, in, out]), ReLU after layer l when
    relus[l], as one autograd node on the CPU kernels: [K, M, in] or [M, in] -> [K, M, out]."""
    return _network(_EnsembleMLP, ensemble_linear, x, weights, biases, relus)


class Linear(nn.Linear):
    """nn.Linear (same parameters and state_dict) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

"""Critic ensembles for every `q_func_type`, behind one interface.

An ensemble of K critics maps (s, a) to a return distribution per critic, represented by
quantile values theta [K, M, N] at fractions tau with probability masses w (N = 1 for 'mean'):

    mean  Q(s, a)                                          (N = 1)
    qr    fixed fractions tau_i = (2i + 1) / 2N            (quantile regression, Dabney et al. 2017)
    iqn   sampled fractions, tau embedded as cos(pi j tau) (implicit quantiles, Dabney et al. 2018)
    fqf   fractions proposed per (s, a) by a network       (Yang et al. 2019)

`forward` returns the expected values E[Z] = sum_i w_i theta_i, [K, ...]: the BEAR target
picks actions with them, the actor maximises their minimum, predict_value averages them and
reports their std, and the exported critics graph outputs them. `distribution` gives the
quantiles for the TD loss.

The K critics run as batched matmuls (no Python loop over critics). `share_encoder` gives all
critics one encoder whose gradient is divided by K, each critic keeping its own head.
Sampled fractions (IQN) come from the given generator while training; in eval mode they are fixed
midpoints, so values are deterministic and exportable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from bear_core.networks import activate, mlp

QUANTILE_HUBER_KAPPA = 1.0


@dataclass(frozen=True)
class QDistribution:
    """Quantile values [K, M, N], their fractions [K|1, M, N] and probability masses [K|1, M, N]."""

    quantiles: torch.Tensor
    taus: torch.Tensor | None
    weights: torch.Tensor | None

    def expected(self) -> torch.Tensor:
        """E[Z] per critic and row, [K, M]."""
        if self.weights is None:
            return self.quantiles.mean(dim=-1)
        return (self.quantiles * self.weights).sum(dim=-1)


class EnsembleLinear(nn.Module):
    """K independent linear layers run as one batched matmul: [K, M, in] -> [K, M, out]."""

    def __init__(self, n: int, in_size: int, out_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_size, out_size))
        self.bias = nn.Parameter(torch.empty(n, 1, out_size))
        bound = 1.0 / math.sqrt(in_size)  # nn.Linear's default initialisation, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleBatchNorm(nn.Module):
    """BatchNorm1d per member and feature of a [K, M, H] tensor."""

    def __init__(self, n: int, size: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n * size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b, h = x.shape
        y = self.norm(x.transpose(0, 1).reshape(b, k * h))
        return y.reshape(b, k, h).transpose(0, 1)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, scale: float
    ) -> torch.Tensor:
        ctx.scale = scale  # type: ignore[attr-defined]
        return x.view_as(x)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None  # type: ignore[attr-defined]


class EnsembleEncoder(nn.Module):
    """K separate MLPs on [s, a]: [M, D + A] -> [K, M, H]."""

    def __init__(
        self, n: int, in_size: int, hidden_units: list[int], activation: str, use_batch_norm: bool
    ) -> None:
        super().__init__()
        self.n, self.activation = n, activation
        sizes = [in_size, *hidden_units]
        self.layers = nn.ModuleList(EnsembleLinear(n, i, o) for i, o in pairwise(sizes))
        self.norms = nn.ModuleList(
            EnsembleBatchNorm(n, o) if use_batch_norm else nn.Identity() for o in hidden_units
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(self.n, -1, -1).contiguous()
        for linear, norm in zip(self.layers, self.norms, strict=True):
            h = norm(activate(linear(h), self.activation))
        return h


class SharedEncoder(nn.Module):
    """One MLP on [s, a] for all K critics; its gradient is divided by K."""

    def __init__(
        self, n: int, in_size: int, hidden_units: list[int], activation: str, use_batch_norm: bool
    ) -> None:
        super().__init__()
        self.n = n
        self.mlp = mlp(in_size, hidden_units, activation, use_batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _ScaleGrad.apply(self.mlp(x), 1.0 / self.n)
        return h.unsqueeze(0).expand(self.n, -1, -1)


class CriticEnsemble(nn.Module):
    """K critics Q_k(s, a) of one q_func_type. forward -> expected values [K, ...]."""

    CHUNK_ROWS = 256  # rows per pass without gradients: keeps the target's activations in cache

    def __init__(
        self,
        q_func_type: str,
        n_critics: int,
        obs_size: int,
        action_size: int,
        hidden_units: list[int],
        activation: str,
        use_batch_norm: bool,
        share_encoder: bool = False,
        n_quantiles: int = 32,
        embed_size: int = 64,
    ) -> None:
        super().__init__()
        self.q_func_type = q_func_type
        self.n_critics = n_critics
        self.n_quantiles = n_quantiles
        self.in_size = obs_size + action_size
        encoder = SharedEncoder if share_encoder else EnsembleEncoder
        self.encoder = encoder(n_critics, self.in_size, hidden_units, activation, use_batch_norm)
        width = hidden_units[-1]
        self.head = EnsembleLinear(n_critics, width, n_quantiles if q_func_type == "qr" else 1)
        if q_func_type in ("iqn", "fqf"):
            self.embed_size = embed_size
            self.tau_embedding = EnsembleLinear(n_critics, embed_size, width)
            self.register_buffer("cos_index", torch.arange(1, embed_size + 1, dtype=torch.float32))
        if q_func_type == "fqf":
            self.proposal = EnsembleLinear(n_critics, width, n_quantiles)
        self.register_buffer("midpoints", (torch.arange(n_quantiles) + 0.5) / n_quantiles)

    # --- public interface -----------------------------------------------------------------------

    def forward(
        self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """obs [..., D], actions [..., A] -> expected Q values [K, ...]."""
        batch_shape = obs.shape[:-1]
        q = self.distribution(obs, actions, generator).expected()
        return q.reshape(self.n_critics, *batch_shape)

    def distribution(
        self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> QDistribution:
        """obs [..., D], actions [..., A] -> the quantile distribution of every critic over the
        flattened rows M. Without gradients, rows go through in cache-sized chunks."""
        x = torch.cat([obs, actions], dim=-1).reshape(-1, self.in_size)
        if torch.is_grad_enabled() or self.training or x.shape[0] <= self.CHUNK_ROWS:
            return self._distribution(x, generator)
        parts = [self._distribution(rows, generator) for rows in x.split(self.CHUNK_ROWS)]
        return QDistribution(
            torch.cat([p.quantiles for p in parts], dim=1),
            None if parts[0].taus is None else torch.cat([p.taus for p in parts], dim=1),
            None if parts[0].weights is None else torch.cat([p.weights for p in parts], dim=1),
        )

    def fraction_loss(
        self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """FQF's fraction-proposal loss (0 for other types); gradients reach the proposal only.

        dW1/dtau_i = 2 F^-1(tau_i) - F^-1(tau^_i) - F^-1(tau^_{i-1}), i = 1..N-1 (Yang et al.)
        """
        if self.q_func_type != "fqf":
            return obs.new_zeros(())
        h = self.encoder(torch.cat([obs, actions], dim=-1)).detach()
        taus, hats, _ = self._proposed_fractions(h)  # taus [K, M, N+1]
        with torch.no_grad():
            at_taus = self._implicit_quantiles(h, taus[:, :, 1:-1])  # [K, M, N-1]
            at_hats = self._implicit_quantiles(h, hats)  # [K, M, N]
            grad = 2 * at_taus - at_hats[:, :, 1:] - at_hats[:, :, :-1]
        return (grad * taus[:, :, 1:-1]).sum(dim=-1).mean(dim=1).sum()

    # --- the four heads -------------------------------------------------------------------------

    def _distribution(self, x: torch.Tensor, generator: torch.Generator | None) -> QDistribution:
        h = self.encoder(x)  # [K, M, H]
        if self.q_func_type == "mean":
            return QDistribution(self.head(h), None, None)
        if self.q_func_type == "qr":
            return QDistribution(self.head(h), self.midpoints.expand(1, h.shape[1], -1), None)
        if self.q_func_type == "iqn":
            taus = self._iqn_fractions(h.shape[1], h.device, generator)  # [1, M, N]
            return QDistribution(self._implicit_quantiles(h, taus), taus, None)
        taus, hats, weights = self._proposed_fractions(h.detach())
        return QDistribution(self._implicit_quantiles(h, hats.detach()), hats, weights.detach())

    def _iqn_fractions(
        self, rows: int, device: torch.device, generator: torch.Generator | None
    ) -> torch.Tensor:
        if self.training:
            return torch.rand(1, rows, self.n_quantiles, generator=generator, device=device)
        return self.midpoints.expand(1, rows, -1)

    def _implicit_quantiles(self, h: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
        """theta(s, a, tau) = head(h * relu(W cos(pi j tau))), h [K, M, H], taus [K|1, M, N]."""
        k, m, width = h.shape
        n = taus.shape[-1]
        cos = torch.cos(math.pi * taus.unsqueeze(-1) * self.cos_index)  # [K|1, M, N, E]
        cos = cos.expand(k, -1, -1, -1).reshape(k, m * n, self.embed_size)
        phi = torch.relu(self.tau_embedding(cos)).reshape(k, m, n, width)
        mixed = (h.unsqueeze(2) * phi).reshape(k, m * n, width)
        return self.head(mixed).reshape(k, m, n)

    def _proposed_fractions(
        self, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """FQF fractions 0 = tau_0 < ... < tau_N = 1 from softmax(proposal(h)); midpoints
        tau^_i = (tau_i + tau_{i+1}) / 2 and masses w_i = tau_{i+1} - tau_i."""
        probs = torch.softmax(self.proposal(h), dim=-1)  # [K, M, N]
        taus = torch.cat([torch.zeros_like(probs[..., :1]), probs.cumsum(dim=-1)], dim=-1)
        taus = torch.cat([taus[..., :-1], torch.ones_like(taus[..., -1:])], dim=-1)
        hats = (taus[..., :-1] + taus[..., 1:]) / 2
        return taus, hats, taus[..., 1:] - taus[..., :-1]


def quantile_huber_loss(
    quantiles: torch.Tensor, taus: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Per critic and row: sum_i mean_j |tau_i - 1{u_ij < 0}| huber(u_ij), u_ij = y_j - theta_i.

    quantiles [K, B, N], taus [K|1, B, N], target [B, N'] -> [K, B].
    """
    u = target[None, :, None, :] - quantiles.unsqueeze(-1)  # [K, B, N, N']
    abs_u = u.abs()
    kappa = QUANTILE_HUBER_KAPPA
    huber = torch.where(abs_u <= kappa, 0.5 * u.pow(2), kappa * (abs_u - 0.5 * kappa))
    weight = (taus.unsqueeze(-1) - (u.detach() < 0).float()).abs()
    return (weight * huber / kappa).mean(dim=-1).sum(dim=-1)

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

The K critics run as one ensemble of layers (`layers.EnsembleMLP`); the mean/qr head is the
encoder's output layer, the iqn/fqf head (applied after the fraction embedding) its own layer.
`share_encoder` gives all critics one encoder whose gradient is divided by K, each critic keeping
its own head.
Sampled fractions (IQN) come from the given generator while training; in eval mode they are fixed
midpoints, so values are deterministic and exportable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bear_core.networks.encoders import EncoderSpec, build_ensemble_encoder
from bear_core.networks.layers import EnsembleLinear

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
            if self.quantiles.shape[-1] == 1:  # 'mean': the one value is Q itself
                return self.quantiles[..., 0]
            return self.quantiles.mean(dim=-1)
        return (self.quantiles * self.weights).sum(dim=-1)


class CriticEnsemble(nn.Module):
    """K critics Q_k(s, a) of one q_func_type. forward -> expected values [K, ...]."""

    CHUNK_ROWS = 512  # rows per pass without gradients: keeps the target's activations in cache

    def __init__(
        self,
        q_func_type: str,
        n_critics: int,
        spec: EncoderSpec,
        action_size: int,
        share_encoder: bool = False,
        n_quantiles: int = 32,
        embed_size: int = 64,
    ) -> None:
        super().__init__()
        self.q_func_type = q_func_type
        self.n_critics = n_critics
        self.n_quantiles = n_quantiles
        self.observation_shape = spec.observation_shape
        self.action_size = action_size
        width = spec.out_size
        if q_func_type in ("mean", "qr"):  # the head is the encoder's output layer
            out = (n_quantiles if q_func_type == "qr" else 1,)
            self.encoder = build_ensemble_encoder(n_critics, spec, action_size, share_encoder, out)
        else:
            self.encoder = build_ensemble_encoder(n_critics, spec, action_size, share_encoder)
            self.head = EnsembleLinear(n_critics, width, 1)
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
        batch_shape = actions.shape[:-1]
        q = self.distribution(obs, actions, generator).expected()
        return q.reshape(self.n_critics, *batch_shape)

    def distribution(
        self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> QDistribution:
        """obs [..., D], actions [..., A] -> the quantile distribution of every critic over the
        flattened rows M. Without gradients, rows go through in cache-sized chunks."""
        obs = obs.reshape(-1, *self.observation_shape)
        actions = actions.reshape(-1, self.action_size)
        if torch.is_grad_enabled() or self.training or obs.shape[0] <= self.CHUNK_ROWS:
            return self._distribution(obs, actions, generator)
        chunks = zip(obs.split(self.CHUNK_ROWS), actions.split(self.CHUNK_ROWS), strict=True)
        parts = [self._distribution(o, a, generator) for o, a in chunks]
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
        h = self.encoder(obs, actions).detach()
        taus, hats, _ = self._proposed_fractions(h)  # taus [K, M, N+1]
        with torch.no_grad():
            at_taus = self._implicit_quantiles(h, taus[:, :, 1:-1])  # [K, M, N-1]
            at_hats = self._implicit_quantiles(h, hats)  # [K, M, N]
            grad = 2 * at_taus - at_hats[:, :, 1:] - at_hats[:, :, :-1]
        return (grad * taus[:, :, 1:-1]).sum(dim=-1).mean(dim=1).sum()

    # --- the four heads -------------------------------------------------------------------------

    def _distribution(
        self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None
    ) -> QDistribution:
        if self.q_func_type == "mean":
            return QDistribution(self.encoder(obs, actions), None, None)
        if self.q_func_type == "qr":
            midpoints = self.midpoints.expand(1, obs.shape[0], -1)
            return QDistribution(self.encoder(obs, actions), midpoints, None)
        h = self.encoder(obs, actions)  # [K, M, H]
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

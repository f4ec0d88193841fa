"""The policy BEAR trains: a squashed Gaussian pi_phi, an observation encoder whose output layer
holds the mean and log-std heads side by side.

The sampler takes its noise as an argument, so exported graphs can take it as an input and
torch/ONNX parity is exact. Shapes: B batch, n samples per state, A action size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bear_core.networks.encoders import EncoderSpec, build_encoder

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # policy and regressor log-std clamp (SAC)


class SquashedGaussianPolicy(nn.Module):
    """pi_phi(a|s) = tanh(u), u ~ N(mu(s), sigma(s)^2)."""

    def __init__(self, spec: EncoderSpec, action_size: int) -> None:
        super().__init__()
        self.action_size = action_size
        self.encoder = build_encoder(spec, output_sizes=(action_size, action_size))  # mu, log std

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu(s), clamped log sigma(s)), each [B, A]."""
        mu, log_std = self.encoder(obs).split(self.action_size, -1)
        return mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def best_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Greedy action tanh(mu(s)) in [-1, 1]."""
        return torch.tanh(self(obs)[0])

    def sample_n(
        self, obs: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """noise [B, n, A] ~ N(0, I) -> (pre-tanh u, action tanh(u), log pi(a|s)), [B,n,A]/[B,n]."""
        mu, log_std = self(obs)
        u = torch.addcmul(mu.unsqueeze(1), log_std.exp().unsqueeze(1), noise)  # reparameterised
        # log pi(a|s) = sum_A [log N(u; mu, std) - log(1 - tanh(u)^2)] with
        #   log N(u; mu, std) = -noise^2 / 2 - log std - log(2 pi) / 2
        #   log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))   (the stable form)
        per_dim = 2.0 * (u + F.softplus(-2.0 * u)) - 0.5 * noise.pow(2)
        constant = self.action_size * (0.5 * math.log(2.0 * math.pi) + 2.0 * math.log(2.0))
        log_prob = per_dim.sum(dim=-1) - log_std.sum(dim=-1, keepdim=True) - constant
        return u, torch.tanh(u), log_prob

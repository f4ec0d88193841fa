"""The networks BEAR trains: squashed Gaussian policy pi_phi and behaviour model pi_beta
(L2 regressor or conditional VAE) on top of observation encoders, plus the ensemble layers
the critics are built from (see q_functions).

Every sampler takes its noise as an argument, so exported graphs can take it as an input and
torch/ONNX parity is exact. Shapes: B batch, n samples per state, A action size, K critics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bear_core.linear import Linear, ensemble_linear

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # policy and regressor log-std clamp (SAC)
VAE_LOG_STD_MIN, VAE_LOG_STD_MAX = -4.0, 15.0  # VAE encoder log-std clamp (paper code)
VAE_LATENT_CLIP = 0.5  # decoder samples z ~ N(0, I) clipped to [-0.5, 0.5] (paper code)


class Activation(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate(x, self.name)


def mlp(
    in_size: int, hidden_units: list[int], activation: str, use_batch_norm: bool
) -> nn.Sequential:
    """Linear -> activation (-> BatchNorm) for every hidden layer; output size hidden_units[-1]."""
    layers: list[nn.Module] = []
    for units in hidden_units:
        layers += [Linear(in_size, units), Activation(activation)]
        if use_batch_norm:
            layers.append(nn.BatchNorm1d(units))
        in_size = units
    return nn.Sequential(*layers)


class SquashedGaussianPolicy(nn.Module):
    """pi_phi(a|s) = tanh(u), u ~ N(mu(s), sigma(s)^2)."""

    def __init__(self, encoder: nn.Module, feature_size: int, action_size: int) -> None:
        super().__init__()
        self.action_size = action_size
        self.encoder = encoder
        self.mu = Linear(feature_size, action_size)
        self.log_std = Linear(feature_size, action_size)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.encoder(obs, heads=(self.mu, self.log_std)).split(self.action_size, -1)
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


class RegressorImitator(nn.Module):
    """pi_beta as the reference's probabilistic L2 regressor over pre-tanh actions."""

    def __init__(self, encoder: nn.Module, feature_size: int, action_size: int) -> None:
        super().__init__()
        self.action_size = action_size
        self.encoder = encoder
        self.mu = Linear(feature_size, action_size)
        self.log_std = Linear(feature_size, action_size)

    def _dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.encoder(obs, heads=(self.mu, self.log_std)).split(self.action_size, -1)
        return mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """L(beta) = E[(tanh(u) - a_t)^2], u ~ pi_beta(.|s_t) reparameterised; noise [B, A]."""
        mu, std = self._dist(obs)
        return F.mse_loss(torch.tanh(mu + std * noise), actions)

    def sample_n_pre_tanh(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """noise [B, n, A] -> pre-tanh behaviour samples [B, n, A]."""
        mu, std = self._dist(obs)
        return mu.unsqueeze(1) + std.unsqueeze(1) * noise


class VAEImitator(nn.Module):
    """pi_beta as the conditional VAE of the paper's code: E(s, a) -> z, D(s, z) -> pre-tanh a."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        feature_size: int,
        action_size: int,
        kl_weight: float,
    ) -> None:
        """encoder(s, a) and decoder(s, z) are observation encoders taking a (latent 2|A|)."""
        super().__init__()
        self.action_size = action_size
        self.latent_size = 2 * action_size
        self.kl_weight = kl_weight
        self.encoder = encoder
        self.latent_mu = Linear(feature_size, self.latent_size)
        self.latent_log_std = Linear(feature_size, self.latent_size)
        self.decoder = decoder
        self.decoder_out = Linear(feature_size, action_size)

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """||tanh(D(s, z)) - a||^2 + w * KL(q(z|s,a) || N(0, I)); noise [B, latent]."""
        latent = self.encoder(obs, actions, heads=(self.latent_mu, self.latent_log_std))
        mu, log_std = latent.split(self.latent_size, -1)
        log_std = log_std.clamp(VAE_LOG_STD_MIN, VAE_LOG_STD_MAX)
        z = mu + log_std.exp() * noise
        reconstruction = torch.tanh(self.decoder(obs, z, heads=(self.decoder_out,)))
        kl = -0.5 * (1.0 + 2.0 * log_std - mu.pow(2) - (2.0 * log_std).exp()).mean()
        return F.mse_loss(reconstruction, actions) + self.kl_weight * kl

    def sample_n_pre_tanh(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """noise [B, n, latent] ~ N(0, I) -> pre-tanh behaviour samples [B, n, A]."""
        b, n, _ = noise.shape
        z = noise.clamp(-VAE_LATENT_CLIP, VAE_LATENT_CLIP).reshape(b * n, -1)
        obs_n = obs.unsqueeze(1).expand(-1, n, *obs.shape[1:]).reshape(b * n, *obs.shape[1:])
        return self.decoder(obs_n, z, heads=(self.decoder_out,)).reshape(b, n, -1)

    @property
    def noise_size(self) -> int:
        return self.latent_size


class EnsembleLinear(nn.Module):
    """K independent linear layers: [K, M, in] (or one [M, in] for all) -> [K, M, out]."""

    def __init__(self, n: int, in_size: int, out_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_size, out_size))
        self.bias = nn.Parameter(torch.empty(n, 1, out_size))
        bound = 1.0 / math.sqrt(in_size)  # nn.Linear's default initialisation, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        """x W + b, followed by ReLU when `relu` (fused into the product where possible)."""
        return ensemble_linear(x, self.weight, self.bias, relu)


class EnsembleBatchNorm(nn.Module):
    """BatchNorm1d per member and feature of a [K, M, H] tensor."""

    def __init__(self, n: int, size: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n * size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b, h = x.shape
        y = self.norm(x.transpose(0, 1).reshape(b, k * h))
        return y.reshape(b, k, h).transpose(0, 1)


def activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    """The activation, in place where autograd allows it (relu, tanh keep only their output)."""
    if activation == "relu":
        return torch.relu_(x)
    if activation == "tanh":
        return torch.tanh_(x)
    return F.silu(x)

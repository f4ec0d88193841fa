"""The behaviour model pi_beta: the reference's L2 regressor or the paper code's conditional VAE,
each on top of observation encoders.

Every sampler takes its noise as an argument, so exported graphs can take it as an input and
torch/ONNX parity is exact. Shapes: B batch, n samples per state, A action size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bear_core.networks.kernels.fused_linear import Linear
from bear_core.networks.policies import LOG_STD_MAX, LOG_STD_MIN

VAE_LOG_STD_MIN, VAE_LOG_STD_MAX = -4.0, 15.0  # VAE encoder log-std clamp (paper code)
VAE_LATENT_CLIP = 0.5  # decoder samples z ~ N(0, I) clipped to [-0.5, 0.5] (paper code)


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

"""The behaviour model pi_beta: the reference's L2 regressor or the paper code's conditional VAE,
each made of observation encoders whose output layers hold the heads.

Every sampler takes its noise as an argument, so exported graphs can take it as an input and
torch/ONNX parity is exact. Shapes: B batch, n samples per state, A action size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bear_core.networks.encoders import EncoderSpec, build_encoder
from bear_core.networks.policies import LOG_STD_MAX, LOG_STD_MIN

VAE_LOG_STD_MIN, VAE_LOG_STD_MAX = -4.0, 15.0  # VAE encoder log-std clamp (paper code)
VAE_LATENT_CLIP = 0.5  # decoder samples z ~ N(0, I) clipped to [-0.5, 0.5] (paper code)


class RegressorImitator(nn.Module):
    """pi_beta as the reference's probabilistic L2 regressor over pre-tanh actions."""

    def __init__(self, spec: EncoderSpec, action_size: int) -> None:
        super().__init__()
        self.action_size = action_size
        self.encoder = build_encoder(spec, output_sizes=(action_size, action_size))  # mu, log std

    def _dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.encoder(obs).split(self.action_size, -1)
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

    def __init__(self, spec: EncoderSpec, action_size: int, kl_weight: float) -> None:
        """encoder(s, a) -> (latent mean, latent log std); decoder(s, z) -> pre-tanh a; the
        latent has 2|A| dimensions."""
        super().__init__()
        self.action_size = action_size
        self.latent_size = 2 * action_size
        self.kl_weight = kl_weight
        latent = self.latent_size
        self.encoder = build_encoder(spec, action_size, output_sizes=(latent, latent))
        self.decoder = build_encoder(spec, latent, output_sizes=(action_size,))

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """||tanh(D(s, z)) - a||^2 + w * KL(q(z|s,a) || N(0, I)); noise [B, latent]."""
        mu, log_std = self.encoder(obs, actions).split(self.latent_size, -1)
        log_std = log_std.clamp(VAE_LOG_STD_MIN, VAE_LOG_STD_MAX)
        z = mu + log_std.exp() * noise
        reconstruction = torch.tanh(self.decoder(obs, z))
        kl = -0.5 * (1.0 + 2.0 * log_std - mu.pow(2) - (2.0 * log_std).exp()).mean()
        return F.mse_loss(reconstruction, actions) + self.kl_weight * kl

    def sample_n_pre_tanh(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """noise [B, n, latent] ~ N(0, I) -> pre-tanh behaviour samples [B, n, A]."""
        b, n, _ = noise.shape
        z = noise.clamp(-VAE_LATENT_CLIP, VAE_LATENT_CLIP).reshape(b * n, -1)
        obs_n = obs.unsqueeze(1).expand(-1, n, *obs.shape[1:]).reshape(b * n, *obs.shape[1:])
        return self.decoder(obs_n, z).reshape(b, n, -1)

    @property
    def noise_size(self) -> int:
        return self.latent_size

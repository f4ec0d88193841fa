"""BEAR's math, top to bottom (Kumar et al. 2019, arXiv 1906.00949). Each loss is a pure
function of tensors and modules: nothing here steps an optimizer:
`bear_core.bear.update.update_step` is the short recipe that orders one gradient step.

Symbols: s, a, r, s', d a batch of transitions; pi_phi the policy; pi_beta the behaviour model;
Q_1..Q_K the critics and Q'_k their Polyak targets; T the SAC temperature; alpha the Lagrange
multiplier of the MMD constraint MMD(pi_phi, pi_beta) <= epsilon.
Shapes: B batch, n samples per state, A action size, K critics, D observation size.

Deliberate choices, where the reference implementations differ from each other:
- MMD compares pre-tanh samples of pi_phi and pi_beta (both imitators model pre-tanh actions),
  kernel summed over action dims with bandwidth 2*sigma, biased estimator, sqrt(MMD^2 + 1e-6).
- alpha takes its own Adam step (alpha_learning_rate) on the detached MMD, then
  log alpha is clamped to [-5, 10] in place, as the paper's code does.
- Warm-up (epoch < rl_start_epoch): pi_beta, and pi_phi on the MMD penalty alone, with alpha;
  critics, temperature and targets start with RL.
- The SAC term uses the first of the n policy samples drawn for the MMD (as the paper's code).
- Distributional critics (qr, iqn, fqf) pick a_j and the min/max critics by expected value and
  regress on the mixed target quantiles with the quantile Huber loss.
- IQN's target uses fixed fractions: the target critics (always in eval mode) evaluate their
  quantiles at the N midpoints tau_i = (i + 1/2) / N, i = 0..N-1 (N = n_quantiles), not at
  freshly sampled tau' ~ U(0, 1) as in Dabney et al. 2018. The online critics still sample
  their N fractions every step, so the loss regresses sampled quantiles on an evenly spaced
  target distribution that carries no fraction-sampling noise (deterministic given s', a_j).
- Bootstrap masks are drawn fresh every step, one {0, 1} per critic and transition.
- Augmented observations (after scaling) average each loss over n_augmentations draws;
  temperature and alpha use the draws' mean log pi and MMD.
"""

from __future__ import annotations

from typing import Any

import torch

from bear_core.networks.q_functions import QDistribution, quantile_huber_loss

LOG_ALPHA_MIN, LOG_ALPHA_MAX = -5.0, 10.0
KERNELS = ("gaussian", "laplacian")


# --- MMD between pi_phi and pi_beta -------------------------------------------------------------


def kernel(x: torch.Tensor, y: torch.Tensor, kind: str, sigma: float) -> torch.Tensor:
    """k(x_i, y_j) for x [B, n, A], y [B, m, A] -> [B, n, m]; `kind` 'gaussian' or 'laplacian'
    (anything else raises ValueError)."""
    if kind not in KERNELS:
        raise ValueError(f"kernel kind must be one of {list(KERNELS)}, got {kind!r}")
    # action dim first: the sums over A then run over whole contiguous [n, m] planes
    x_t, y_t = x.transpose(1, 2).contiguous(), y.transpose(1, 2).contiguous()  # [B, A, n|m]
    diff = x_t.unsqueeze(3) - y_t.unsqueeze(2)  # [B, A, n, m]
    if kind == "gaussian":
        return torch.exp(diff.pow(2).sum(dim=1) / (-2.0 * sigma))
    return torch.exp(diff.abs().sum(dim=1) / (-2.0 * sigma))  # laplacian


def mmd(policy: torch.Tensor, behaviour: torch.Tensor, kind: str, sigma: float) -> torch.Tensor:
    """MMD(pi_phi, pi_beta) per state from n samples p of one and m samples b of the other,
    [B, n, A], [B, m, A] -> [B].

    MMD^2 = mean k(p, p') + mean k(b, b') - 2 mean k(p, b)
          = sum_ij w_i w_j k(z_i, z_j)  over the joint samples z = [p; b],
            w = (1/n, ..., 1/n, -1/m, ..., -1/m): one kernel matrix instead of three.
    """
    return _MMD.apply(policy, behaviour, kind, sigma)


class _MMD(torch.autograd.Function):
    """`mmd` as one autograd node with its gradient in closed form. With c_ij = w_i w_j k_ij
    (so MMD^2 = sum_ij c_ij) and k symmetric:

    dMMD^2/dz_i = 2 sum_j c_ij dlog k_ij/dz_i
                = -(2 / sigma) sum_j c_ij (z_i - z_j)          gaussian
                = -(1 / sigma) sum_j c_ij sign(z_i - z_j)      laplacian
    and dMMD = dMMD^2 / (2 MMD).
    """

    @staticmethod
    def forward(
        ctx: Any, policy: torch.Tensor, behaviour: torch.Tensor, kind: str, sigma: float
    ) -> torch.Tensor:
        n, m = policy.shape[1], behaviour.shape[1]
        z = torch.cat([policy, behaviour], dim=1)  # [B, n + m, A]
        w = torch.cat([z.new_full((n,), 1.0 / n), z.new_full((m,), -1.0 / m)])
        c = kernel(z, z, kind, sigma) * torch.outer(w, w)  # [B, n + m, n + m]
        value = (c.sum(dim=(1, 2)) + 1e-6).sqrt()
        ctx.save_for_backward(z, c, value)
        ctx.kind, ctx.sigma, ctx.n = kind, sigma, n
        return value

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        z, c, value = ctx.saved_tensors
        if ctx.kind == "gaussian":  # sum_j c_ij (z_i - z_j) = z_i sum_j c_ij - (c z)_i
            dz = (torch.bmm(c, z) - z * c.sum(dim=-1, keepdim=True)) * (2.0 / ctx.sigma)
        else:  # laplacian, summed on contiguous [P, P] planes per action dim as in `kernel`
            z_t = z.transpose(1, 2).contiguous()  # [B, A, P]
            sign = torch.sign(z_t.unsqueeze(3) - z_t.unsqueeze(2))  # [B, A, P, P]
            dz = (sign * c.unsqueeze(1)).sum(dim=-1).transpose(1, 2) * (-1.0 / ctx.sigma)
        dz = dz * (grad / (2.0 * value))[:, None, None]  # [B, n + m, A]
        n = ctx.n
        grad_policy = dz[:, :n] if ctx.needs_input_grad[0] else None
        grad_behaviour = dz[:, n:] if ctx.needs_input_grad[1] else None
        return grad_policy, grad_behaviour, None, None


# --- losses -------------------------------------------------------------------------------------


def critic_target(
    rewards: torch.Tensor,
    terminals: torch.Tensor,
    next_quantiles: torch.Tensor,
    next_q: torch.Tensor,
    next_log_prob: torch.Tensor,
    gamma: float,
    lam: float,
    temperature: torch.Tensor,
) -> torch.Tensor:
    """y = r + gamma (1 - d) [lam Z'_kmin(s', a_j) + (1 - lam) Z'_kmax(s', a_j) - T log pi(a_j|s')]

    a_j ~ pi(.|s') is the sample maximising lam min_k Q'_k + (1 - lam) max_k Q'_k, and k_min,
    k_max the critics with the smallest and largest Q' there. Z' are quantiles (one value, Q', for
    q_func_type 'mean'). rewards, terminals [B]; next_quantiles [K, B, n, N]; next_q (expected
    values) [K, B, n]; next_log_prob [B, n] -> y [B, N].
    """
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    mixed = lam * next_q.min(dim=0).values + (1.0 - lam) * next_q.max(dim=0).values  # [B, n]
    j = mixed.argmax(dim=1)  # [B]
    q_j = next_q[:, rows, j]  # [K, B]
    z_j = next_quantiles[:, rows, j]  # [K, B, N]
    z = lam * z_j[q_j.argmin(dim=0), rows] + (1.0 - lam) * z_j[q_j.argmax(dim=0), rows]  # [B, N]
    temp_log_pi = temperature * next_log_prob[rows, j]  # T log pi(a_j|s'), [B]
    return rewards[:, None] + gamma * (1.0 - terminals[:, None]) * (z - temp_log_pi[:, None])


def critic_loss(
    q: QDistribution, y: torch.Tensor, masks: torch.Tensor | None = None
) -> torch.Tensor:
    """sum_k mean_B m_kb l_k(s, a): l = (Q_k(s, a) - y)^2 for 'mean', the quantile Huber loss
    otherwise; m are bootstrap masks in {0, 1} (all ones without bootstrap). y [B, N]."""
    if q.taus is None:
        errors = (q.quantiles[..., 0] - y[None, :, 0]).pow(2)  # [K, B]
    else:
        errors = quantile_huber_loss(q.quantiles, q.taus, y)  # [K, B]
    if masks is not None:
        errors = errors * masks
    return errors.mean(dim=1).sum()


def actor_loss(
    q_min: torch.Tensor | None,
    log_prob: torch.Tensor,
    mmd_value: torch.Tensor,
    temperature: torch.Tensor,
    alpha: torch.Tensor,
    epsilon: float,
) -> torch.Tensor:
    """J(phi) = E_s[T log pi(a~|s) - min_k Q_k(s, a~)] + E_s[alpha (MMD(s) - epsilon)].

    With q_min None (warm-up) only the MMD penalty remains. q_min, log_prob, mmd_value: [B].
    """
    penalty = (alpha * (mmd_value - epsilon)).mean()
    if q_min is None:
        return penalty
    return (temperature * log_prob - q_min).mean() + penalty


def temperature_loss(
    log_temp: torch.Tensor, log_prob: torch.Tensor, action_size: int
) -> torch.Tensor:
    """SAC auto-tuning towards entropy -|A|: -E[T (log pi(a|s) - |A|)], log pi detached."""
    return -(log_temp.exp() * (log_prob.detach() - action_size)).mean()


def alpha_loss(log_alpha: torch.Tensor, mmd_value: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Dual ascent on alpha: minimise -E[alpha (MMD(s) - epsilon)], MMD detached."""
    return -(log_alpha.exp() * (mmd_value.detach() - epsilon)).mean()


__all__ = [
    "actor_loss",
    "alpha_loss",
    "critic_loss",
    "critic_target",
    "kernel",
    "mmd",
    "temperature_loss",
]

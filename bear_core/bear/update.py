"""One BEAR gradient step: the order in which the losses of `bear_core.bear.losses` are taken
and the optimizers step (imitator and critics; then, every update_actor_interval steps, actor,
temperature and alpha, and the target critics). The only place where optimizers step."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch

from bear_core.augmentations import augmented_mean
from bear_core.bear.losses import (
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    actor_loss,
    alpha_loss,
    critic_loss,
    critic_target,
    mmd,
    temperature_loss,
)
from bear_core.bear.modules import BEARModules, TorchBatch, frozen
from bear_core.config import BEARConfig


def update_step(
    m: BEARModules,
    cfg: BEARConfig,
    batch: TorchBatch,
    *,
    rl_started: bool,
    update_actor: bool,
) -> dict[str, torch.Tensor]:
    """Imitator and critics (after warm-up); then every update_actor_interval steps: actor,
    temperature and alpha, and the target critics. Returns detached metrics. Losses of
    disjoint parameters share one backward pass; each keeps its own optimizer.

    With `augmentation`, the imitator, target, critic and actor losses are averaged over
    n_augmentations independent draws of augmented observations (the reference's recipe)."""
    s, a = batch.observations, batch.actions
    B, A, n = a.shape[0], a.shape[1], cfg.n_action_samples
    metrics: dict[str, torch.Tensor] = {}

    def over_draws(
        loss_of: Callable[[torch.Tensor], torch.Tensor], obs: torch.Tensor
    ) -> torch.Tensor:
        return augmented_mean(loss_of, obs, m.augmentation, cfg.n_augmentations, m.generator)

    # pi_beta: L(beta) on (s, a) ~ D
    noise = m.noise(B, m.imitator_noise_size)
    loss = over_draws(lambda obs: m.imitator.loss(obs, a, noise), s)
    losses = {"imitator_loss": (m.imitator_optim, loss)}

    temperature = m.log_temp.value.exp().detach()
    if rl_started:
        # Q_k: regress on y built from n samples a_j ~ pi(.|s') and the target critics Q'_k
        def target(next_s: torch.Tensor) -> torch.Tensor:
            next_obs = next_s.unsqueeze(1).expand(B, n, *next_s.shape[1:])  # [B, n, D]
            _, next_actions, next_log_prob = m.policy.sample_n(next_s, m.noise(B, n, A))
            next_z = m.target_critics.distribution(next_obs, next_actions)  # rows B * n
            return critic_target(
                batch.rewards,
                batch.terminals,
                next_z.quantiles.reshape(cfg.n_critics, B, n, -1),
                next_z.expected().reshape(cfg.n_critics, B, n),
                next_log_prob,
                cfg.gamma,
                cfg.lam,
                temperature,
            )

        with torch.no_grad():
            y = over_draws(target, batch.next_observations)
        masks = m.bootstrap_masks(B) if cfg.bootstrap else None

        def td_loss(obs: torch.Tensor) -> torch.Tensor:
            loss = critic_loss(m.critics.distribution(obs, a, m.generator), y, masks)
            return loss + m.critics.fraction_loss(obs, a)  # FQF's fraction proposal (0 otherwise)

        losses["critic_loss"] = (m.critic_optim, over_draws(td_loss, s))
    metrics.update(_step(losses))

    if not update_actor:
        return metrics

    # pi_phi: n reparameterised samples serve the MMD; the first one also serves the SAC term
    alpha = m.log_alpha.value.exp().detach()
    draws: list[tuple[torch.Tensor, torch.Tensor]] = []  # (MMD [B], log pi [B]) of each draw

    def policy_loss(obs: torch.Tensor) -> torch.Tensor:
        pre_tanh, actions, log_prob = m.policy.sample_n(obs, m.noise(B, n, A))  # [B,n,A], [B,n]
        with torch.no_grad():
            behaviour = m.imitator.sample_n_pre_tanh(obs, m.noise(B, n, m.imitator_noise_size))
        mmd_value = mmd(pre_tanh, behaviour, cfg.mmd_kernel, cfg.mmd_sigma)  # [B]
        draws.append((mmd_value.detach(), log_prob[:, 0].detach()))
        q_min = None
        if rl_started:
            with frozen(m.critics):
                q_min = m.critics(obs, actions[:, 0], m.generator).min(dim=0).values  # [B]
        return actor_loss(q_min, log_prob[:, 0], mmd_value, temperature, alpha, cfg.alpha_threshold)

    losses = {"actor_loss": (m.actor_optim, over_draws(policy_loss, s))}
    mmd_value = torch.stack([d[0] for d in draws]).mean(dim=0)
    log_prob = torch.stack([d[1] for d in draws]).mean(dim=0)
    metrics["mmd"] = mmd_value.mean()

    # T and alpha: their losses see this step's detached log pi and MMD (the actor used the
    # values from before their update)
    if rl_started and cfg.temp_learning_rate > 0:
        losses["temp_loss"] = (m.temp_optim, temperature_loss(m.log_temp.value, log_prob, A))
    if cfg.alpha_learning_rate > 0:
        loss = alpha_loss(m.log_alpha.value, mmd_value, cfg.alpha_threshold)
        losses["alpha_loss"] = (m.alpha_optim, loss)
    metrics.update(_step(losses))
    if cfg.alpha_learning_rate > 0:
        m.log_alpha.clamp_(LOG_ALPHA_MIN, LOG_ALPHA_MAX)
    metrics["temp"] = m.log_temp.value.detach().exp()
    metrics["alpha"] = m.log_alpha.value.detach().exp()

    if rl_started:
        m.update_targets(cfg.tau)  # Q'_k <- tau Q_k + (1 - tau) Q'_k
    return metrics


def _step(
    losses: dict[str, tuple[torch.optim.Optimizer, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """One backward pass through all the losses (of disjoint parameters), then each optimizer's
    step; returns the detached losses by name. Optimizers that share a parameter raise
    ValueError: one backward pass would give that parameter the sum of the losses' gradients
    and every sharing optimizer would step it."""
    if not losses:
        return {}
    _check_disjoint(losses)
    for optimizer, _ in losses.values():
        optimizer.zero_grad(set_to_none=True)
    torch.autograd.backward([loss for _, loss in losses.values()])
    for optimizer, _ in losses.values():
        optimizer.step()
    return {name: loss.detach() for name, (_, loss) in losses.items()}


# Optimizer sets found pairwise disjoint, by the optimizers' ids: the full check runs once per
# set (update_step uses a handful), later steps cost one set lookup (about 1 us, against
# milliseconds for a step). Parameter groups are taken as fixed once an optimizer is built (as
# BEARModules builds them). A finalizer drops the sets of a garbage-collected optimizer, so a new
# optimizer that reuses its id is checked afresh.
_DISJOINT: set[tuple[int, ...]] = set()


def _check_disjoint(losses: dict[str, tuple[torch.optim.Optimizer, torch.Tensor]]) -> None:
    key = tuple([id(optimizer) for optimizer, _ in losses.values()])
    if key in _DISJOINT:
        return
    owner: dict[int, str] = {}  # id(parameter) -> name of the loss whose optimizer holds it
    for name, (optimizer, _) in losses.items():
        for group in optimizer.param_groups:
            for param in group["params"]:
                other = owner.setdefault(id(param), name)
                if other != name:
                    raise ValueError(
                        f"{other} and {name} are backpropagated together, but their optimizers "
                        f"share a parameter of shape {list(param.shape)}"
                    )
    _DISJOINT.add(key)
    for optimizer, _ in losses.values():
        weakref.finalize(optimizer, _forget, id(optimizer))


def _forget(optimizer_id: int) -> None:
    _DISJOINT.difference_update({key for key in _DISJOINT if optimizer_id in key})


def metrics_to_floats(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """One device sync for all metrics."""
    if not metrics:
        return {}
    values = torch.stack([v.float() for v in metrics.values()]).tolist()
    return dict(zip(metrics, values, strict=True))

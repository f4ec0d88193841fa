"""The math of BEAR: kernels, MMD, target, losses, and the order and gating of one update step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bear_core.bear.algo import BEAR
from bear_core.bear.losses import (
    actor_loss,
    alpha_loss,
    critic_loss,
    critic_target,
    kernel,
    mmd,
    temperature_loss,
)
from bear_core.dataset.batch import TransitionBatch
from bear_core.networks.q_functions import QDistribution, quantile_huber_loss
from tests.conftest import ACTION_SIZE, OBS_SIZE, TINY


def random_batch(n: int = 32, seed: int = 0) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    return TransitionBatch(
        observations=rng.normal(size=(n, OBS_SIZE)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(n, ACTION_SIZE)).astype(np.float32),
        rewards=rng.normal(size=(n, 1)).astype(np.float32),
        next_observations=rng.normal(size=(n, OBS_SIZE)).astype(np.float32),
        terminals=(rng.uniform(size=(n, 1)) < 0.2).astype(np.float32),
    )


def built(**params: object) -> BEAR:
    algo = BEAR(**{**TINY, "action_scaler": None, **params})
    algo.create_impl((OBS_SIZE,), ACTION_SIZE)
    return algo


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()]).clone()


@pytest.mark.parametrize("kind", ["gaussian", "laplacian"])
def test_kernel_matches_its_formula(kind: str) -> None:
    x, y = torch.randn(3, 4, 2), torch.randn(3, 5, 2)
    diff = x[:, :, None, :] - y[:, None, :, :]
    distance = diff.pow(2).sum(-1) if kind == "gaussian" else diff.abs().sum(-1)
    expected = torch.exp(-distance / (2 * 20.0))
    torch.testing.assert_close(kernel(x, y, kind, 20.0), expected)


def test_mmd_is_near_zero_for_identical_samples_and_grows_with_distance() -> None:
    p = torch.randn(8, 4, 3)
    same = mmd(p, p.clone(), "gaussian", 1.0)
    torch.testing.assert_close(same, torch.full((8,), 1e-3), atol=1e-4, rtol=0)
    near = mmd(p, p + 0.5, "gaussian", 1.0)
    far = mmd(p, p + 3.0, "gaussian", 1.0)
    assert bool((far > near).all()) and bool((near > same).all())


def test_mmd_hand_computed_single_sample() -> None:
    p, b = torch.tensor([[[0.0, 0.0]]]), torch.tensor([[[1.0, 2.0]]])
    k = np.exp(-(1 + 4) / (2 * 2.0))
    expected = np.sqrt(1 + 1 - 2 * k + 1e-6)
    assert mmd(p, b, "gaussian", 2.0).item() == pytest.approx(expected, rel=1e-6)


def _mmd_by_autograd(p: torch.Tensor, b: torch.Tensor, kind: str, sigma: float) -> torch.Tensor:
    """The three-kernel textbook form, differentiated by autograd."""

    def mean_k(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        diff = x.unsqueeze(2) - y.unsqueeze(1)  # [B, n, m, A]
        dist = diff.pow(2).sum(-1) if kind == "gaussian" else diff.abs().sum(-1)
        return torch.exp(-dist / (2.0 * sigma)).mean(dim=(1, 2))

    return (mean_k(p, p) + mean_k(b, b) - 2.0 * mean_k(p, b) + 1e-6).sqrt()


@pytest.mark.parametrize("kind", ["gaussian", "laplacian"])
def test_mmd_closed_form_gradient_matches_autograd(kind: str) -> None:
    torch.manual_seed(0)
    p = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 5, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(6, dtype=torch.float64)
    value = mmd(p, b, kind, 1.5)
    reference = _mmd_by_autograd(p, b, kind, 1.5)
    torch.testing.assert_close(value, reference)
    grads = torch.autograd.grad((value * weights).sum(), (p, b))
    expected = torch.autograd.grad((reference * weights).sum(), (p, b))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda x, y: mmd(x, y, kind, 1.5), (p, b))


def test_mmd_gradient_skips_an_input_that_needs_none() -> None:
    p = torch.randn(4, 3, 2, requires_grad=True)
    b = torch.randn(4, 3, 2)
    mmd(p, b, "gaussian", 1.0).sum().backward()
    assert p.grad is not None and bool(p.grad.abs().sum() > 0)
    assert b.grad is None


def test_critic_target_mixes_min_and_max_and_takes_best_sample() -> None:
    # K=2 critics, B=1, n=2 samples, one quantile (q_func_type 'mean')
    next_q = torch.tensor([[[1.0, 4.0]], [[3.0, 0.0]]])
    log_prob = torch.tensor([[0.5, -0.5]])
    lam, gamma, t = 0.75, 0.9, torch.tensor(0.1)
    args = (next_q.unsqueeze(-1), next_q, log_prob, gamma, lam, t)
    # sample 0: 0.75*1 + 0.25*3 = 1.5; sample 1: 0.75*0 + 0.25*4 = 1.0 -> sample 0
    y = critic_target(torch.tensor([2.0]), torch.tensor([0.0]), *args)
    assert y.shape == (1, 1) and y.item() == pytest.approx(2.0 + 0.9 * (1.5 - 0.1 * 0.5))
    assert critic_target(torch.tensor([2.0]), torch.tensor([1.0]), *args).item() == 2.0


def test_distributional_target_mixes_the_quantiles_of_the_min_and_max_critics() -> None:
    # K=2, B=1, n=1, N=2 quantiles; critic 0 has the smaller expected value
    quantiles = torch.tensor([[[[0.0, 2.0]]], [[[3.0, 5.0]]]])
    expected = quantiles.mean(dim=-1)
    y = critic_target(torch.tensor([1.0]), torch.tensor([0.0]), quantiles, expected,
                      torch.zeros(1, 1), 0.5, 0.75, torch.tensor(0.0))  # fmt: skip
    mixed = 0.75 * torch.tensor([0.0, 2.0]) + 0.25 * torch.tensor([3.0, 5.0])
    torch.testing.assert_close(y, (1.0 + 0.5 * mixed).unsqueeze(0))


def test_critic_loss_sums_member_mses_and_applies_bootstrap_masks() -> None:
    q = QDistribution(torch.tensor([[[1.0], [2.0]], [[0.0], [0.0]]]), None, None)
    y = torch.tensor([[0.0], [1.0]])
    assert critic_loss(q, y).item() == pytest.approx((1 + 1) / 2 + (0 + 1) / 2)
    masks = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert critic_loss(q, y, masks).item() == pytest.approx(1 / 2 + 1 / 2)


def test_quantile_huber_loss_matches_hand_computation() -> None:
    quantiles = torch.tensor([[[0.0, 1.0]]])  # K=1, B=1, N=2
    taus = torch.tensor([[[0.25, 0.75]]])
    target = torch.tensor([[0.5, 3.0]])
    # u_ij = y_j - theta_i: i=0 -> [0.5, 3.0], i=1 -> [-0.5, 2.0]
    huber = {0.5: 0.125, 3.0: 2.5, -0.5: 0.125, 2.0: 1.5}
    expected = (0.25 * huber[0.5] + 0.25 * huber[3.0]) / 2 + (
        0.25 * huber[-0.5] + 0.75 * huber[2.0]
    ) / 2  # |tau - 1{u<0}|: i=0 u>0 -> 0.25; i=1: u<0 -> |0.75-1| = 0.25, u>0 -> 0.75
    assert quantile_huber_loss(quantiles, taus, target).item() == pytest.approx(expected)


def test_actor_loss_warmup_is_only_the_mmd_penalty() -> None:
    log_prob, m, t, a = (
        torch.tensor([0.3]),
        torch.tensor([0.2]),
        torch.tensor(0.5),
        torch.tensor(2.0),
    )
    assert actor_loss(None, log_prob, m, t, a, 0.05).item() == pytest.approx(2.0 * 0.15)
    full = actor_loss(torch.tensor([1.0]), log_prob, m, t, a, 0.05).item()
    assert full == pytest.approx(0.5 * 0.3 - 1.0 + 2.0 * 0.15)


def test_dual_losses_have_the_right_sign() -> None:
    log_alpha = torch.zeros((), requires_grad=True)
    alpha_loss(log_alpha, torch.tensor([0.5]), 0.05).backward()
    assert log_alpha.grad is not None and log_alpha.grad.item() < 0  # MMD > eps: alpha grows
    log_temp = torch.zeros((), requires_grad=True)
    temperature_loss(log_temp, torch.tensor([5.0]), 2).backward()
    assert log_temp.grad is not None and log_temp.grad.item() < 0  # entropy too low: T grows


def test_alpha_learning_rate_drives_alpha_optimizer() -> None:
    changes = {}
    for lr in (0.0, 1e-3, 1e-1):
        algo = built(alpha_learning_rate=lr)
        assert algo.impl is not None
        assert algo.impl.alpha_optim.param_groups[0]["lr"] == lr
        for step in range(3):
            metrics = algo.update(0, step, random_batch(seed=step))
        changes[lr] = abs(metrics["alpha"] - 1.0)
    assert changes[0.0] == 0.0
    assert 0.0 < changes[1e-3] < changes[1e-1]


@pytest.mark.parametrize(("threshold", "bound"), [(10.0, -5.0), (-10.0, 10.0)])
def test_log_alpha_is_clamped_to_paper_range(threshold: float, bound: float) -> None:
    algo = built(alpha_learning_rate=50.0, alpha_threshold=threshold)  # MMD far below/above eps
    for step in range(5):
        metrics = algo.update(0, step, random_batch(seed=step))
    assert metrics["alpha"] == pytest.approx(np.exp(bound), rel=1e-5)


def test_mmd_gradient_reaches_the_policy_after_warmup() -> None:
    """The actor's gradient after warm-up includes the MMD penalty: alpha changes the update."""
    results = []
    for alpha in (1e-3, 1e3):
        algo = built(initial_alpha=alpha, alpha_learning_rate=0.0, rl_start_epoch=0)
        assert algo.impl is not None
        algo.update(0, 0, random_batch())
        results.append(flat(algo.impl.policy))
    assert not torch.allclose(results[0], results[1])

    algo = built()
    m = algo.impl
    assert m is not None
    obs = torch.randn(16, OBS_SIZE)
    pre_tanh, _, _ = m.policy.sample_n(obs, torch.randn(16, 4, ACTION_SIZE))
    with torch.no_grad():
        behaviour = m.imitator.sample_n_pre_tanh(obs, torch.randn(16, 4, ACTION_SIZE))
    penalty = actor_loss(
        None,
        torch.zeros(16),
        mmd(pre_tanh, behaviour, "gaussian", 20.0),
        torch.tensor(1.0),
        torch.tensor(1.0),
        0.05,
    )
    grads = torch.autograd.grad(penalty, list(m.policy.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_warmup_trains_imitator_and_mmd_actor_but_not_critics() -> None:
    algo = built(rl_start_epoch=1, temp_learning_rate=3e-4, initial_temperature=1.0)
    m = algo.impl
    assert m is not None
    critics, policy, imitator = flat(m.critics), flat(m.policy), flat(m.imitator)
    metrics = algo.update(0, 0, random_batch())
    assert "critic_loss" not in metrics and "temp_loss" not in metrics
    assert torch.equal(flat(m.critics), critics)
    assert not torch.equal(flat(m.policy), policy)
    assert not torch.equal(flat(m.imitator), imitator)
    assert metrics["temp"] == pytest.approx(1.0)
    metrics = algo.update(1, 1, random_batch())
    assert "critic_loss" in metrics and not torch.equal(flat(m.critics), critics)


def test_update_actor_interval_skips_actor_steps() -> None:
    algo = built(update_actor_interval=2)
    m = algo.impl
    assert m is not None
    policy = flat(m.policy)
    metrics = algo.update(0, 1, random_batch())
    assert "actor_loss" not in metrics and torch.equal(flat(m.policy), policy)
    metrics = algo.update(0, 2, random_batch())
    assert "actor_loss" in metrics and not torch.equal(flat(m.policy), policy)


def test_targets_follow_polyak_averaging() -> None:
    algo = built(tau=0.25)
    m = algo.impl
    assert m is not None
    before = flat(m.target_critics)
    assert torch.equal(before, flat(m.critics))  # targets start as copies
    algo.update(0, 0, random_batch())
    expected = 0.75 * before + 0.25 * flat(m.critics)
    torch.testing.assert_close(flat(m.target_critics), expected)


@pytest.mark.parametrize("kind", ["gaussian", "laplacian"])
def test_mmd_equals_its_three_kernel_definition(kind: str) -> None:
    """The joint-sample form equals mean k(p, p') + mean k(b, b') - 2 mean k(p, b), n != m."""
    torch.manual_seed(0)
    p, b = torch.randn(5, 4, 3, dtype=torch.float64), torch.randn(5, 6, 3, dtype=torch.float64)
    mmd2 = (
        kernel(p, p, kind, 2.0).mean(dim=(1, 2))
        + kernel(b, b, kind, 2.0).mean(dim=(1, 2))
        - 2 * kernel(p, b, kind, 2.0).mean(dim=(1, 2))
    )
    torch.testing.assert_close(mmd(p, b, kind, 2.0), (mmd2 + 1e-6).sqrt())


def test_policy_log_prob_is_the_tanh_gaussian_density() -> None:
    """sample_n's log pi(a|s) equals torch.distributions' Normal pushed through tanh."""
    m = built().impl
    assert m is not None
    obs, noise = torch.randn(8, OBS_SIZE), torch.randn(8, 5, ACTION_SIZE)
    with torch.no_grad():
        pre_tanh, actions, log_prob = m.policy.sample_n(obs, noise)
        mu, log_std = m.policy(obs)
    gaussian = torch.distributions.Normal(mu.unsqueeze(1), log_std.exp().unsqueeze(1))
    squashed = torch.distributions.TransformedDistribution(
        gaussian, [torch.distributions.transforms.TanhTransform()]
    )
    torch.testing.assert_close(pre_tanh, mu.unsqueeze(1) + log_std.exp().unsqueeze(1) * noise)
    torch.testing.assert_close(actions, torch.tanh(pre_tanh))
    torch.testing.assert_close(
        log_prob, squashed.log_prob(actions).sum(dim=-1), atol=1e-3, rtol=1e-4
    )


# --- clean-ups: kernel kinds, disjoint optimizers, IQN target fractions ---------------------------


def test_unknown_kernel_kind_raises() -> None:
    x = torch.randn(2, 3, 2)
    with pytest.raises(ValueError, match="rbf"):
        kernel(x, x, "rbf", 1.0)
    with pytest.raises(ValueError, match="Gaussian"):
        mmd(x, x, "Gaussian", 1.0)


def test_step_refuses_optimizers_that_share_parameters() -> None:
    import gc

    from bear_core.bear import update

    shared, own = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    first = torch.optim.Adam([shared])
    second = torch.optim.Adam([own, shared])
    losses = {"a_loss": (first, shared.sum()), "b_loss": (second, (own * shared[:2]).sum())}
    with pytest.raises(ValueError, match="a_loss and b_loss"):
        update._step(losses)
    assert shared.grad is None  # refused before any backward pass or step

    third = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))])
    key = (id(first), id(third))
    p = third.param_groups[0]["params"][0]
    out = update._step({"a_loss": (first, shared.sum()), "c_loss": (third, p.sum())})
    assert set(out) == {"a_loss", "c_loss"} and key in update._DISJOINT
    del first, third, losses, out, p
    gc.collect()
    assert key not in update._DISJOINT  # forgotten with its optimizers


def test_update_step_optimizer_sets_are_disjoint_and_cached() -> None:
    from bear_core.bear import update

    algo = built(share_encoder=True, temp_learning_rate=3e-4, initial_temperature=1.0)
    m = algo.impl
    assert m is not None
    algo.update(1, 0, random_batch())  # imitator + critic, then actor + temp + alpha
    assert (id(m.imitator_optim), id(m.critic_optim)) in update._DISJOINT
    assert (id(m.actor_optim), id(m.temp_optim), id(m.alpha_optim)) in update._DISJOINT


def test_iqn_target_quantiles_are_taken_at_fixed_midpoint_fractions() -> None:
    """The deliberate choice in the losses module docstring: the target critics evaluate IQN
    quantiles at tau_i = (i + 1/2) / N while the online critics sample their fractions."""
    n = 8
    algo = built(q_func_type="iqn", n_quantiles=n)
    m = algo.impl
    assert m is not None
    m.train()  # as update_on_device does
    obs, actions = torch.randn(5, OBS_SIZE), torch.rand(5, ACTION_SIZE) * 2 - 1
    target = m.target_critics.distribution(obs, actions)
    assert target.taus is not None
    torch.testing.assert_close(target.taus, ((torch.arange(n) + 0.5) / n).expand(1, 5, n))
    again = m.target_critics.distribution(obs, actions)
    torch.testing.assert_close(target.quantiles, again.quantiles)  # no sampling noise
    online = m.critics.distribution(obs, actions, m.generator)
    assert online.taus is not None and not torch.allclose(online.taus, target.taus)

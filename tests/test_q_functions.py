"""Every q_func_type, bootstrap and share_encoder: they train, mean what they say, and export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bear_core import BEAR
from bear_core.bundle import load_bundle
from bear_core.dataset import MDPDataset
from bear_core.networks.encoders import EncoderSpec, SharedEncoder
from bear_core.networks.q_functions import CriticEnsemble
from tests.conftest import ACTION_SIZE, OBS_SIZE, TINY

Q_FUNC_TYPES = ["mean", "qr", "iqn", "fqf"]


SPEC = EncoderSpec((OBS_SIZE,), (16, 16), (), 0, "relu", False)


def critics(q_func_type: str, **kwargs: object) -> CriticEnsemble:
    torch.manual_seed(0)
    return CriticEnsemble(q_func_type, 3, SPEC, ACTION_SIZE, n_quantiles=8, embed_size=16,
                          **kwargs)  # fmt: skip


@pytest.mark.parametrize("q_func_type", Q_FUNC_TYPES)
def test_distribution_shapes_and_expected_values(q_func_type: str) -> None:
    q = critics(q_func_type).eval()
    obs, act = torch.randn(5, OBS_SIZE), torch.randn(5, ACTION_SIZE)
    dist = q.distribution(obs, act)
    n = 1 if q_func_type == "mean" else 8
    assert dist.quantiles.shape == (3, 5, n)
    expected = q(obs, act)
    assert expected.shape == (3, 5)
    if dist.weights is None:
        torch.testing.assert_close(expected, dist.quantiles.mean(dim=-1))
    else:
        torch.testing.assert_close(dist.weights.sum(dim=-1), torch.ones(3, 5))
        torch.testing.assert_close(expected, (dist.quantiles * dist.weights).sum(dim=-1))
    torch.testing.assert_close(q(obs, act), expected)  # eval mode is deterministic


def test_iqn_samples_fractions_while_training() -> None:
    q = critics("iqn").train()
    obs, act = torch.randn(4, OBS_SIZE), torch.randn(4, ACTION_SIZE)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    first = q.distribution(obs, act, g1)
    assert first.taus is not None and bool(((first.taus > 0) & (first.taus < 1)).all())
    assert not torch.allclose(first.quantiles, q.distribution(obs, act, g2).quantiles)


def test_fqf_fractions_are_increasing_and_the_fraction_loss_trains_the_proposal_only() -> None:
    q = critics("fqf")
    obs, act = torch.randn(6, OBS_SIZE), torch.randn(6, ACTION_SIZE)
    taus = q.distribution(obs, act).taus
    assert taus is not None and bool((taus.diff(dim=-1) > 0).all())
    q.fraction_loss(obs, act).backward()
    assert q.proposal.weight.grad is not None and q.proposal.weight.grad.abs().sum() > 0
    assert q.head.weight.grad is None and q.tau_embedding.weight.grad is None


def test_shared_encoder_is_one_network_with_its_gradient_divided_by_k() -> None:
    shared = critics("mean", share_encoder=True)
    assert isinstance(shared.encoder, SharedEncoder)
    separate = critics("mean")
    assert sum(p.numel() for p in shared.parameters()) < sum(
        p.numel() for p in separate.parameters()
    )
    torch.manual_seed(0)
    encoder = SharedEncoder(3, SPEC, ACTION_SIZE)  # features only, no heads
    obs, act = torch.randn(4, OBS_SIZE), torch.randn(4, ACTION_SIZE)
    features = encoder(obs, act)
    assert torch.equal(features[0], features[1]) and torch.equal(features[1], features[2])
    encoder(obs, act).sum().backward()  # K copies of the features, each grad scaled 1/K
    inner = encoder.encoder
    scaled = [p.grad.clone() for p in inner.parameters()]
    encoder.zero_grad()
    inner(obs, act).sum().backward()
    for got, plain in zip(scaled, inner.parameters(), strict=True):
        torch.testing.assert_close(got, plain.grad)
    values = shared(obs, act)  # each critic keeps its own head on the shared features
    assert not torch.allclose(values[0], values[1])


def test_bootstrap_masks_change_the_critic_update(dataset: MDPDataset, tmp_path: Path) -> None:
    weights = []
    for bootstrap in (False, True):
        algo = BEAR(**TINY, bootstrap=bootstrap, n_critics=3)
        algo.fit(dataset, logdir=tmp_path, verbose=False, show_progress=False, tensorboard=False)
        assert algo.impl is not None
        weights.append(torch.cat([p.flatten() for p in algo.impl.critics.parameters()]))
    assert not torch.allclose(weights[0], weights[1])
    masks = algo.impl.bootstrap_masks(1000)
    assert masks.shape == (3, 1000) and set(masks.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("q_func_type", Q_FUNC_TYPES)
def test_each_q_func_type_trains_and_exports_with_parity(
    q_func_type: str, dataset: MDPDataset, tmp_path: Path
) -> None:
    algo = BEAR(**{**TINY, "n_epochs": 2}, q_func_type=q_func_type, n_quantiles=8,
                embed_size=16, scaler="standard")  # fmt: skip
    results = algo.fit(dataset, logdir=tmp_path, verbose=False, show_progress=False,
                       tensorboard=False)  # fmt: skip
    assert all(np.isfinite(v) for _, m in results for v in m.values())
    bundle = load_bundle(algo.export_bundle(tmp_path / "bundle"))
    assert bundle.manifest.q_func_type == q_func_type
    rng = np.random.default_rng(0)
    for n in (1, 7, 1024):
        x = (rng.normal(size=(n, OBS_SIZE)) * 3 + 1).astype(np.float32)
        a = algo.predict(x)
        mean, std = algo.predict_value(x, a, with_std=True)
        onnx_mean, onnx_std = bundle.predict_value(x, a, with_std=True)
        np.testing.assert_allclose(onnx_mean, mean, atol=1e-5, rtol=0)
        np.testing.assert_allclose(onnx_std, std, atol=1e-5, rtol=0)
        np.testing.assert_allclose(bundle.predict(x), a, atol=1e-5, rtol=0)

"""BEAR with a dynamics model: MOPO-style rollouts join the mini-batches, and it still learns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bear_core import BEAR
from bear_core.dataset import MDPDataset
from bear_core.dynamics.probabilistic_ensemble import ProbabilisticEnsembleDynamics
from tests.conftest import TINY

SMALL_DYNAMICS = {"n_ensembles": 3, "hidden_units": [32, 32], "n_epochs": 2, "batch_size": 32}


def test_dynamics_is_fitted_on_the_same_data_and_its_rollouts_mix_in(
    dataset: MDPDataset, tmp_path: Path
) -> None:
    spec = {"type": "probabilistic_ensemble", "params": SMALL_DYNAMICS}
    algo = BEAR(**TINY, dynamics=spec, rollout_interval=2, rollout_horizon=2,
                rollout_batch_size=16, real_ratio=0.5)  # fmt: skip
    results = algo.fit(dataset, logdir=tmp_path, verbose=False, show_progress=False,
                       tensorboard=False)  # fmt: skip
    assert algo.dynamics.observation_size == dataset.observation_shape[0]
    assert all(np.isfinite(v) for v in results[-1][1].values())
    (run,) = list(tmp_path.iterdir())
    assert (run / "dynamics.pt").exists()
    # the dynamics model's own fit logged into the run's dynamics/ with the same logger
    logged = [line.split(",")[:2] for line in (run / "dynamics" / "loss.csv").read_text().split()]
    assert [int(epoch) for epoch, _ in logged] == [1, 2]
    assert json.loads((run / "dynamics" / "params.json").read_text())["n_ensembles"] == 3
    assert not list((run / "dynamics").glob("model_*.pt"))  # dynamics.pt is the model
    assert not (run / "dynamics" / "tensorboard").exists()  # tensorboard=False passed on
    params = json.loads((run / "params.json").read_text())
    assert params["dynamics"]["params"]["n_ensembles"] == 3
    assert params["rollout_horizon"] == 2

    without = BEAR(**TINY)
    without.fit(dataset, logdir=tmp_path, verbose=False, show_progress=False, tensorboard=False)
    assert algo.impl is not None and without.impl is not None
    a = torch.cat([p.flatten() for p in algo.impl.critics.parameters()])
    b = torch.cat([p.flatten() for p in without.impl.critics.parameters()])
    assert not torch.allclose(a, b)


def test_a_fitted_dynamics_object_is_used_as_given(dataset: MDPDataset, tmp_path: Path) -> None:
    dynamics = ProbabilisticEnsembleDynamics(**SMALL_DYNAMICS)
    dynamics.fit(dataset, logdir=tmp_path / "dynamics", verbose=False, show_progress=False,
                 tensorboard=False)  # fmt: skip
    fitted_epochs = dynamics.epoch
    algo = BEAR(**TINY, dynamics=dynamics, rollout_interval=1, rollout_batch_size=8)
    algo.fit(dataset, logdir=tmp_path, verbose=False, show_progress=False, tensorboard=False)
    assert algo.dynamics is dynamics and dynamics.epoch == fitted_epochs


def test_mixed_batches_hold_real_and_model_rows(dataset: MDPDataset, tmp_path: Path) -> None:
    from bear_core.dataset import TransitionBuffer
    from bear_core.training.loop import _device_data
    from bear_core.training.rollouts import ModelRollouts

    algo = BEAR(**TINY, dynamics={"type": "probabilistic_ensemble", "params": SMALL_DYNAMICS},
                rollout_batch_size=8, rollout_horizon=3, real_ratio=0.25)  # fmt: skip
    algo.create_impl(dataset.observation_shape, dataset.action_size)
    buffer = TransitionBuffer.from_episodes(dataset.episodes)
    assert algo.impl is not None
    rollouts = ModelRollouts(algo, buffer, tmp_path, dataset.episodes)
    batch = rollouts.mixed_batch(_device_data(buffer, algo.impl), step=0)
    assert rollouts.synthetic is not None and len(rollouts.synthetic[0]) == 24
    assert batch.observations.shape[0] == TINY["batch_size"]
    synthetic_rows = batch.observations[8:]  # 32 * 0.25 = 8 real rows first
    assert all(bool((synthetic_rows[i] == rollouts.synthetic[0]).all(dim=1).any())
               for i in range(len(synthetic_rows)))  # fmt: skip


def test_bad_dynamics_parameters_are_refused_naming_dynamics() -> None:
    with pytest.raises(ValueError, match="dynamics"):
        BEAR(dynamics={"type": "probabilistic_ensemble", "params": {"n_ensembles": 0}})
    with pytest.raises(ValueError, match="dynamics"):
        BEAR(dynamics={"type": "world_model"})

"""ProbabilisticEnsembleDynamics: validation, learning on Pendulum, uncertainty, persistence,
rollouts and the dynamics scorers."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bear_core.dataset import Episode, MDPDataset, generate_pendulum_dataset
from bear_core.dynamics.probabilistic_ensemble import (
    DYNAMICS_SCORERS,
    DynamicsConfig,
    ProbabilisticEnsembleDynamics,
    dynamics_observation_prediction_error_scorer,
    dynamics_prediction_variance_scorer,
    dynamics_reward_prediction_error_scorer,
)
from bear_core.errors import NotBuiltError
from tests.conftest import ACTION_SIZE, OBS_SIZE, make_dataset

SMALL: dict[str, Any] = {"hidden_units": [64, 64], "n_epochs": 20}
TINY: dict[str, Any] = {"hidden_units": [16], "n_epochs": 1, "n_steps_per_epoch": 5}
QUIET: dict[str, Any] = {"verbose": False, "show_progress": False, "tensorboard": False}


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fit's default logdir is relative: keep any run directory out of the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def pendulum() -> tuple[MDPDataset, list[Episode]]:
    """20 training episodes (4000 transitions) and 5 held-out ones of the 'medium' controller."""
    train = generate_pendulum_dataset("medium", n_episodes=20, seed=0)
    held_out = generate_pendulum_dataset("medium", n_episodes=5, seed=1).episodes
    return train, held_out


@pytest.fixture(scope="module")
def trained(
    pendulum: tuple[MDPDataset, list[Episode]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]]:
    torch.set_num_threads(1)
    train, held_out = pendulum
    dynamics = ProbabilisticEnsembleDynamics(**SMALL)
    logdir = tmp_path_factory.mktemp("logs")
    history = dynamics.fit(train, eval_episodes=held_out, logdir=logdir, **QUIET)
    return dynamics, history


def concat(episodes: list[Episode], name: str) -> np.ndarray:
    return np.concatenate([getattr(e, name) for e in episodes])


def policy(observations: torch.Tensor) -> torch.Tensor:
    """A damping torque in Pendulum's action range."""
    return (-0.5 * observations[:, 2:3]).clamp(-2.0, 2.0)


def start_states(episodes: list[Episode], n: int = 16) -> torch.Tensor:
    return torch.as_tensor(concat(episodes, "observations")[::37][:n].copy())


# --- parameters -----------------------------------------------------------------------------------


def test_defaults_and_params_round_trip() -> None:
    params = ProbabilisticEnsembleDynamics().get_params()
    assert params == {
        "n_ensembles": 5,
        "hidden_units": [200, 200, 200, 200],
        "learning_rate": 1e-3,
        "batch_size": 100,
        "n_epochs": 30,
        "n_steps_per_epoch": None,
        "eps": 1e-8,
        "weight_decay": 1e-4,
        "use_gpu": False,
        "seed": 0,
        "scaler": "standard",
        "discrete_action": False,
    }
    custom = ProbabilisticEnsembleDynamics(**SMALL, seed=3, scaler=None).get_params()
    restored = ProbabilisticEnsembleDynamics.from_params(json.loads(json.dumps(custom)))
    assert restored.get_params() == custom


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_ensembles", 1),
        ("n_ensembles", 2.0),
        ("hidden_units", []),
        ("hidden_units", [64, 0]),
        ("hidden_units", 64),
        ("learning_rate", 0.0),
        ("learning_rate", math.nan),
        ("batch_size", 0),
        ("n_epochs", 0),
        ("n_steps_per_epoch", 0),
        ("eps", -1e-8),
        ("weight_decay", -1.0),
        ("seed", -1),
        ("seed", True),
        ("scaler", "min_max"),
        ("discrete_action", True),
        ("discrete_action", "no"),
        ("use_gpu", "tpu"),
    ],
)
def test_constructor_rejects_bad_values(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        ProbabilisticEnsembleDynamics(**{name: value})


def test_constructor_rejects_unknown_parameters() -> None:
    with pytest.raises(TypeError, match="horizon"):
        ProbabilisticEnsembleDynamics(horizon=5)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="horizon"):
        ProbabilisticEnsembleDynamics.from_params({"horizon": 5})


def test_signature_lists_the_config_fields_with_their_defaults() -> None:
    parameters = inspect.signature(ProbabilisticEnsembleDynamics).parameters
    fields = dataclasses.fields(DynamicsConfig)
    assert list(parameters) == [f.name for f in fields]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters.values())
    for f in fields:
        assert parameters[f.name].default == f.default, f.name
    defaults = {name: p.default for name, p in parameters.items()}
    assert DynamicsConfig(**defaults) == DynamicsConfig()
    assert ProbabilisticEnsembleDynamics().config == DynamicsConfig()


def test_fit_takes_bear_fits_arguments_with_the_same_defaults() -> None:
    from bear_core import BEAR

    ours = inspect.signature(ProbabilisticEnsembleDynamics.fit).parameters
    bears = inspect.signature(BEAR.fit).parameters
    reference = [name for name, p in bears.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert list(ours)[: len(reference)] == reference  # self, episodes, experiment_name, ...
    for name in reference[2:]:
        assert ours[name].default == bears[name].default, name
    assert ours["n_epochs"].kind is ours["run_dir"].kind is inspect.Parameter.KEYWORD_ONLY


# --- learning -------------------------------------------------------------------------------------


def test_fit_losses_fall(
    trained: tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]],
) -> None:
    dynamics, history = trained
    assert [epoch for epoch, _ in history] == list(range(1, SMALL["n_epochs"] + 1))
    first, last = history[0][1], history[-1][1]
    assert set(last) == {"loss", "nll", *DYNAMICS_SCORERS}
    assert last["loss"] < first["loss"] - 10.0
    assert last["nll"] < first["nll"] - 2.0
    assert last["observation_error"] < 0.1 * first["observation_error"]
    assert last["reward_error"] < 0.1 * first["reward_error"]
    assert dynamics.epoch == SMALL["n_epochs"]


def test_trained_model_beats_untrained_and_naive(
    pendulum: tuple[MDPDataset, list[Episode]],
    trained: tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]],
) -> None:
    train, held_out = pendulum
    dynamics, _ = trained
    untrained = ProbabilisticEnsembleDynamics(**SMALL)
    untrained.build(3, 1)
    # naive: s' = s and r = the training data's mean reward
    obs, next_obs = concat(held_out, "observations"), concat(held_out, "next_observations")
    naive_obs = float(((next_obs - obs) ** 2).sum(axis=1).mean())
    naive_reward = float(((concat(held_out, "rewards") - train.rewards.mean()) ** 2).mean())
    for scorer, naive in (
        (dynamics_observation_prediction_error_scorer, naive_obs),
        (dynamics_reward_prediction_error_scorer, naive_reward),
    ):
        error = scorer(dynamics, held_out)
        assert error < 0.05 * naive
        assert error < 0.05 * scorer(untrained, held_out)


def test_variance_is_higher_out_of_distribution(
    pendulum: tuple[MDPDataset, list[Episode]],
    trained: tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]],
) -> None:
    _, held_out = pendulum
    dynamics, _ = trained
    obs, actions = concat(held_out, "observations"), concat(held_out, "actions")
    _, _, on_data = dynamics.predict(obs, actions, with_variance=True)
    _, _, off_data = dynamics.predict(3.0 * obs, actions, with_variance=True)
    assert np.all(on_data >= 0.0)
    assert np.mean(off_data > on_data) > 0.95
    assert off_data.mean() > 10.0 * on_data.mean()
    far = np.tile(np.float32([[5.0, -5.0, 40.0]]), (len(actions), 1))
    _, _, far_variance = dynamics.predict(far, actions, with_variance=True)
    assert far_variance.min() > on_data.max()


def test_predict_is_deterministic_and_shaped(
    pendulum: tuple[MDPDataset, list[Episode]],
    trained: tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]],
) -> None:
    _, held_out = pendulum
    dynamics, _ = trained
    obs, actions = held_out[0].observations, held_out[0].actions
    next_obs, rewards = dynamics.predict(obs, actions)
    again = dynamics.predict(obs, actions, with_variance=True)
    assert next_obs.shape == obs.shape and rewards.shape == (len(obs), 1)
    assert again[2].shape == (len(obs), 1)
    assert next_obs.dtype == rewards.dtype == np.float32
    np.testing.assert_array_equal(next_obs, again[0])
    np.testing.assert_array_equal(rewards, again[1])


def test_fit_is_seeded() -> None:
    data = make_dataset()

    def predictions(seed: int) -> np.ndarray:
        dynamics = ProbabilisticEnsembleDynamics(**TINY, seed=seed)
        dynamics.fit(data, **QUIET)
        return dynamics.predict(data.observations[:8], data.actions[:8], with_variance=True)[0]

    np.testing.assert_array_equal(predictions(0), predictions(0))
    assert not np.array_equal(predictions(0), predictions(1))


# --- fit's run directory --------------------------------------------------------------------------


def test_fit_writes_a_run_directory_with_the_run_logger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = make_dataset()
    dynamics = ProbabilisticEnsembleDynamics(**{**TINY, "n_epochs": 4})
    history = dynamics.fit(data, experiment_name="dyn", with_timestamp=False, logdir=tmp_path,
                           verbose=True, show_progress=False, tensorboard=True,
                           save_interval=2)  # fmt: skip
    run = tmp_path / "dyn"
    assert json.loads((run / "params.json").read_text()) == dynamics.get_params()
    again = ProbabilisticEnsembleDynamics.from_params(json.loads((run / "params.json").read_text()))
    assert again.get_params() == dynamics.get_params()

    for name in ("loss", "nll"):  # epoch,step,value per epoch, the values fit returned
        rows = [line.split(",") for line in (run / f"{name}.csv").read_text().splitlines()]
        assert [(int(e), int(st)) for e, st, _ in rows] == [(1, 5), (2, 10), (3, 15), (4, 20)]
        assert [float(v) for _, _, v in rows] == [m[name] for _, m in history]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["metrics"]) for r in records] == history
    progress = json.loads((run / "progress.json").read_text())
    assert (progress["state"], progress["epoch"], progress["step"]) == ("finished", 4, 20)

    # save_interval=2: model_2.pt and model_4.pt, each a save_model file of that epoch
    assert sorted(p.name for p in run.glob("model_*.pt")) == ["model_2.pt", "model_4.pt"]
    x, a = data.observations[:8], data.actions[:8]
    for epoch in (2, 4):
        saved = ProbabilisticEnsembleDynamics()
        saved.load_model(run / f"model_{epoch}.pt")
        assert (saved.epoch, saved.total_step) == (epoch, 5 * epoch)
    np.testing.assert_array_equal(saved.predict(x, a)[0], dynamics.predict(x, a)[0])

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    loss = events.Scalars("metrics/loss")
    assert [e.step for e in loss] == [5, 10, 15, 20]
    assert [e.value for e in loss] == pytest.approx([m["loss"] for _, m in history])

    out = capsys.readouterr()
    assert [line.split()[:2] for line in out.out.splitlines()] == [
        [f"epoch={e}", f"step={5 * e}"] for e in range(1, 5)
    ]
    assert "epoch 1" not in out.err  # show_progress=False: no bar


def test_fit_quiet_progress_and_directory_naming(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset()
    dynamics = ProbabilisticEnsembleDynamics(**TINY)
    dynamics.fit(data, logdir=tmp_path, verbose=False, show_progress=True, tensorboard=False)
    (run,) = tmp_path.iterdir()  # <class name>_<YYYYmmddHHMMSS>
    prefix, stamp = run.name.rsplit("_", 1)
    assert prefix == "ProbabilisticEnsembleDynamics" and len(stamp) == 14 and stamp.isdigit()
    assert not (run / "tensorboard").exists()
    assert (run / "model_1.pt").exists()  # save_interval defaults to 1
    out = capsys.readouterr()
    assert out.out == ""  # verbose=False
    assert "epoch 1" in out.err  # the progress bar

    dynamics.fit(data, experiment_name="fixed", with_timestamp=False, logdir=tmp_path, **QUIET)
    with pytest.raises(ValueError, match="already exists"):
        dynamics.fit(data, experiment_name="fixed", with_timestamp=False, logdir=tmp_path,
                     **QUIET)  # fmt: skip
    assert dynamics.epoch == 2  # the refused call trained nothing

    # run_dir names the directory exactly; a second fit there continues its series
    dynamics.fit(data, run_dir=tmp_path / "exact", **QUIET)
    dynamics.fit(data, run_dir=tmp_path / "exact", **QUIET)
    rows = (tmp_path / "exact" / "loss.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["3", "4"]


# --- persistence ----------------------------------------------------------------------------------


def test_save_load_round_trip(
    tmp_path: Path,
    pendulum: tuple[MDPDataset, list[Episode]],
    trained: tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]],
) -> None:
    _, held_out = pendulum
    dynamics, _ = trained
    dynamics.save_model(tmp_path / "dynamics.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["dynamics.pt"]  # no temporary file left
    loaded = ProbabilisticEnsembleDynamics()  # default config: the file's config replaces it
    loaded.load_model(tmp_path / "dynamics.pt")
    assert loaded.get_params() == dynamics.get_params()
    assert (loaded.observation_size, loaded.action_size, loaded.epoch) == (3, 1, dynamics.epoch)
    obs, actions = concat(held_out, "observations"), concat(held_out, "actions")
    for ours, theirs in zip(
        dynamics.predict(obs, actions, with_variance=True),
        loaded.predict(obs, actions, with_variance=True),
        strict=True,
    ):
        np.testing.assert_array_equal(ours, theirs)


def test_loaded_model_resumes_training_identically(tmp_path: Path) -> None:
    data = make_dataset()
    original = ProbabilisticEnsembleDynamics(**TINY)
    original.fit(data, **QUIET)
    original.save_model(tmp_path / "m.pt")
    loaded = ProbabilisticEnsembleDynamics()
    loaded.load_model(tmp_path / "m.pt")
    original.fit(data, **QUIET)
    loaded.fit(data, **QUIET)
    x, a = data.observations[:8], data.actions[:8]
    np.testing.assert_array_equal(original.predict(x, a)[0], loaded.predict(x, a)[0])
    assert loaded.epoch == original.epoch == 2


def test_load_model_rejects_mismatches(tmp_path: Path) -> None:
    data = make_dataset()
    dynamics = ProbabilisticEnsembleDynamics(**TINY)
    dynamics.fit(data, **QUIET)
    dynamics.save_model(tmp_path / "m.pt")
    other = ProbabilisticEnsembleDynamics(**TINY)
    other.build(OBS_SIZE + 1, ACTION_SIZE)
    with pytest.raises(ValueError, match="fname"):
        other.load_model(tmp_path / "m.pt")
    wider = ProbabilisticEnsembleDynamics(**{**TINY, "hidden_units": [32]})
    wider.build(OBS_SIZE, ACTION_SIZE)
    with pytest.raises(ValueError, match="fname"):
        wider.load_model(tmp_path / "m.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="fname"):
        ProbabilisticEnsembleDynamics().load_model(tmp_path / "other.pt")


# --- rollouts -------------------------------------------------------------------------------------


def test_rollout_shapes_and_chaining(
    pendulum: tuple[MDPDataset, list[Episode]],
    trained: tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]],
) -> None:
    _, held_out = pendulum
    dynamics, _ = trained
    start = start_states(held_out)
    b, horizon = len(start), 4
    out = dynamics.rollout(start, policy, horizon, torch.Generator().manual_seed(0))
    widths = {
        "observations": 3,
        "actions": 1,
        "rewards": 1,
        "next_observations": 3,
        "terminals": 1,
        "uncertainties": 1,
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: (b * horizon, w) for k, w in widths.items()
    }
    for value in out.values():
        assert value.device == dynamics.device and value.dtype == torch.float32
    torch.testing.assert_close(out["observations"][:b], start, rtol=0, atol=0)
    torch.testing.assert_close(out["observations"][b:], out["next_observations"][:-b])
    torch.testing.assert_close(out["actions"], policy(out["observations"]))
    assert torch.count_nonzero(out["terminals"]) == 0
    # the first step's uncertainty is sqrt of predict's variance at the start states
    _, _, variance = dynamics.predict(start.numpy(), policy(start).numpy(), with_variance=True)
    np.testing.assert_allclose(
        out["uncertainties"][:b].numpy() ** 2, variance, rtol=1e-4, atol=1e-9
    )


def test_rollout_is_deterministic_under_a_seeded_generator(
    pendulum: tuple[MDPDataset, list[Episode]],
    trained: tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]],
) -> None:
    _, held_out = pendulum
    dynamics, _ = trained
    start = start_states(held_out)

    def run(seed: int) -> dict[str, torch.Tensor]:
        return dynamics.rollout(start, policy, 3, torch.Generator().manual_seed(seed))

    first, second, other = run(7), run(7), run(8)
    for name in first:
        assert torch.equal(first[name], second[name])
    assert not torch.equal(first["next_observations"], other["next_observations"])


def test_reward_penalty_subtracts_penalty_times_uncertainty(
    pendulum: tuple[MDPDataset, list[Episode]],
    trained: tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]],
) -> None:
    _, held_out = pendulum
    dynamics, _ = trained
    start = start_states(held_out)
    plain = dynamics.rollout(start, policy, 3, torch.Generator().manual_seed(1))
    penalised = dynamics.rollout(
        start, policy, 3, torch.Generator().manual_seed(1), reward_penalty=2.5
    )
    assert torch.equal(plain["next_observations"], penalised["next_observations"])
    assert torch.equal(plain["uncertainties"], penalised["uncertainties"])
    assert torch.equal(penalised["rewards"], plain["rewards"] - 2.5 * plain["uncertainties"])
    assert bool((plain["uncertainties"] > 0).all())
    assert bool((penalised["rewards"] < plain["rewards"]).all())


def test_rollout_rejects_bad_inputs(
    pendulum: tuple[MDPDataset, list[Episode]],
    trained: tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]],
) -> None:
    _, held_out = pendulum
    dynamics, _ = trained
    start = start_states(held_out)
    gen = torch.Generator().manual_seed(0)
    bad_calls: list[tuple[str, dict[str, Any]]] = [
        ("observations", {"observations": start[:, :2]}),
        ("observations", {"observations": start.numpy()}),
        ("observations", {"observations": torch.full_like(start, math.nan)}),
        ("horizon", {"horizon": 0}),
        ("reward_penalty", {"reward_penalty": -1.0}),
        ("reward_penalty", {"reward_penalty": math.nan}),
        ("policy", {"policy": lambda o: o}),
        ("generator", {"generator": 0}),
    ]
    for name, change in bad_calls:
        kwargs = {
            "observations": start,
            "policy": policy,
            "horizon": 2,
            "generator": gen,
            **change,
        }
        with pytest.raises(ValueError, match=name):
            dynamics.rollout(**kwargs)


# --- input checks ---------------------------------------------------------------------------------


def test_predict_rejects_bad_inputs(
    trained: tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]],
) -> None:
    dynamics, _ = trained
    obs, actions = np.zeros((4, 3), np.float32), np.zeros((4, 1), np.float32)
    nan_actions = actions.copy()
    nan_actions[2, 0] = math.nan
    for name, x, a in [
        ("observations", np.zeros((4, 5), np.float32), actions),
        ("observations", np.zeros(3, np.float32), actions),
        ("observations", [["a", "b", "c"]], actions),
        ("actions", obs, np.zeros((4, 2), np.float32)),
        ("actions", obs, nan_actions),
        ("actions", obs, actions[:3]),
    ]:
        with pytest.raises(ValueError, match=name):
            dynamics.predict(x, a)


def test_unbuilt_model_refuses_to_predict() -> None:
    with pytest.raises(NotBuiltError):
        ProbabilisticEnsembleDynamics().predict(np.zeros((1, 3)), np.zeros((1, 1)))


def test_fit_rejects_bad_inputs() -> None:
    data = make_dataset()
    with pytest.raises(ValueError, match="n_epochs"):
        ProbabilisticEnsembleDynamics(**TINY).fit(data, n_epochs=0, **QUIET)
    with pytest.raises(ValueError, match="eval_episodes"):
        ProbabilisticEnsembleDynamics(**TINY).fit(data, scorers=DYNAMICS_SCORERS, **QUIET)
    with pytest.raises(ValueError, match="episodes"):
        ProbabilisticEnsembleDynamics(**TINY).fit([], **QUIET)
    with pytest.raises(ValueError, match="eval_episodes"):
        ProbabilisticEnsembleDynamics(**TINY).fit(data, eval_episodes=[], **QUIET)
    built = ProbabilisticEnsembleDynamics(**TINY)
    built.build(OBS_SIZE + 1, ACTION_SIZE)
    with pytest.raises(ValueError, match="episodes"):
        built.fit(data, **QUIET)
    with pytest.raises(ValueError, match="save_interval"):
        ProbabilisticEnsembleDynamics(**TINY).fit(data, save_interval=0, **QUIET)
    assert not Path("d3rlpy_logs").exists()  # refused before any run directory is made


# --- scorers --------------------------------------------------------------------------------------


class FakeDynamics:
    """s'_hat = s + 1, r_hat = sum(a), variance = s_0^2."""

    def predict(
        self, observations: np.ndarray, actions: np.ndarray, with_variance: bool = False
    ) -> tuple[np.ndarray, ...]:
        next_obs = observations + 1.0
        rewards = actions.sum(axis=1, keepdims=True)
        if not with_variance:
            return next_obs, rewards
        return next_obs, rewards, observations[:, :1] ** 2


def tiny_episodes() -> list[Episode]:
    first = Episode(
        observations=np.float32([[0, 0], [1, 2]]),
        actions=np.float32([[1], [2]]),
        rewards=np.float32([0, 1]),
        next_observations=np.float32([[1, 1], [2, 2]]),
        terminals=np.float32([0, 0]),
    )
    second = Episode(
        observations=np.float32([[3, 0]]),
        actions=np.float32([[-1]]),
        rewards=np.float32([2]),
        next_observations=np.float32([[4, 1]]),
        terminals=np.float32([1]),
    )
    return [first, second]


def test_scorers_match_hand_computation() -> None:
    episodes, fake = tiny_episodes(), FakeDynamics()
    # predicted next observations [1, 1], [2, 3], [4, 1] -> squared errors 0, 1, 0
    assert dynamics_observation_prediction_error_scorer(fake, episodes) == pytest.approx(1 / 3)
    # predicted rewards 1, 2, -1 against 0, 1, 2 -> squared errors 1, 1, 9
    assert dynamics_reward_prediction_error_scorer(fake, episodes) == pytest.approx(11 / 3)
    # variances 0^2, 1^2, 3^2
    assert dynamics_prediction_variance_scorer(fake, episodes) == pytest.approx(10 / 3)
    with pytest.raises(ValueError, match="episodes"):
        dynamics_observation_prediction_error_scorer(fake, [])


def test_scorers_match_predict_on_the_model(
    pendulum: tuple[MDPDataset, list[Episode]],
    trained: tuple[ProbabilisticEnsembleDynamics, list[tuple[int, dict[str, float]]]],
) -> None:
    _, held_out = pendulum
    dynamics, history = trained
    obs, actions = concat(held_out, "observations"), concat(held_out, "actions")
    next_obs, rewards, variances = dynamics.predict(obs, actions, with_variance=True)
    expected = {
        "observation_error": ((next_obs - concat(held_out, "next_observations")) ** 2)
        .sum(axis=1)
        .mean(),
        "reward_error": ((rewards[:, 0] - concat(held_out, "rewards")) ** 2).mean(),
        "prediction_variance": variances.mean(),
    }
    for name, scorer in DYNAMICS_SCORERS.items():
        assert scorer(dynamics, held_out) == pytest.approx(float(expected[name]), rel=1e-4)
        assert history[-1][1][name] == pytest.approx(float(expected[name]), rel=1e-4)

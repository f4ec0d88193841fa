"""Contract tests over the reference API: parameters, fit's log layout, persistence, export."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bear_core import BEAR
from bear_core.config import BEARConfig, changed_params
from bear_core.dataset import MDPDataset
from bear_core.errors import NotBuiltError
from tests.conftest import ACTION_SIZE, OBS_SIZE, TINY

REFERENCE_DEFAULTS: dict[str, Any] = {
    "actor_learning_rate": 3e-4,
    "critic_learning_rate": 3e-4,
    "imitator_learning_rate": 1e-3,
    "temp_learning_rate": 3e-4,
    "alpha_learning_rate": 1e-3,
    "batch_size": 100,
    "gamma": 0.99,
    "tau": 0.005,
    "n_critics": 2,
    "bootstrap": False,
    "share_encoder": False,
    "update_actor_interval": 1,
    "initial_temperature": 1.0,
    "initial_alpha": 1.0,
    "alpha_threshold": 0.05,
    "lam": 0.75,
    "n_action_samples": 4,
    "mmd_sigma": 20.0,
    "rl_start_epoch": 0,
    "eps": 1e-8,
    "use_batch_norm": False,
    "q_func_type": "mean",
    "n_epochs": 1000,
    "use_gpu": False,
    "scaler": None,
    "augmentation": [],
    "n_augmentations": 1,
    "dynamics": None,
    "impl": None,
}
# Defaults that differ from the reference on purpose (README, "Critics that stay sane"): the
# paper's BEAR, with no entropy term and the Laplacian kernel. The reference's values stay
# reachable as parameters.
DELIBERATE_DEFAULTS: dict[str, Any] = {
    "temp_learning_rate": 0.0,
    "initial_temperature": 0.0,
    "mmd_kernel": "laplacian",
}


@pytest.fixture(scope="module")
def trained(dataset: MDPDataset, tmp_path_factory: pytest.TempPathFactory) -> BEAR:
    algo = BEAR(**{**TINY, "n_epochs": 2}, scaler="standard")
    algo.fit(
        dataset,
        logdir=tmp_path_factory.mktemp("logs"),
        verbose=False,
        show_progress=False,
        tensorboard=False,
    )
    return algo


def observations(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, OBS_SIZE)).astype(np.float32) * 3 + 1


def test_constructor_defaults_match_the_reference_but_the_deliberate_ones() -> None:
    params = BEAR().get_params()
    for name, default in {**REFERENCE_DEFAULTS, **DELIBERATE_DEFAULTS}.items():
        assert params[name] == default, name
    reference = BEAR(temp_learning_rate=3e-4, initial_temperature=1.0, mmd_kernel="gaussian")
    reference_temperature = REFERENCE_DEFAULTS["initial_temperature"]
    assert reference.get_params()["initial_temperature"] == reference_temperature
    assert params["encoder_params"] == {"hidden_units": [256, 256]}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("actor_learning_rate", -1.0),
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("gamma", 1.5),
        ("tau", -0.1),
        ("n_critics", 0),
        ("lam", 2.0),
        ("n_action_samples", 0),
        ("mmd_sigma", 0.0),
        ("eps", 0.0),
        ("rl_start_epoch", -1),
        ("scaler", "unknown"),
        ("q_func_type", "huber"),
        ("use_gpu", "tpu"),
        ("encoder_params", {"hidden_units": []}),
        ("encoder_params", {"depth": 3}),
        ("imitator_type", "gan"),
        ("mmd_kernel", "rbf"),
        ("update_actor_interval", 0),
        ("n_epochs", 0),
        ("initial_alpha", -1.0),
        ("initial_temperature", -1.0),
        ("use_batch_norm", "yes"),
        ("action_scaler", "standard"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_parameter(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name.split("[")[0]):
        BEAR(**{name: value})


def test_a_zero_temperature_cannot_be_tuned() -> None:
    with pytest.raises(ValueError, match="initial_temperature must be > 0 when temp_learning_rate"):
        BEAR(temp_learning_rate=3e-4)
    assert BEAR(temp_learning_rate=3e-4, initial_temperature=1.0).get_params()["temp_learning_rate"]


def test_unknown_parameter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="n_frames"):
        BEAR(n_frames=4)  # type: ignore[call-arg]
    params = tmp_path / "params.json"
    params.write_text(json.dumps({**BEAR().params_json(), "n_frames": 4}))
    with pytest.raises(ValueError, match="n_frames"):
        BEAR.from_json(params)


# The reference constructor's parameters in order (defaults: REFERENCE_DEFAULTS, plus
# `encoder_params={}`); BEAR shows the mutable defaults `[]` and `{}` as immutable empties.
REFERENCE_ORDER = [
    "actor_learning_rate", "critic_learning_rate", "imitator_learning_rate", "temp_learning_rate",
    "alpha_learning_rate", "batch_size", "gamma", "tau", "n_critics", "bootstrap",
    "share_encoder", "update_actor_interval", "initial_temperature", "initial_alpha",
    "alpha_threshold", "lam", "n_action_samples", "mmd_sigma", "rl_start_epoch", "eps",
    "use_batch_norm", "q_func_type", "n_epochs", "use_gpu", "scaler", "augmentation",
    "n_augmentations", "encoder_params", "dynamics", "impl",
]  # fmt: skip
EXTENSIONS = [
    "imitator_type", "mmd_kernel", "vae_kl_weight", "action_scaler", "n_steps_per_epoch", "seed",
    "rollout_interval", "rollout_horizon", "rollout_batch_size", "real_ratio", "reward_penalty",
    "n_quantiles", "embed_size",
]  # fmt: skip


def test_signature_lists_the_reference_parameters_then_the_extensions() -> None:
    parameters = list(inspect.signature(BEAR).parameters.values())
    reference = parameters[: len(REFERENCE_ORDER)]
    extensions = parameters[len(REFERENCE_ORDER) :]
    assert [p.name for p in reference] == REFERENCE_ORDER
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in reference)
    for p in reference:
        if p.name == "augmentation":  # the reference's [] as an immutable empty sequence
            assert p.default == ()
        elif p.name == "encoder_params":  # the reference's {} as a read-only empty mapping
            assert isinstance(p.default, MappingProxyType) and p.default == {}
        else:
            default = {**REFERENCE_DEFAULTS, **DELIBERATE_DEFAULTS}[p.name]
            assert p.default == default and type(p.default) is type(default), p.name
    assert [p.name for p in extensions] == EXTENSIONS
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extensions)
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters)


def test_signature_and_config_fields_agree() -> None:
    """Every BEARConfig field is a constructor parameter, in the same order, with the same
    default; the signature adds only `impl`."""
    parameters = inspect.signature(BEAR).parameters
    fields = dataclasses.fields(BEARConfig)
    assert [f.name for f in fields] == [name for name in parameters if name != "impl"]
    for f in fields:
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        assert parameters[f.name].default == default, f.name
    from_signature = {name: p.default for name, p in parameters.items() if name != "impl"}
    assert BEARConfig(**from_signature) == BEARConfig()
    assert BEAR().config == BEARConfig()


def test_reference_parameters_work_positionally_and_defaults_are_not_shared() -> None:
    algo = BEAR(1e-4, 2e-4, 3e-4)
    assert (algo.actor_learning_rate, algo.critic_learning_rate) == (1e-4, 2e-4)
    assert algo.imitator_learning_rate == 3e-4
    first = BEAR()
    first.get_params()["encoder_params"]["hidden_units"].append(7)
    first.get_params()["augmentation"].append("cutout")
    assert BEAR().get_params()["encoder_params"] == {"hidden_units": [256, 256]}
    assert BEAR().get_params()["augmentation"] == []
    with pytest.raises(TypeError):
        BEAR(*[3e-4] * len(REFERENCE_ORDER), "regressor")  # type: ignore[misc]


def test_every_reference_parameter_is_accepted_without_not_implemented() -> None:
    for name, value in [
        ("q_func_type", "fqf"),
        ("bootstrap", True),
        ("share_encoder", True),
        ("augmentation", ["cutout"]),
        ("scaler", "pixel"),
        ("dynamics", {"type": "probabilistic_ensemble", "params": {}}),
    ]:
        assert BEAR(**{name: value}).get_params()[name] is not None
    with pytest.raises(ValueError, match="dynamics"):
        BEAR(dynamics=object())


def test_use_gpu_picks_a_cuda_device_or_says_there_is_none() -> None:
    if torch.cuda.is_available():
        algo = BEAR(**TINY, use_gpu=True)
        algo.create_impl((OBS_SIZE,), ACTION_SIZE)
        assert algo.impl is not None and algo.impl.device.type == "cuda"
    else:
        algo = BEAR(**TINY, use_gpu=True)
        with pytest.raises(ValueError, match="use_gpu"):
            algo.create_impl((OBS_SIZE,), ACTION_SIZE)


def test_get_params_round_trips_and_set_params_validates() -> None:
    algo = BEAR(**TINY, gamma=0.9, scaler="min_max")
    clone = BEAR(**algo.get_params())
    assert clone.get_params(deep=False) == algo.get_params(deep=False)
    assert algo.set_params(n_epochs=7) is algo and algo.n_epochs == 7
    with pytest.raises(ValueError, match="gamma"):
        algo.set_params(gamma=3.0)


def test_set_params_retunes_optimizers_but_not_network_shapes() -> None:
    algo = BEAR(**TINY)
    algo.create_impl((OBS_SIZE,), ACTION_SIZE)
    algo.set_params(critic_learning_rate=0.123)
    assert algo.impl is not None and algo.impl.critic_optim.param_groups[0]["lr"] == 0.123
    with pytest.raises(ValueError, match="n_critics"):
        algo.set_params(n_critics=3)


def test_methods_before_building_raise_not_built() -> None:
    with pytest.raises(NotBuiltError):
        BEAR().predict(observations(2))


def test_fit_writes_the_reference_log_layout(dataset: MDPDataset, tmp_path: Path) -> None:
    algo = BEAR(**{**TINY, "n_epochs": 2})
    results = algo.fit(
        dataset,
        experiment_name="exp",
        logdir=tmp_path,
        verbose=False,
        show_progress=False,
        tensorboard=True,
        save_interval=1,
    )
    assert [epoch for epoch, _ in results] == [1, 2]
    (run,) = list(tmp_path.iterdir())
    assert run.name.startswith("exp_") and len(run.name) == len("exp_") + 14
    params = json.loads((run / "params.json").read_text())
    assert params["observation_shape"] == [OBS_SIZE] and params["action_size"] == ACTION_SIZE
    for metric in ("imitator_loss", "critic_loss", "actor_loss", "alpha", "temp", "mmd"):
        rows = list(csv.reader((run / f"{metric}.csv").open()))
        assert [int(r[0]) for r in rows] == [1, 2]
        assert [int(r[1]) for r in rows] == [5, 10]
        assert all(np.isfinite(float(r[2])) for r in rows)
    assert (run / "model_1.pt").exists() and (run / "model_2.pt").exists()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_fit_without_timestamp_refuses_an_existing_directory(
    dataset: MDPDataset, tmp_path: Path
) -> None:
    kwargs = {
        "experiment_name": "fixed",
        "with_timestamp": False,
        "logdir": tmp_path,
        "verbose": False,
        "show_progress": False,
        "tensorboard": False,
    }
    BEAR(**TINY).fit(dataset, **kwargs)
    with pytest.raises(ValueError, match="fixed"):
        BEAR(**TINY).fit(dataset, **kwargs)


def test_predict_is_deterministic_and_in_the_data_action_range(trained: BEAR) -> None:
    x = observations(64)
    first, second = trained.predict(x), trained.predict(x)
    assert first.shape == (64, ACTION_SIZE) and np.array_equal(first, second)
    assert first.min() >= -2.0 - 1e-5 and first.max() <= 3.0 + 1e-5
    sampled = trained.sample_action(x)
    assert sampled.shape == (64, ACTION_SIZE) and not np.allclose(sampled, first)
    assert sampled.min() >= -2.0 - 1e-5 and sampled.max() <= 3.0 + 1e-5


def test_predict_value_returns_ensemble_mean_and_std(trained: BEAR) -> None:
    x, a = observations(9), np.zeros((9, ACTION_SIZE), np.float32)
    values = trained.predict_value(x, a)
    mean, std = trained.predict_value(x, a, with_std=True)
    m = trained.impl
    assert m is not None
    with torch.no_grad():
        q = m.critics(
            m.observation_scaler(torch.from_numpy(x)), m.action_scaler(torch.from_numpy(a))
        ).numpy()
    assert values.shape == (9,) and std.shape == (9,)
    np.testing.assert_allclose(mean, q.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, q.std(axis=0), rtol=1e-5, atol=1e-7)


def test_save_load_predict_identical(trained: BEAR, tmp_path: Path) -> None:
    trained.save_model(tmp_path / "model.pt")
    again = BEAR()
    again.load_model(tmp_path / "model.pt")
    x = observations(16)
    np.testing.assert_array_equal(again.predict(x), trained.predict(x))
    np.testing.assert_array_equal(
        again.predict_value(x, trained.predict(x)), trained.predict_value(x, trained.predict(x))
    )


def test_from_json_then_load_model(trained: BEAR, tmp_path: Path) -> None:
    (tmp_path / "params.json").write_text(json.dumps(trained.params_json()))
    trained.save_model(tmp_path / "model_2.pt")
    again = BEAR.from_json(tmp_path / "params.json")
    assert again.impl is not None and again.scaler == trained.params_json()["scaler"]
    again.load_model(tmp_path / "model_2.pt")
    x = observations(8)
    np.testing.assert_array_equal(again.predict(x), trained.predict(x))


def test_checkpoint_resumes_training_exactly(dataset: MDPDataset, tmp_path: Path) -> None:
    from bear_core.dataset import TransitionBuffer

    buffer = TransitionBuffer.from_episodes(dataset.episodes)
    batches = [buffer.sample(32, np.random.default_rng(i)) for i in range(4)]
    algo = BEAR(**TINY)
    algo.create_impl((OBS_SIZE,), ACTION_SIZE)
    for step in range(2):
        algo.update(0, step, batches[step])
    algo.save_model(tmp_path / "mid.pt")
    for step in range(2, 4):
        algo.update(0, step, batches[step])
    resumed = BEAR(**TINY)
    resumed.load_model(tmp_path / "mid.pt")
    for step in range(2, 4):
        resumed.update(0, step, batches[step])
    x = observations(8)
    np.testing.assert_array_equal(resumed.predict(x), algo.predict(x))
    np.testing.assert_array_equal(resumed.sample_action(x), algo.sample_action(x))


@pytest.mark.parametrize("scaler", [None, "min_max", "standard"])
def test_onnx_and_torchscript_policies_match_predict(
    dataset: MDPDataset, tmp_path: Path, scaler: str | None
) -> None:
    algo = BEAR(**TINY, scaler=scaler)
    algo.fit(dataset, logdir=tmp_path, verbose=False, show_progress=False, tensorboard=False)
    algo.save_policy(tmp_path / "policy.onnx", as_onnx=True)
    algo.save_policy(tmp_path / "policy.pt")
    session = ort.InferenceSession(str(tmp_path / "policy.onnx"))
    script = torch.jit.load(str(tmp_path / "policy.pt"))
    for n in (1, 7, 1024):
        x = observations(n, seed=n)
        expected = algo.predict(x)
        onnx_actions = session.run(None, {session.get_inputs()[0].name: x})[0]
        np.testing.assert_allclose(onnx_actions, expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(script(torch.from_numpy(x)).numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("imitator_type", ["regressor", "vae"])
@pytest.mark.parametrize("mmd_kernel", ["gaussian", "laplacian"])
def test_imitators_and_kernels_train(
    dataset: MDPDataset, tmp_path: Path, imitator_type: str, mmd_kernel: str
) -> None:
    algo = BEAR(
        **{**TINY, "n_epochs": 2},
        imitator_type=imitator_type,
        mmd_kernel=mmd_kernel,
        use_batch_norm=True,
    )
    results = algo.fit(
        dataset, logdir=tmp_path, verbose=False, show_progress=False, tensorboard=False
    )
    assert all(np.isfinite(v) for _, metrics in results for v in metrics.values())
    assert results[-1][1]["imitator_loss"] < 10.0


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda a: a.predict(np.zeros((3, OBS_SIZE + 1), np.float32)), "x"),
        (lambda a: a.predict(np.full((3, OBS_SIZE), np.nan, np.float32)), "x"),
        (lambda a: a.predict([["a"] * OBS_SIZE]), "x"),
        (lambda a: a.predict(np.zeros((0, OBS_SIZE), np.float32)), "x"),
        (
            lambda a: a.predict_value(np.zeros((3, OBS_SIZE)), np.zeros((3, ACTION_SIZE + 2))),
            "action",
        ),
        (lambda a: a.predict_value(np.zeros((3, OBS_SIZE)), np.zeros((2, ACTION_SIZE))), "action"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(
    trained: BEAR, call: Any, name: str
) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call(trained)


def test_fit_refuses_data_of_another_shape(trained: BEAR, tmp_path: Path) -> None:
    from tests.conftest import make_dataset

    other = make_dataset()
    wider = MDPDataset(
        np.concatenate([e.observations for e in other.episodes] * 1)[:, :3],
        np.concatenate([e.actions for e in other.episodes]),
        np.concatenate([e.rewards for e in other.episodes]),
        np.concatenate([e.terminals for e in other.episodes]),
    )
    with pytest.raises(ValueError, match="observation_shape"):
        trained.fit(wider, logdir=tmp_path, verbose=False, show_progress=False, tensorboard=False)


def test_changed_params_names_only_non_defaults_and_scalers_by_type() -> None:
    fitted = {"type": "standard", "params": {"mean": [0.0], "std": [1.0], "eps": 1e-3}}
    params = {
        "scaler": fitted,
        "action_scaler": {"type": "min_max", "params": {"minimum": [-1.0], "maximum": [1.0]}},
        "batch_size": 100,
        "gamma": 0.9,
        "action_size": 2,
    }
    assert changed_params(params) == {"scaler": "standard", "gamma": 0.9}

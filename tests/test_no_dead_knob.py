"""No dead knob: every constructor parameter, at every allowed value, changes the trained model
on a fixed seed, or is listed in OUTPUT_NEUTRAL with the reason it cannot."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bear_core import BEAR, BEARConfig
from bear_core.config import AUGMENTATION_NAMES
from bear_core.dataset import MDPDataset
from tests.conftest import make_dataset

BASE: dict[str, Any] = {
    "batch_size": 16,
    "n_epochs": 1,
    "n_steps_per_epoch": 4,
    "encoder_params": {"hidden_units": [16, 16]},
}
PIXEL_BASE: dict[str, Any] = {
    **BASE,
    "scaler": "pixel",
    "encoder_params": {"filters": [[4, 3, 2]], "feature_size": 8},
}
DYNAMICS = {"type": "probabilistic_ensemble", "params": {"hidden_units": [8], "n_epochs": 1,
                                                        "n_ensembles": 2}}  # fmt: skip
IMAGE_AUGMENTATIONS = {"random_shift", "cutout", "horizontal_flip", "vertical_flip",
                       "random_rotation", "intensity", "color_jitter"}  # fmt: skip

# (parameter, value, the base it changes) for every parameter and allowed value
CHANGES: list[tuple[str, Any, dict[str, Any]]] = [
    ("actor_learning_rate", 1e-2, BASE),
    ("critic_learning_rate", 1e-2, BASE),
    ("imitator_learning_rate", 1e-2, BASE),
    ("temp_learning_rate", 1e-2, {**BASE, "initial_temperature": 1.0}),
    ("alpha_learning_rate", 0.1, BASE),
    ("batch_size", 8, BASE),
    ("gamma", 0.5, BASE),
    ("tau", 0.5, BASE),
    ("n_critics", 3, BASE),
    ("bootstrap", True, BASE),
    ("share_encoder", True, BASE),
    ("update_actor_interval", 2, BASE),
    ("initial_temperature", 0.1, BASE),
    ("initial_alpha", 10.0, BASE),
    ("alpha_threshold", 1.0, BASE),
    ("lam", 0.0, BASE),
    ("n_action_samples", 8, BASE),
    ("mmd_sigma", 1.0, BASE),
    ("rl_start_epoch", 1, BASE),
    ("eps", 1e-2, BASE),
    ("use_batch_norm", True, BASE),
    ("q_func_type", "qr", BASE),
    ("q_func_type", "iqn", BASE),
    ("q_func_type", "fqf", BASE),
    ("n_epochs", 2, BASE),
    ("scaler", "min_max", BASE),
    ("scaler", "standard", BASE),
    ("scaler", "pixel", BASE),
    *[
        ("augmentation", [name], PIXEL_BASE if name in IMAGE_AUGMENTATIONS else BASE)
        for name in AUGMENTATION_NAMES
    ],
    ("n_augmentations", 3, {**BASE, "augmentation": ["multiple_amplitude_scaling"]}),
    ("encoder_params", {"hidden_units": [8]}, BASE),
    ("encoder_params", {"hidden_units": [16, 16], "activation": "tanh"}, BASE),
    ("encoder_params", {"hidden_units": [16, 16], "activation": "swish"}, BASE),
    ("encoder_params", {"filters": [[4, 2, 1]], "feature_size": 8}, PIXEL_BASE),
    ("encoder_params", {"filters": [[4, 3, 2]], "feature_size": 6}, PIXEL_BASE),
    ("dynamics", DYNAMICS, BASE),
    ("imitator_type", "vae", BASE),
    ("mmd_kernel", "gaussian", BASE),
    ("vae_kl_weight", 2.0, {**BASE, "imitator_type": "vae"}),
    ("action_scaler", None, BASE),
    ("n_steps_per_epoch", 3, BASE),
    ("seed", 1, BASE),
    ("n_quantiles", 4, {**BASE, "q_func_type": "qr"}),
    ("embed_size", 8, {**BASE, "q_func_type": "iqn"}),
    ("rollout_interval", 1, {**BASE, "dynamics": DYNAMICS}),
    ("rollout_horizon", 2, {**BASE, "dynamics": DYNAMICS}),
    ("rollout_batch_size", 4, {**BASE, "dynamics": DYNAMICS}),
    ("real_ratio", 0.25, {**BASE, "dynamics": DYNAMICS}),
    ("reward_penalty", 5.0, {**BASE, "dynamics": DYNAMICS}),
]

OUTPUT_NEUTRAL = {
    "use_gpu": "the device only: the same math runs on CPU or CUDA",
    "impl": "hands over already-built networks instead of building new ones",
}


def fingerprint(algo: BEAR) -> str:
    """sha256 over every learned tensor of the trained model."""
    assert algo.impl is not None
    digest = hashlib.sha256()
    for module in (algo.impl.policy, algo.impl.imitator, algo.impl.critics,
                   algo.impl.target_critics, algo.impl.log_temp, algo.impl.log_alpha):  # fmt: skip
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def pixel_dataset() -> MDPDataset:
    rng = np.random.default_rng(0)
    n = 60
    return MDPDataset(
        rng.integers(0, 256, size=(n, 3, 9, 9)).astype(np.uint8),
        rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        np.zeros(n), np.arange(n) % 20 == 19,
    )  # fmt: skip


DATASETS: dict[int, MDPDataset] = {}


def trained(params: dict[str, Any], tmp_path: Path) -> str:
    pixel = params.get("scaler") == "pixel" and "filters" in params.get("encoder_params", {})
    key = int(pixel)
    if key not in DATASETS:
        DATASETS[key] = pixel_dataset() if pixel else make_dataset()
    algo = BEAR(**params)
    algo.fit(DATASETS[key], logdir=tmp_path, verbose=False, show_progress=False,
             tensorboard=False)  # fmt: skip
    return fingerprint(algo)


def test_every_parameter_is_covered() -> None:
    covered = {name for name, _, _ in CHANGES} | set(OUTPUT_NEUTRAL)
    assert covered == {f.name for f in dataclasses.fields(BEARConfig)} | {"impl"}
    assert {tuple(v) for n, v, _ in CHANGES if n == "augmentation"} == {
        (name,) for name in AUGMENTATION_NAMES
    }


@pytest.mark.parametrize(("name", "value", "base"), CHANGES,
                         ids=[f"{n}={v}" for n, v, _ in CHANGES])  # fmt: skip
def test_changing_a_parameter_changes_the_trained_model(
    name: str, value: Any, base: dict[str, Any], tmp_path: Path
) -> None:
    changed = {**base, name: value}
    assert changed != base, "the value under test must differ from the base"
    assert trained(changed, tmp_path) != trained(base, tmp_path)


def test_the_fingerprint_is_deterministic(tmp_path: Path) -> None:
    assert trained(BASE, tmp_path) == trained(BASE, tmp_path)

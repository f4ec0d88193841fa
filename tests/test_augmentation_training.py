"""`augmentation` and `n_augmentations` inside BEAR: they change training, serialise, and refuse
combinations that cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bear_core import BEAR
from bear_core.augmentations import SingleAmplitudeScaling
from bear_core.dataset import MDPDataset
from tests.conftest import ACTION_SIZE, OBS_SIZE, TINY


def trained_policy(dataset: MDPDataset, tmp_path: Path, **params: object) -> torch.Tensor:
    algo = BEAR(**TINY, **params)
    algo.fit(dataset, logdir=tmp_path, verbose=False, show_progress=False, tensorboard=False)
    assert algo.impl is not None
    return torch.cat([p.detach().flatten() for p in algo.impl.policy.parameters()])


def test_augmentation_and_draw_count_change_training(dataset: MDPDataset, tmp_path: Path) -> None:
    plain = trained_policy(dataset, tmp_path)
    one = trained_policy(dataset, tmp_path, augmentation=["multiple_amplitude_scaling"])
    two = trained_policy(dataset, tmp_path, augmentation=["multiple_amplitude_scaling"],
                         n_augmentations=2)  # fmt: skip
    assert not torch.allclose(plain, one) and not torch.allclose(one, two)


def test_augmentation_objects_and_dicts_round_trip_through_params_json(tmp_path: Path) -> None:
    algo = BEAR(**TINY, augmentation=[SingleAmplitudeScaling(minimum=0.5, maximum=1.5),
                                      {"type": "multiple_amplitude_scaling"}])  # fmt: skip
    algo.create_impl((OBS_SIZE,), ACTION_SIZE)
    (tmp_path / "params.json").write_text(json.dumps(algo.params_json()))
    again = BEAR.from_json(tmp_path / "params.json")
    assert again.impl is not None and algo.impl is not None
    assert again.impl.augmentation == algo.impl.augmentation
    assert again.impl.augmentation.augmentations[0] == SingleAmplitudeScaling(0.5, 1.5)


@pytest.mark.parametrize(
    ("params", "shape"),
    [
        ({"augmentation": ["random_shift"]}, (OBS_SIZE,)),
        ({"augmentation": ["single_amplitude_scaling"], "scaler": "pixel",
          "encoder_params": {"filters": [[4, 3, 1]], "feature_size": 8}}, (1, 8, 8)),
        ({"augmentation": ["color_jitter"], "encoder_params": {"filters": [[4, 3, 1]],
          "feature_size": 8}}, (3, 8, 8)),
        ({"augmentation": [{"type": "cutout", "params": {"probability": 2.0}}]}, (OBS_SIZE,)),
    ],
)  # fmt: skip
def test_impossible_augmentations_are_refused(params: dict[str, object],
                                              shape: tuple[int, ...]) -> None:  # fmt: skip
    with pytest.raises(ValueError, match="augmentation"):
        BEAR(**params).create_impl(shape, ACTION_SIZE)


def test_unknown_augmentation_names_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="augmentation"):
        BEAR(augmentation=["mixup"])

"""Pixel observations: a rendered view of Pendulum (two stacked 16x16 frames) trains with the
convolutional encoders, exports to a bundle that takes uint8 images, and matches torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bear_core import BEAR
from bear_core.bundle import load_bundle
from bear_core.dataset import MDPDataset, generate_pendulum_dataset

SIZE = 16
PIXEL_PARAMS = {"filters": [[8, 4, 2], [16, 3, 1]], "feature_size": 32}


def render(cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Grey-scale frames [N, SIZE, SIZE] of a rod from the centre at the pendulum's angle."""
    frames = np.zeros((len(cos), SIZE, SIZE), dtype=np.uint8)
    centre = (SIZE - 1) / 2
    for r in np.linspace(0.0, centre, 16):
        rows = np.clip(np.round(centre - r * cos), 0, SIZE - 1).astype(int)
        cols = np.clip(np.round(centre + r * sin), 0, SIZE - 1).astype(int)
        frames[np.arange(len(cos)), rows, cols] = 255
    return frames


def pixel_dataset(n_episodes: int = 4) -> MDPDataset:
    """Each observation stacks the previous and the current frame: [2, SIZE, SIZE]."""
    source = generate_pendulum_dataset("medium", n_episodes=n_episodes, seed=0)
    obs, next_obs, actions, rewards, terminals, timeouts = [], [], [], [], [], []
    for episode in source.episodes:
        frames = render(episode.observations[:, 0], episode.observations[:, 1])
        last = render(episode.next_observations[-1:, 0], episode.next_observations[-1:, 1])
        frames = np.concatenate([frames[:1], frames, last])  # repeat the first frame once
        stacked = np.stack([frames[:-1], frames[1:]], axis=1)  # [T + 1, 2, H, W]
        obs.append(stacked[:-1])
        next_obs.append(stacked[1:])
        actions.append(episode.actions)
        rewards.append(episode.rewards)
        terminals.append(episode.terminals)
        ends = np.zeros(len(episode), dtype=bool)
        ends[-1] = True
        timeouts.append(ends)
    return MDPDataset(
        np.concatenate(obs), np.concatenate(actions), np.concatenate(rewards),
        np.concatenate(terminals), np.concatenate(timeouts), np.concatenate(next_obs),
        action_bounds=source.action_bounds,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pixels() -> MDPDataset:
    return pixel_dataset()


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {
            "imitator_type": "vae",
            "share_encoder": True,
            "use_batch_norm": True,
            "augmentation": ["random_shift", "intensity"],
            "n_augmentations": 2,
        },
    ],
)
def test_pixel_model_trains_exports_and_matches_torch(
    pixels: MDPDataset, tmp_path: Path, extra: dict[str, object]
) -> None:
    algo = BEAR(batch_size=32, n_epochs=2, n_steps_per_epoch=10, scaler="pixel",
                encoder_params=PIXEL_PARAMS, **extra)  # fmt: skip
    results = algo.fit(pixels, logdir=tmp_path, verbose=False, show_progress=False,
                       tensorboard=False)  # fmt: skip
    assert all(np.isfinite(v) for _, metrics in results for v in metrics.values())
    assert results[-1][1]["imitator_loss"] < results[0][1]["imitator_loss"] * 1.5

    bundle = load_bundle(algo.export_bundle(tmp_path / "bundle"))
    assert bundle.manifest.observation_dtype == "uint8"
    assert bundle.observation_shape == (2, SIZE, SIZE)
    rng = np.random.default_rng(0)
    for n in (1, 7, 64):
        x = rng.integers(0, 256, size=(n, 2, SIZE, SIZE), dtype=np.uint8)
        actions = algo.predict(x)
        assert actions.min() >= -2.0 - 1e-5 and actions.max() <= 2.0 + 1e-5
        np.testing.assert_allclose(bundle.predict(x), actions, atol=1e-5, rtol=0)
        mean, std = algo.predict_value(x, actions, with_std=True)
        onnx_mean, onnx_std = bundle.predict_value(x, actions, with_std=True)
        np.testing.assert_allclose(onnx_mean, mean, atol=1e-5, rtol=0)
        np.testing.assert_allclose(onnx_std, std, atol=1e-5, rtol=0)


def test_pixel_bundle_refuses_values_that_are_not_pixels(
    pixels: MDPDataset, tmp_path: Path
) -> None:
    algo = BEAR(batch_size=16, n_epochs=1, n_steps_per_epoch=2, scaler="pixel",
                encoder_params=PIXEL_PARAMS)  # fmt: skip
    algo.fit(pixels, logdir=tmp_path, verbose=False, show_progress=False, tensorboard=False)
    bundle = load_bundle(algo.export_bundle(tmp_path / "bundle"))
    good = np.zeros((1, 2, SIZE, SIZE))
    assert bundle.predict(good).shape == (1, 1)  # whole numbers as floats are fine
    for bad in (good - 1, good + 256, good + 0.5, np.full_like(good, np.nan)):
        with pytest.raises(ValueError, match="observations"):
            bundle.predict(bad)


def test_pixel_filters_on_vector_observations_are_refused() -> None:
    with pytest.raises(ValueError, match="encoder_params"):
        BEAR(encoder_params=PIXEL_PARAMS).create_impl((3,), 1)
    with pytest.raises(ValueError, match="filters"):
        BEAR(encoder_params={"filters": [[8, 9, 1]]}).create_impl((1, 4, 4), 1)

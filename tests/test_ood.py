"""The bundles' out-of-distribution detector: calibration (quantile, leave-one-episode-out),
its manifest fields and reference file through export and load, bundles without one, and the
quality bars on Pendulum data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bear_core import BEAR
from bear_core.bundle import load_bundle
from bear_core.bundle.manifest import read_manifest
from bear_core.bundle.ood import (
    CalibrationSample,
    OODDetector,
    calibrate,
    calibration_sample,
    flagged,
)
from bear_core.dataset import TransitionBuffer, generate_pendulum_dataset
from bear_core.errors import BundleError
from tests.conftest import TINY, make_dataset
from tests.test_bundle_evaluation import reseal


def gaussian_sample(n_episodes: int, length: int, seed: int) -> CalibrationSample:
    rng = np.random.default_rng(seed)
    n = n_episodes * length
    observations = (rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1]).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    return CalibrationSample(observations, actions, np.repeat(np.arange(n_episodes), length))


def detector(sample: CalibrationSample, **kwargs: float) -> OODDetector:
    spec, reference = calibrate(sample, **kwargs)  # type: ignore[arg-type]
    return OODDetector(spec, reference, sample.observations.shape[1])


@pytest.mark.parametrize("quantile", [0.9, 0.99])
def test_fresh_rows_of_the_training_distribution_are_flagged_at_about_one_minus_the_quantile(
    quantile: float,
) -> None:
    ood = detector(gaussian_sample(60, 50, seed=0), quantile=quantile)
    fresh = gaussian_sample(40, 50, seed=1)
    share = flagged(ood.score_observations(fresh.observations)).mean()
    pairs = flagged(ood.score_pairs(fresh.observations, fresh.actions)).mean()
    assert ood.spec.n_reference == 2000 and ood.spec.calibration_rows == 3000
    assert abs(share - (1 - quantile)) < 0.02 and abs(pairs - (1 - quantile)) < 0.02


def test_far_rows_score_far_above_the_threshold_in_the_features_own_units() -> None:
    sample = gaussian_sample(20, 50, seed=0)
    ood = detector(sample)
    # 6 stds away along the narrow third feature: far, though tiny in raw units; the same
    # step along the wide second feature is nothing
    narrow = sample.observations[:200] + np.array([0.0, 0.0, 0.6], np.float32)
    wide = sample.observations[:200] + np.array([0.0, 0.6, 0.0], np.float32)
    assert flagged(ood.score_observations(narrow)).mean() > 0.95
    assert flagged(ood.score_observations(wide)).mean() < 0.05
    assert flagged(ood.score_observations(sample.observations[:200] * 10)).mean() > 0.95
    far_actions = np.full((200, 1), 5.0, np.float32)
    assert flagged(ood.score_pairs(sample.observations[:200], far_actions)).all()


def test_the_threshold_leaves_each_rows_own_episode_out() -> None:
    """Episodes that stay in one place: scored with its own episode, every row would look
    familiar; left out, the threshold is what a new episode scores."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 1, 2)) * 5
    obs = (centres + rng.normal(size=(40, 30, 2)) * 0.05).reshape(-1, 2).astype(np.float32)
    actions = np.zeros((len(obs), 1), np.float32)
    by_episode = CalibrationSample(obs, actions, np.repeat(np.arange(40), 30))
    by_row = CalibrationSample(obs, actions, np.zeros(len(obs), np.int64))
    spec_episode, _ = calibrate(by_episode)
    spec_row, _ = calibrate(by_row)  # one episode: leave one row out
    assert spec_episode.threshold_observations > 10 * spec_row.threshold_observations


def test_calibration_sample_is_seeded_and_skips_images() -> None:
    obs = np.arange(200, dtype=np.float32).reshape(100, 2)
    actions = np.zeros((100, 1), np.float32)
    first = calibration_sample(obs, actions, [60, 40], seed=3, max_rows=50)
    again = calibration_sample(obs, actions, [60, 40], seed=3, max_rows=50)
    assert first is not None and again is not None
    assert len(first.observations) == 50
    np.testing.assert_array_equal(first.observations, again.observations)
    np.testing.assert_array_equal(first.episodes, (first.observations[:, 0] >= 120).astype(int))
    images = np.zeros((100, 1, 4, 4), np.uint8)
    assert calibration_sample(images, actions, [100], seed=0) is None


# --- through a bundle ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[BEAR, Path]:
    root = tmp_path_factory.mktemp("ood")
    algo = BEAR(**TINY)
    algo.fit(make_dataset(), logdir=root, verbose=False, show_progress=False, tensorboard=False)
    return algo, algo.export_bundle(root / "bundle")


def test_the_manifest_records_the_detector_and_seals_its_reference(
    exported: tuple[BEAR, Path],
) -> None:
    algo, path = exported
    raw = json.loads((path / "manifest.json").read_text())
    ood = raw["ood"]
    assert ood["method"] == "knn_mean_distance" and ood["k"] == 5 and ood["quantile"] == 0.99
    assert algo.ood_sample is not None
    assert ood["n_reference"] == len(algo.ood_sample.observations) == 237
    assert ood["calibration"]["rows"] == 237 and "own episode" in ood["calibration"]["description"]
    assert set(ood["threshold"]) == {"observations", "pairs"}
    assert "ood_reference.npy" in raw["files"]
    reference = np.load(path / "ood_reference.npy")
    assert reference.shape == (237, 5 + 2) and reference.dtype == np.float32


def test_the_loaded_detector_scores_as_the_calibrated_one(exported: tuple[BEAR, Path]) -> None:
    algo, path = exported
    bundle = load_bundle(path)
    assert algo.ood_sample is not None
    direct = detector(algo.ood_sample, seed=algo.config.seed)
    obs = make_dataset(seed=9).episodes[0].observations
    actions = make_dataset(seed=9).episodes[0].actions
    np.testing.assert_allclose(bundle.ood_scores(obs), direct.score_observations(obs), rtol=1e-6)
    np.testing.assert_allclose(
        bundle.ood_scores(obs, actions), direct.score_pairs(obs, actions), rtol=1e-6
    )
    assert flagged(bundle.ood_scores(obs * 10)).all()
    with pytest.raises(ValueError, match="actions"):
        bundle.ood_scores(obs, actions[:3])


def test_a_reloaded_model_exports_the_same_detector(
    exported: tuple[BEAR, Path], tmp_path: Path
) -> None:
    algo, path = exported
    algo.save_model(tmp_path / "model.pt")
    again = BEAR()
    again.load_model(tmp_path / "model.pt")
    copy = again.export_bundle(tmp_path / "bundle")
    assert read_manifest(copy).ood == read_manifest(path).ood
    assert (copy / "ood_reference.npy").read_bytes() == (path / "ood_reference.npy").read_bytes()


def test_a_bundle_without_a_detector_loads(exported: tuple[BEAR, Path], tmp_path: Path) -> None:
    copy = Path(shutil.copytree(exported[1], tmp_path / "bundle"))

    def drop(raw: dict[str, object]) -> None:
        raw.pop("ood")
        files = raw["files"]
        assert isinstance(files, dict)
        del files["ood_reference.npy"]

    reseal(copy, drop)
    (copy / "ood_reference.npy").unlink()
    bundle = load_bundle(copy)
    assert bundle.ood is None and bundle.manifest.ood is None
    with pytest.raises(BundleError, match="no out-of-distribution detector"):
        bundle.ood_scores(np.zeros((1, 5), np.float32))


def test_a_detector_whose_reference_does_not_match_is_refused(
    exported: tuple[BEAR, Path], tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(exported[1], tmp_path / "bundle"))
    reseal(copy, lambda raw: raw["ood"].update(k=10_000))
    with pytest.raises(BundleError, match="'ood'"):
        load_bundle(copy)
    copy2 = Path(shutil.copytree(exported[1], tmp_path / "bundle2"))
    reseal(copy2, lambda raw: raw["files"].pop("ood_reference.npy"))
    with pytest.raises(BundleError, match=r"ood_reference\.npy"):
        load_bundle(copy2)


# --- quality on Pendulum ------------------------------------------------------------------------


def test_pendulum_bars_on_small_data() -> None:
    """Held-out episodes: at most 3% flagged; states the data never visits, 10x observations
    and another task's observations: at least 95% flagged."""
    train = generate_pendulum_dataset("medium", n_episodes=60, seed=0)
    held = TransitionBuffer.from_episodes(
        generate_pendulum_dataset("medium", n_episodes=20, seed=1).episodes
    )
    buffer = TransitionBuffer.from_episodes(train.episodes)
    sample = calibration_sample(
        buffer.observations, buffer.actions, [len(e) for e in train.episodes], seed=0
    )
    assert sample is not None
    ood = detector(sample)
    rng = np.random.default_rng(0)
    theta = rng.uniform(-0.5, 0.5, 500)  # near upright, spinning fast: the data balances there
    speed = rng.uniform(5.0, 8.0, 500) * rng.choice([-1, 1], 500)
    fast_upright = np.stack([np.cos(theta), np.sin(theta), speed], axis=1).astype(np.float32)
    radius = rng.uniform(0.0, 0.6, 500)  # another task's 3-wide rows: off the unit circle
    angle = rng.uniform(-np.pi, np.pi, 500)
    other = np.stack(
        [radius * np.cos(angle), radius * np.sin(angle), rng.normal(0, 0.05, 500)], axis=1
    ).astype(np.float32)
    rates = {
        name: float(flagged(ood.score_observations(rows)).mean())
        for name, rows in [
            ("held_out", held.observations),
            ("fast_upright", fast_upright),
            ("scaled_10x", held.observations * 10),
            ("other", other),
        ]
    }
    assert rates["held_out"] <= 0.03, rates
    assert min(rates["fast_upright"], rates["scaled_10x"], rates["other"]) >= 0.95, rates

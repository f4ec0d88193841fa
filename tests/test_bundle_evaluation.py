"""The manifest's `evaluation`: the held-out estimate of the exported (selected) policy, sealed
with the rest of the manifest; bundles without it still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bear_core import BEAR
from bear_core.bundle import load_bundle
from bear_core.bundle.manifest import manifest_digest, read_manifest
from bear_core.errors import BundleError
from bear_core.training.loop import fitter
from tests.conftest import TINY, make_dataset
from tests.test_selection import OBS, QUIET, FakeEstimator


@pytest.fixture(scope="module")
def selected(tmp_path_factory: pytest.TempPathFactory) -> tuple[BEAR, Path]:
    """A 3-epoch run whose epoch 2 scores best, exported."""
    root = tmp_path_factory.mktemp("selected")
    algo = BEAR(**{**TINY, "n_epochs": 3})
    estimator = FakeEstimator({1: -3.0, 2: -1.0, 3: -2.0})
    for _ in fitter(algo, make_dataset(), run_dir=root / "run", holdout=0.3, select="ope",
                    select_candidates=3, estimator=estimator, **QUIET):  # fmt: skip
        pass
    return algo, algo.export_bundle(root / "bundle")


def reseal(path: Path, change: Any) -> None:
    raw = json.loads((path / "manifest.json").read_text())
    raw.pop("manifest_sha256")
    change(raw)
    (path / "manifest.json").write_text(
        json.dumps({**raw, "manifest_sha256": manifest_digest(raw)})
    )


def test_the_bundle_is_the_selected_policy_with_its_estimate(
    selected: tuple[BEAR, Path],
) -> None:
    algo, path = selected
    raw = json.loads((path / "manifest.json").read_text())
    assert raw["evaluation"] == {
        "method": "fqe", "estimate": -1.0, "ci": [-2.0, 0.0], "n_episodes": 2,
        "dataset_sha256": make_dataset().checksum(),
    }  # fmt: skip
    assert "evaluation" not in raw["provenance"]
    assert raw["provenance"]["epochs"] == 2 and raw["provenance"]["holdout_episodes"] == 2
    bundle = load_bundle(path)
    assert bundle.manifest.evaluation == raw["evaluation"]
    np.testing.assert_allclose(bundle.predict(OBS), algo.predict(OBS), rtol=0, atol=1e-5)


def test_the_evaluation_is_sealed(selected: tuple[BEAR, Path], tmp_path: Path) -> None:
    copy = Path(shutil.copytree(selected[1], tmp_path / "bundle"))
    text = (copy / "manifest.json").read_text().replace('"estimate": -1.0', '"estimate": 1.0')
    (copy / "manifest.json").write_text(text)
    with pytest.raises(BundleError, match="manifest_sha256"):
        read_manifest(copy)


def test_a_bundle_without_evaluation_loads(selected: tuple[BEAR, Path], tmp_path: Path) -> None:
    copy = Path(shutil.copytree(selected[1], tmp_path / "bundle"))
    reseal(copy, lambda raw: raw.pop("evaluation"))
    manifest = read_manifest(copy)
    assert manifest.evaluation is None and "evaluation" not in manifest.to_dict()
    reseal(copy, lambda raw: raw.update(evaluation=None))
    assert read_manifest(copy).evaluation is None


@pytest.mark.parametrize(
    "evaluation",
    [
        "fqe",
        {"method": "fqe", "estimate": 1.0, "ci": [0.0, 2.0], "n_episodes": 2},
        {"method": "fqe", "estimate": "1", "ci": [0.0, 2.0], "n_episodes": 2,
         "dataset_sha256": "x"},
        {"method": "fqe", "estimate": 1.0, "ci": [0.0], "n_episodes": 2, "dataset_sha256": "x"},
        {"method": "fqe", "estimate": 1.0, "ci": [0.0, 2.0], "n_episodes": 0,
         "dataset_sha256": "x"},
    ],
)  # fmt: skip
def test_a_malformed_evaluation_is_refused_naming_it(
    evaluation: Any, selected: tuple[BEAR, Path], tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(selected[1], tmp_path / "bundle"))
    reseal(copy, lambda raw: raw.update(evaluation=evaluation))
    with pytest.raises(BundleError, match="'evaluation'"):
        read_manifest(copy)


def test_a_plain_fit_exports_no_evaluation(tmp_path: Path) -> None:
    algo = BEAR(**TINY)
    algo.fit(make_dataset(), run_dir=tmp_path / "run", **QUIET)
    path = algo.export_bundle(tmp_path / "bundle")
    assert "evaluation" not in json.loads((path / "manifest.json").read_text())

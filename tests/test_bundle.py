"""Policy bundles: export, torch/ONNX parity, manifest, torch-free loading, corruption, CLI.

Every tiny model is trained once and exported once per session; tests that alter a bundle work
on a copy under tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import bear_core
import bear_core.export.bundle_export
from bear_core import BEAR
from bear_core.bundle import FORMAT_VERSION, BundleError, PolicyBundle, load_bundle
from bear_core.bundle.manifest import manifest_digest
from bear_core.cli import main as cli_main
from bear_core.dataset import MDPDataset
from tests.conftest import ACTION_SIZE, OBS_SIZE, TINY, make_dataset

REPO = Path(__file__).resolve().parents[1]
ATOL = 1e-5
SCALERS: tuple[str | None, ...] = (None, "min_max", "standard")
N_CRITICS = (1, 2, 5)
BATCH_SIZES = (1, 7, 1024)
GRAPHS = ("policy.onnx", "sampler.onnx", "critics.onnx")
MEMBERS = (*GRAPHS, "ood_reference.npy")  # sealed by the manifest's sha256s
FILES = ("manifest.json", *MEMBERS)
ACTION_LOW, ACTION_HIGH = -2.0, 3.0  # make_dataset's declared action bounds
TINY_SETS = [
    "--set", "n_epochs=1", "--set", "n_steps_per_epoch=5", "--set", "batch_size=32",
    "--set", 'encoder_params={"hidden_units":[32,32]}', "--quiet",
]  # fmt: skip


@dataclass(frozen=True)
class Exported:
    algo: BEAR
    path: Path
    bundle: PolicyBundle


class BundleCache:
    """Trains and exports each (scaler, n_critics) model once, on first use."""

    def __init__(self, root: Path, dataset: MDPDataset) -> None:
        self.root = root
        self.dataset = dataset
        self.cache: dict[tuple[str | None, int], Exported] = {}

    def get(self, scaler: str | None, n_critics: int) -> Exported:
        key = (scaler, n_critics)
        if key not in self.cache:
            name = f"{scaler or 'none'}-{n_critics}"
            algo = BEAR(**TINY, scaler=scaler, n_critics=n_critics)
            algo.fit(
                self.dataset,
                run_dir=self.root / f"run-{name}",
                verbose=False,
                show_progress=False,
                tensorboard=False,
            )
            path = algo.export_bundle(self.root / f"bundle-{name}")
            self.cache[key] = Exported(algo, path, load_bundle(path))
        return self.cache[key]


@pytest.fixture(scope="session")
def bundles(dataset: MDPDataset, tmp_path_factory: pytest.TempPathFactory) -> BundleCache:
    return BundleCache(tmp_path_factory.mktemp("bundles"), dataset)


@pytest.fixture(scope="session")
def exported(bundles: BundleCache) -> Exported:
    return bundles.get("standard", 2)


@pytest.fixture()
def bundle_copy(exported: Exported, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported.path, tmp_path / "bundle"))


def observations(n: int, seed: int = 1) -> np.ndarray:
    """Observations in and somewhat beyond the training data's range."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, OBS_SIZE)) * 4.0 + 1.0).astype(np.float32)


def actions(n: int, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(ACTION_LOW, ACTION_HIGH, size=(n, ACTION_SIZE)).astype(np.float32)


def noise(n: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, ACTION_SIZE)).astype(np.float32)


@torch.no_grad()
def torch_sample(algo: BEAR, obs: np.ndarray, eps: np.ndarray) -> np.ndarray:
    m = algo.impl
    assert m is not None
    m.eval()
    obs_t, noise_t = torch.from_numpy(obs), torch.from_numpy(eps)
    _, sampled, _ = m.policy.sample_n(m.observation_scaler(obs_t), noise_t[:, None])
    return m.action_scaler.reverse(sampled[:, 0]).numpy()


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, obj: Any) -> None:
    """Write an edited manifest resealed, as a careful tamperer would, so that the checks
    behind the seal are the ones under test."""
    if isinstance(obj, dict) and "manifest_sha256" in obj:
        body = {k: v for k, v in obj.items() if k != "manifest_sha256"}
        obj = {**body, "manifest_sha256": manifest_digest(body)}
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")


def load_error(path: Path) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    return str(info.value)


# --- parity with torch ---------------------------------------------------------------------------

# Every scaler x every n_critics: 9 tiny bundles at ~0.1 s of export each; the whole file takes
# ~20 s on two cores, so the full grid is kept.
GRID = [(s, k) for s in SCALERS for k in N_CRITICS]


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize(("scaler", "n_critics"), GRID)
def test_policy_matches_predict(
    bundles: BundleCache, scaler: str | None, n_critics: int, batch: int
) -> None:
    ex = bundles.get(scaler, n_critics)
    obs = observations(batch, seed=batch)
    got = ex.bundle.predict(obs)
    assert got.shape == (batch, ACTION_SIZE) and got.dtype == np.float32
    np.testing.assert_allclose(got, ex.algo.predict(obs), rtol=0, atol=ATOL)


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize(("scaler", "n_critics"), GRID)
def test_sampler_matches_torch_sampler_with_the_same_noise(
    bundles: BundleCache, scaler: str | None, n_critics: int, batch: int
) -> None:
    ex = bundles.get(scaler, n_critics)
    obs, eps = observations(batch, seed=batch), noise(batch, seed=batch)
    got = ex.bundle.sample_with_noise(obs, eps)
    assert got.shape == (batch, ACTION_SIZE) and got.dtype == np.float32
    np.testing.assert_allclose(got, torch_sample(ex.algo, obs, eps), rtol=0, atol=ATOL)
    assert not np.allclose(got, ex.bundle.predict(obs), atol=ATOL)  # the noise is used


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize(("scaler", "n_critics"), GRID)
def test_critics_mean_and_std_match_predict_value(
    bundles: BundleCache, scaler: str | None, n_critics: int, batch: int
) -> None:
    ex = bundles.get(scaler, n_critics)
    obs, act = observations(batch, seed=batch), actions(batch, seed=batch)
    assert ex.bundle.n_critics == n_critics
    assert ex.bundle.predict_q(obs, act).shape == (batch, n_critics)
    value, std = ex.bundle.predict_value(obs, act, with_std=True)
    expected_value, expected_std = ex.algo.predict_value(obs, act, with_std=True)
    assert value.shape == std.shape == (batch,)
    np.testing.assert_allclose(value, expected_value, rtol=0, atol=ATOL)
    np.testing.assert_allclose(std, expected_std, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ex.bundle.predict_value(obs, act), expected_value, atol=ATOL)
    if n_critics == 1:
        assert np.all(std == 0.0)


# --- sampling, bounds, relocation ---------------------------------------------------------------


def test_sample_action_is_reproducible_per_seed_and_differs_across_seeds(
    exported: Exported,
) -> None:
    bundle, obs = exported.bundle, observations(64)
    first = bundle.sample_action(obs, seed=7)
    np.testing.assert_array_equal(first, bundle.sample_action(obs, seed=7))
    assert not np.allclose(first, bundle.sample_action(obs, seed=8))
    assert not np.allclose(bundle.sample_action(obs), bundle.sample_action(obs))
    seeded_noise = np.random.default_rng(7).standard_normal((64, ACTION_SIZE), dtype=np.float32)
    np.testing.assert_array_equal(first, bundle.sample_with_noise(obs, seeded_noise))


def test_actions_lie_within_the_manifest_bounds(exported: Exported) -> None:
    bundle = exported.bundle
    low = np.asarray(bundle.manifest.action_low, np.float32)
    high = np.asarray(bundle.manifest.action_high, np.float32)
    np.testing.assert_array_equal(low, [ACTION_LOW] * ACTION_SIZE)
    np.testing.assert_array_equal(high, [ACTION_HIGH] * ACTION_SIZE)
    # onnxruntime's Tanh may overshoot +-1 by 2e-7 (see the xfail test below); allow for that.
    tol = 1e-6 * (high - low)
    obs = observations(512) * 25.0  # far outside the data, so tanh saturates
    for acts in (
        bundle.predict(obs),
        bundle.sample_action(obs, seed=0),
        bundle.sample_with_noise(obs, noise(512) * 10.0),
    ):
        assert np.all(acts >= low - tol) and np.all(acts <= high + tol)
        assert np.all(acts >= low - 1.0) and np.any(acts < (low + high) / 2)


def saturating_sweep(bundle: PolicyBundle, n: int = 20001) -> np.ndarray:
    """Sampled actions for pre-tanh values swept densely through tanh's saturating range."""
    obs = np.zeros((n, OBS_SIZE), np.float32)
    eps = np.repeat(np.linspace(-30.0, 30.0, n, dtype=np.float32)[:, None], ACTION_SIZE, axis=1)
    return bundle.sample_with_noise(obs, eps)


def test_saturated_actions_never_leave_the_bounds(exported: Exported) -> None:
    bundle = exported.bundle
    acts = saturating_sweep(bundle)
    assert np.all(acts >= np.asarray(bundle.manifest.action_low, np.float32))
    assert np.all(acts <= np.asarray(bundle.manifest.action_high, np.float32))


def test_a_copied_bundle_loads_and_predicts_the_same(exported: Exported, tmp_path: Path) -> None:
    moved = Path(shutil.copytree(exported.path, tmp_path / "elsewhere" / "bundle"))
    obs = observations(33)
    got = load_bundle(moved).predict(obs)
    np.testing.assert_allclose(got, exported.bundle.predict(obs), rtol=0, atol=ATOL)
    np.testing.assert_allclose(got, exported.algo.predict(obs), rtol=0, atol=ATOL)


# --- manifest ------------------------------------------------------------------------------------


def test_manifest_describes_the_model_and_its_training(
    exported: Exported, dataset: MDPDataset
) -> None:
    raw = read_json(exported.path / "manifest.json")
    algo = exported.algo
    assert raw["format"] == "bear-bundle"
    assert raw["format_version"] == FORMAT_VERSION == 1
    assert raw["observation_shape"] == [OBS_SIZE]
    assert raw["observation_dtype"] == "float32"
    assert raw["action_size"] == ACTION_SIZE
    assert raw["action_low"] == [ACTION_LOW] * ACTION_SIZE
    assert raw["action_high"] == [ACTION_HIGH] * ACTION_SIZE
    assert raw["n_critics"] == 2
    assert raw["q_func_type"] == "mean"
    assert raw["params"] == json.loads(json.dumps(algo.params_json()))
    assert raw["params"]["scaler"]["type"] == "standard"
    provenance = raw["provenance"]
    assert provenance["dataset_sha256"] == dataset.checksum()
    assert provenance["epochs"] == algo.epoch == 1
    assert provenance["total_steps"] == algo.total_step == 5
    assert provenance["final_metrics"] == algo.provenance["final_metrics"]
    assert {"critic_loss", "actor_loss", "alpha", "temp"} <= set(provenance["final_metrics"])
    assert datetime.fromisoformat(raw["created"]).tzinfo is not None
    assert raw["versions"]["torch"] == torch.__version__
    assert raw["versions"]["onnx"] == onnx.__version__
    assert raw["versions"]["onnxruntime"] == ort.__version__
    assert raw["versions"]["bear_core"] == bear_core.__version__


def test_manifest_lists_a_matching_sha256_for_every_file(exported: Exported) -> None:
    raw = read_json(exported.path / "manifest.json")
    on_disk = {p.name for p in exported.path.iterdir()}
    assert on_disk == set(FILES)
    assert set(raw["files"]) == set(MEMBERS)
    for name, digest in raw["files"].items():
        assert digest == hashlib.sha256((exported.path / name).read_bytes()).hexdigest(), name


def test_graphs_pin_the_opset_and_have_a_dynamic_batch_axis(exported: Exported) -> None:
    raw = read_json(exported.path / "manifest.json")
    for name in GRAPHS:
        model = onnx.load(str(exported.path / name))
        default_domain = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
        assert default_domain == [raw["opset"]], name
        for value in [*model.graph.input, *model.graph.output]:
            batch_dim = value.type.tensor_type.shape.dim[0]
            assert batch_dim.dim_param and not batch_dim.HasField("dim_value"), (name, value.name)


# --- torch-free serving --------------------------------------------------------------------------

TORCH_FREE_SCRIPT = """
import importlib.abc, json, sys

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is blocked in this process")
        return None

sys.meta_path.insert(0, BlockTorch())
import numpy as np
import bear_core.bundle

bundle = bear_core.bundle.load_bundle(sys.argv[1])
obs = np.asarray(json.loads(sys.stdin.read()), dtype=np.float32)
try:
    import torch  # noqa
    torch_importable = True
except ImportError:
    torch_importable = False
print(json.dumps({
    "actions": bundle.predict(obs).tolist(),
    "torch_loaded": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
    "torch_importable": torch_importable,
}))
"""


def test_bundle_loads_and_predicts_where_torch_cannot_be_imported(exported: Exported) -> None:
    obs = observations(9)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", TORCH_FREE_SCRIPT, str(exported.path)],
        input=json.dumps(obs.tolist()),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=exported.path,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["torch_loaded"] == [] and out["torch_importable"] is False
    got = np.asarray(out["actions"], dtype=np.float32)
    assert got.shape == (9, ACTION_SIZE)
    np.testing.assert_allclose(got, exported.algo.predict(obs), rtol=0, atol=ATOL)


# --- corrupt, truncated, tampered and mismatched bundles ----------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_a_flipped_byte_is_refused_naming_the_file(bundle_copy: Path, name: str) -> None:
    path = bundle_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert name in load_error(bundle_copy)


def test_a_single_bit_flip_in_the_manifest_provenance_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / "manifest.json"
    data = bytearray(path.read_bytes())
    at = data.index(b'"dataset_sha256": "') + len(b'"dataset_sha256": "')
    data[at] ^= 0x01  # one hex digit of the claimed dataset checksum
    assert json.loads(bytes(data)) != read_json(path)
    path.write_bytes(bytes(data))
    assert "manifest.json" in load_error(bundle_copy)


@pytest.mark.parametrize("name", GRAPHS)
def test_a_truncated_graph_is_refused_naming_it(bundle_copy: Path, name: str) -> None:
    path = bundle_copy / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert name in load_error(bundle_copy)


@pytest.mark.parametrize("name", FILES)
def test_a_missing_file_is_refused_naming_it(bundle_copy: Path, name: str) -> None:
    (bundle_copy / name).unlink()
    assert name in load_error(bundle_copy)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    assert "not a bundle directory" in load_error(tmp_path / "nowhere")


def edit_observation_shape(raw: dict[str, Any]) -> None:
    raw["observation_shape"] = [OBS_SIZE + 1]
    del raw["ood"]  # its width would be refused first (test_ood); this checks the graphs


def edit_action_size(raw: dict[str, Any]) -> None:
    raw["action_size"] = ACTION_SIZE + 1


def edit_action_size_and_bounds(raw: dict[str, Any]) -> None:
    raw["action_size"] = ACTION_SIZE + 1
    raw["action_low"] = [ACTION_LOW] * (ACTION_SIZE + 1)
    raw["action_high"] = [ACTION_HIGH] * (ACTION_SIZE + 1)
    del raw["ood"]


def edit_n_critics(raw: dict[str, Any]) -> None:
    raw["n_critics"] = 3


def edit_observation_dtype(raw: dict[str, Any]) -> None:
    raw["observation_dtype"] = "uint8"


def edit_format_version(raw: dict[str, Any]) -> None:
    raw["format_version"] = FORMAT_VERSION + 1


def edit_digest(raw: dict[str, Any]) -> None:
    raw["files"]["sampler.onnx"] = "0" * 64


def drop_a_graph_from_files(raw: dict[str, Any]) -> None:
    del raw["files"]["critics.onnx"]


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (edit_observation_shape, ("manifest.json", "policy.onnx")),
        (edit_action_size, ("manifest.json",)),
        (edit_action_size_and_bounds, ("manifest.json", "policy.onnx")),
        (edit_n_critics, ("manifest.json", "critics.onnx")),
        (edit_observation_dtype, ("manifest.json", "policy.onnx")),
        (edit_format_version, ("manifest.json", "format_version")),
        (edit_digest, ("sampler.onnx",)),
        (drop_a_graph_from_files, ("manifest.json", "critics.onnx")),
    ],
)
def test_an_edited_manifest_is_refused(
    bundle_copy: Path, edit: Callable[[dict[str, Any]], None], names: tuple[str, ...]
) -> None:
    raw = read_json(bundle_copy / "manifest.json")
    edit(raw)
    write_json(bundle_copy / "manifest.json", raw)
    message = load_error(bundle_copy)
    assert all(name in message for name in names), message


def test_a_consistently_swapped_graph_is_refused_by_its_signature(bundle_copy: Path) -> None:
    shutil.copyfile(bundle_copy / "critics.onnx", bundle_copy / "policy.onnx")
    raw = read_json(bundle_copy / "manifest.json")
    raw["files"]["policy.onnx"] = hashlib.sha256(
        (bundle_copy / "policy.onnx").read_bytes()
    ).hexdigest()
    write_json(bundle_copy / "manifest.json", raw)
    message = load_error(bundle_copy)
    assert "policy.onnx" in message and "signature" in message


def test_a_graph_that_is_not_onnx_is_refused_even_with_a_matching_sha256(
    bundle_copy: Path,
) -> None:
    garbage = b"not an onnx model at all"
    (bundle_copy / "sampler.onnx").write_bytes(garbage)
    raw = read_json(bundle_copy / "manifest.json")
    raw["files"]["sampler.onnx"] = hashlib.sha256(garbage).hexdigest()
    write_json(bundle_copy / "manifest.json", raw)
    assert "sampler.onnx" in load_error(bundle_copy)


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2, 3]", '"bundle"'])
def test_a_manifest_that_is_not_a_json_object_is_refused(bundle_copy: Path, text: str) -> None:
    (bundle_copy / "manifest.json").write_text(text, encoding="utf-8")
    assert "manifest.json" in load_error(bundle_copy)


# --- runtime input validation --------------------------------------------------------------------

BAD_OBSERVATIONS: dict[str, Any] = {
    "wrong width": np.zeros((3, OBS_SIZE + 1), np.float32),
    "1-D": np.zeros(OBS_SIZE, np.float32),
    "3-D": np.zeros((2, 1, OBS_SIZE), np.float32),
    "NaN": np.where(np.eye(3, OBS_SIZE) > 0, np.nan, 0.0).astype(np.float32),
    "inf": np.full((2, OBS_SIZE), np.inf, np.float32),
    "-inf float64": np.full((2, OBS_SIZE), -np.inf),
    "strings": [["a"] * OBS_SIZE],
    "empty batch": np.zeros((0, OBS_SIZE), np.float32),
    "ragged": [[0.0] * OBS_SIZE, [0.0] * (OBS_SIZE - 1)],
}


@pytest.mark.parametrize("case", sorted(BAD_OBSERVATIONS))
@pytest.mark.parametrize("method", ["predict", "sample_action", "predict_value"])
def test_bad_observations_raise_value_error_naming_them(
    exported: Exported, case: str, method: str
) -> None:
    bundle, bad = exported.bundle, BAD_OBSERVATIONS[case]
    calls: dict[str, Callable[[], Any]] = {
        "predict": lambda: bundle.predict(bad),
        "sample_action": lambda: bundle.sample_action(bad, seed=0),
        "predict_value": lambda: bundle.predict_value(bad, actions(3), with_std=True),
    }
    with pytest.raises(ValueError, match="observations"):
        calls[method]()


BAD_ACTIONS: dict[str, Any] = {
    "wrong width": np.zeros((4, ACTION_SIZE + 1), np.float32),
    "too few rows": np.zeros((3, ACTION_SIZE), np.float32),
    "too many rows": np.zeros((5, ACTION_SIZE), np.float32),
    "NaN": np.array([[0.0, np.nan]] * 4, np.float32),
    "inf": np.array([[np.inf, 0.0]] * 4, np.float32),
    "1-D": np.zeros(ACTION_SIZE, np.float32),
    "strings": [["x"] * ACTION_SIZE] * 4,
}


@pytest.mark.parametrize("case", sorted(BAD_ACTIONS))
def test_bad_actions_raise_value_error_naming_them(exported: Exported, case: str) -> None:
    with pytest.raises(ValueError, match="actions"):
        exported.bundle.predict_value(observations(4), BAD_ACTIONS[case], with_std=True)


def test_inputs_of_other_dtypes_and_layouts_are_accepted(exported: Exported) -> None:
    obs = observations(6)
    expected = exported.algo.predict(obs)
    bundle = exported.bundle
    strided = np.repeat(obs, 2, axis=0)[::2]
    assert not strided.flags.c_contiguous
    for variant in (obs.astype(np.float64), obs.tolist(), np.asfortranarray(obs), strided):
        np.testing.assert_allclose(bundle.predict(variant), expected, rtol=0, atol=ATOL)
    read_only = obs.copy()
    read_only.flags.writeable = False
    np.testing.assert_allclose(bundle.predict(read_only), expected, rtol=0, atol=ATOL)


# --- atomic export -------------------------------------------------------------------------------


def dot_entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_export_into_a_non_empty_directory_is_refused(exported: Exported, tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists"):
        exported.algo.export_bundle(target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "mine"
    assert dot_entries(tmp_path) == []


def test_export_over_a_file_is_refused(exported: Exported, tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    target.write_text("a file")
    with pytest.raises(ValueError, match="already exists"):
        exported.algo.export_bundle(target)
    assert target.read_text() == "a file"
    assert dot_entries(tmp_path) == []


def test_a_failed_export_leaves_nothing_behind(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_export_onnx = bear_core.export.bundle_export.export_onnx
    written: list[Path] = []

    def fail_on_second_graph(*args: Any, **kwargs: Any) -> None:
        path = Path(args[2])
        if written:
            raise RuntimeError("export failed midway")
        real_export_onnx(*args, **kwargs)
        written.append(path)

    monkeypatch.setattr(bear_core.export.bundle_export, "export_onnx", fail_on_second_graph)
    target = tmp_path / "out" / "bundle"
    with pytest.raises(RuntimeError, match="midway"):
        exported.algo.export_bundle(target)
    assert len(written) == 1
    build_dir = written[0].parent
    assert build_dir.parent == target.parent and build_dir.name.startswith(".")
    assert not target.exists()
    assert not build_dir.exists()
    assert list(target.parent.iterdir()) == []


# --- command line --------------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bear_core", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    data = root / "data.h5"
    make_dataset().to_hdf5(data)
    run = root / "run"
    result = run_cli("train", "--dataset", str(data), "--out", str(run), *TINY_SETS)
    assert result.returncode == 0, result.stderr
    return run


def test_cli_exports_a_run_directory(cli_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = run_cli("export", "--model", str(cli_run), "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary == {"bundle": str(out), "epochs": 1, "total_steps": 5}
    bundle = load_bundle(out)
    algo = BEAR()
    algo.load_model(cli_run / "checkpoint.pt")
    obs = observations(7)
    np.testing.assert_allclose(bundle.predict(obs), algo.predict(obs), rtol=0, atol=ATOL)
    assert bundle.manifest.params == json.loads(json.dumps(algo.params_json()))
    assert dot_entries(tmp_path) == []


def test_cli_train_with_bundle_exports_the_trained_model(tmp_path: Path) -> None:
    """What a training job runs: the bundle written by the trainer itself reproduces the model
    it saved (greedy actions, sampled actions for given noise, every critic) to 1e-5."""
    data, run, out = tmp_path / "data.h5", tmp_path / "run", tmp_path / "bundle"
    make_dataset().to_hdf5(data)
    result = run_cli(
        "train", "--dataset", str(data), "--out", str(run), *TINY_SETS, "--bundle", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "bundle": str(out),
        "epochs": 1,
        "total_steps": 5,
    }
    bundle = load_bundle(out)
    algo = BEAR()
    algo.load_model(run / "checkpoint.pt")
    obs, acts, eps = observations(7), actions(7), noise(7)
    np.testing.assert_allclose(bundle.predict(obs), algo.predict(obs), rtol=0, atol=ATOL)
    np.testing.assert_allclose(
        bundle.sample_with_noise(obs, eps), torch_sample(algo, obs, eps), rtol=0, atol=ATOL
    )
    values, stds = algo.predict_value(obs, acts, with_std=True)
    np.testing.assert_allclose(
        bundle.predict_value(obs, acts, with_std=True), (values, stds), rtol=0, atol=ATOL
    )
    assert bundle.manifest.provenance["total_steps"] == 5
    assert dot_entries(tmp_path) == []


def test_cli_exports_a_model_file_into_an_empty_directory(
    cli_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b"
    out.mkdir()
    code = cli_main(["export", "--model", str(cli_run / "model_1.pt"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    bundle = load_bundle(out)
    assert bundle.manifest.provenance["epochs"] == 1
    assert bundle.predict(observations(3)).shape == (3, ACTION_SIZE)
    assert dot_entries(tmp_path) == []


@pytest.mark.parametrize("what", ["run directory", "model file"])
def test_cli_export_of_a_missing_model_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    missing = tmp_path / ("no-such-run" if what == "run directory" else "model_9.pt")
    code = cli_main(["export", "--model", str(missing), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--model" in err and missing.name in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_calls_match_sequential_calls(exported: Exported) -> None:
    bundle = exported.bundle
    inputs = [observations(1 + 37 * i, seed=100 + i) for i in range(8)]
    expected = [bundle.predict(obs) for obs in inputs]
    expected_values = [bundle.predict_value(obs, bundle.predict(obs)) for obs in inputs]
    start = threading.Barrier(len(inputs))

    def work(i: int) -> tuple[list[np.ndarray], list[Any]]:
        start.wait()
        preds, values = [], []
        for _ in range(25):
            preds.append(bundle.predict(inputs[i]))
            values.append(bundle.predict_value(inputs[i], expected[i]))
        return preds, values

    with ThreadPoolExecutor(max_workers=len(inputs)) as pool:
        results = list(pool.map(work, range(len(inputs))))
    for i, (preds, values) in enumerate(results):
        for pred, value in zip(preds, values, strict=True):
            np.testing.assert_array_equal(pred, expected[i])
            np.testing.assert_array_equal(value, expected_values[i])


def test_exported_bundles_are_readable_by_other_users(tmp_path: Path) -> None:
    algo = BEAR(**TINY)
    algo.create_impl((OBS_SIZE,), ACTION_SIZE)
    old = os.umask(0o022)
    try:
        path = algo.export_bundle(tmp_path / "shared")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o755
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in path.iterdir())

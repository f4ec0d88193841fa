"""What the promotion gate rebuilds held-out episodes from: fit's `provenance["holdout"]` names
them by their index in the source file and their sha256, the exported manifest carries it, and
`python -m bear_core evaluate-bundle` scores bundles on exactly those episodes (alike: the same
bundle twice gives the same estimate), refusing other episodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bear_core import BEAR
from bear_core.bundle import read_manifest, sha256_file
from bear_core.cli import main
from bear_core.dataset import read_hdf5
from bear_core.training.loop import fitter
from bear_core.training.selection import episodes_sha256, holdout_indices
from tests.conftest import TINY, make_dataset

QUIET = {"verbose": False, "show_progress": False, "tensorboard": False}


def test_the_held_out_record_rebuilds_the_episodes_the_evaluator_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data.h5"
    make_dataset().to_hdf5(path)
    data = read_hdf5(path)
    ids = [5, 3, 4, 0, 1]  # the episodes fit is given, by their index in the file
    given = [data.episodes[i] for i in ids]
    algo = BEAR(**TINY)
    for _ in fitter(
        algo, given, run_dir=tmp_path / "run", holdout=0.4, fqe_steps=5, episode_ids=ids,
        source_sha256=sha256_file(path), action_bounds=data.action_bounds, **QUIET,
    ):  # fmt: skip
        pass
    record = algo.provenance["holdout"]
    assert record["episodes"] == [ids[i] for i in holdout_indices(len(ids), 0.4, 0)]
    assert len(record["episodes"]) == 2 and record["source_sha256"] == sha256_file(path)
    held_out = [data.episodes[i] for i in record["episodes"]]
    assert record["episodes_sha256"] == episodes_sha256(held_out)
    assert (record["fraction"], record["seed"], record["fqe_steps"]) == (0.4, 0, 5)
    bundle = algo.export_bundle(tmp_path / "bundle")
    assert read_manifest(bundle).provenance["holdout"] == record

    out = tmp_path / "values.json"
    episodes = ",".join(map(str, record["episodes"]))
    common = ["evaluate-bundle", "--bundle", str(bundle), "--dataset", str(path), "--out", str(out)]
    code = main([*common, "--bundle", str(bundle), "--episodes", episodes, "--fqe-steps", "5",
                 "--episodes-sha256", record["episodes_sha256"]])  # fmt: skip
    assert code == 0
    written = json.loads(out.read_text())
    assert written["episodes_sha256"] == record["episodes_sha256"]
    first, second = written["results"]
    assert first["estimate"] == second["estimate"] and first["n_episodes"] == 2
    assert first["manifest_sha256"] == sha256_file(bundle / "manifest.json")

    other = ",".join(str(i) for i in range(6) if i not in record["episodes"][:1])
    for episodes, named in (
        (other, "--episodes-sha256"),
        ("0,0", "--episodes"),
        ("9", "--episodes"),
        ("a", "--episodes"),
    ):
        assert main([*common, "--episodes", episodes,
                     "--episodes-sha256", record["episodes_sha256"]]) == 2  # fmt: skip
        assert named in capsys.readouterr().err

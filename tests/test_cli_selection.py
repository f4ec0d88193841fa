"""`python -m bear_core train` with --holdout, --select and --keep-checkpoints: bad values exit 2
naming the argument; a tiny real run picks a checkpoint by FQE and exports it with its estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bear_core import BEAR
from bear_core.cli import main
from tests.conftest import make_dataset
from tests.test_cli import TINY_SETS, run_cli


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.h5"
    make_dataset().to_hdf5(path)
    return path


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--select", "best"], "--select"),
        (["--keep-checkpoints", "0"], "--keep-checkpoints"),
        (["--keep-checkpoints", "some"], "--keep-checkpoints"),
        (["--holdout", "1.5"], "holdout"),
        (["--holdout", "0.2", "--fqe-steps", "0"], "fqe_steps"),
        (["--holdout", "0.2", "--select-candidates", "0"], "select_candidates"),
        (["--select", "ope"], "select"),
    ],
)
def test_bad_selection_arguments_exit_2_naming_them(
    args: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--dataset", str(tmp_path / "missing.h5"), "--out", str(out), *args]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code or 0)
    assert code == 2
    assert named in capsys.readouterr().err
    assert not out.exists()  # refused before the data is read or anything written


def test_select_ope_run_exports_the_chosen_checkpoint(data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli(
        "train", "--dataset", str(data_file), "--out", str(out), *TINY_SETS,
        "--set", "n_epochs=3", "--holdout", "0.34", "--select", "ope", "--select-candidates", "3",
        "--fqe-steps", "20", "--keep-checkpoints", "1", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "selection.json").read_text())
    assert [c["epoch"] for c in record["candidates"]] == [1, 2, 3]
    best = max(record["candidates"], key=lambda c: c["estimate"])
    assert record["chosen_epoch"] == best["epoch"] and record["n_steps_fqe"] == 20
    assert record["n_episodes"] == 2 and record["complete"] is True
    assert sorted(p.name for p in out.glob("model_*.pt")) == ["model_3.pt", "model_best.pt"]

    exported = run_cli("export", "--model", str(out), "--out", str(tmp_path / "bundle"))
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["epochs"] == best["epoch"]
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["evaluation"]["estimate"] == best["estimate"]
    assert manifest["evaluation"]["ci"] == best["ci"]
    resumable = BEAR()
    resumable.load_model(out / "checkpoint.pt")
    assert resumable.epoch == 3

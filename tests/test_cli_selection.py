"""`python -m bear_core train` with --holdout, --select and --keep-checkpoints: bad values exit 2
naming the argument."""

from __future__ import annotations

from pathlib import Path

import pytest

from bear_core.cli import main


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

"""`python -m bear_core train` as a background job runs it: files, resume, bad input, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bear_core import BEAR
from tests.conftest import make_dataset

REPO = Path(__file__).resolve().parents[1]
TINY_SETS = [
    "--set", "batch_size=32", "--set", 'encoder_params={"hidden_units": [32, 32]}',
    "--set", "n_steps_per_epoch=5",
]  # fmt: skip


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bear_core", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO,
    )  # fmt: skip


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.h5"
    make_dataset().to_hdf5(path)
    return path


def test_train_writes_progress_metrics_and_checkpoints(data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("train", "--dataset", str(data_file), "--out", str(out), *TINY_SETS,
                     "--set", "n_epochs=2", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    progress = json.loads((out / "progress.json").read_text())
    assert progress["state"] == "finished" and progress["step"] == 10
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"critic_loss", "alpha", "temp", "mmd", "td_error"} <= set(records[-1]["metrics"])
    assert (out / "model_2.pt").exists() and (out / "params.json").exists()
    algo = BEAR()
    algo.load_model(out / "checkpoint.pt")
    assert algo.epoch == 2 and algo.total_step == 10


def test_train_resumes_from_its_checkpoint(data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = ["train", "--dataset", str(data_file), "--out", str(out), *TINY_SETS, "--quiet"]
    assert run_cli(*common, "--set", "n_epochs=1").returncode == 0
    result = run_cli(*common, "--set", "n_epochs=3")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 5), (2, 10), (3, 15)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "gamma=7"], "gamma"),
        (["--set", "scaler=unknown"], "scaler"),
        (["--set", "no_such_param=1"], "no_such_param"),
        (["--set", "q_func_type=huber"], "q_func_type"),
        (["--scorers", "nope"], "--scorers"),
    ],
)
def test_bad_parameters_exit_2_naming_them(data_file: Path, tmp_path: Path, args: list[str],
                                           message: str) -> None:  # fmt: skip
    result = run_cli("train", "--dataset", str(data_file), "--out", str(tmp_path / "r"), *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_eval_env_imports_no_module_unless_allowed(data_file: Path, tmp_path: Path) -> None:
    """`module:Env-v0` would make gymnasium import `module` (here `this`, which prints the Zen
    of Python): refused, like an id gymnasium has not registered."""
    for env_id, message in (
        ("this:Pendulum-v1", "would import 'this'"),
        ("NoSuchEnv-v0", "not a registered gymnasium id"),
    ):
        out = tmp_path / env_id.replace(":", "_")
        result = run_cli("train", "--dataset", str(data_file), "--out", str(out), *TINY_SETS,
                         "--set", "n_epochs=1", "--eval-env", env_id)  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert "Zen of Python" not in result.stdout


def test_eval_env_modules_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from bear_core.cli import _make_env

    with pytest.raises(ValueError, match="would import 'json'"):
        _make_env("json:Pendulum-v1")
    monkeypatch.setenv("BEAR_EVAL_ENV_MODULES", "os, json")
    env = _make_env("json:Pendulum-v1")
    assert env.spec is not None and env.spec.id == "Pendulum-v1"
    env.close()
    with pytest.raises(ValueError, match="not a registered gymnasium id"):
        _make_env("json:NoSuchEnv-v0")


@pytest.mark.parametrize("content", [None, b"not an hdf5 file"])
def test_bad_dataset_exits_2(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "data.h5"
    if content is not None:
        path.write_bytes(content)
    result = run_cli("train", "--dataset", str(path), "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "data.h5" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_saves_a_loadable_checkpoint(data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bear_core", "train", "--dataset", str(data_file), "--out",
         str(out), "--set", "batch_size=32", "--set", 'encoder_params={"hidden_units": [32]}',
         "--set", "n_steps_per_epoch=50", "--set", "n_epochs=100000", "--quiet"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    algo = BEAR()
    algo.load_model(out / "checkpoint.pt")
    assert algo.total_step >= 50

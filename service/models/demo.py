"""A demo model for an empty store: generate Pendulum data, train a small BEAR, export it and
publish it as `pendulum` version 1 in production, all through the command-line tools (the
trainer runs in subprocesses, so this process never imports torch)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

from service.models.model_store import ModelStore

DEMO_MODEL = "pendulum"
TRAIN_SETTINGS = ("n_epochs=10", "n_steps_per_epoch=500", "batch_size=256", "scaler=standard")


def bootstrap_demo(store: ModelStore, logger: logging.Logger) -> str:
    """Train and publish the demo model; returns its version."""
    work = store.ensure().root / "demo"
    dataset, run, bundle = work / "pendulum-medium.h5", work / "run", work / "bundle"
    cli = [sys.executable, "-m", "bear_core"]
    if not dataset.exists():
        logger.info("demo: generating Pendulum data", extra={"path": str(dataset)})
        _run([*cli, "generate", "--kind", "medium", "--episodes", "50", "--out", str(dataset)])
    logger.info("demo: training BEAR (a minute or a few)", extra={"path": str(run)})
    sets = [arg for setting in TRAIN_SETTINGS for arg in ("--set", setting)]
    _run([*cli, "train", "--dataset", str(dataset), "--out", str(run), *sets, "--quiet"])
    shutil.rmtree(bundle, ignore_errors=True)
    _run([*cli, "export", "--model", str(run), "--out", str(bundle)])
    version = store.publish(DEMO_MODEL, bundle, promote=True)
    logger.info("demo: published", extra={"model": DEMO_MODEL, "version": version})
    return version


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True)

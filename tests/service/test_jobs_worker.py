"""The dispatcher as its own process: an API with BEAR_DISPATCHER=false queues, `python -m
service.worker` on the same store trains and publishes with promote, and the API serves the new
production version without a restart. SIGTERM stops the worker cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.core.settings import Settings
from service.worker import heartbeat_is_fresh
from tests.service.serving import (
    API_KEY,
    REPO,
    TINY_PARAMS,
    running_server,
    submit,
    upload_dataset,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.e2e


def test_worker_process_beside_the_api(tmp_path: Path, pendulum_h5: Path) -> None:
    store = tmp_path / "store"
    api_env = {"BEAR_API_KEYS": API_KEY, "BEAR_DISPATCHER": "false", "BEAR_SYNC_INTERVAL_S": "0.2"}
    with running_server(store, **api_env) as server, server.client() as client:
        assert not heartbeat_is_fresh(Settings(store=store))  # the API runs no dispatcher
        dataset = upload_dataset(client, pendulum_h5)["id"]
        job = submit(client, dataset, n_epochs=2, params=TINY_PARAMS, promote=True)
        with open(tmp_path / "worker.log", "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "service.worker", "--store", str(store)],
                cwd=REPO,
                env={**os.environ, "BEAR_JOB_POLL_S": "0.2"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            done = wait_for_job(client, job["id"])
            assert done["state"] == "succeeded", done
            observations = {"observations": [[1.0, 0.0, 0.5]]}
            assert done["model_version"] == "1"
            predicted = wait_until(
                lambda: (
                    client.post("/models/trained/predict", json=observations).json().get("version")
                ),
                timeout=10,
                what="the API to serve the version the worker promoted",
            )
            assert predicted == "1"
            assert heartbeat_is_fresh(Settings(store=store))
        finally:
            worker.terminate()
            code = worker.wait(timeout=30)
    assert code == 0, (tmp_path / "worker.log").read_text()
    assert "job dispatcher running" in (tmp_path / "worker.log").read_text()

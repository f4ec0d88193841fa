"""Restart safety: the server is killed (-9) with two jobs running and one queued. The next
server stops the orphaned trainers, fails the job that did not ask for resume, resumes the one
that did from its checkpoint, and runs the queued one; nothing is lost or half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.service.serving import (
    API_KEY,
    LONG_PARAMS,
    TINY_PARAMS,
    alive,
    running_server,
    submit,
    trainer_pid,
    upload_dataset,
    wait_for_job,
)

pytestmark = pytest.mark.e2e

RESUMED_EPOCHS = 80


def test_restart_with_jobs_running_and_queued(tmp_path: Path, pendulum_h5: Path) -> None:
    store = tmp_path / "store"
    env = {"BEAR_API_KEYS": API_KEY, "BEAR_MAX_CONCURRENT_JOBS": "2", "BEAR_CANCEL_GRACE_S": "20"}
    with running_server(store, **env) as first, first.client() as client:
        dataset = upload_dataset(client, pendulum_h5)["id"]
        plain = submit(client, dataset, n_epochs=1000, params=LONG_PARAMS)
        resumable = submit(
            client, dataset, n_epochs=RESUMED_EPOCHS, params=LONG_PARAMS, resume=True
        )
        queued = submit(client, dataset, n_epochs=2, params=TINY_PARAMS, promote=True)
        for job in (plain, resumable):
            wait_for_job(client, job["id"], lambda j: j["state"] == "running" and j["checkpoint"])
        assert client.get(f"/jobs/{queued['id']}").json()["state"] == "queued"
        orphans = [trainer_pid(store, job["id"]) for job in (plain, resumable)]
        first.process.kill()
        first.process.wait(timeout=10)
    assert all(alive(pid) for pid in orphans)  # trainers outlive a killed server

    with running_server(store, **env) as second, second.client() as client:
        failed = wait_for_job(client, plain["id"], timeout=60)
        assert failed["state"] == "failed" and failed["attempts"] == 1
        assert failed["error"].startswith("interrupted: orphaned: ")
        assert failed["checkpoint"] is True
        resumed = wait_for_job(client, resumable["id"], timeout=240)
        ran = wait_for_job(client, queued["id"], timeout=240)
        assert not any(alive(pid) for pid in orphans)
        assert "stopping a leftover trainer" in second.logs()

    assert (resumed["state"], resumed["attempts"]) == ("succeeded", 2), resumed
    assert resumed["model_version"] is not None and resumed["error"] is None
    assert (resumed["epoch"], resumed["step"]) == (RESUMED_EPOCHS, RESUMED_EPOCHS * 20)
    run = store / "jobs" / resumable["id"] / "run"
    records = (run / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line)["epoch"] for line in records]
    assert epochs == list(range(1, RESUMED_EPOCHS + 1))  # continued, not started over
    log = (store / "jobs" / resumable["id"] / "train.log").read_text()
    assert "attempt 1: " in log and "attempt 2: " in log and "queued again to resume" in log

    assert (ran["state"], ran["attempts"]) == ("succeeded", 1), ran
    versions = sorted([resumed["model_version"], ran["model_version"]])
    assert versions == ["1", "2"]
    production = (store / "models" / "trained" / "production").read_text().strip()
    assert production == ran["model_version"]
    assert not list((store / "tmp").iterdir())

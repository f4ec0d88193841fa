"""Training jobs on a real Ray cluster (a 2-CPU head on 127.0.0.1 in a temporary directory; the
servers are its drivers): a job's dataset travels through Ray and its outputs come back
into the store, although the trainer runs in a directory of its own; the version is published
and served. Cancel keeps a checkpoint; a server killed while a job runs re-attaches to it; a
worker node lost mid-job fails the job with a clear error, its last checkpoint kept."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.ray_head import running_ray_head, running_ray_worker
from tests.service.serving import (
    ADMIN,
    API_KEY,
    Server,
    running_server,
    submit,
    upload_dataset,
    wait_for_job,
)

pytest.importorskip("ray", reason="ray is not installed (the `train` extra installs it)")

pytestmark = pytest.mark.e2e

PARAMS: dict[str, Any] = {
    "batch_size": 32,
    "encoder_params": {"hidden_units": [16, 16]},
    "n_steps_per_epoch": 5,
}
LONG: dict[str, Any] = {**PARAMS, "n_steps_per_epoch": 20}  # 0.1-0.5 s per epoch
EPOCHS = 25  # the restart test's job: it may end before the second server is up (then the
# re-attached dispatcher collects its outputs), or after


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    with running_ray_head() as address:
        yield address


def ray_env(address: str) -> dict[str, str]:
    return {"BEAR_API_KEYS": API_KEY, "BEAR_RAY_ADDRESS": address, "BEAR_CANCEL_GRACE_S": "20"}


@pytest.fixture(scope="module")
def server(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("ray-jobs") / "store"
    with running_server(store, **ray_env(ray_address)) as running:
        yield running


@pytest.fixture(scope="module")
def dataset(server: Server, pendulum_h5: Path) -> str:
    with server.client() as client:
        return str(upload_dataset(client, pendulum_h5)["id"])


def worker_dir(client: httpx.Client, job_id: str) -> Path:
    text = client.get(f"/jobs/{job_id}/logs").json()["text"]
    found = re.search(r"running on the Ray node [^:]+:(\S+)", text)
    assert found, text
    return Path(found.group(1))


def test_a_job_on_ray_is_published_and_served(server: Server, dataset: str) -> None:
    store = server.store
    with server.client() as client:
        job = submit(client, dataset, n_epochs=2, params=PARAMS, promote=True)
        done = wait_for_job(client, job["id"], timeout=80)
        assert done["state"] == "succeeded", done
        assert (done["executor"], done["executor_id"]) == ("ray", f"bear-job-{job['id']}-1")
        assert (done["epoch"], done["step"], done["model_version"]) == (2, 10, "1")
        series = client.get(f"/jobs/{job['id']}/metrics").json()["series"]
        assert series["critic_loss"]["epoch"] == [1, 2]
        text = client.get(f"/jobs/{job['id']}/logs").json()["text"]
        assert "epoch=2 step=10" in text and "published trained version 1" in text

        where = worker_dir(client, job["id"])
        assert not where.is_relative_to(store) and not store.is_relative_to(where)
        assert not where.exists()  # removed once the outputs were here
        run = store / "jobs" / job["id"] / "run"
        assert {"checkpoint.pt", "metrics.jsonl", "progress.json", "params.json"} <= {
            p.name for p in run.iterdir()
        }
        assert not (store / "jobs" / job["id"] / "ray_run.json").exists()

        predicted = client.post("/models/trained/predict", json={"observations": [[1, 0, 0.5]]})
        assert predicted.status_code == 200 and predicted.json()["version"] == "1"


def test_cancel_on_ray_keeps_a_checkpoint(server: Server, dataset: str) -> None:
    with server.client() as client:
        job = submit(client, dataset, n_epochs=1000, params=LONG)
        wait_for_job(client, job["id"], lambda j: j["state"] == "running" and j["checkpoint"])
        assert client.post(f"/jobs/{job['id']}/cancel", headers=ADMIN).status_code == 202
        done = wait_for_job(client, job["id"], timeout=40)
    assert done["state"] == "cancelled" and done["exit_code"] == 143, done
    assert done["error"] == "cancelled on request; checkpoint saved" and done["checkpoint"]
    assert done["executor"] == "ray"


def test_a_restarted_server_reattaches(ray_address: str, tmp_path: Path, pendulum_h5: Path) -> None:
    store = tmp_path / "store"
    env = ray_env(ray_address)
    with running_server(store, **env) as first, first.client() as client:
        dataset = upload_dataset(client, pendulum_h5)["id"]
        job = submit(client, dataset, n_epochs=EPOCHS, params=LONG)
        running = wait_for_job(client, job["id"], lambda j: j["epoch"] is not None)
        first.process.kill()
        first.process.wait(timeout=10)
    assert running["executor_id"] == f"bear-job-{job['id']}-1"

    with running_server(store, **env) as second, second.client() as client:
        done = wait_for_job(client, job["id"], timeout=60)
        text = client.get(f"/jobs/{job['id']}/logs").json()["text"]
    assert (done["state"], done["attempts"], done["epoch"]) == ("succeeded", 1, EPOCHS), done
    assert done["executor_id"] == running["executor_id"]
    assert f"re-attached to the Ray actor {running['executor_id']}" in text
    records = (store / "jobs" / job["id"] / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in records] == list(range(1, EPOCHS + 1))


def test_a_lost_worker_node_fails_the_job_and_keeps_its_checkpoint(
    tmp_path: Path, pendulum_h5: Path
) -> None:
    """A head with no CPUs, so the job runs on the one worker node; killing that node's whole
    process group (raylet, object store, the job's actor) is a lost machine."""
    with (
        running_ray_head(num_cpus=0) as address,
        running_ray_worker(address) as node,
        running_server(tmp_path / "store", **ray_env(address)) as server,
        server.client() as client,
    ):
        dataset = upload_dataset(client, pendulum_h5)["id"]
        job = submit(client, dataset, n_epochs=1000, params=LONG)
        wait_for_job(client, job["id"], lambda j: j["checkpoint"] and j["epoch"])
        trainer_dir = worker_dir(client, job["id"])
        os.killpg(node.pid, signal.SIGKILL)
        try:
            done = wait_for_job(client, job["id"], timeout=90)
        finally:  # the trainer runs in a session of its own: it would die with a real machine
            kill_processes_naming(trainer_dir)
    assert done["state"] == "failed" and done["attempts"] == 1, done
    assert f"the Ray actor bear-job-{job['id']}-1 running the job died" in done["error"], done
    assert done["checkpoint"] is True


def kill_processes_naming(directory: Path) -> None:
    """SIGKILL every process whose command line names `directory`."""
    for proc in Path("/proc").iterdir():
        try:
            named = (
                proc.name.isdigit() and str(directory).encode() in (proc / "cmdline").read_bytes()
            )
        except OSError:  # gone meanwhile
            continue
        if named:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)

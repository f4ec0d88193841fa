"""Several server processes on one store: two replicas (`python -m service` twice, the shared
volume story) and one `--workers 2` server. A version published, promoted or deleted through one
process is served (or 404) by the others within the change-token bound, although their full
rescan interval is minutes; exactly one process holds the dispatcher lock, a job submitted
through another runs once, and when the holder stops another takes the lock over."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.jobs.dispatcher import HEARTBEAT_FILE, LOCK_FILE, LOCK_RETRY_S
from tests.conftest import OBS_SIZE
from tests.service.serving import (
    ADMIN,
    API_KEY,
    MODEL,
    REPO,
    TINY_PARAMS,
    Bundle,
    Server,
    free_port,
    running_server,
    submit,
    upload_dataset,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.e2e

OBS = np.linspace(-1, 1, 2 * OBS_SIZE, dtype=np.float32).reshape(2, OBS_SIZE)
# Only the change token can make a process see another's change: its full rescan is this rare.
ENV = {"BEAR_API_KEYS": API_KEY, "BEAR_SYNC_INTERVAL_S": "600", "BEAR_GRPC_PORT": ""}
# The bound is 0.1 s (the token poll) plus one rescan, plus loading the version for a promotion;
# the margin is for two busy CPU cores.
FOLLOW_S = 5.0


def archive(bundle: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(bundle, arcname=".")
    return buffer.getvalue()


def predict(client: httpx.Client, path: str = "/predict") -> httpx.Response:
    return client.post(path, json={"observations": OBS.tolist()})


def lock_holders(store: Path) -> list[int]:
    """The pids holding an flock on the store's dispatcher lock, from /proc/locks."""
    lock = store / "jobs" / LOCK_FILE
    if not lock.exists():
        return []
    inode = lock.stat().st_ino
    holders = []
    for line in Path("/proc/locks").read_text().splitlines():
        # "1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF"; waiters have "->"
        fields = line.split()
        if fields[1] == "FLOCK" and int(fields[5].rsplit(":", 1)[1]) == inode:
            holders.append(int(fields[4]))
    return holders


def one_holder(store: Path) -> int:
    holders = wait_until(lambda: lock_holders(store), timeout=FOLLOW_S, what="a dispatcher")
    assert len(holders) == 1, holders
    return int(holders[0])


def test_two_replicas_follow_each_other_and_share_one_dispatcher(
    fresh_store: Path, bundles: list[Bundle], pendulum_h5: Path
) -> None:
    with ExitStack() as stack:
        a = stack.enter_context(running_server(fresh_store, **ENV))
        b = stack.enter_context(running_server(fresh_store, **ENV))
        ca, cb = stack.enter_context(a.client()), stack.enter_context(b.client())
        assert predict(cb).json()["version"] == "1"

        published = ca.post(
            f"/models/{MODEL}/versions?promote=true",
            content=archive(bundles[1].path),
            headers=ADMIN,
        )
        assert published.status_code == 201, published.text
        assert published.json()["version"] == "3"
        wait_until(lambda: predict(cb).json()["version"] == "3", FOLLOW_S, "B to serve 3")
        np.testing.assert_array_equal(
            np.float32(predict(cb).json()["actions"]), bundles[1].runtime.predict(OBS)
        )

        version_2 = f"/models/{MODEL}/versions/2"
        assert predict(cb, f"{version_2}/predict").status_code == 200  # loaded in B
        assert ca.delete(version_2, headers=ADMIN).status_code == 204
        wait_until(
            lambda: predict(cb, f"{version_2}/predict").status_code == 404,
            FOLLOW_S,
            "B to stop serving the deleted version",
        )

        holder_pid = one_holder(fresh_store)
        beat = json.loads((fresh_store / "jobs" / HEARTBEAT_FILE).read_text())
        assert beat["pid"] == holder_pid
        holder, other = (a, b) if holder_pid == a.process.pid else (b, a)
        assert holder.process.pid == holder_pid

        with other.client() as client:
            dataset = upload_dataset(client, pendulum_h5)["id"]
            job = submit(client, dataset, n_epochs=1, params=TINY_PARAMS, promote=True)
            done = wait_for_job(client, job["id"])
            assert (done["state"], done["attempts"], done["model_version"]) == ("succeeded", 1, "1")
            wait_until(
                lambda: (
                    client.post("/models/trained/predict", json={"observations": [[0.0] * 3]})
                    .json()
                    .get("version")
                    == "1"
                ),
                FOLLOW_S,
                "the process that did not run the job to serve its version",
            )
        log = (fresh_store / "jobs" / job["id"] / "train.log").read_text()
        assert log.count("[dispatcher] attempt ") == 1, log
        assert holder.logs().count('"job started"') == 1
        assert '"job started"' not in other.logs()

        holder.process.terminate()
        holder.process.wait(timeout=60)
        wait_until(
            lambda: lock_holders(fresh_store) == [other.process.pid],
            LOCK_RETRY_S + FOLLOW_S,
            "the other process to take the dispatcher lock over",
        )


@contextmanager
def workers_server(store: Path, workers: int) -> Iterator[Server]:
    port = free_port()
    log = store.parent / f"server-{port}.log"
    command = [sys.executable, "-m", "service", "serve", "--no-demo"]
    command += ["--store", str(store), "--port", str(port), "--workers", str(workers)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **ENV}, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(f"http://127.0.0.1:{port}", store, process, log)
    try:
        wait_until(lambda: _ready(server), timeout=60, what=f"{workers} workers")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(server: Server) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"server exited {server.process.returncode}:\n{server.logs()}")
    try:
        return httpx.get(f"{server.url}/v2/health/ready", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def worker_pids(parent: int) -> set[int]:
    """uvicorn's worker processes (multiprocessing children running spawn_main)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


def test_workers_share_one_port_one_store_and_one_dispatcher(fresh_store: Path) -> None:
    with workers_server(fresh_store, 2) as server:
        workers = worker_pids(server.process.pid)
        assert len(workers) == 2, workers
        assert one_holder(fresh_store) in workers

        promoted = httpx.post(f"{server.url}/models/{MODEL}/versions/2/promote", headers=ADMIN)
        assert promoted.status_code == 200, promoted.text

        def every_connection_serves_2() -> bool:
            body = {"observations": OBS.tolist()}
            # httpx.post opens a connection per request, so both workers answer some of them
            return all(
                httpx.post(f"{server.url}/predict", json=body).json()["version"] == "2"
                for _ in range(20)
            )

        wait_until(every_connection_serves_2, FOLLOW_S, "every worker to serve version 2")

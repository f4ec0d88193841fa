"""Helpers of the serving tests: real uvicorn servers (`python -m service serve`) on free
loopback ports over temporary model stores, and the training-job calls the job tests share."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bear_core.bundle import PolicyBundle
from service.models.model_store import ModelStore

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-admin-key-0123"
ADMIN = {"X-API-Key": API_KEY}
MODEL = "pendulum"
# A few seconds of training (torch import included) on 2 cores.
TINY_PARAMS: dict[str, Any] = {
    "batch_size": 32,
    "encoder_params": {"hidden_units": [32, 32]},
    "n_steps_per_epoch": 5,
}
# ~0.1 s per epoch: jobs that run long enough to be cancelled, killed or interrupted.
LONG_PARAMS: dict[str, Any] = {**TINY_PARAMS, "n_steps_per_epoch": 20}
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass(frozen=True)
class Bundle:
    path: Path
    runtime: PolicyBundle


@dataclass
class Server:
    url: str
    store: Path
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, headers: dict[str, str] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, headers=headers)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def log_line(self, fragment: str, timeout: float = 5.0) -> str:
        """The first log line holding `fragment`, once written (access log lines are written
        in batches, within 0.05 s)."""

        def line() -> str | None:
            return next((x for x in self.logs().splitlines() if fragment in x), None)

        found: str = wait_until(line, timeout, f"a log line with {fragment}")
        return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill_store(store: Path, bundles: list[Bundle]) -> None:
    """`pendulum` versions 1 and 2 (seeds 0 and 1), version 1 in production."""
    models = ModelStore(store)
    models.publish(MODEL, bundles[0].path, promote=True)
    models.publish(MODEL, bundles[1].path)


@contextmanager
def running_server(store: Path, **env: str) -> Iterator[Server]:
    port = free_port()
    log = store.parent / f"server-{port}.log"
    environment = {
        **os.environ,
        "BEAR_STORE": str(store),
        "BEAR_PORT": str(port),
        "BEAR_DEMO": "false",
        "BEAR_GRPC_PORT": "",  # off unless a test gives it a free port
        **env,
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=REPO,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", store, process, log)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def upload_dataset(client: httpx.Client, path: Path) -> dict[str, Any]:
    response = client.post(
        "/datasets", files={"file": (path.name, path.read_bytes())}, headers=ADMIN
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def submit(client: httpx.Client, dataset_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/train", json={"dataset_id": dataset_id, "model_name": "trained", **body}, headers=ADMIN
    )
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/jobs/{response.json()['id']}"
    return response.json()


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition()` every 0.2 s until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)
    return value


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    done: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = 90.0,
) -> dict[str, Any]:
    """Poll GET /jobs/{id} until `done(job)` (default: a terminal state); the job."""
    reached = done or (lambda job: job["state"] in TERMINAL)
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        last.update(client.get(f"/jobs/{job_id}").json())
        return dict(last) if reached(last) else None

    try:
        return wait_until(check, timeout, f"job {job_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {last}") from None


def trainer_pid(store: Path, job_id: str) -> int:
    """The pid the dispatcher recorded for the job's running child (its process group)."""
    with sqlite3.connect(store / "jobs.db") as db:
        (pid,) = db.execute("SELECT pid FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert pid is not None, f"job {job_id} has no running child"
    return int(pid)


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_until_up(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited {server.process.returncode}:\n{server.logs()}")
        try:
            if httpx.get(f"{server.url}/v2/health/live", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not start:\n{server.logs()}")

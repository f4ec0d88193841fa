"""Helpers of the serving tests: real uvicorn servers (`python -m service serve`) on free
loopback ports over temporary model stores."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bear_core.bundle import PolicyBundle
from service.store import ModelStore

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-admin-key-0123"
MODEL = "pendulum"


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

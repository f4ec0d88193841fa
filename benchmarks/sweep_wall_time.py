"""Wall time of one tiny sweep through a real service: on the local executor
(BEAR_MAX_CONCURRENT_JOBS trainers at a time) or on a local Ray cluster of its own (a head with
`--cpus` CPUs; each trial asks for one).

The sweep: `--trials` trials (actor_learning_rate values x seed 0) of 2 epochs of 5 steps,
hidden units [16, 16], batch 32, holdout 0.5 scored by 20 FQE steps, on 5 episodes (1000
transitions) of generated Pendulum-v1 data. Measured from the sweep's `created_at` to its
`finished_at` (every trial ended and the best one published); the dispatcher polls every 0.1 s.

    .venv/bin/python benchmarks/sweep_wall_time.py --executor local --concurrency 2
    .venv/bin/python benchmarks/sweep_wall_time.py --executor ray --cpus 2

Prints one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
KEY = "benchmark-key-0123"
ADMIN = {"X-API-Key": KEY}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextlib.contextmanager
def ray_head(cpus: int, temp: Path) -> Iterator[str]:
    port = _port()
    log = temp / "head.log"
    command = [
        *(sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block"),
        *(f"--port={port}", f"--ray-client-server-port={_port()}"),
        *("--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0"),
        *("--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"),
    ]
    with open(log, "wb") as out:
        head = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait(lambda: b"block forever" in log.read_bytes(), 120, "the Ray head")
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()


@contextlib.contextmanager
def service(store: Path, env: dict[str, str]) -> Iterator[str]:
    port = _port()
    environment = {
        **os.environ,
        "BEAR_STORE": str(store),
        "BEAR_PORT": str(port),
        "BEAR_DEMO": "false",
        "BEAR_GRPC_PORT": "",
        "BEAR_API_KEYS": KEY,
        "BEAR_TRAINER_THREADS": "1",
        "BEAR_JOB_POLL_S": "0.1",
        **env,
    }
    log = open(store.parent / "service.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve"], cwd=REPO_ROOT, env=environment,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{url}/v2/health/live", timeout=1.0).status_code == 200
        return False

    try:
        _wait(up, 60, "the service")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2, help="local: MAX_CONCURRENT_JOBS")
    parser.add_argument("--cpus", type=int, default=2, help="ray: the head's CPUs")
    args = parser.parse_args()

    from bear_core.dataset import generate_pendulum_dataset

    temp = Path(tempfile.mkdtemp(prefix="sweep-"))
    data = temp / "pendulum.h5"
    generate_pendulum_dataset("medium", n_episodes=5, seed=0).to_hdf5(data)
    store = temp / "store"
    store.mkdir()
    try:
        with contextlib.ExitStack() as stack:
            env = {"BEAR_MAX_CONCURRENT_JOBS": str(args.concurrency)}
            if args.executor == "ray":
                env = {"BEAR_RAY_ADDRESS": stack.enter_context(ray_head(args.cpus, temp))}
            url = stack.enter_context(service(store, env))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=30.0))
            files = {"file": (data.name, data.read_bytes())}
            dataset = client.post("/datasets", files=files, headers=ADMIN).json()["id"]
            body = {
                "dataset_id": dataset,
                "model_name": "bench",
                "params": {
                    "batch_size": 32,
                    "encoder_params": {"hidden_units": [16, 16]},
                    "n_steps_per_epoch": 5,
                },
                "search": {"actor_learning_rate": [1e-4 * 2**i for i in range(args.trials)]},
                "n_epochs": 2,
                "holdout": 0.5,
                "fqe_steps": 20,
            }
            created = client.post("/sweeps", json=body, headers=ADMIN)
            assert created.status_code == 202, created.text
            sweep_id = created.json()["id"]
            seen: dict[str, object] = {}

            def ended() -> bool:
                seen.update(client.get(f"/sweeps/{sweep_id}").json())
                return seen["state"] in ("succeeded", "failed", "cancelled")

            _wait(ended, 600, "the sweep")
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    times = [
        datetime.fromisoformat(str(seen[k])).timestamp() for k in ("created_at", "finished_at")
    ]
    result = {
        "executor": args.executor,
        "trials": args.trials,
        "concurrency": args.cpus if args.executor == "ray" else args.concurrency,
        "state": seen["state"],
        "wall_s": round(times[1] - times[0], 2),
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

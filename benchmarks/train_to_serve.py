"""From a training job's last gradient step to the first `/predict` answered by its version.

A real service (`python -m service --workers N`) on a temporary store trains the demo model
(Pendulum-v1 medium data, 50 episodes; batch 256, standard scaler, default networks, as
`make run`'s demo) for `--steps` steps with `promote: true`, while a client polls
`POST /models/<name>/predict` on fresh connections every few milliseconds. The trainer runs
under this script (`BEAR_TRAINER_PYTHON` points at a shim) so that the wall-clock time of its
last gradient step is recorded exactly. Per job:

- `last_step_to_trainer_exit_s`: the epoch's scorers, checkpoints and the bundle's export
  (three ONNX graphs and their parity check) in the trainer process;
- `trainer_exit_to_published_s`: the dispatcher sees the exit, verifies and publishes the bundle,
  loads it and makes it production (`finished_at` of the job);
- `last_step_to_served_s`: until the first answer from the new version (all of it).

    .venv/bin/python benchmarks/train_to_serve.py [--jobs 3] [--steps 50] [--workers 1]

Prints a line per job and the medians on stderr, one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
KEY = "benchmark-key-0123"
MODEL = "bench"
LAST_STEP_FILE = "last_step.json"
PREDICT_BODY = json.dumps({"observations": [[1.0, 0.0, 0.5]]})
JSON = {"Content-Type": "application/json"}


def shim(argv: list[str]) -> None:
    """`python -m bear_core ...` as the trainer runs it, recording when its last gradient step
    returned and when it ends (bear_core's __main__ ends with os._exit)."""
    import runpy

    from bear_core.bear.algo import BEAR

    args = argv[2:] if argv[:2] == ["-m", "bear_core"] else argv
    update = BEAR.update_on_device
    last = [0.0]

    def timed(self: Any, *a: Any, **k: Any) -> Any:
        out = update(self, *a, **k)
        last[0] = time.time()
        return out

    def exit_now(code: int) -> None:
        out = Path(args[args.index("--out") + 1])
        marks = {"last_step": last[0], "exit": time.time()}
        (out / LAST_STEP_FILE).write_text(json.dumps(marks))
        real_exit(code)

    BEAR.update_on_device = timed  # type: ignore[method-assign]
    real_exit, os._exit = os._exit, exit_now
    sys.argv = ["bear_core", *args]
    runpy.run_module("bear_core", run_name="__main__", alter_sys=True)


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def one_job(port: int, dataset: str, store: Path, steps: int, version: str) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30.0) as client:
        job = client.post(
            "/train",
            json={
                "dataset_id": dataset,
                "model_name": MODEL,
                "n_steps": steps,
                "promote": True,
                "params": {"batch_size": 256, "scaler": "standard", "n_steps_per_epoch": steps},
            },
        ).json()
        deadline = time.monotonic() + 900
        checked = 0.0
        while time.monotonic() < deadline:
            if _served_version(port) == version:
                served = time.time()
                break
            if time.monotonic() - checked > 1.0:
                checked = time.monotonic()
                state = client.get(f"/jobs/{job['id']}").json()
                if state["state"] in ("failed", "cancelled"):
                    raise RuntimeError(f"job {state['state']}: {state['error']}")
            time.sleep(0.005)
        else:
            raise RuntimeError(f"version {version} was not served within 900 s")
        done = wait_finished(client, job["id"])
    marks = json.loads((store / "jobs" / job["id"] / "run" / LAST_STEP_FILE).read_text())
    return {
        "last_step_to_trainer_exit_s": marks["exit"] - marks["last_step"],
        "trainer_exit_to_published_s": _timestamp(done["finished_at"]) - marks["exit"],
        "last_step_to_served_s": served - marks["last_step"],
    }


def _served_version(port: int) -> str | None:
    """The version answering POST /models/<MODEL>/predict, on a new connection (with several
    workers, any of them may answer); None while none does."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    try:
        connection.request("POST", f"/models/{MODEL}/predict", PREDICT_BODY, JSON)
        answer = connection.getresponse()
        body = answer.read()
        return str(json.loads(body)["version"]) if answer.status == 200 else None
    except (OSError, ValueError, KeyError):
        return None
    finally:
        connection.close()


def wait_finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    while (job := client.get(f"/jobs/{job_id}").json())["finished_at"] is None:
        time.sleep(0.05)
    return dict(job)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50, help="gradient steps per job")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--trainer-shim", action="store_true", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.trainer_shim:
        shim(rest)

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # stop the server too
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, store = root / "pendulum-medium.h5", root / "store"
        subprocess.run(
            [sys.executable, "-m", "bear_core", "generate", "--episodes", "50", "--out", str(data)],
            cwd=REPO_ROOT, check=True, stdout=sys.stderr,
        )  # fmt: skip
        trainer = root / "trainer"
        trainer.write_text(
            f'#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} --trainer-shim "$@"\n'
        )
        trainer.chmod(0o755)
        port = _free_port()
        env = {
            **os.environ,
            "BEAR_API_KEYS": KEY,
            "BEAR_TRAINER_PYTHON": str(trainer),
            "BEAR_GRPC_PORT": "",
            "BEAR_TRAINER_THREADS": "1",  # two threads on two busy cores make steps slower
        }
        command = [sys.executable, "-m", "service", "serve", "--no-demo", "--store", str(store),
                   "--port", str(port), "--workers", str(args.workers)]  # fmt: skip
        server = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_up(url, server)
            with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=60.0) as client:
                files = {"file": (data.name, data.read_bytes())}
                dataset = client.post("/datasets", files=files).json()["id"]
            jobs = []
            for i in range(args.jobs):
                figures = one_job(port, dataset, store, args.steps, str(i + 1))
                print(json.dumps({"job": i + 1, **_rounded(figures)}), file=sys.stderr)
                jobs.append(figures)
        finally:
            server.terminate()
            server.wait(timeout=60)
    medians = {key: statistics.median(job[key] for job in jobs) for key in jobs[0]}
    print(f"medians over {len(jobs)} jobs: {_rounded(medians)}", file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "train_to_serve",
                "workers": args.workers,
                "steps": args.steps,
                "jobs": [_rounded(job) for job in jobs],
                "median": _rounded(medians),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
    )


def _rounded(figures: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 3) for key, value in figures.items()}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/live", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


if __name__ == "__main__":
    main()

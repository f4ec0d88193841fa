"""Serving latency and throughput of `python -m service` over loopback.

Three figures in one run:
- `POST /predict` with 1 observation at concurrency 1: p50/p99 over `--requests` sequential
  requests on one keep-alive connection, after `--warmup` requests;
- observations/s with `--clients` concurrent keep-alive connections sending 1-observation
  requests for `--duration` seconds;
- the bundle runtime's own `predict` latency for 1 observation, in this process.

The server is a real uvicorn process and the load generator a separate process
(`--load-generator`, asyncio + raw HTTP/1.1), both on 127.0.0.1. Without `--store` the model is
a Pendulum-sized BEAR ([256, 256] hidden units, 2 critics) trained for a few steps through the
trainer CLI into a temporary store.

    .venv/bin/python benchmarks/serve_latency.py [--batching] [--store model_store]

Prints exactly one JSON line on stdout; diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
sys.path.insert(0, str(REPO_ROOT))


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
    }


# --- load generator (runs in its own process) ---------------------------------------------------


def sequential(port: int, body: bytes, warmup: int, requests: int) -> list[float]:
    connection = http.client.HTTPConnection(HOST, port)
    headers = {"Content-Type": "application/json"}
    timings = []
    for i in range(warmup + requests):
        start = time.perf_counter()
        connection.request("POST", "/predict", body, headers)
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        if i >= warmup:
            timings.append(elapsed)
    connection.close()
    return timings


async def concurrent(port: int, body: bytes, clients: int, duration: float) -> dict[str, Any]:
    request = (
        f"POST /predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    deadline = time.perf_counter() + duration
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(HOST, port)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            errors += status != 200
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "observations_per_s": round(len(latencies) / elapsed, 1),
        **percentiles(latencies),
    }


def load_generator(args: argparse.Namespace) -> None:
    body = json.dumps({"observations": [args.observation]}).encode()
    single = sequential(args.port, body, args.warmup, args.requests)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    many = asyncio.run(concurrent(args.port, body, args.clients, args.duration))
    print(json.dumps({"c1": {"requests": len(single), **percentiles(single)}, "c64": many}))


# --- orchestration ------------------------------------------------------------------------------


def build_store(root: Path) -> Path:
    """A temporary store with a briefly trained Pendulum-sized model in production."""
    from service.models.model_store import ModelStore

    cli = [sys.executable, "-m", "bear_core"]
    quiet = {"cwd": REPO_ROOT, "check": True, "stdout": sys.stderr}
    data, run, bundle = root / "data.h5", root / "run", root / "bundle"
    subprocess.run([*cli, "generate", "--episodes", "5", "--out", str(data)], **quiet)
    steps = ["--set", "n_epochs=1", "--set", "n_steps_per_epoch=20", "--quiet"]
    subprocess.run([*cli, "train", "--dataset", str(data), "--out", str(run), *steps], **quiet)
    subprocess.run([*cli, "export", "--model", str(run), "--out", str(bundle)], **quiet)
    store = root / "store"
    ModelStore(store).publish("pendulum", bundle, promote=True)
    return store


def runtime_latency(store: Path, n: int) -> tuple[dict[str, float], list[float]]:
    from bear_core.bundle import load_bundle
    from service.models.model_store import ModelStore

    models = ModelStore(store)
    name = models.models()[0]
    bundle = load_bundle(models.bundle_path(name, models.production(name) or "1"))
    obs = np.zeros((1, *bundle.observation_shape), np.float32)
    for _ in range(200):
        bundle.predict(obs)
    timings = []
    for _ in range(n):
        start = time.perf_counter()
        bundle.predict(obs)
        timings.append(time.perf_counter() - start)
    return percentiles(timings), obs[0].tolist()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=1)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, help="serve this store (default: a fresh one)")
    parser.add_argument("--batching", action="store_true", help="BEAR_BATCHING=true")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--observation", type=json.loads, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_generator:
        load_generator(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or build_store(Path(tmp))
        runtime, observation = runtime_latency(store, args.requests)
        port = free_port()
        env = {
            **os.environ,
            "BEAR_STORE": str(store),
            "BEAR_PORT": str(port),
            "BEAR_DEMO": "false",
            "BEAR_BATCHING": str(args.batching).lower(),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(port, server)
            generator = subprocess.run(
                [
                    sys.executable, __file__, "--load-generator", "--port", str(port),
                    "--observation", json.dumps(observation),
                    "--requests", str(args.requests), "--warmup", str(args.warmup),
                    "--clients", str(args.clients), "--duration", str(args.duration),
                ],
                cwd=REPO_ROOT, check=True, capture_output=True, text=True,
            )  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=15)
    load = json.loads(generator.stdout)
    print(
        json.dumps(
            {
                "benchmark": "serve_latency",
                "batching": args.batching,
                "predict_1obs_c1": load["c1"],
                "predict_1obs_concurrent": load["c64"],
                "runtime_predict_1obs_in_process": runtime,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()

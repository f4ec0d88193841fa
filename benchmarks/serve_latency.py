"""Serving latency and throughput of `python -m service` over loopback, against the stack's floor.

Measured in one run:
- the bundle runtime's own `predict` for 1 observation, in this process (p50/p99);
- for 1 and 2 uvicorn workers (`--workers`), and for each transport (HTTP now): requests/s,
  observations/s and latency p50/p99 at 1, 8 and 64 concurrent clients, each sending
  1-observation requests on its own keep-alive connection, against
  - `predict`: the real `POST /predict` of the service (a Pendulum-sized model), and
  - `constant`: the floor of the stack, `constant_app()` below, a FastAPI app under the same
    uvicorn settings and worker count whose `POST /predict` returns constant bytes;
- the bar: `predict` requests/s over `constant` requests/s at 64 clients and 2 workers.

The load generator is `wrk` (C, one thread; `apt-get install wrk`) in its own process; its CPU
time is reported (`client_cpu_s`) to show it is not the bottleneck. Every figure is the median
over `--rounds` rounds, `predict` and `constant` measured back to back in each.

    .venv/bin/python benchmarks/serve_latency.py [--batching] [--rounds 3] [--duration 4]

Prints a table on stderr and exactly one JSON line on stdout. A transport is a function
(`http_load`) that loads one server at one concurrency; a second one (gRPC, say) goes into
TRANSPORTS with the server side it needs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CONCURRENCY = (1, 8, 64)
WORKERS = (1, 2)
BAR = {"clients": 64, "workers": 2, "min_ratio": 0.7}
sys.path.insert(0, str(REPO_ROOT))

# The body the floor answers: a /predict answer of the same size.
CONSTANT_BODY = b'{"actions":[[0.123456789]],"model":"pendulum","version":"1"}'


def constant_app() -> Any:
    """The floor: a FastAPI app whose POST /predict returns constant bytes (uvicorn factory)."""
    from fastapi import FastAPI, Response

    app = FastAPI()

    @app.post("/predict")
    async def predict() -> Response:
        return Response(CONSTANT_BODY, media_type="application/json")

    return app


# --- load (one transport per function) ------------------------------------------------------------

# wrk writes one JSON line when done; latencies in microseconds.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = %s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "errors": %%d, "p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def http_load(port: int, body: bytes, clients: int, duration: int, work: Path) -> dict[str, Any]:
    """`clients` keep-alive connections sending `body` to POST /predict for `duration` s."""
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT % json.dumps(body.decode()))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{duration}s", "-s", str(script),
         f"http://{HOST}:{port}/predict"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = summary["duration_us"] / 1e6
    return {
        "requests_per_s": summary["requests"] / seconds,
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "errors": summary["errors"],
        "client_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }


Load = Callable[[int, bytes, int, int, Path], dict[str, Any]]
TRANSPORTS: dict[str, Load] = {"http": http_load}


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_ready(
    port: int, process: subprocess.Popen[bytes], path: str, timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=1)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become ready")


@contextmanager
def server(command: list[str], env: dict[str, str], port: int, ready: str) -> Iterator[int]:
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ready(port, process, ready)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=60)


def service(store: Path, workers: int, batching: bool) -> tuple[list[str], dict[str, str], int]:
    port = free_port()
    env = {"BEAR_BATCHING": str(batching).lower(), "BEAR_GRPC_PORT": ""}
    command = [sys.executable, "-m", "service", "serve", "--no-demo", "--store", str(store),
               "--port", str(port), "--workers", str(workers)]  # fmt: skip
    return command, env, port


def floor(workers: int) -> tuple[list[str], dict[str, str], int]:
    """The constant app under `python -m service`'s uvicorn settings."""
    port = free_port()
    code = (
        "import uvicorn; uvicorn.run('serve_latency:constant_app', factory=True, "
        f"host='{HOST}', port={port}, workers={workers}, access_log=False, log_level='info')"
    )
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    return [sys.executable, "-c", code], env, port


# --- the model -----------------------------------------------------------------------------------


def build_store(root: Path) -> Path:
    """A temporary store with a briefly trained Pendulum-sized model in production."""
    from service.models.model_store import ModelStore

    cli = [sys.executable, "-m", "bear_core"]
    quiet = {"cwd": REPO_ROOT, "check": True, "stdout": sys.stderr}
    data, run, bundle = root / "data.h5", root / "run", root / "bundle"
    subprocess.run([*cli, "generate", "--episodes", "5", "--out", str(data)], **quiet)
    steps = ["--set", "n_epochs=1", "--set", "n_steps_per_epoch=20", "--quiet"]
    subprocess.run([*cli, "train", "--dataset", str(data), "--out", str(run), *steps,
                    "--bundle", str(bundle)], **quiet)  # fmt: skip
    store = root / "store"
    ModelStore(store).publish("pendulum", bundle, promote=True)
    return store


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


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


# --- the run -------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, store: Path, body: bytes, work: Path) -> dict[str, Any]:
    """{transport: {workers: {target: {clients: median figures}}}}."""
    results: dict[str, Any] = {}
    for transport, load in TRANSPORTS.items():
        for workers in WORKERS:
            with ExitStack() as stack:
                ports = {
                    "predict": stack.enter_context(
                        server(*service(store, workers, args.batching), "/v2/health/ready")
                    ),
                    "constant": stack.enter_context(server(*floor(workers), "/docs")),
                }
                runs: dict[str, dict[int, list[dict[str, Any]]]] = {t: {} for t in ports}
                for _ in range(args.rounds):
                    for clients in CONCURRENCY:
                        for target, port in ports.items():
                            figures = load(port, body, clients, args.duration, work)
                            runs[target].setdefault(clients, []).append(figures)
            results.setdefault(transport, {})[workers] = {
                target: {clients: _median(rounds) for clients, rounds in by_clients.items()}
                for target, by_clients in runs.items()
            }
    return results


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    figures = {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]}
    figures["observations_per_s"] = figures["requests_per_s"]  # 1 observation per request
    figures["errors"] = sum(r["errors"] for r in rounds)
    return figures


def table(results: dict[str, Any], runtime: dict[str, float]) -> str:
    lines = [
        "| transport | workers | target | clients | req/s | obs/s | p50 ms | p99 ms | "
        "client CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for transport, by_workers in results.items():
        for workers, by_target in by_workers.items():
            for target, by_clients in by_target.items():
                for clients, f in by_clients.items():
                    lines.append(
                        f"| {transport} | {workers} | {target} | {clients} | "
                        f"{f['requests_per_s']:.0f} | {f['observations_per_s']:.0f} | "
                        f"{f['p50_ms']:.3f} | {f['p99_ms']:.3f} | {f['client_cpu_s']:.2f} |"
                    )
    lines.append(
        f"| in-process | - | bundle.predict | 1 | - | - | {runtime['p50_ms']:.4f} | "
        f"{runtime['p99_ms']:.4f} | - |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, help="serve this store (default: a fresh one)")
    parser.add_argument("--batching", action="store_true", help="BEAR_BATCHING=true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    parser.add_argument("--requests", type=int, default=5000, help="in-process predict calls")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: install it (Debian: apt-get install wrk)")

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or build_store(Path(tmp))
        runtime, observation = runtime_latency(store, args.requests)
        body = json.dumps({"observations": [observation]}).encode()
        results = measure(args, store, body, Path(tmp))
    http = results["http"]
    ratio = (
        http[BAR["workers"]]["predict"][BAR["clients"]]["requests_per_s"]
        / http[BAR["workers"]]["constant"][BAR["clients"]]["requests_per_s"]
    )
    print(table(results, runtime), file=sys.stderr)
    print(
        f"bar: predict / constant requests/s at {BAR['clients']} clients, {BAR['workers']} "
        f"workers = {ratio:.2f} (needs >= {BAR['min_ratio']})",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "benchmark": "serve_latency",
                "batching": args.batching,
                "rounds": args.rounds,
                "duration_s": args.duration,
                "results": results,
                "runtime_predict_1obs_in_process": runtime,
                "bar": {**BAR, "ratio": round(ratio, 3), "met": ratio >= BAR["min_ratio"]},
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()

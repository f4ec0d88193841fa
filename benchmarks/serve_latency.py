"""Serving latency and throughput of `python -m service` over loopback, against the stack's floor.

Measured in one run:
- the bundle runtime's own `predict` for 1 observation, in this process (p50/p99);
- for 1 and 2 uvicorn workers (`--workers`), and for each transport (HTTP `POST /predict`, OIP v2
  gRPC `ModelInfer` on BEAR_GRPC_PORT): requests/s, observations/s and latency p50/p99 at 1, 8
  and 64 concurrent clients, each sending 1-observation requests on its own keep-alive
  connection, against
  - `predict`: the real service (a Pendulum-sized model), and
  - `constant`: the floor of the transport's stack under the same worker count: over HTTP,
    `constant_app()` below, a FastAPI app under the same uvicorn settings whose `POST /predict`
    returns constant bytes; over gRPC, a grpc.aio server on uvloop (as the service's) whose
    `ModelInfer` returns a fixed `ModelInferResponse` (`serve_latency_peers.py grpc-floor`);
- with 1 worker, sequential calls from stock Python clients, each in its own process
  (`serve_latency_peers.py sequential`), to one server running alone (`predict` and `constant`
  take turns): `--calls` 1-observation calls after 300 untimed ones,
  `tritonclient.grpc` over gRPC and `http.client` (one keep-alive connection) over HTTP, to
  `predict` and to `constant` (p50/p99), with the service's own time per call from its
  Prometheus metrics (`bear_request_duration_seconds` sum over count for the route, from
  `GET /metrics` before and after the client's calls) and the CPU seconds the server used
  meanwhile; each pair runs twice, with BEAR_BUSY_POLL_US off (the default) and at 2000 µs on
  both servers (the floors busy poll with the service's own `BusyPoll`);
- the bars: over HTTP, `predict` requests/s over `constant` requests/s at 64 clients and 2
  workers; over gRPC, the sequential tritonclient p50 of `predict` over that of `constant`,
  busy polling off (the ratios with it on are printed beside them).

The load generators run in their own processes and are C: `wrk` (HTTP/1.1; `apt-get install
wrk`) and `h2load` (HTTP/2, here with gRPC's framing and headers; `apt-get install
nghttp2-client`), one thread each; their CPU time is reported (`client_cpu_s`) to show they are
not the bottleneck. h2load counts every gRPC answer as HTTP 200, so a gRPC error is counted from
the answers' bytes (an error answer carries no message). Every figure is the median over
`--rounds` rounds, `predict` and `constant` measured back to back in each.

    .venv/bin/python benchmarks/serve_latency.py [--no-batching] [--rounds 3] [--duration 4]

Prints the tables on stderr and exactly one JSON line on stdout. A transport (`Transport`) is
the servers it loads, its request body and its load function (one server at one concurrency).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).with_name("serve_latency_peers.py")
HOST = "127.0.0.1"
CONCURRENCY = (1, 8, 64)
WORKERS = (1, 2)
BAR = {"clients": 64, "workers": 2, "min_ratio": 0.7}
GRPC_BAR = {"max_ratio": 1.3}  # sequential tritonclient p50: predict over constant
# The sequential calls run with BEAR_BUSY_POLL_US off (the default, which the bars use) and on,
# on both servers: a window longer than the Python client's time between two calls.
BUSY_POLL_US = (0, 2000)
WARMUP_CALLS = 300
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"
sys.path.insert(0, str(REPO_ROOT))

# The body the floor answers: a /predict answer of the same size.
CONSTANT_BODY = b'{"actions":[[0.123456789]],"model":"pendulum","version":"1"}'


def constant_app() -> Any:
    """The floor: a FastAPI app whose POST /predict returns constant bytes (uvicorn factory),
    busy polling after each answer as the service does with the same BEAR_BUSY_POLL_US."""
    from fastapi import FastAPI, Response

    from service.core.busy_poll import BusyPoll

    app = FastAPI()
    busy_poll = BusyPoll(int(os.environ.get("BEAR_BUSY_POLL_US", "0")) / 1e6)

    @app.post("/predict")
    async def predict() -> Response:
        return Response(CONSTANT_BODY, media_type="application/json")

    async def polled(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)
        if scope["type"] == "http":
            busy_poll.kick()

    return polled


# --- load (one function per transport) -----------------------------------------------------------

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
        "client_cpu_s": _cpu(after) - _cpu(before),
    }


def grpc_call(port: int, body: bytes) -> bytes:
    """One ModelInfer with a serialized request; the serialized answer."""
    import grpc

    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        answer: bytes = channel.unary_unary(GRPC_METHOD)(body, timeout=10)
    return answer


def grpc_load(port: int, body: bytes, clients: int, duration: int, work: Path) -> dict[str, Any]:
    """`clients` HTTP/2 connections, one call in flight each, sending the serialized
    ModelInferRequest `body` for `duration` s."""
    answer = len(grpc_call(port, body))  # an answer's size, to count the calls that failed
    message, log = work / "infer.bin", work / "h2load.log"
    message.write_bytes(b"\0" + len(body).to_bytes(4, "big") + body)  # gRPC's message frame
    log.unlink(missing_ok=True)  # h2load appends to it
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        ["h2load", "-t1", f"-c{clients}", "-m1", f"-D{duration}", "-d", str(message),
         "-H", "content-type: application/grpc", "-H", "te: trailers", f"--log-file={log}",
         f"http://{HOST}:{port}{GRPC_METHOD}"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = done.stdout

    def figure(pattern: str) -> float:
        found = re.search(pattern, report)
        if found is None:
            raise RuntimeError(f"h2load: no {pattern!r} in its report:\n{report}")
        return float(found[1])

    finished = figure(r"(\d+) done")
    answered = figure(r"\((\d+)\) data") // (5 + answer)  # an error answer has no message
    micros = np.loadtxt(log, usecols=2, ndmin=1)  # per call: start, HTTP status, microseconds
    return {
        "requests_per_s": figure(r"finished in [\d.]+s, ([\d.]+) req/s"),
        "p50_ms": float(np.percentile(micros, 50)) / 1000,
        "p99_ms": float(np.percentile(micros, 99)) / 1000,
        "errors": int(finished - answered),
        "client_cpu_s": _cpu(after) - _cpu(before),
    }


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


# --- servers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A server process: the port loads go to, when it is ready, its `GET /metrics` port."""

    command: list[str]
    env: dict[str, str]
    port: int
    ready: Callable[[], bool]
    metrics_port: int | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_ready(port: int, path: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=1)
            connection.request("GET", path)
            return connection.getresponse().status < 500
        except OSError:
            return False

    return ready


def listening(port: int, sockets: int) -> Callable[[], bool]:
    """Whether `sockets` sockets listen on `port`: one per process sharing it (SO_REUSEPORT)."""

    def ready() -> bool:
        rows = [
            line.split()
            for table in ("/proc/net/tcp", "/proc/net/tcp6")  # gRPC listens on IPv6 sockets
            for line in Path(table).read_text().splitlines()[1:]
        ]
        return sum(row[1].endswith(f":{port:04X}") and row[3] == "0A" for row in rows) >= sockets

    return ready


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its living descendants."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            tasks = Path(f"/proc/{current}/task").iterdir()
            pending += [int(c) for t in tasks for c in (t / "children").read_text().split()]
        except OSError:  # it exited meanwhile
            continue
        total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextmanager
def running(spec: Server, timeout: float = 90.0) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        spec.command, cwd=REPO_ROOT, env={**os.environ, **spec.env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not spec.ready():
            if process.poll() is not None:
                raise RuntimeError(f"{spec.command[:4]} exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{spec.command[:4]} did not become ready")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


def service(store: Path, workers: int, batching: bool, busy_poll_us: int, grpc: bool) -> Server:
    """`python -m service` over `store`; loads go to its gRPC port when `grpc`, else HTTP."""
    port, grpc_port = free_port(), free_port()
    env = {
        "BEAR_BATCHING": str(batching).lower(),
        "BEAR_BUSY_POLL_US": str(busy_poll_us),
        "BEAR_GRPC_PORT": str(grpc_port) if grpc else "",
    }
    command = [sys.executable, "-m", "service", "serve", "--no-demo", "--store", str(store),
               "--port", str(port), "--workers", str(workers)]  # fmt: skip
    http = http_ready(port, "/v2/health/ready")
    if not grpc:
        return Server(command, env, port, http, metrics_port=port)
    every = listening(grpc_port, workers)
    return Server(command, env, grpc_port, lambda: http() and every(), metrics_port=port)


def http_servers(store: Path, workers: int, batching: bool, busy_poll_us: int) -> dict[str, Server]:
    """The service and the constant app under `python -m service`'s uvicorn settings."""
    port = free_port()
    code = (
        "import uvicorn; uvicorn.run('serve_latency:constant_app', factory=True, "
        f"host='{HOST}', port={port}, workers={workers}, access_log=False, log_level='info')"
    )
    env = {"PYTHONPATH": str(Path(__file__).parent), "BEAR_BUSY_POLL_US": str(busy_poll_us)}
    return {
        "predict": service(store, workers, batching, busy_poll_us, grpc=False),
        "constant": Server([sys.executable, "-c", code], env, port, http_ready(port, "/docs")),
    }


def grpc_servers(store: Path, workers: int, batching: bool, busy_poll_us: int) -> dict[str, Server]:
    """The service's gRPC port and the constant ModelInfer, each with `workers` processes."""
    port = free_port()
    command = [sys.executable, str(PEERS), "grpc-floor", "--port", str(port),
               "--workers", str(workers), "--busy-poll-us", str(busy_poll_us)]  # fmt: skip
    return {
        "predict": service(store, workers, batching, busy_poll_us, grpc=True),
        "constant": Server(command, {}, port, listening(port, workers)),
    }


def http_body(model: str, observation: list[float]) -> bytes:
    return json.dumps({"observations": [observation]}).encode()


def grpc_body(model: str, observation: list[float]) -> bytes:
    """The ModelInferRequest tritonclient sends for one observation, serialized."""
    from service.inference.oip_grpc import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(
        model_name=model,
        inputs=[pb.ModelInferRequest.InferInputTensor(
            name="observations", datatype="FP32", shape=[1, len(observation)]
        )],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="actions")],
        raw_input_contents=[np.asarray(observation, np.float32).tobytes()],
    )  # fmt: skip
    return request.SerializeToString()


Load = Callable[[int, bytes, int, int, Path], dict[str, Any]]


@dataclass(frozen=True)
class Transport:
    # (store, workers, batching, busy_poll_us) -> {"predict": ..., "constant": ...}
    servers: Callable[[Path, int, bool, int], dict[str, Server]]
    body: Callable[[str, list[float]], bytes]  # one observation's request
    load: Load
    client: str  # the stock Python client of the sequential calls
    route: str  # the service's `route` label in its metrics


TRANSPORTS: dict[str, Transport] = {
    "http": Transport(http_servers, http_body, http_load, "http.client", "/predict"),
    "grpc": Transport(grpc_servers, grpc_body, grpc_load, "tritonclient.grpc", GRPC_METHOD),
}


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


def runtime_latency(store: Path, n: int) -> tuple[dict[str, float], str, list[float]]:
    """The served model's in-process predict p50/p99, its name and an observation."""
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
    return percentiles(timings), name, obs[0].tolist()


# --- sequential Python clients -------------------------------------------------------------------


def server_seconds(port: int, route: str) -> tuple[float, float]:
    """The service's `bear_request_duration_seconds` sum and count for `route`."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    label = f'{{route="{route}"}}'
    found = {
        key: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        for key in ("sum", "count")
        if line.startswith(f"bear_request_duration_seconds_{key}{label} ")
    }
    return found.get("sum", 0.0), found.get("count", 0.0)


def sequential(
    transport: str, spec: Server, pid: int, model: str, observation: list[float], calls: int
) -> dict[str, Any]:
    """Sequential calls from the transport's stock Python client, in its own process, and the
    CPU seconds the server (process `pid` and its workers) used meanwhile."""
    route, port = TRANSPORTS[transport].route, spec.metrics_port
    start = server_seconds(port, route) if port else (0.0, 0.0)
    cpu = tree_cpu(pid)
    done = subprocess.run(
        [sys.executable, str(PEERS), "sequential", transport, "--port", str(spec.port),
         "--model", model, "--observation", json.dumps(observation), "--calls", str(calls),
         "--warmup", str(WARMUP_CALLS)],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    figures: dict[str, Any] = json.loads(done.stdout)
    figures["server_cpu_s"] = tree_cpu(pid) - cpu
    if port:
        total, count = server_seconds(port, route)
        figures["server_ms"] = (total - start[0]) / (count - start[1]) * 1000
    return figures


# --- the run -------------------------------------------------------------------------------------


def loads(
    args: argparse.Namespace, store: Path, model: str, observation: list[float], work: Path
) -> dict[str, Any]:
    """{transport: {workers: {target: {clients: median figures}}}}."""
    results: dict[str, Any] = {}
    for name, transport in TRANSPORTS.items():
        body = transport.body(model, observation)
        for workers in WORKERS:
            with ExitStack() as stack:
                servers = transport.servers(store, workers, args.batching, 0)
                for spec in servers.values():
                    stack.enter_context(running(spec))
                runs: dict[str, dict[int, list[dict[str, Any]]]] = {t: {} for t in servers}
                for _ in range(args.rounds):
                    for clients in CONCURRENCY:
                        for target, spec in servers.items():
                            figures = transport.load(spec.port, body, clients, args.duration, work)
                            runs[target].setdefault(clients, []).append(figures)
            results.setdefault(name, {})[workers] = {
                target: {clients: _median(rounds) for clients, rounds in by_clients.items()}
                for target, by_clients in runs.items()
            }
    return results


def sequential_calls(
    args: argparse.Namespace, store: Path, model: str, observation: list[float]
) -> dict[str, Any]:
    """{transport: {busy_poll_us: {target: median figures}}} of sequential calls to 1 worker.
    Each server runs alone while it is timed (an idle second server still wakes the CPUs),
    `predict` and `constant` taking turns in every round."""
    calls: dict[str, Any] = {}
    for name, transport in TRANSPORTS.items():
        for busy_poll_us in BUSY_POLL_US:
            runs: dict[str, list[dict[str, Any]]] = {}
            for _ in range(args.rounds):
                servers = transport.servers(store, 1, args.batching, busy_poll_us)
                for target, spec in servers.items():
                    with running(spec) as process:
                        figures = sequential(
                            name, spec, process.pid, model, observation, args.calls
                        )
                    runs.setdefault(target, []).append(figures)
            calls.setdefault(name, {})[busy_poll_us] = {
                target: _median(rounds, rate=False) for target, rounds in runs.items()
            }
    return calls


def _median(rounds: list[dict[str, Any]], rate: bool = True) -> dict[str, Any]:
    """The median of each figure over the rounds, and the rounds' own values of the headline
    one (`rounds`: requests/s of a load, p50 of sequential calls)."""
    figures: dict[str, Any] = {
        key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]
    }
    headline = "requests_per_s" if rate else "p50_ms"
    figures["rounds"] = [round(r[headline], 3) for r in rounds]
    if rate:
        figures["observations_per_s"] = figures["requests_per_s"]  # 1 observation per request
        figures["errors"] = sum(r["errors"] for r in rounds)
    return figures


def _round_ratios(predict: dict[str, Any], constant: dict[str, Any]) -> list[float]:
    """predict over constant in each round (they ran back to back, or took turns)."""
    return [round(p / c, 3) for p, c in zip(predict["rounds"], constant["rounds"], strict=True)]


def markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines."""
    cells = [f"| {' | '.join(row)} |" for row in rows]
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header), *cells]


def table(results: dict[str, Any], calls: dict[str, Any], runtime: dict[str, float]) -> str:
    loads = [
        [transport, str(workers), target, str(clients), f"{f['requests_per_s']:.0f}",
         f"{f['observations_per_s']:.0f}", f"{f['p50_ms']:.3f}", f"{f['p99_ms']:.3f}",
         f"{f['client_cpu_s']:.2f}", str(f["errors"])]
        for transport, by_workers in results.items()
        for workers, by_target in by_workers.items()
        for target, by_clients in by_target.items()
        for clients, f in by_clients.items()
    ]  # fmt: skip
    loads.append(["in-process", "-", "bundle.predict", "1", "-", "-", f"{runtime['p50_ms']:.4f}",
                  f"{runtime['p99_ms']:.4f}", "-", "-"])  # fmt: skip
    sequential = [
        [transport, TRANSPORTS[transport].client, str(busy_poll_us), target, f"{f['p50_ms']:.3f}",
         f"{f['p99_ms']:.3f}", f"{f['server_ms']:.3f}" if "server_ms" in f else "-",
         f"{f['client_cpu_s']:.2f}", f"{f['server_cpu_s']:.2f}"]
        for transport, by_busy_poll in calls.items()
        for busy_poll_us, by_target in by_busy_poll.items()
        for target, f in by_target.items()
    ]  # fmt: skip
    load_header = ["transport", "workers", "target", "clients", "req/s", "obs/s", "p50 ms",
                   "p99 ms", "client CPU s", "errors"]  # fmt: skip
    sequential_header = ["transport", "Python client (sequential, 1 worker)", "busy poll µs",
                         "target", "p50 ms", "p99 ms", "server-side mean ms", "client CPU s",
                         "server CPU s"]  # fmt: skip
    lines = [*markdown(load_header, loads), "", *markdown(sequential_header, sequential)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, help="serve this store (default: a fresh one)")
    parser.add_argument(
        "--no-batching", dest="batching", action="store_false", help="BEAR_BATCHING=false"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    parser.add_argument("--requests", type=int, default=5000, help="in-process predict calls")
    parser.add_argument("--calls", type=int, default=3000, help="sequential client calls")
    args = parser.parse_args()
    for tool, package in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: install it (Debian: apt-get install {package})")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or build_store(Path(tmp))
        runtime, model, observation = runtime_latency(store, args.requests)
        results = loads(args, store, model, observation, Path(tmp))
        calls = sequential_calls(args, store, model, observation)
    load_after = os.getloadavg()
    http = {
        target: by_clients[BAR["clients"]]
        for target, by_clients in results["http"][BAR["workers"]].items()
    }
    ratio = http["predict"]["requests_per_s"] / http["constant"]["requests_per_s"]
    ratios = _round_ratios(http["predict"], http["constant"])
    grpc = calls["grpc"][0]
    grpc_ratio = grpc["predict"]["p50_ms"] / grpc["constant"]["p50_ms"]
    grpc_ratios = _round_ratios(grpc["predict"], grpc["constant"])
    polled = {
        f"{transport}, busy poll {us} µs": (
            round(by_target["predict"]["p50_ms"] / by_target["constant"]["p50_ms"], 3),
            _round_ratios(by_target["predict"], by_target["constant"]),
        )
        for transport, by_busy_poll in calls.items()
        for us, by_target in by_busy_poll.items()
        if us
    }
    print(table(results, calls, runtime), file=sys.stderr)
    print(
        f"bar: HTTP predict / constant requests/s at {BAR['clients']} clients, {BAR['workers']} "
        f"workers = {ratio:.2f} (needs >= {BAR['min_ratio']}; rounds {ratios})\n"
        f"bar: gRPC predict / constant tritonclient p50 = {grpc_ratio:.2f} "
        f"(needs <= {GRPC_BAR['max_ratio']}; rounds {grpc_ratios})\n"
        + "".join(
            f"sequential predict / constant p50, {mode}, on both: {r:.2f} (rounds {rs})\n"
            for mode, (r, rs) in polled.items()
        )
        + f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, "
        f"on {os.cpu_count()} CPUs",
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
                "sequential_python_clients": {"calls": args.calls, **calls},
                "runtime_predict_1obs_in_process": runtime,
                "bar": {
                    **BAR,
                    "ratio": round(ratio, 3),
                    "round_ratios": ratios,
                    "met": ratio >= BAR["min_ratio"],
                },
                "grpc_bar": {
                    **GRPC_BAR,
                    "ratio": round(grpc_ratio, 3),
                    "round_ratios": grpc_ratios,
                    "met": grpc_ratio <= GRPC_BAR["max_ratio"],
                },
                "busy_poll_p50_ratios": {mode: r for mode, (r, _) in polled.items()},
                "load_average": {"before": load_before, "after": load_after},
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()

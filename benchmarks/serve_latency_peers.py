"""The processes that `serve_latency.py` runs beside the servers it measures, each in its own
process: `tritonclient.grpc`'s messages and the service's generated ones both define the protobuf
package `inference`, so neither may be imported where the other is.

    python benchmarks/serve_latency_peers.py grpc-floor --port P [--workers W] [--busy-poll-us U]
    python benchmarks/serve_latency_peers.py sequential {grpc,http} --port P --model NAME \
        --observation '[...]' [--calls 3000] [--warmup 300]

`grpc-floor` is the floor of the gRPC stack: `inference.GRPCInferenceService/ModelInfer`
answered with a fixed `ModelInferResponse` (tritonclient's own messages, the size of the
service's answer for a Pendulum-sized model) by a grpc.aio server on uvloop, as the service runs
its gRPC server on uvicorn's loop; `--workers` processes share the port (SO_REUSEPORT, as the
service's workers do) until SIGTERM, busy polling after each answer as the service does with
BEAR_BUSY_POLL_US=U (service/core/busy_poll.py).

`sequential` makes `--calls` 1-observation calls one after another, after `--warmup` untimed
ones, from a stock Python client: `grpc` is `tritonclient.grpc` (`ModelInfer`, output
`actions`), `http` is `http.client` on one keep-alive connection (`POST /predict`); each call
ends with the actions decoded. Prints one JSON line: p50 and p99 in ms, and the client's CPU
seconds over the timed calls.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the service's BusyPoll
from service.core.busy_poll import BusyPoll

HOST = "127.0.0.1"
SERVICE = "inference.GRPCInferenceService"


# --- the floor -----------------------------------------------------------------------------------


async def _serve_constant(port: int, busy_poll_us: int) -> None:
    import grpc
    import grpc.aio
    from tritonclient.grpc import service_pb2 as pb

    answer = pb.ModelInferResponse(
        model_name="pendulum",
        model_version="1",
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(name="actions", datatype="FP32", shape=[1, 1])
        ],
        raw_output_contents=[np.float32(0.123456789).tobytes()],
    )

    busy_poll = BusyPoll(busy_poll_us / 1e6)

    async def model_infer(request: Any, context: Any) -> Any:
        asyncio.get_running_loop().call_soon(busy_poll.kick)  # after the answer, as the service
        return answer

    handlers = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(
            model_infer,
            request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=pb.ModelInferResponse.SerializeToString,
        )
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"{HOST}:{port}")
    await server.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stopped.set)
    await stopped.wait()
    await server.stop(None)


def _floor_worker(port: int, busy_poll_us: int) -> None:
    import uvloop

    uvloop.run(_serve_constant(port, busy_poll_us))


def grpc_floor(port: int, workers: int, busy_poll_us: int) -> None:
    """`workers` processes serving the constant ModelInfer on `port` until SIGTERM or SIGINT."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on SIGINT
    spawn = multiprocessing.get_context("spawn")
    started = []
    try:
        for _ in range(workers):
            process = spawn.Process(target=_floor_worker, args=(port, busy_poll_us))
            process.start()
            started.append(process)
        for process in started:
            process.join()
    except KeyboardInterrupt:
        pass  # SIGTERM or SIGINT: stop the workers
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.join()


# --- sequential clients --------------------------------------------------------------------------


def grpc_caller(port: int, model: str, observation: list[float]) -> Callable[[], object]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"{HOST}:{port}")
    obs = np.asarray([observation], np.float32)
    tensor = grpcclient.InferInput("observations", list(obs.shape), "FP32")
    tensor.set_data_from_numpy(obs)
    outputs = [grpcclient.InferRequestedOutput("actions")]

    def call() -> object:
        return client.infer(model, [tensor], outputs=outputs).as_numpy("actions")

    return call


def http_caller(port: int, model: str, observation: list[float]) -> Callable[[], object]:
    connection = http.client.HTTPConnection(HOST, port)
    body = json.dumps({"observations": [observation]}).encode()
    headers = {"Content-Type": "application/json"}

    def call() -> object:
        connection.request("POST", "/predict", body, headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST /predict answered {response.status}: {answer[:200]!r}")
        return json.loads(answer)["actions"]

    return call


CALLERS = {"grpc": grpc_caller, "http": http_caller}


def sequential(call: Callable[[], object], calls: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        call()
    timings = []
    cpu = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu
    ms = np.asarray(timings) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "client_cpu_s": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    floor = commands.add_parser("grpc-floor")
    floor.add_argument("--port", type=int, required=True)
    floor.add_argument("--workers", type=int, default=1)
    floor.add_argument("--busy-poll-us", type=int, default=0)
    client = commands.add_parser("sequential")
    client.add_argument("transport", choices=sorted(CALLERS))
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--model", required=True)
    client.add_argument("--observation", type=json.loads, required=True)
    client.add_argument("--calls", type=int, default=3000)
    client.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()
    if args.command == "grpc-floor":
        grpc_floor(args.port, args.workers, args.busy_poll_us)
    else:
        call = CALLERS[args.transport](args.port, args.model, args.observation)
        print(json.dumps(sequential(call, args.calls, args.warmup)))


if __name__ == "__main__":
    main()

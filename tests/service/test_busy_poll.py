"""BEAR_BUSY_POLL_US: after an answer the worker's loop keeps polling (it uses CPU) for the
window and no longer, keeps serving meanwhile, and answers exactly as without it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton

from service.core.busy_poll import BusyPoll
from service.core.settings import Settings
from tests.service.serving import MODEL, Bundle, Server, free_port, running_server

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


async def _loop_cpu(seconds: float) -> float:
    """CPU seconds this process spends while its loop waits `seconds`."""
    start = time.process_time()
    await asyncio.sleep(seconds)
    return time.process_time() - start


def test_the_loop_polls_for_the_window_and_then_sleeps() -> None:
    async def run() -> None:
        busy = BusyPoll(0.3)
        busy.kick()
        assert await _loop_cpu(0.25) > 0.1  # polling: the loop kept running
        await asyncio.sleep(0.1)
        assert not busy.polling
        assert await _loop_cpu(0.25) < 0.05  # the window has passed: asleep

    asyncio.run(run())


def test_a_window_of_zero_never_polls() -> None:
    async def run() -> None:
        busy = BusyPoll(0)
        busy.kick()
        assert not busy.polling
        assert await _loop_cpu(0.25) < 0.05

    asyncio.run(run())


def test_the_loop_serves_while_polling_and_each_kick_extends_the_window() -> None:
    async def run() -> None:
        busy = BusyPoll(0.1)
        busy.kick()
        for _ in range(5):  # 0.25 s of kicks every 0.05 s: the window never closes
            start = time.perf_counter()
            await asyncio.sleep(0.05)
            assert time.perf_counter() - start < 0.09  # timers still fire on time
            assert busy.polling
            busy.kick()
        await asyncio.sleep(0.2)
        assert not busy.polling

    asyncio.run(run())


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window_s"):
        BusyPoll(-0.001)
    with pytest.raises(ValueError, match="busy_poll_us"):
        Settings(busy_poll_us=-1)


def _server_cpu(server: Server) -> float:
    """CPU seconds (user + system) the server process has used."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def _cpu_after(server: Server, call: Callable[[], object], seconds: float) -> float:
    """The server's CPU seconds over the `seconds` after `call()` was answered."""
    call()
    start = _server_cpu(server)
    time.sleep(seconds)
    return _server_cpu(server) - start


def _actions(transport: str, client: httpx.Client, grpc_port: int, obs: np.ndarray) -> np.ndarray:
    """The server's actions for `obs`, over HTTP /predict or gRPC ModelInfer."""
    if transport == "http":
        answer = client.post("/predict", json={"observations": obs.tolist()})
        assert answer.status_code == 200, answer.text
        return np.asarray(answer.json()["actions"], np.float32)
    tensor = triton.InferInput("observations", list(obs.shape), "FP32")
    tensor.set_data_from_numpy(obs)
    with triton.InferenceServerClient(f"127.0.0.1:{grpc_port}") as triton_client:
        actions = triton_client.infer(MODEL, [tensor]).as_numpy("actions")
    assert actions is not None
    return actions


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_a_server_polls_after_each_answer_and_answers_the_same(
    transport: str, fresh_store: Path, bundles: list[Bundle]
) -> None:
    runtime = bundles[0].runtime
    obs = np.random.default_rng(0).normal(size=(2, *runtime.manifest.observation_shape))
    obs = obs.astype(np.float32)
    expected = runtime.predict(obs)
    window_us = 600_000
    for busy_poll_us in (0, window_us):
        grpc_port = free_port()
        env = {"BEAR_BUSY_POLL_US": str(busy_poll_us), "BEAR_GRPC_PORT": str(grpc_port)}
        with running_server(fresh_store, **env) as server, httpx.Client(base_url=server.url) as c:
            call = partial(_actions, transport, c, grpc_port, obs)
            np.testing.assert_allclose(call(), expected, rtol=1e-6, atol=1e-6)
            used = _cpu_after(server, call, 0.4)
            if busy_poll_us:
                assert used > 0.15, f"{used:.2f} CPU s in the 0.4 s after an answer"
                time.sleep(0.3)  # the window has passed: the server sleeps again
                assert _cpu_after(server, lambda: None, 0.4) < 0.1
            else:
                assert used < 0.1, f"{used:.2f} CPU s in the 0.4 s after an answer"

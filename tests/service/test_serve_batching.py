"""Micro-batching: concurrent submissions share one graph run and each gets its own rows back;
with batching on (the default), a real server's answers still equal the bundle runtime's."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from service.inference.micro_batching import MicroBatcher
from tests.conftest import OBS_SIZE
from tests.service.serving import Bundle, running_server


def test_concurrent_submissions_share_one_run() -> None:
    calls: list[int] = []

    def double(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return 2 * x + y

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(double, max_rows=100)
        parts = [np.full((n, 2), n, np.float32) for n in (1, 3, 2)]
        return await asyncio.gather(*(batcher.submit(p, p) for p in parts))

    results = asyncio.run(main())
    assert calls == [6]
    for n, result in zip((1, 3, 2), results, strict=True):
        np.testing.assert_array_equal(result, np.full((n, 2), 3 * n, np.float32))


def test_a_full_batch_runs_at_once_and_errors_reach_every_caller() -> None:
    calls: list[int] = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        if len(x) > 4:
            raise RuntimeError("too big")
        return x

    async def main() -> None:
        batcher = MicroBatcher(run, max_rows=2, max_delay_s=10.0)
        ones = np.ones((1, 1), np.float32)
        await asyncio.wait_for(asyncio.gather(batcher.submit(ones), batcher.submit(ones)), 1.0)
        failing = MicroBatcher(run, max_rows=100)
        results = await asyncio.gather(
            *(failing.submit(np.ones((3, 1), np.float32)) for _ in range(2)),
            return_exceptions=True,
        )
        assert all(isinstance(r, RuntimeError) for r in results)

    asyncio.run(main())
    assert calls[0] == 2


@pytest.mark.e2e
def test_server_with_batching(fresh_store: Path, bundles: list[Bundle]) -> None:
    rng = np.random.default_rng(3)
    rows = [rng.normal(size=(1 + i % 3, OBS_SIZE)).astype(np.float32) for i in range(48)]
    with running_server(fresh_store) as server:  # BEAR_BATCHING: true by default

        def predict(obs: np.ndarray) -> np.ndarray:
            with server.client() as client:
                body = client.post("/predict", json={"observations": obs.tolist()}).json()
            return np.asarray(body["actions"], dtype=np.float32)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(predict, rows))
    for obs, actions in zip(rows, answers, strict=True):
        np.testing.assert_array_equal(actions, bundles[0].runtime.predict(obs))

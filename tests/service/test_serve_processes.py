"""Two API processes on one store: a version deleted (or deleted and published again) by one is
no longer served by the other within the sync interval, and concurrent promotions are
serialised, with `?expect=` for optimistic concurrency."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.models.model_store import ModelStore
from tests.conftest import OBS_SIZE
from tests.service.serving import ADMIN, API_KEY, MODEL, Bundle, Server, running_server, wait_until

pytestmark = pytest.mark.e2e

OBS = np.linspace(-1, 1, 2 * OBS_SIZE, dtype=np.float32).reshape(2, OBS_SIZE)
SYNC_S = 0.3


@pytest.fixture()
def pair(fresh_store: Path) -> Iterator[tuple[Server, Server]]:
    """Servers A and B on one store (`pendulum` 1 in production, 2)."""
    env = {"BEAR_API_KEYS": API_KEY, "BEAR_SYNC_INTERVAL_S": str(SYNC_S)}
    with ExitStack() as stack:
        a = stack.enter_context(running_server(fresh_store, **env))
        b = stack.enter_context(running_server(fresh_store, **env))
        yield a, b


def predict(client: httpx.Client, path: str = "/predict") -> httpx.Response:
    return client.post(path, json={"observations": OBS.tolist()})


def test_a_version_deleted_by_another_process_is_not_served(
    pair: tuple[Server, Server], bundles: list[Bundle]
) -> None:
    a, b = pair
    expected = [bundle.runtime.predict(OBS) for bundle in bundles]
    version_2 = f"/models/{MODEL}/versions/2"
    with a.client() as ca, b.client() as cb:
        served = predict(cb, f"{version_2}/predict")
        assert served.status_code == 200 and served.json()["version"] == "2"
        assert cb.get(f"/v2{version_2}/ready").json()["ready"] is True

        assert ca.delete(version_2, headers=ADMIN).status_code == 204
        wait_until(
            lambda: predict(cb, f"{version_2}/predict").status_code == 404,
            timeout=20 * SYNC_S,
            what="B to forget the deleted version",
        )
        assert cb.get(f"/v2{version_2}/ready").status_code == 404
        assert cb.get(f"/v2{version_2}").status_code == 404
        loaded = [line for line in cb.get("/metrics").text.splitlines() if "_loaded{" in line]
        assert not any('version="2"' in line for line in loaded), loaded

        # deleted and published again under the same number before B looks: B serves the new
        # bundle, not its old copy
        assert ModelStore(a.store).publish(MODEL, bundles[0].path) == "2"
        first = predict(cb, f"{version_2}/predict")
        assert first.status_code == 200
        np.testing.assert_array_equal(np.float32(first.json()["actions"]), expected[0])
        assert ca.delete(version_2, headers=ADMIN).status_code == 204
        assert ModelStore(a.store).publish(MODEL, bundles[1].path) == "2"
        wait_until(
            lambda: np.array_equal(
                np.float32(predict(cb, f"{version_2}/predict").json()["actions"]), expected[1]
            ),
            timeout=20 * SYNC_S,
            what="B to load the new version 2",
        )


def _promote_together(
    servers: tuple[Server, Server], targets: tuple[str, str], expect: str | None
) -> list[httpx.Response]:
    barrier = threading.Barrier(2)
    results: list[httpx.Response | None] = [None, None]

    def promote(i: int) -> None:
        with servers[i].client(ADMIN) as client:
            barrier.wait()
            query = f"?expect={expect}" if expect else ""
            results[i] = client.post(f"/models/{MODEL}/versions/{targets[i]}/promote{query}")

    threads = [threading.Thread(target=promote, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] is not None and results[1] is not None
    return [results[0], results[1]]


def _both_serve(servers: tuple[Server, Server], version: str) -> None:
    for server in servers:
        with server.client() as client:
            wait_until(
                lambda c=client: predict(c).json()["version"] == version,
                timeout=20 * SYNC_S,
                what=f"{server.url} to serve version {version}",
            )
            assert client.get(f"/models/{MODEL}").json()["production"] == version


def test_concurrent_promotes_with_expect_one_wins(
    pair: tuple[Server, Server], bundles: list[Bundle]
) -> None:
    ModelStore(pair[0].store).publish(MODEL, bundles[0].path)  # version 3
    responses = _promote_together(pair, ("2", "3"), expect="1")
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    won = next(r for r in responses if r.status_code == 200).json()
    lost = next(r for r in responses if r.status_code == 409).json()
    assert won["previous"] == "1"
    assert f"version '{won['version']}' in production, not the expected '1'" in lost["error"]
    _both_serve(pair, won["version"])

    # a stale expect is refused on either process, naming the current version
    with pair[1].client(ADMIN) as client:
        stale = client.post(f"/models/{MODEL}/versions/1/promote?expect=1")
        assert stale.status_code == 409 and f"'{won['version']}'" in stale.json()["error"]
        bad = client.post(f"/models/{MODEL}/versions/1/promote?expect=x")
        assert bad.status_code == 422 and "expect" in bad.json()["error"]


def test_concurrent_promotes_without_expect_are_serialised(
    pair: tuple[Server, Server], bundles: list[Bundle]
) -> None:
    ModelStore(pair[0].store).publish(MODEL, bundles[0].path)  # version 3
    responses = _promote_together(pair, ("2", "3"), expect=None)
    assert [r.status_code for r in responses] == [200, 200]
    first, second = sorted((r.json() for r in responses), key=lambda r: r["previous"] != "1")
    # the second saw the first's change: it reports it as previous, and is what both serve
    assert first["previous"] == "1" and second["previous"] == first["version"]
    _both_serve(pair, second["version"])

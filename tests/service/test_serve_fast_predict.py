"""The predict hot path (service.inference.fast_predict) answers exactly what the FastAPI route
answers. A `+json` content type takes the route (FastAPI parses it as JSON; the hot path only
takes `application/json`), so every body is sent both ways and the answers compared: the same
status and JSON for plain bodies on every predict path, and the same error for every body the
hot path must leave to the route. Hot-path answers are counted and logged under their route."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from service.inference.fast_predict import FAST_ROWS
from tests.service.serving import MODEL, Server

pytestmark = pytest.mark.e2e

HOT = {"Content-Type": "application/json"}
ROUTE = {"Content-Type": "application/x-test+json"}
ROW = [0.5, -1.0, 2, 0.25, 3]  # the test models take 5 values
PATHS = ("/predict", f"/models/{MODEL}/predict", f"/models/{MODEL}/versions/1/predict")

PLAIN: dict[str, Any] = {
    "one row": {"observations": [ROW]},
    "ints and floats": {"observations": [[1, 2, 3, 4, 5], ROW]},
    "most rows": {"observations": [ROW] * FAST_ROWS},
}
ODD: dict[str, Any] = {
    "bool": {"observations": [[True, *ROW[1:]]]},
    "string": {"observations": [["1.0", *ROW[1:]]]},
    "extra field": {"observations": [ROW], "seed": 1},
    "no rows": {"observations": []},
    "empty row": {"observations": [[]]},
    "wrong width": {"observations": [ROW[:-1]]},
    "not a list": {"observations": "x"},
    "overflow": {"observations": [[1e40, *ROW[1:]]]},
    "list body": [[ROW]],
    "more rows than the server takes": {"observations": [ROW] * (FAST_ROWS + 1)},  # max 64
}
RAW_ODD = {
    "NaN": b'{"observations": [[NaN, 1, 2, 3, 4]]}',
    "not JSON": b'{"observations": [[1, 2',
    "not UTF-8": b'{"observations": [[1, 2, 3, 4, \xff]]}',
    "nested too deep": b'{"observations": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


def both(client: httpx.Client, path: str, body: bytes) -> tuple[httpx.Response, httpx.Response]:
    return (
        client.post(path, content=body, headers=HOT),
        client.post(path, content=body, headers=ROUTE),
    )


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", sorted(PLAIN))
def test_plain_bodies_get_the_routes_answer(client: httpx.Client, path: str, case: str) -> None:
    hot, route = both(client, path, json.dumps(PLAIN[case]).encode())
    assert hot.status_code == route.status_code == 200, (hot.text, route.text)
    assert hot.json() == route.json()
    assert hot.headers["content-type"] == route.headers["content-type"]
    assert len(hot.json()["actions"]) == len(PLAIN[case]["observations"])


@pytest.mark.parametrize("case", sorted(ODD) + sorted(RAW_ODD))
def test_other_bodies_get_the_routes_error(client: httpx.Client, case: str) -> None:
    body = RAW_ODD[case] if case in RAW_ODD else json.dumps(ODD[case]).encode()
    hot, route = both(client, "/predict", body)
    assert hot.status_code == route.status_code and hot.status_code in (400, 422), hot.text
    assert hot.json() == route.json()


def test_unknown_models_and_versions_get_the_routes_answer(client: httpx.Client) -> None:
    body = json.dumps(PLAIN["one row"]).encode()
    for path in ("/models/nope/predict", f"/models/{MODEL}/versions/9/predict"):
        hot, route = both(client, path, body)
        assert hot.status_code == route.status_code == 404
        assert hot.json() == route.json()
    # version 2 is not in memory until a request loads it (through the route)
    assert (
        client.post(f"/models/{MODEL}/versions/2/predict", json=PLAIN["one row"]).json()["version"]
        == "2"
    )


def test_hot_answers_are_counted_and_logged_under_their_route(server: Server) -> None:
    with server.client() as client:
        answer = client.post(
            f"/models/{MODEL}/predict",
            content=json.dumps(PLAIN["one row"]),
            headers={**HOT, "X-Request-ID": "hot-path-1"},
        )
        metrics = client.get("/metrics").text
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "hot-path-1"
    series = 'bear_requests_total{method="POST",route="/models/{name}/predict",status="200"}'
    assert series in metrics
    logged = json.loads(server.log_line('"hot-path-1"'))
    assert (logged["route"], logged["model"], logged["version"]) == (
        "/models/{name}/predict",
        MODEL,
        "1",
    )


def test_the_switch_takes_the_hot_path_out() -> None:
    """BEAR_FAST_PREDICT=false: no hot path in the stack, every body reaches the route. (In a
    fresh interpreter: the service's OIP messages and tritonclient.grpc's, which other tests
    import, share protobuf names and cannot be loaded in one process.)"""
    script = (
        "from service.app import create_app\n"
        "from service.core.settings import Settings\n"
        "from service.inference.fast_predict import FastPredict\n"
        "for fast in (True, False):\n"
        "    app = create_app(Settings(fast_predict=fast, grpc_port=None))\n"
        "    print(fast, isinstance(app.front, FastPredict))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.split() == ["True", "True", "False", "False"]

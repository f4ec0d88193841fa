"""Hostile or careless OIP and JSON requests: sizes that overflow, bodies that are not JSON, the
binary tensor data extension used wrongly, repeated tensor names, and 405s that list every method
of the path. Each answers a 4xx naming what is wrong; never a 5xx."""

from __future__ import annotations

import json
import struct
from typing import Any

import httpx
import pytest

from tests.conftest import ACTION_SIZE, OBS_SIZE
from tests.service.serving import MODEL, Server

pytestmark = pytest.mark.e2e

ROW = [0.5] * OBS_SIZE
INFER = f"/v2/models/{MODEL}/infer"


def observations(**fields: Any) -> dict[str, Any]:
    return {"name": "observations", "shape": [1, OBS_SIZE], "datatype": "FP32", "data": ROW,
            **fields}  # fmt: skip


def binary_request(
    client: httpx.Client, request: dict[str, Any], tail: bytes, **headers: str
) -> httpx.Response:
    header = json.dumps(request).encode()
    return client.post(
        INFER,
        content=header + tail,
        headers={"Inference-Header-Content-Length": str(len(header)), **headers},
    )


OVERFLOWING = [
    [4611686018427387904, 4],  # the issue's: 2**62 * 4 wraps to 0 in int64
    [4611686018427387904, OBS_SIZE],
    [4294967296, 4294967296],
    [2**64 + 1, OBS_SIZE],
    [-1, OBS_SIZE],
    [1, -OBS_SIZE],
]


@pytest.mark.parametrize("shape", OVERFLOWING)
def test_sizes_that_overflow_int64_are_refused(server: Server, shape: list[int]) -> None:
    with server.client() as client:
        response = client.post(INFER, json={"inputs": [observations(shape=shape, data=[])]})
    assert response.status_code == 400, response.text
    assert "inputs[observations]" in response.json()["error"]


@pytest.mark.parametrize("shape", OVERFLOWING)
def test_binary_sizes_that_overflow_int64_are_refused(server: Server, shape: list[int]) -> None:
    binary = observations(shape=shape, data=None, parameters={"binary_data_size": 0})
    with server.client() as client:
        response = binary_request(client, {"inputs": [binary]}, b"")
    assert response.status_code == 400, response.text
    assert "inputs[observations]" in response.json()["error"]


def test_json_without_content_type_is_accepted_on_v2(server: Server) -> None:
    with server.client() as client:
        response = client.post(INFER, content=json.dumps({"inputs": [observations()]}))
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["name"] == "actions"


@pytest.mark.parametrize(
    ("path", "status"), [("/predict", 422), (f"/models/{MODEL}/predict", 422), (INFER, 400)]
)
@pytest.mark.parametrize(
    "body",
    [b'{"observations": [[\xff\xfe]]}', b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000],
    ids=["not-utf8", "deep-open", "deep-closed"],
)
def test_bodies_that_are_not_json_are_named(
    server: Server, path: str, status: int, body: bytes
) -> None:
    with server.client() as client:
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert "body: invalid JSON" in response.json()["error"]


def test_repeated_input_or_output_names_are_refused(server: Server) -> None:
    twice = {"inputs": [observations(), observations(data=[0.1] * OBS_SIZE)]}
    outputs_twice = {"inputs": [observations()], "outputs": [{"name": "actions"}] * 2}
    with server.client() as client:
        inputs = client.post(INFER, json=twice)
        outputs = client.post(INFER, json=outputs_twice)
    assert inputs.status_code == 400 and "'observations'" in inputs.json()["error"], inputs.text
    assert outputs.status_code == 400 and "'actions'" in outputs.json()["error"], outputs.text


def _floats(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


BINARY = observations(data=None, parameters={"binary_data_size": 4 * OBS_SIZE})
BINARY_CASES = [
    ("size disagrees with shape", {"inputs": [{**BINARY, "parameters": {"binary_data_size": 4}}]},
     _floats(ROW), "binary_data_size"),
    ("body shorter than declared", {"inputs": [BINARY]}, _floats(ROW)[:-1], "binary"),
    ("bytes left over", {"inputs": [BINARY]}, _floats(ROW) + b"\0\0\0\0", "binary"),
    ("data and binary", {"inputs": [{**BINARY, "data": ROW}]}, _floats(ROW), "data"),
    ("neither", {"inputs": [observations(data=None)]}, b"", "data"),
    ("bad datatype", {"inputs": [{**BINARY, "datatype": "BYTES"}]}, _floats(ROW), "datatype"),
    ("NaN", {"inputs": [BINARY]}, _floats([float("nan"), *ROW[1:]]), "observations"),
    ("negative size", {"inputs": [{**BINARY, "parameters": {"binary_data_size": -4}}]}, b"",
     "binary_data_size"),
]  # fmt: skip


def test_binary_extension_misuse(server: Server) -> None:
    with server.client() as client:
        for case, request, tail, needle in BINARY_CASES:
            response = binary_request(client, request, tail)
            assert response.status_code == 400, (case, response.text)
            assert needle in response.json()["error"], (case, response.text)
        for header in ("abc", "-1", "999999"):
            response = client.post(
                INFER, content=b"{}", headers={"Inference-Header-Content-Length": header}
            )
            assert response.status_code == 400, (header, response.text)
            assert "Inference-Header-Content-Length" in response.json()["error"]
        compressed = client.post(INFER, content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"})
    assert compressed.status_code == 400 and "Content-Encoding" in compressed.json()["error"]


def test_binary_inputs_and_outputs_over_raw_http(server: Server) -> None:
    """A binary request answered with a binary output and a JSON one."""
    request = {
        "inputs": [BINARY, {"name": "actions", "shape": [1, ACTION_SIZE], "datatype": "FP32",
                            "data": [0.1] * ACTION_SIZE}],
        "outputs": [{"name": "values", "parameters": {"binary_data": True}}, {"name": "actions"}],
    }  # fmt: skip
    with server.client() as client:
        response = binary_request(
            client, request, _floats(ROW), **{"Content-Type": "application/octet-stream"}
        )
        plain_request = {**request, "inputs": [observations(), request["inputs"][1]]}
        plain_request["outputs"] = [{"name": "values"}, {"name": "actions"}]
        plain = client.post(INFER, json=plain_request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    size = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:size])
    values, actions = header["outputs"]
    assert values["parameters"] == {"binary_data_size": 4} and "data" not in values
    assert len(response.content) == size + 4
    expected = plain.json()["outputs"]
    assert struct.unpack("<f", response.content[size:]) == pytest.approx(expected[0]["data"])
    assert actions["data"] == expected[1]["data"]


def test_405_lists_every_method_of_the_path(server: Server) -> None:
    with server.client() as client:
        version = client.put(f"/models/{MODEL}/versions/2")
        datasets = client.put("/datasets")
        predict = client.get("/predict")
    assert version.status_code == 405
    assert set(version.headers["allow"].split(", ")) == {"GET", "DELETE"}
    assert datasets.status_code == 405
    assert set(datasets.headers["allow"].split(", ")) == {"GET", "POST"}
    assert predict.headers["allow"] == "POST"

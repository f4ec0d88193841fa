"""Everything a client can get wrong answers with the documented 4xx and a message naming the
field, model or version; never with a 5xx."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from typing import Any

import pytest

from tests.conftest import ACTION_SIZE, OBS_SIZE
from tests.service.serving import API_KEY, MODEL, Server

pytestmark = pytest.mark.e2e

ROW = [0.5] * OBS_SIZE
ACT = [0.1] * ACTION_SIZE
MAX_BATCH = 64  # the shared server's BEAR_MAX_BATCH
TASK_PATHS = ["", f"/models/{MODEL}", f"/models/{MODEL}/versions/2"]
ENDPOINTS = ["predict", "sample_action", "value"]


def body_for(endpoint: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"observations": [ROW]}
    if endpoint == "value":
        base["actions"] = [ACT]
    return {**base, **fields}


# (case, fields replacing the valid body's, expected status, text the message must contain)
TASK_CASES = [
    ("narrow rows", {"observations": [[0.5] * (OBS_SIZE - 1)]}, 422, "observations"),
    ("wide rows", {"observations": [[0.5] * (OBS_SIZE + 1)]}, 422, "observations"),
    ("1-D", {"observations": ROW}, 422, "observations[0]"),
    ("3-D", {"observations": [[ROW]]}, 422, "observations[0][0]"),
    ("ragged", {"observations": [ROW, ROW[:2]]}, 422, "observations"),
    ("empty batch", {"observations": []}, 422, "observations"),
    ("empty row", {"observations": [[]]}, 422, "observations[0]"),
    ("string", {"observations": [[*ROW[:-1], "0.5"]]}, 422, f"observations[0][{OBS_SIZE - 1}]"),
    ("bool", {"observations": [[True, *ROW[1:]]]}, 422, "observations[0][0]"),
    ("null", {"observations": None}, 422, "observations"),
    ("object", {"observations": {"a": 1}}, 422, "observations"),
    ("overflow", {"observations": [[1e39, *ROW[1:]]]}, 422, "observations"),
    ("too many rows", {"observations": [ROW] * (MAX_BATCH + 1)}, 422, f"at most {MAX_BATCH}"),
    ("unknown field", {"observation": [ROW]}, 422, "observation"),
]


@pytest.mark.parametrize("prefix", TASK_PATHS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_task_endpoints_refuse_bad_bodies(server: Server, prefix: str, endpoint: str) -> None:
    with server.client() as client:
        for case, fields, status, needle in TASK_CASES:
            body = body_for(endpoint, **fields)
            if case == "too many rows" and endpoint == "value":
                body["actions"] = [ACT] * (MAX_BATCH + 1)
            response = client.post(f"{prefix}/{endpoint}", json=body)
            assert response.status_code == status, (case, response.text)
            assert needle in response.json()["error"], (case, response.text)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_non_finite_and_malformed_json(server: Server, endpoint: str) -> None:
    headers = {"Content-Type": "application/json"}
    valid = json.dumps(body_for(endpoint))
    with server.client() as client:
        for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
            raw = valid.replace("0.5", literal, 1)
            response = client.post(f"/{endpoint}", content=raw, headers=headers)
            assert response.status_code == 422, (literal, response.text)
            assert "observations[0][0]" in response.json()["error"]
        for raw in ("", "{", "[1, 2]", "null", '"text"'):
            response = client.post(f"/{endpoint}", content=raw, headers=headers)
            assert response.status_code == 422, (raw, response.text)
            assert "body" in response.json()["error"]
        not_json = client.post(
            f"/{endpoint}", content=valid, headers={"Content-Type": "text/plain"}
        )
        assert not_json.status_code == 422


def test_value_specific_errors(server: Server) -> None:
    cases = [
        ({"actions": [ACT, ACT]}, "actions has 2 rows"),
        ({"actions": [[0.1] * (ACTION_SIZE + 1)]}, "actions"),
        ({"actions": [[float("nan")] * ACTION_SIZE]}, "actions[0][0]"),
        ({"with_std": "yes"}, "with_std"),
    ]
    with server.client() as client:
        for fields, needle in cases:
            response = client.post("/value", content=json.dumps(body_for("value", **fields)),
                                   headers={"Content-Type": "application/json"})  # fmt: skip
            assert response.status_code == 422, response.text
            assert needle in response.json()["error"]
        missing = client.post("/value", json={"observations": [ROW]})
    assert missing.status_code == 422 and "actions" in missing.json()["error"]


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, 2**64])
def test_sample_action_refuses_bad_seeds(server: Server, seed: object) -> None:
    with server.client() as client:
        response = client.post("/sample_action", json=body_for("sample_action", seed=seed))
    assert response.status_code == 422, response.text
    assert "seed" in response.json()["error"]


def test_body_over_the_limit(server: Server) -> None:
    big = json.dumps({"observations": [ROW] * 400_000}).encode()  # ~10 MB > 8 MiB default
    assert len(big) > 8 << 20

    def chunks() -> Any:
        for start in range(0, len(big), 1 << 16):
            yield big[start : start + (1 << 16)]

    with server.client() as client:
        declared = client.post(
            "/predict", content=big, headers={"Content-Type": "application/json"}
        )
        streamed = client.post(
            "/predict", content=chunks(), headers={"Content-Type": "application/json"}
        )
        oip = client.post(f"/v2/models/{MODEL}/infer", content=big)
    for response in (declared, streamed, oip):
        assert response.status_code == 413, response.text
        assert "limit" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        ("/models/nope/predict", 404, "'nope'"),
        ("/models/nope/versions/1/predict", 404, "'nope'"),
        (f"/models/{MODEL}/versions/9/predict", 404, "'9'"),
        (f"/models/{MODEL}/versions/0/predict", 422, "version"),
        (f"/models/{MODEL}/versions/01/sample_action", 422, "version"),
        (f"/models/{MODEL}/versions/1.0/value", 422, "version"),
        ("/models/.hidden/predict", 422, "name"),
        ("/models/..%2F..%2Fetc/predict", 404, ""),
        ("/models/..%2f..%2fetc/versions/1/predict", 404, ""),
        ("/models/%2e%2e/predict", 422, "name"),
        ("/models/a%00b/predict", 422, "name"),
        (f"/models/{'x' * 65}/predict", 422, "name"),
        ("/v2/models/nope/infer", 404, "'nope'"),
        ("/v2/models/..%2F..%2Fetc/infer", 404, ""),
        (f"/v2/models/{MODEL}/versions/abc/infer", 400, "version"),
    ],
)
def test_unknown_or_hostile_names(server: Server, path: str, status: int, needle: str) -> None:
    body = body_for("value")
    with server.client() as client:
        response = client.post(path, json=body)
        read = client.get(path.rsplit("/", 1)[0].replace("/predict", ""))
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]
    assert read.status_code < 500
    assert not (server.store.parent / "etc").exists()


def oip(**overrides: Any) -> dict[str, Any]:
    observations = {"name": "observations", "shape": [1, OBS_SIZE], "datatype": "FP32",
                    "data": ROW}  # fmt: skip
    request: dict[str, Any] = {"inputs": [observations]}
    observations.update(overrides.pop("obs", {}))
    request.update(overrides)
    return request


OIP_CASES = [
    ("shape mismatch", oip(obs={"shape": [2, OBS_SIZE]}), "inputs[observations].data"),
    ("wrong width", oip(obs={"shape": [1, OBS_SIZE - 1], "data": ROW[:-1]}), "observations"),
    ("1-D shape", oip(obs={"shape": [OBS_SIZE]}), "inputs[observations].shape"),
    ("zero rows", oip(obs={"shape": [0, OBS_SIZE], "data": []}), "inputs[observations].shape"),
    ("strings", oip(obs={"data": ["a"] * OBS_SIZE}), "inputs[observations].data"),
    ("ragged", oip(obs={"data": [ROW, [1.0]]}), "inputs[observations].data"),
    ("datatype", oip(obs={"datatype": "BYTES"}), "datatype"),
    ("no inputs", {"inputs": []}, "inputs"),
    ("unknown input", oip(inputs=[{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]),
     "inputs"),
    ("unknown output", oip(outputs=[{"name": "logits"}]), "logits"),
    ("values need actions", oip(outputs=[{"name": "values"}]), "actions"),
    ("bad seed", oip(outputs=[{"name": "sampled_actions"}], parameters={"seed": -3}), "seed"),
    ("too many rows", oip(obs={"shape": [MAX_BATCH + 1, OBS_SIZE],
                               "data": ROW * (MAX_BATCH + 1)}), f"at most {MAX_BATCH}"),
]  # fmt: skip


def test_oip_infer_refuses_bad_requests(server: Server) -> None:
    with server.client() as client:
        for case, request, needle in OIP_CASES:
            response = client.post(f"/v2/models/{MODEL}/infer", json=request)
            assert response.status_code == 400, (case, response.text)
            assert needle in response.json()["error"], (case, response.text)
        nan = json.dumps(oip()).replace("0.5", "NaN", 1)
        response = client.post(f"/v2/models/{MODEL}/infer", content=nan,
                               headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 400 and "data" in response.json()["error"]


def bundle_archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE) -> tuple[Any, Any]:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
        return info, None
    info.size = len(data)
    return info, data


@pytest.mark.parametrize(
    ("case", "content", "needle"),
    [
        ("empty", b"", "empty"),
        ("not gzip", b"hello world", "archive"),
        ("gzip, not tar", gzip.compress(b"hello"), "archive"),
        ("absolute path", bundle_archive(member("/tmp/evil")), "leaves"),
        ("dot-dot", bundle_archive(member("../evil")), "leaves"),
        ("symlink", bundle_archive(member("link", kind=tarfile.SYMTYPE)), "not a regular file"),
        ("no manifest", bundle_archive(member("readme.txt")), "manifest.json"),
        ("bad manifest", bundle_archive(member("manifest.json", b"{}")), "manifest.json"),
    ],
)
def test_publish_refuses_bad_archives(
    server: Server, case: str, content: bytes, needle: str
) -> None:
    with server.client({"X-API-Key": API_KEY}) as client:
        response = client.post(f"/models/{MODEL}/versions", content=content)
        listing = client.get(f"/models/{MODEL}").json()
    assert response.status_code == 422, (case, response.text)
    assert needle in response.json()["error"], (case, response.text)
    assert [v["version"] for v in listing["versions"]] == ["1", "2"]


def test_management_needs_a_valid_key(server: Server) -> None:
    requests = [
        ("POST", f"/models/{MODEL}/versions/2/promote"),
        ("DELETE", f"/models/{MODEL}/versions/2"),
        ("POST", f"/models/{MODEL}/versions"),
    ]
    with server.client() as client:
        for method, path in requests:
            missing = client.request(method, path)
            wrong = client.request(method, path, headers={"X-API-Key": "not-the-key-123"})
            assert missing.status_code == 401 and "X-API-Key" in missing.json()["error"]
            assert wrong.status_code == 403 and "X-API-Key" in wrong.json()["error"]
        assert client.get(f"/models/{MODEL}").json()["production"] == "1"


def test_unknown_routes_and_methods(server: Server) -> None:
    with server.client() as client:
        assert client.get("/nowhere").status_code == 404
        assert client.get("/predict").status_code == 405
        assert "error" in client.get("/nowhere").json()

"""Inference and read-only endpoints against a real server: every answer equals the bundle
runtime's own output for the version the response names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import ACTION_SIZE, OBS_SIZE, TINY
from tests.service.serving import MODEL, Bundle, Server

pytestmark = pytest.mark.e2e

RNG = np.random.default_rng(7)
OBS = (RNG.normal(size=(5, OBS_SIZE)) * 2).astype(np.float32)
ACT = RNG.uniform(-2, 3, size=(5, ACTION_SIZE)).astype(np.float32)
OIP_OUTPUTS = ("actions", "sampled_actions", "q_values", "values", "stds")
PREFIXES = {"": "1", f"/models/{MODEL}": "1", f"/models/{MODEL}/versions/2": "2"}


def f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


@pytest.mark.parametrize(("prefix", "version"), PREFIXES.items())
def test_predict(server: Server, bundles: list[Bundle], prefix: str, version: str) -> None:
    with server.client() as client:
        response = client.post(f"{prefix}/predict", json={"observations": OBS.tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"]) == (MODEL, version)
    expected = bundles[int(version) - 1].runtime.predict(OBS)
    np.testing.assert_array_equal(f32(body["actions"]), expected)


@pytest.mark.parametrize(("prefix", "version"), PREFIXES.items())
def test_sample_action_is_seeded(
    server: Server, bundles: list[Bundle], prefix: str, version: str
) -> None:
    with server.client() as client:
        draws = [
            client.post(f"{prefix}/sample_action", json={"observations": OBS.tolist(), "seed": s})
            for s in (11, 11, 12)
        ]
        unseeded = client.post(f"{prefix}/sample_action", json={"observations": OBS.tolist()})
    assert all(r.status_code == 200 for r in [*draws, unseeded])
    first, again, other = (f32(r.json()["actions"]) for r in draws)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    runtime = bundles[int(version) - 1].runtime
    np.testing.assert_array_equal(first, runtime.sample_action(OBS, seed=11))
    assert f32(unseeded.json()["actions"]).shape == (len(OBS), ACTION_SIZE)
    assert draws[0].json()["version"] == version


@pytest.mark.parametrize(("prefix", "version"), PREFIXES.items())
def test_value_with_std_and_per_critic(
    server: Server, bundles: list[Bundle], prefix: str, version: str
) -> None:
    payload = {"observations": OBS.tolist(), "actions": ACT.tolist()}
    with server.client() as client:
        plain = client.post(f"{prefix}/value", json=payload)
        full = client.post(
            f"{prefix}/value", json={**payload, "with_std": True, "per_critic": True}
        )
    assert plain.status_code == 200 and full.status_code == 200, full.text
    runtime = bundles[int(version) - 1].runtime
    values, stds = runtime.predict_value(OBS, ACT, with_std=True)
    assert set(plain.json()) == {"values", "model", "version"}
    np.testing.assert_array_equal(f32(plain.json()["values"]), values)
    body = full.json()
    np.testing.assert_array_equal(f32(body["values"]), values)
    np.testing.assert_array_equal(f32(body["stds"]), stds)
    np.testing.assert_array_equal(f32(body["per_critic"]), runtime.predict_q(OBS, ACT))
    assert body["version"] == version


def test_oip_server_health_and_metadata(server: Server, bundles: list[Bundle]) -> None:
    with server.client() as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert client.get("/v2").json()["name"] == "bear-serve"
        meta = client.get(f"/v2/models/{MODEL}").json()
        assert client.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
        versioned = client.get(f"/v2/models/{MODEL}/versions/2/ready")
    assert versioned.status_code == 200
    assert meta["platform"] == "onnx_onnxv1" and meta["versions"] == ["1", "2"]
    inputs = {t["name"]: t["shape"] for t in meta["inputs"]}
    assert inputs == {"observations": [-1, OBS_SIZE], "actions": [-1, ACTION_SIZE]}
    outputs = {t["name"] for t in meta["outputs"]}
    assert outputs == {*OIP_OUTPUTS, "ood", "ood_score"}  # the bundles have a detector


@pytest.mark.parametrize("version", [None, "2"])
def test_oip_infer(server: Server, bundles: list[Bundle], version: str | None) -> None:
    path = f"/v2/models/{MODEL}" + (f"/versions/{version}" if version else "") + "/infer"
    request = {
        "id": "req-1",
        "parameters": {"seed": 5},
        "inputs": [
            {"name": "observations", "shape": list(OBS.shape), "datatype": "FP32",
             "data": OBS.ravel().tolist()},
            {"name": "actions", "shape": list(ACT.shape), "datatype": "FP32",
             "data": ACT.tolist()},
        ],
        "outputs": [{"name": n} for n in OIP_OUTPUTS],
    }  # fmt: skip
    with server.client() as client:
        response = client.post(path, json=request)
        default = client.post(path, json={"inputs": request["inputs"][:1]})
    assert response.status_code == 200, response.text
    body = response.json()
    runtime = bundles[int(version or "1") - 1].runtime
    assert (body["model_name"], body["model_version"], body["id"]) == (
        MODEL,
        version or "1",
        "req-1",
    )
    out = {o["name"]: f32(o["data"]).reshape(o["shape"]) for o in body["outputs"]}
    values, stds = runtime.predict_value(OBS, ACT, with_std=True)
    np.testing.assert_array_equal(out["actions"], runtime.predict(OBS))
    np.testing.assert_array_equal(out["sampled_actions"], runtime.sample_action(OBS, seed=5))
    np.testing.assert_array_equal(out["q_values"], runtime.predict_q(OBS, ACT))
    np.testing.assert_array_equal(out["values"], values)
    np.testing.assert_array_equal(out["stds"], stds)
    assert [o["name"] for o in default.json()["outputs"]] == ["actions"]


def test_models_listing(server: Server) -> None:
    with server.client() as client:
        listing = client.get("/models").json()
        detail = client.get(f"/models/{MODEL}").json()
        version = client.get(f"/models/{MODEL}/versions/2").json()
    assert listing == {"models": [{"name": MODEL, "production": "1", "versions": ["1", "2"]}]}
    assert detail["production"] == "1"
    assert [v["version"] for v in detail["versions"]] == ["1", "2"]
    assert detail["versions"][0]["production"] and detail["versions"][0]["loaded"]
    manifest = version["manifest"]
    assert manifest["observation_shape"] == [OBS_SIZE] and manifest["action_size"] == ACTION_SIZE
    assert manifest["n_critics"] == 2 and not version["production"]
    # the bundles were trained with TINY and seed 1 (version 2): only those differ from defaults
    assert manifest["params_changed"] == {**TINY, "seed": 1}


def test_request_id_is_echoed_and_logged(server: Server) -> None:
    with server.client() as client:
        given = client.get("/v2/health/live", headers={"X-Request-ID": "trace-42"})
        generated = client.get("/v2/health/live")
        hostile = client.get("/v2/health/live", headers={"X-Request-ID": 'a b"{}'})
    assert given.headers["x-request-id"] == "trace-42"
    assert len(generated.headers["x-request-id"]) == 32
    assert hostile.headers["x-request-id"] != 'a b"{}'
    assert json.loads(server.log_line('"trace-42"'))["request_id"] == "trace-42"


def test_metrics(server: Server) -> None:
    with server.client() as client:
        client.post("/predict", json={"observations": OBS.tolist()})
        client.post("/predict", json={"observations": [[1.0]]})
        text = client.get("/metrics").text
    assert 'bear_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'bear_requests_total{method="POST",route="/predict",status="422"}' in text
    assert 'bear_request_duration_seconds_bucket{le="0.001",route="/predict"}' in text
    assert f'bear_inference_rows_total{{graph="policy",model="{MODEL}",version="1"}}' in text
    assert f'bear_model_loaded{{model="{MODEL}",production="true",version="1"}} 1.0' in text

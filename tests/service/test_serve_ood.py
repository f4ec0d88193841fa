"""The out-of-distribution flag against real servers: `"ood": true` on /predict,
/sample_action and /value, the OIP outputs `ood` (BOOL) and `ood_score` over REST (JSON and
binary) and gRPC, BEAR_OOD_DEFAULT, the refusal for a version without a detector, and the
Prometheus counter of flagged rows."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http

from bear_core.bundle.manifest import manifest_digest
from service.models.model_store import ModelStore
from tests.conftest import ACTION_SIZE, OBS_SIZE
from tests.service.serving import (
    MODEL,
    Bundle,
    Server,
    fill_store,
    free_port,
    running_server,
)

pytestmark = pytest.mark.e2e

RNG = np.random.default_rng(5)
OBS = (RNG.normal(size=(3, OBS_SIZE)) * 3 + 1).astype(np.float32)  # make_dataset's distribution
FAR = OBS * 100  # far outside it
ROWS = np.concatenate([OBS, FAR])
ACT = RNG.uniform(-2, 3, size=(6, ACTION_SIZE)).astype(np.float32)


def expected(bundle: Bundle, actions: np.ndarray | None = None) -> tuple[list[bool], np.ndarray]:
    scores = bundle.runtime.ood_scores(ROWS, actions)
    return (scores > 1).tolist(), scores


@pytest.mark.parametrize("path", ["/predict", "/sample_action"])
def test_ood_true_flags_each_observation(
    client: httpx.Client, bundles: list[Bundle], path: str
) -> None:
    body = client.post(path, json={"observations": ROWS.tolist(), "ood": True}).json()
    flags, scores = expected(bundles[0])
    assert body["ood"] == flags and flags[3:] == [True] * 3
    np.testing.assert_allclose(body["ood_score"], scores, rtol=1e-6)
    assert len(body["actions"]) == 6
    plain = client.post(path, json={"observations": ROWS.tolist()}).json()
    assert "ood" not in plain and "ood_score" not in plain


def test_ood_on_value_scores_observation_action_pairs(
    client: httpx.Client, bundles: list[Bundle]
) -> None:
    body = client.post(
        "/value", json={"observations": ROWS.tolist(), "actions": ACT.tolist(), "ood": True}
    ).json()
    flags, scores = expected(bundles[0], ACT)
    assert body["ood"] == flags
    np.testing.assert_allclose(body["ood_score"], scores, rtol=1e-6)


def test_a_version_is_scored_by_its_own_detector(
    client: httpx.Client, bundles: list[Bundle]
) -> None:
    path = f"/models/{MODEL}/versions/2/predict"
    body = client.post(path, json={"observations": ROWS.tolist(), "ood": True}).json()
    np.testing.assert_allclose(body["ood_score"], expected(bundles[1])[1], rtol=1e-6)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_bad_ood_value_is_refused_naming_it(client: httpx.Client, value: object) -> None:
    response = client.post("/predict", json={"observations": OBS.tolist(), "ood": value})
    if value is None:
        assert response.status_code == 200 and "ood" not in response.json()
    else:
        assert response.status_code == 422 and "ood" in response.text


def test_oip_outputs_ood_and_ood_score(server: Server, bundles: list[Bundle]) -> None:
    flags, scores = expected(bundles[0])
    with triton_http.InferenceServerClient(server.url.removeprefix("http://")) as client:
        tensor = triton_http.InferInput("observations", list(ROWS.shape), "FP32")
        tensor.set_data_from_numpy(ROWS)
        for binary in (False, True):
            outputs = [
                triton_http.InferRequestedOutput(name, binary_data=binary)
                for name in ("ood", "ood_score", "actions")
            ]
            result = client.infer(MODEL, [tensor], outputs=outputs)
            assert result.as_numpy("ood").dtype == np.bool_
            assert result.as_numpy("ood").tolist() == flags
            np.testing.assert_allclose(result.as_numpy("ood_score"), scores, rtol=1e-6)
        metadata = client.get_model_metadata(MODEL)
        assert {"name": "ood", "datatype": "BOOL", "shape": [-1]} in metadata["outputs"]


def test_oip_scores_pairs_when_actions_are_given(server: Server, bundles: list[Bundle]) -> None:
    body = {
        "inputs": [
            {"name": "observations", "shape": list(ROWS.shape), "datatype": "FP32",
             "data": ROWS.ravel().tolist()},
            {"name": "actions", "shape": list(ACT.shape), "datatype": "FP32",
             "data": ACT.ravel().tolist()},
        ],
        "outputs": [{"name": "values"}, {"name": "ood"}, {"name": "ood_score"}],
    }  # fmt: skip
    with server.client() as client:
        outputs = client.post(f"/v2/models/{MODEL}/infer", json=body).json()["outputs"]
    by_name = {o["name"]: o for o in outputs}
    flags, scores = expected(bundles[0], ACT)
    assert by_name["ood"]["datatype"] == "BOOL" and by_name["ood"]["data"] == flags
    np.testing.assert_allclose(by_name["ood_score"]["data"], scores, rtol=1e-6)


def flagged_rows(client: httpx.Client, version: str) -> float:
    text = client.get("/metrics").text
    pattern = (
        rf'bear_ood_rows_total{{flagged="true",model="{MODEL}",version="{version}"}} ([0-9.e+]+)'
    )
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def test_prometheus_counts_flagged_rows_per_model(client: httpx.Client) -> None:
    before = flagged_rows(client, "1")
    response = client.post("/predict", json={"observations": FAR.tolist(), "ood": True})
    assert response.json()["ood"] == [True] * 3
    assert flagged_rows(client, "1") == before + 3


# --- BEAR_OOD_DEFAULT, and a version without a detector -----------------------------------------


def without_detector(bundle: Path, target: Path) -> Path:
    """A copy of the bundle as exported before detectors: no `ood`, no reference file."""
    copy = Path(shutil.copytree(bundle, target))
    raw = json.loads((copy / "manifest.json").read_text())
    raw.pop("manifest_sha256")
    raw.pop("ood")
    del raw["files"]["ood_reference.npy"]
    (copy / "ood_reference.npy").unlink()
    raw["manifest_sha256"] = manifest_digest(raw)
    (copy / "manifest.json").write_text(json.dumps(raw))
    return copy


class DefaultOn:
    def __init__(self, server: Server, grpc_port: int) -> None:
        self.server = server
        self.grpc_address = f"127.0.0.1:{grpc_port}"


@pytest.fixture(scope="module")
def default_on(
    bundles: list[Bundle], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DefaultOn]:
    """BEAR_OOD_DEFAULT on; `pendulum` 1 (production), 2, and 3 without a detector."""
    root = tmp_path_factory.mktemp("ood-default")
    store = root / "store"
    fill_store(store, bundles)
    assert ModelStore(store).publish(MODEL, without_detector(bundles[0].path, root / "old")) == "3"
    port = free_port()
    with running_server(store, BEAR_OOD_DEFAULT="true", BEAR_GRPC_PORT=str(port)) as server:
        yield DefaultOn(server, port)


def test_the_default_setting_flags_every_call(default_on: DefaultOn, bundles: list[Bundle]) -> None:
    flags, _ = expected(bundles[0])
    with default_on.server.client() as client:
        assert client.post("/predict", json={"observations": ROWS.tolist()}).json()["ood"] == flags
        body = client.post("/sample_action", json={"observations": ROWS.tolist()}).json()
        assert body["ood"] == flags
        body = client.post("/value", json={"observations": ROWS.tolist(), "actions": ACT.tolist()})
        assert body.json()["ood"] == expected(bundles[0], ACT)[0]
        off = client.post("/predict", json={"observations": ROWS.tolist(), "ood": False}).json()
        assert "ood" not in off
        oip = {"inputs": [{"name": "observations", "shape": list(ROWS.shape),
                           "datatype": "FP32", "data": ROWS.tolist()}]}  # fmt: skip
        outputs = client.post(f"/v2/models/{MODEL}/infer", json=oip).json()["outputs"]
        assert [o["name"] for o in outputs] == ["actions", "ood", "ood_score"]
        assert outputs[1]["data"] == flags


def test_grpc_returns_ood_as_bool(default_on: DefaultOn, bundles: list[Bundle]) -> None:
    tensor = triton.InferInput("observations", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS)
    with triton.InferenceServerClient(default_on.grpc_address) as client:
        result = client.infer(MODEL, [tensor])
    flags, scores = expected(bundles[0])
    assert result.as_numpy("ood").tolist() == flags
    np.testing.assert_allclose(result.as_numpy("ood_score"), scores, rtol=1e-6)


def test_a_version_without_a_detector_serves_and_refuses_ood_naming_it(
    default_on: DefaultOn,
) -> None:
    old = f"/models/{MODEL}/versions/3"
    with default_on.server.client() as client:
        body = client.post(f"{old}/predict", json={"observations": OBS.tolist()}).json()
        assert "ood" not in body and len(body["actions"]) == 3
        refused = client.post(f"{old}/predict", json={"observations": OBS.tolist(), "ood": True})
        assert refused.status_code == 422
        message = refused.json()["error"]
        assert message.startswith("ood:") and "no out-of-distribution detector" in message
        oip = {
            "inputs": [{"name": "observations", "shape": list(OBS.shape), "datatype": "FP32",
                        "data": OBS.tolist()}],
            "outputs": [{"name": "ood"}],
        }  # fmt: skip
        refused = client.post(f"/v2{old}/infer", json=oip)
        assert refused.status_code == 400 and "no out-of-distribution detector" in refused.text
        outputs = client.post(f"/v2{old}/infer", json={"inputs": oip["inputs"]}).json()
        assert [o["name"] for o in outputs["outputs"]] == ["actions"]

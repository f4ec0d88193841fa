"""A stock Open Inference Protocol client (Triton's `tritonclient.http`) against a real server:
JSON and binary tensor data, every output, with and without a model version; every answer equals
the bundle runtime's own output."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as http
from tritonclient.utils import InferenceServerException

from tests.conftest import ACTION_SIZE, OBS_SIZE
from tests.service.serving import MODEL, Bundle, Server

pytestmark = pytest.mark.e2e

RNG = np.random.default_rng(11)
OBS = (RNG.normal(size=(6, OBS_SIZE)) * 2).astype(np.float32)
ACT = RNG.uniform(-2, 3, size=(6, ACTION_SIZE)).astype(np.float32)
OUTPUTS = ("actions", "sampled_actions", "q_values", "values", "stds")


def triton(server: Server) -> object:
    return http.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30.0)


def inputs(binary: bool, obs: np.ndarray = OBS, act: np.ndarray = ACT) -> list[object]:
    made = []
    for name, array in (("observations", obs), ("actions", act)):
        tensor = http.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array, binary_data=binary)
        made.append(tensor)
    return made


def test_server_metadata_advertises_binary_tensor_data(server: Server) -> None:
    client = triton(server)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "2")
        meta = client.get_model_metadata(MODEL, "2")
    finally:
        client.close()
    assert {t["name"] for t in meta["outputs"]} == {*OUTPUTS, "ood", "ood_score"}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("version", [None, "2"], ids=["production", "version2"])
def test_every_output(
    server: Server, bundles: list[Bundle], binary: bool, version: str | None
) -> None:
    client = triton(server)
    try:
        result = client.infer(
            MODEL,
            inputs(binary),
            model_version=version or "",
            outputs=[http.InferRequestedOutput(name, binary_data=binary) for name in OUTPUTS],
            request_id="triton-1",
            parameters={"seed": 5},
        )
        default = client.infer(MODEL, inputs(binary)[:1], model_version=version or "")
    finally:
        client.close()
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        MODEL,
        version or "1",
        "triton-1",
    )
    for output in response["outputs"]:
        assert ("binary_data_size" in output.get("parameters", {})) == binary
        assert ("data" in output) != binary
    runtime = bundles[int(version or "1") - 1].runtime
    values, stds = runtime.predict_value(OBS, ACT, with_std=True)
    np.testing.assert_array_equal(result.as_numpy("actions"), runtime.predict(OBS))
    np.testing.assert_array_equal(
        result.as_numpy("sampled_actions"), runtime.sample_action(OBS, seed=5)
    )
    np.testing.assert_array_equal(result.as_numpy("q_values"), runtime.predict_q(OBS, ACT))
    np.testing.assert_array_equal(result.as_numpy("values"), values)
    np.testing.assert_array_equal(result.as_numpy("stds"), stds)
    # No outputs named: the client asks for binary outputs; the default output is actions.
    assert [o["name"] for o in default.get_response()["outputs"]] == ["actions"]
    np.testing.assert_array_equal(default.as_numpy("actions"), runtime.predict(OBS))


def test_binary_inputs_of_other_datatypes_are_converted(
    server: Server, bundles: list[Bundle]
) -> None:
    obs64 = OBS.astype(np.float64)
    client = triton(server)
    try:
        tensor = http.InferInput("observations", list(obs64.shape), "FP64")
        tensor.set_data_from_numpy(obs64, binary_data=True)
        result = client.infer(MODEL, [tensor], outputs=[http.InferRequestedOutput("actions")])
    finally:
        client.close()
    np.testing.assert_array_equal(result.as_numpy("actions"), bundles[0].runtime.predict(OBS))


def test_client_errors_are_reported(server: Server) -> None:
    client = triton(server)
    try:
        with pytest.raises(InferenceServerException, match="observations"):
            client.infer(MODEL, inputs(True, obs=OBS[:, :-1])[:1])
        with pytest.raises(InferenceServerException, match="nope"):
            client.infer("nope", inputs(True))
    finally:
        client.close()

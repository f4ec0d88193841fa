"""The Open Inference Protocol over gRPC against a real server, driven by the stock Triton client
(`tritonclient.grpc`): health, metadata, every output of production and a named version equal to
the REST API's answers, typed and raw inputs, reproducible sampling, bad requests answered with
the REST API's message and the matching status code, the API key, metrics, and two processes
sharing one gRPC port."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from service.core.settings import Settings
from tests.conftest import ACTION_SIZE, OBS_SIZE
from tests.service.serving import (
    API_KEY,
    MODEL,
    REPO,
    Bundle,
    Server,
    fill_store,
    free_port,
    running_server,
)

pytestmark = pytest.mark.e2e

RNG = np.random.default_rng(23)
OBS = (RNG.normal(size=(4, OBS_SIZE)) * 2).astype(np.float32)
ACT = RNG.uniform(-2, 3, size=(4, ACTION_SIZE)).astype(np.float32)
OUTPUTS = ("actions", "sampled_actions", "q_values", "values", "stds")
KEY = {"x-api-key": API_KEY}
HTTP_KEY = {"X-API-Key": API_KEY}


class GrpcServer:
    def __init__(self, server: Server, port: int) -> None:
        self.http = server
        self.address = f"127.0.0.1:{port}"

    def client(self) -> triton.InferenceServerClient:
        return triton.InferenceServerClient(self.address)


@pytest.fixture(scope="module")
def served(bundles: list[Bundle], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcServer]:
    """`pendulum` 1 (production) and 2; inference needs API_KEY, on both protocols."""
    store = tmp_path_factory.mktemp("grpc") / "store"
    fill_store(store, bundles)
    port = free_port()
    env = {
        "BEAR_API_KEYS": API_KEY,
        "BEAR_REQUIRE_KEY_FOR_INFERENCE": "true",
        "BEAR_MAX_BATCH": "64",
        "BEAR_MAX_BODY_BYTES": str(64 * 1024),
        "BEAR_GRPC_PORT": str(port),
    }
    with running_server(store, **env) as server:
        yield GrpcServer(server, port)


@pytest.fixture()
def client(served: GrpcServer) -> Iterator[triton.InferenceServerClient]:
    with served.client() as c:
        yield c


def inputs(obs: np.ndarray | None = OBS, act: np.ndarray | None = ACT) -> list[triton.InferInput]:
    made = []
    for name, array in (("observations", obs), ("actions", act)):
        if array is not None:
            tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            made.append(tensor)
    return made


def rest_inputs(obs: np.ndarray | None = OBS, act: np.ndarray | None = ACT) -> list[Any]:
    return [
        {"name": name, "shape": list(array.shape), "datatype": np_to_triton_dtype(array.dtype),
         "data": array.ravel().tolist()}
        for name, array in (("observations", obs), ("actions", act))
        if array is not None
    ]  # fmt: skip


def rest_infer(served: GrpcServer, body: dict[str, Any], version: str | None = None) -> Any:
    path = f"/v2/models/{MODEL}" + (f"/versions/{version}" if version else "") + "/infer"
    with served.http.client(headers=HTTP_KEY) as http:
        return http.post(path, json=body)


def rest_body(outputs: tuple[str, ...] = OUTPUTS, seed: int | None = 5) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": rest_inputs(),
        "outputs": [{"name": name} for name in outputs],
    }
    if seed is not None:
        body["parameters"] = {"seed": seed}
    return body


def test_health_and_metadata_match_the_rest_api(
    served: GrpcServer, client: triton.InferenceServerClient
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "2")
    with served.http.client() as http:
        rest_server = http.get("/v2").json()
        rest_model = http.get(f"/v2/models/{MODEL}/versions/2").json()
    server = client.get_server_metadata()
    assert (server.name, server.version, list(server.extensions)) == (
        rest_server["name"],
        rest_server["version"],
        rest_server["extensions"],
    )
    model = client.get_model_metadata(MODEL, "2")
    assert (model.name, list(model.versions), model.platform) == (
        MODEL,
        ["1", "2"],
        rest_model["platform"],
    )
    for side in ("inputs", "outputs"):
        tensors = [(t.name, t.datatype, list(t.shape)) for t in getattr(model, side)]
        assert tensors == [(t["name"], t["datatype"], t["shape"]) for t in rest_model[side]]


@pytest.mark.parametrize("version", [None, "2"], ids=["production", "version2"])
def test_every_output_equals_the_rest_answer(
    served: GrpcServer,
    client: triton.InferenceServerClient,
    bundles: list[Bundle],
    version: str | None,
) -> None:
    result = client.infer(
        MODEL,
        inputs(),
        model_version=version or "",
        outputs=[triton.InferRequestedOutput(name) for name in OUTPUTS],
        request_id="grpc-1",
        parameters={"seed": 5},
        headers=KEY,
    )
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (
        MODEL,
        version or "1",
        "grpc-1",
    )
    assert [o.name for o in response.outputs] == list(OUTPUTS)
    assert all(o.datatype == "FP32" for o in response.outputs)
    rest = rest_infer(served, rest_body(), version)
    assert rest.status_code == 200, rest.text
    for output in rest.json()["outputs"]:
        got = result.as_numpy(output["name"])
        assert list(got.shape) == output["shape"]
        np.testing.assert_array_equal(got.ravel(), np.float32(output["data"]))
    runtime = bundles[int(version or "1") - 1].runtime
    values, stds = runtime.predict_value(OBS, ACT, with_std=True)
    np.testing.assert_array_equal(result.as_numpy("actions"), runtime.predict(OBS))
    np.testing.assert_array_equal(
        result.as_numpy("sampled_actions"), runtime.sample_action(OBS, seed=5)
    )
    np.testing.assert_array_equal(result.as_numpy("q_values"), runtime.predict_q(OBS, ACT))
    np.testing.assert_array_equal(result.as_numpy("values"), values)
    np.testing.assert_array_equal(result.as_numpy("stds"), stds)


def test_outputs_are_the_ones_asked_for(
    client: triton.InferenceServerClient, bundles: list[Bundle]
) -> None:
    default = client.infer(MODEL, inputs(act=None), headers=KEY)
    assert [o.name for o in default.get_response().outputs] == ["actions"]
    np.testing.assert_array_equal(default.as_numpy("actions"), bundles[0].runtime.predict(OBS))
    picked = client.infer(
        MODEL,
        inputs(),
        outputs=[triton.InferRequestedOutput("stds"), triton.InferRequestedOutput("values")],
        headers=KEY,
    )
    assert [o.name for o in picked.get_response().outputs] == ["stds", "values"]
    assert picked.as_numpy("actions") is None


def test_the_same_seed_samples_the_same_actions(client: triton.InferenceServerClient) -> None:
    def sample(seed: int) -> np.ndarray:
        result = client.infer(
            MODEL,
            inputs(act=None),
            outputs=[triton.InferRequestedOutput("sampled_actions")],
            parameters={"seed": seed},
            headers=KEY,
        )
        return result.as_numpy("sampled_actions")

    np.testing.assert_array_equal(sample(7), sample(7))
    assert not np.array_equal(sample(7), sample(8))


def _policy_rows(served: GrpcServer) -> float:
    with served.http.client() as http:
        text = http.get("/metrics").text
    label = f'bear_inference_rows_total{{graph="policy",model="{MODEL}",version="1"}} '
    return next(
        (float(line[len(label) :]) for line in text.splitlines() if line.startswith(label)), 0.0
    )


@pytest.mark.parametrize("rows", [1, 5, 64])
def test_plain_calls_answer_as_the_general_path(
    served: GrpcServer, client: triton.InferenceServerClient, bundles: list[Bundle], rows: int
) -> None:
    """Only `observations` asking for `actions` (or nothing) takes the direct path; adding the
    critic outputs takes the general one. Both give the runtime's actions, counted once."""
    obs = (RNG.normal(size=(rows, OBS_SIZE)) * 2).astype(np.float32)
    act = RNG.uniform(-2, 3, size=(rows, ACTION_SIZE)).astype(np.float32)
    expected = bundles[0].runtime.predict(obs)
    before = _policy_rows(served)
    for outputs in ([], ["actions"]):
        plain = client.infer(
            MODEL,
            inputs(obs, None),
            outputs=[triton.InferRequestedOutput(name) for name in outputs],
            request_id="plain",
            headers=KEY,
        )
        response = plain.get_response()
        assert (response.model_name, response.model_version, response.id) == (MODEL, "1", "plain")
        assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
            ("actions", "FP32", [rows, ACTION_SIZE])
        ]
        np.testing.assert_array_equal(plain.as_numpy("actions"), expected)
    general = client.infer(
        MODEL,
        inputs(obs, act),
        outputs=[triton.InferRequestedOutput("actions"), triton.InferRequestedOutput("values")],
        headers=KEY,
    )
    np.testing.assert_array_equal(general.as_numpy("actions"), expected)
    assert _policy_rows(served) == before + 3 * rows


def test_plain_calls_with_bad_observations_get_the_general_answer(
    client: triton.InferenceServerClient,
) -> None:
    """Refused on the direct path, the same observations get the general path's status and
    message (which the tests above tie to the REST API's)."""
    cases = {
        "not finite": np.where(np.arange(OBS.size).reshape(OBS.shape) == 3, np.inf, OBS),
        "wrong width": OBS[:, :-1],
        "no rows": OBS[:0],
    }
    for case, obs in cases.items():
        obs = obs.astype(np.float32)
        act = ACT[: len(obs)]
        errors = []
        for tensors, outputs in [
            (inputs(obs, None), ["actions"]),
            (inputs(obs, act), ["actions", "values"]),
        ]:
            with pytest.raises(InferenceServerException) as raised:
                client.infer(
                    MODEL,
                    tensors,
                    outputs=[triton.InferRequestedOutput(name) for name in outputs],
                    headers=KEY,
                )
            errors.append((raised.value.status(), raised.value.message()))
        assert errors[0] == errors[1], case
        assert errors[0][0] == "StatusCode.INVALID_ARGUMENT", case
        assert errors[0][1].startswith("inputs[observations]"), errors[0]


def test_typed_contents_and_other_datatypes(served: GrpcServer, bundles: list[Bundle]) -> None:
    expected = bundles[0].runtime.predict(OBS)
    with served.client() as client:
        fp64 = client.infer(MODEL, inputs(OBS.astype(np.float64), None), headers=KEY)
    np.testing.assert_array_equal(fp64.as_numpy("actions"), expected)

    whole = np.round(OBS).astype(np.int64)
    typed = [
        ("FP32", "fp32_contents", OBS, bundles[0].runtime.predict(OBS)),
        ("INT64", "int64_contents", whole, bundles[0].runtime.predict(whole.astype(np.float32))),
        ("INT32", "int_contents", whole, bundles[0].runtime.predict(whole.astype(np.float32))),
    ]
    with grpc.insecure_channel(served.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for datatype, field, values, want in typed:
            request = service_pb2.ModelInferRequest(model_name=MODEL)
            tensor = request.inputs.add(name="observations", datatype=datatype, shape=OBS.shape)
            getattr(tensor.contents, field).extend(values.ravel().tolist())
            response = stub.ModelInfer(request, metadata=tuple(KEY.items()))
            got = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(want.shape)
            np.testing.assert_array_equal(got, want, err_msg=datatype)


def _stub_error(served: GrpcServer, request: service_pb2.ModelInferRequest) -> grpc.RpcError:
    with grpc.insecure_channel(served.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(request, metadata=tuple(KEY.items()))
    return raised.value


def _raw_request(obs_bytes: bytes, contents: bool = False) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="observations", datatype="FP32", shape=OBS.shape)
    if contents:
        tensor.contents.fp32_contents.extend(OBS.ravel().tolist())
    request.raw_input_contents.append(obs_bytes)
    return request


def test_raw_and_typed_contents_misused(served: GrpcServer) -> None:
    raw = OBS.tobytes()
    cases = [
        (_raw_request(raw[:-4]), f"inputs[observations].raw_input_contents: {len(raw) - 4} bytes"),
        (_raw_request(raw, contents=True), "give contents.fp32_contents or raw_input_contents"),
    ]
    two_raw = _raw_request(raw)
    two_raw.raw_input_contents.append(raw)
    cases.append((two_raw, "raw_input_contents: 2 entries for 1 inputs"))
    fp16 = service_pb2.ModelInferRequest(model_name=MODEL)
    fp16.inputs.add(name="observations", datatype="FP16", shape=OBS.shape).contents.SetInParent()
    cases.append((fp16, "FP16 has no typed contents"))
    for request, message in cases:
        error = _stub_error(served, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (error.details() or ""), error.details()


def test_a_message_over_the_body_limit_is_refused(served: GrpcServer) -> None:
    error = _stub_error(served, _raw_request(bytes(64 * 1024 + 1)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# case: (model, version, observations, actions, outputs, seed, status code)
BAD: dict[str, tuple[str, str, Any, Any, tuple[str, ...], int | None, str]] = {
    "unknown model": ("nope", "", OBS, ACT, ("actions",), None, "NOT_FOUND"),
    "unknown version": (MODEL, "9", OBS, ACT, ("actions",), None, "NOT_FOUND"),
    "invalid version": (MODEL, "v1", OBS, ACT, ("actions",), None, "INVALID_ARGUMENT"),
    "wrong shape": (MODEL, "", OBS[:, :-1], ACT, ("actions",), None, "INVALID_ARGUMENT"),
    "wrong datatype": (MODEL, "", OBS > 0, ACT, ("actions",), None, "INVALID_ARGUMENT"),
    "missing input": (MODEL, "", None, ACT, ("actions",), None, "INVALID_ARGUMENT"),
    "critic output without actions": (
        MODEL, "", OBS, None, ("values",), None, "INVALID_ARGUMENT"),
    "unknown output": (MODEL, "", OBS, ACT, ("logits",), None, "INVALID_ARGUMENT"),
    "negative seed": (MODEL, "", OBS, ACT, ("sampled_actions",), -1, "INVALID_ARGUMENT"),
    "too many rows": (
        MODEL, "", np.zeros((65, OBS_SIZE), np.float32), None, ("actions",), None,
        "INVALID_ARGUMENT"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_the_rest_message_and_a_status_code(
    served: GrpcServer, client: triton.InferenceServerClient, case: str
) -> None:
    model, version, obs, act, outputs, seed, code = BAD[case]
    with pytest.raises(InferenceServerException) as raised:
        client.infer(
            model,
            inputs(obs, act),
            model_version=version,
            outputs=[triton.InferRequestedOutput(name) for name in outputs],
            parameters=None if seed is None else {"seed": seed},
            headers=KEY,
        )
    assert raised.value.status() == f"StatusCode.{code}"
    body: dict[str, Any] = {
        "inputs": rest_inputs(obs, act),
        "outputs": [{"name": name} for name in outputs],
    }
    if seed is not None:
        body["parameters"] = {"seed": seed}
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    with served.http.client(headers=HTTP_KEY) as http:
        rest = http.post(path, json=body)
    assert rest.status_code == (404 if code == "NOT_FOUND" else 400), rest.text
    if case == "invalid version":  # the REST API refuses it by its path pattern
        assert raised.value.message() == "version 'v1' must be a positive integer like '1'"
    else:
        assert raised.value.message() == rest.json()["error"]


def test_inference_needs_the_api_key(client: triton.InferenceServerClient) -> None:
    for headers, message in [
        (None, "missing X-API-Key header"),
        ({"x-api-key": "wrong-key-0123"}, "X-API-Key is not valid"),
    ]:
        with pytest.raises(InferenceServerException) as raised:
            client.infer(MODEL, inputs(act=None), headers=headers)
        assert raised.value.status() == "StatusCode.UNAUTHENTICATED"
        assert raised.value.message() == message
    assert client.is_model_ready(MODEL)  # metadata and readiness need no key, as over REST


def _grpc_calls(server: Server) -> dict[tuple[str, str], float]:
    with server.client() as http:
        text = http.get("/metrics").text
    pattern = re.compile(
        r'^bear_requests_total\{method="GRPC",route="/inference\.GRPCInferenceService/(\w+)",'
        r'status="(\w+)"\} (\S+)$',
        re.MULTILINE,
    )
    return {(method, status): float(n) for method, status, n in pattern.findall(text)}


def test_calls_are_counted_and_timed_by_method_and_status(
    served: GrpcServer, client: triton.InferenceServerClient
) -> None:
    before = _grpc_calls(served.http)
    client.infer(MODEL, inputs(act=None), headers=KEY)
    with pytest.raises(InferenceServerException):
        client.infer("nope", inputs(act=None), headers=KEY)
    after = _grpc_calls(served.http)
    for key in [("ModelInfer", "OK"), ("ModelInfer", "NOT_FOUND")]:
        assert after[key] == before.get(key, 0) + 1, (key, after)
    with served.http.client() as http:
        text = http.get("/metrics").text
    assert (
        'bear_request_duration_seconds_count{route="/inference.GRPCInferenceService/ModelInfer"}'
        in text
    )


@pytest.mark.slow
def test_two_processes_serve_one_grpc_port(served: GrpcServer) -> None:
    port = served.address.rsplit(":", 1)[1]
    env = {"BEAR_API_KEYS": API_KEY, "BEAR_GRPC_PORT": port}
    with running_server(served.http.store, **env) as second:
        before = [sum(_grpc_calls(s).values()) for s in (served.http, second)]
        for _ in range(24):  # a new connection each: the kernel spreads them over both
            with served.client() as client:
                assert client.is_server_live()
        after = [sum(_grpc_calls(s).values()) for s in (served.http, second)]
    assert after[0] > before[0] and after[1] > before[1], (before, after)


COMPARE = textwrap.dedent(
    """
    import importlib, json, sys
    from google.protobuf import descriptor_pb2
    module = importlib.import_module(sys.argv[1])
    file = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(file)
    print(json.dumps({
        "package": file.package,
        "messages": {m.name: m.SerializeToString().hex() for m in file.message_type},
        "methods": {m.name: [m.input_type, m.output_type] for s in file.service
                    for m in s.method if s.name == "GRPCInferenceService"},
    }))
    """
)


def _descriptors(module: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", COMPARE, module],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    described: dict[str, Any] = json.loads(out)
    return described


def test_messages_are_those_of_the_published_protocol() -> None:
    """Every message and method of the service's proto is Triton's, field for field (compared
    in separate processes: both define package `inference` in the default descriptor pool)."""
    ours = _descriptors("service.inference.oip_grpc.grpc_service_pb2")
    theirs = _descriptors("tritonclient.grpc.service_pb2")
    assert ours["package"] == theirs["package"] == "inference"
    assert len(ours["messages"]) == 14 and len(ours["methods"]) == 6
    for name, described in ours["messages"].items():
        assert described == theirs["messages"][name], name
    for name, types in ours["methods"].items():
        assert types == theirs["methods"][name], name


def test_the_grpc_port_setting() -> None:
    assert Settings().grpc_port == 8001
    assert Settings(grpc_port=" ").grpc_port is None
    with pytest.raises(ValueError, match="grpc_port must differ from port"):
        Settings(port=9000, grpc_port=9000)

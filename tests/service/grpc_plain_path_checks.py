"""gRPC's direct path for plain ModelInfer calls (`InferenceService._plain_actions`), in process:
which calls it takes (and every near miss it leaves to the general path), its answer against the
runtime's, and BEAR_FAST_PREDICT=false sending every call the general way.

These build the service's own messages, whose protobuf package (`inference`) is also
`tritonclient.grpc`'s, which other test modules import: one process cannot hold both, so
`test_grpc_plain_path.py` runs this file in a pytest of its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from service.core.access_log import AccessLog
from service.core.busy_poll import BusyPoll
from service.core.prometheus import Metrics
from service.core.settings import Settings
from service.inference.grpc_server import InferenceService, _Call
from service.inference.oip_grpc import grpc_service_pb2 as pb
from service.inference.served_model import Execution, ServedModel
from tests.conftest import OBS_SIZE
from tests.service.serving import MODEL, Bundle

OBS = np.random.default_rng(5).normal(size=(3, OBS_SIZE)).astype(np.float32)


class Models:
    """The registry as the service sees it: one production version."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served

    def production(self, name: str | None = None) -> ServedModel:
        return self.served

    def cached(self, name: str, version: str) -> ServedModel | None:
        return self.served

    def load(self, name: str, version: str) -> ServedModel:
        return self.served

    def versions(self, name: str) -> list[str]:
        return ["1"]

    def ready(self) -> bool:
        return True


def _service(bundle: Bundle, **settings: Any) -> tuple[InferenceService, ServedModel]:
    metrics = Metrics()
    served = ServedModel(MODEL, "1", bundle.runtime, Execution(batching=True), metrics)
    logger = logging.getLogger("test.grpc.plain")
    service = InferenceService(
        Models(served), Settings(**settings), metrics, logger, AccessLog(logger), BusyPoll(0)
    )
    return service, served


def plain(obs: np.ndarray = OBS) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL, id="a")
    request.inputs.add(name="observations", datatype="FP32", shape=obs.shape)
    request.raw_input_contents.append(obs.tobytes())
    return request


def _with_output(name: str) -> pb.ModelInferRequest:
    request = plain()
    request.outputs.add(name=name)
    return request


def _typed() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="observations", datatype="FP32", shape=OBS.shape)
    tensor.contents.fp32_contents.extend(OBS.ravel().tolist())
    return request


def _fp64() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="observations", datatype="FP64", shape=OBS.shape)
    request.raw_input_contents.append(OBS.astype(np.float64).tobytes())
    return request


def _with_actions() -> pb.ModelInferRequest:
    request = plain()
    request.inputs.add(name="actions", datatype="FP32", shape=[3, 1])
    request.raw_input_contents.append(np.zeros((3, 1), np.float32).tobytes())
    return request


def _short_bytes() -> pb.ModelInferRequest:
    request = plain()
    request.raw_input_contents[0] = OBS.tobytes()[:-4]
    return request


def _not_finite() -> pb.ModelInferRequest:
    obs = OBS.copy()
    obs[1, 0] = np.inf
    return plain(obs)


NOT_PLAIN: dict[str, Callable[[], pb.ModelInferRequest]] = {
    "another output": lambda: _with_output("values"),
    "typed contents": _typed,
    "another datatype": _fp64,
    "a second input": _with_actions,
    "bytes short of the shape": _short_bytes,
    "more rows than the hot path takes": lambda: plain(np.zeros((65, OBS_SIZE), np.float32)),
    "no rows": lambda: plain(OBS[:0]),
    "a wrong width": lambda: plain(np.zeros((3, OBS_SIZE + 1), np.float32)),
    "not finite": _not_finite,
}


def test_plain_answers_equal_the_general_paths(bundles: list[Bundle]) -> None:
    """The direct path's answer, serialized as it is sent, reads as the very message the
    general path answers the same call with: the runtime's actions."""
    service, served = _service(bundles[0])
    general, _ = _service(bundles[0], fast_predict=False)
    for request in (plain(), _with_output("actions"), plain(OBS[:1]), plain(OBS[:2])):
        request.id = f"call-{len(request.raw_input_contents[0])}"
        wire = service._plain_actions(request, served)
        assert isinstance(wire, bytes)
        answer = pb.ModelInferResponse.FromString(wire)
        expected = asyncio.run(general._model_infer(request, None, _Call()))  # type: ignore[arg-type]
        assert answer == expected
        assert (answer.model_name, answer.model_version, answer.id) == (MODEL, "1", request.id)
        rows = request.inputs[0].shape[0]
        assert [(o.name, o.datatype, list(o.shape)) for o in answer.outputs] == [
            ("actions", "FP32", [rows, bundles[0].runtime.action_size])
        ]
        got = np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(rows, -1)
        np.testing.assert_array_equal(got, bundles[0].runtime.predict(OBS[:rows]))


@pytest.mark.parametrize("case", list(NOT_PLAIN))
def test_every_near_miss_takes_the_general_path(bundles: list[Bundle], case: str) -> None:
    service, served = _service(bundles[0])
    assert service._plain_actions(NOT_PLAIN[case](), served) is None


def test_the_ood_default_sends_unnamed_outputs_the_general_way(bundles: list[Bundle]) -> None:
    """With BEAR_OOD_DEFAULT a call that names no output also wants the flag, where the model
    has a detector: the general path answers it; one that asks for `actions` alone is plain."""
    service, served = _service(bundles[0], ood_default=True)
    assert bundles[0].runtime.ood is not None
    assert service._plain_actions(plain(), served) is None
    assert service._plain_actions(_with_output("actions"), served) is not None


def test_fast_predict_off_sends_every_call_the_general_way(bundles: list[Bundle]) -> None:
    service, served = _service(bundles[0], fast_predict=False)
    taken: list[str] = []
    general = served.predict

    def direct(observations: np.ndarray) -> np.ndarray:
        raise AssertionError("the direct path ran")

    async def counted(observations: np.ndarray) -> np.ndarray:
        taken.append("general")
        return await general(observations)

    served.predict_now = direct  # type: ignore[method-assign]
    served.predict = counted  # type: ignore[method-assign]
    answer = asyncio.run(service._model_infer(plain(), None, _Call()))  # type: ignore[arg-type]
    assert taken == ["general"]
    got = np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(3, -1)
    np.testing.assert_array_equal(got, bundles[0].runtime.predict(OBS))

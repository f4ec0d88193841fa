"""The Open Inference Protocol v2 over gRPC: KServe / Triton's `inference.GRPCInferenceService`
(ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer), which stock
clients (`tritonclient.grpc`) call. A grpc.aio server on the app's event loop, started by the
app's lifespan when BEAR_GRPC_PORT is set; it serves the app's registry, so promotions,
deletions and loaded versions are the REST API's, and answers through the same functions
(`oip_infer`): same models, versions, inputs, outputs and error messages.

ModelInfer takes each input as a `raw_input_contents` entry (little-endian bytes, one per input
in the order of `inputs`: what Triton's client sends) or as typed `contents` (`fp32_contents`
for FP32, `int_contents` for INT8..INT32, and so on; FP16 raw only); outputs go back as
`raw_output_contents` (FP32). Parameter `seed` (an integer) makes `sampled_actions`
reproducible. With BEAR_REQUIRE_KEY_FOR_INFERENCE, ModelInfer needs the `x-api-key` metadata
the REST API needs as a header.

Errors carry the REST API's message with a status code: INVALID_ARGUMENT for a bad request,
NOT_FOUND for an unknown model or version, UNAVAILABLE for a stored version that cannot load,
UNAUTHENTICATED for a missing or wrong API key, RESOURCE_EXHAUSTED for a message over
BEAR_MAX_BODY_BYTES; methods not listed above answer UNIMPLEMENTED.

Every call is counted in `bear_requests{route="/inference.GRPCInferenceService/<method>",
method="GRPC", status="<status code>"}`, its time in the server in
`bear_request_duration_seconds{route=...}`, and written to the access log as HTTP requests are;
the record is made on the event loop's next turn, once the answer is on its way, so it adds
nothing to the call's latency.

The commonest call, greedy actions for one raw FP32 `observations` input of a few rows, is
answered directly (`_plain_actions`, with BEAR_FAST_PREDICT, the default): one check of the
observations, the policy graph run at once (micro-batching measured no gain over gRPC), and no
detour through the general decoding. Any other call, or one whose observations are refused,
takes the general path, which answers it with the REST API's errors.

Several processes may serve one port: gRPC listens with SO_REUSEPORT (its default on Linux), so
the kernel spreads connections over uvicorn's workers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import anyio.to_thread
import grpc
import grpc.aio
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message
from prometheus_client import Counter

from service.core.access_log import AccessLog
from service.core.busy_poll import BusyPoll
from service.core.http_errors import InvalidBundle, InvalidInput, NotFound, ServiceError
from service.core.prometheus import Metrics
from service.core.security import key_problem
from service.core.settings import Settings
from service.inference import oip_infer
from service.inference.fast_predict import FAST_ROWS
from service.inference.model_resolvers import ModelSource, find_model
from service.inference.oip_grpc import grpc_service_pb2 as pb
from service.inference.served_model import ServedModel

SERVICE = "inference.GRPCInferenceService"
STOP_GRACE_S = 5.0
# The typed `contents` field of each input datatype (FP16 has none: raw only).
CONTENTS = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
}

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message | bytes)  # bytes: an answer already serialized
Context = grpc.aio.ServicerContext[Any, Any]


class InferenceModels(ModelSource, Protocol):
    """The app's registry as the gRPC service sees it: model lookups and readiness."""

    def ready(self) -> bool:
        """Whether every production model loaded."""
        ...


class Unauthenticated(ServiceError):
    status_code = 401


_CODES: dict[type[ServiceError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidBundle: grpc.StatusCode.UNAVAILABLE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}


def status_code(error: ServiceError) -> grpc.StatusCode:
    """The gRPC status of one of the service's errors (INVALID_ARGUMENT when none is closer)."""
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.INVALID_ARGUMENT


class _Call:
    """What one call resolved, for its log line."""

    __slots__ = ("served",)

    def __init__(self) -> None:
        self.served: ServedModel | None = None


class InferenceService:
    """The service's methods, each a coroutine from request to response that raises the
    service's errors; `handlers` wraps them with status codes, metrics and logs."""

    def __init__(
        self,
        models: InferenceModels,
        settings: Settings,
        metrics: Metrics,
        logger: logging.Logger,
        access_log: AccessLog,
        busy_poll: BusyPoll,
    ) -> None:
        self._models = models
        self._max_batch = settings.max_batch
        self._plain_rows = min(FAST_ROWS, settings.max_batch) if settings.fast_predict else 0
        self._ood_default = settings.ood_default
        self._keys = settings.api_keys if settings.require_key_for_inference else None
        self._metrics = metrics
        self._log = logger
        self._access_log = access_log
        self._busy_poll = busy_poll

    def handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        """Each method's handler, by its name in the service."""
        methods: dict[str, Callable[[Any, Context, _Call], Awaitable[Message | bytes]]] = {
            "ServerLive": self._server_live,
            "ServerReady": self._server_ready,
            "ModelReady": self._model_ready,
            "ServerMetadata": self._server_metadata,
            "ModelMetadata": self._model_metadata,
            "ModelInfer": self._model_infer,
        }
        return {
            name: self._handler(name, run, getattr(pb, f"{name}Request"))
            for name, run in methods.items()
        }

    async def _server_live(
        self, request: pb.ServerLiveRequest, context: Context, call: _Call
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def _server_ready(
        self, request: pb.ServerReadyRequest, context: Context, call: _Call
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._models.ready())

    async def _model_ready(
        self, request: pb.ModelReadyRequest, context: Context, call: _Call
    ) -> pb.ModelReadyResponse:
        call.served = await find_model(self._models, request.name, request.version or None)
        return pb.ModelReadyResponse(ready=True)

    async def _server_metadata(
        self, request: pb.ServerMetadataRequest, context: Context, call: _Call
    ) -> pb.ServerMetadataResponse:
        metadata = oip_infer.server_metadata().model_dump()
        return json_format.ParseDict(metadata, pb.ServerMetadataResponse())

    async def _model_metadata(
        self, request: pb.ModelMetadataRequest, context: Context, call: _Call
    ) -> pb.ModelMetadataResponse:
        served = call.served = await find_model(self._models, request.name, request.version or None)
        versions = await anyio.to_thread.run_sync(self._models.versions, served.name)
        metadata = oip_infer.model_metadata(served, versions).model_dump()
        return json_format.ParseDict(metadata, pb.ModelMetadataResponse())

    async def _model_infer(
        self, request: pb.ModelInferRequest, context: Context, call: _Call
    ) -> pb.ModelInferResponse | bytes:
        if self._keys is not None:
            self._authenticate(context, self._keys)
        served = call.served = await find_model(
            self._models, request.model_name, request.model_version or None
        )
        plain = self._plain_actions(request, served) if self._plain_rows else None
        if plain is not None:
            return plain
        tensors = request.inputs
        wanted = oip_infer.check_names(
            [tensor.name for tensor in tensors],
            [output.name for output in request.outputs],
            served.wants_ood(None, self._ood_default),
        )
        raw = request.raw_input_contents
        if raw and len(raw) != len(tensors):
            raise InvalidInput(
                f"raw_input_contents: {len(raw)} entries for {len(tensors)} inputs; give one per "
                "input, in the order of inputs (or typed contents for every input)"
            )
        inputs = {
            tensor.name: _tensor(tensor, raw[i] if raw else None)
            for i, tensor in enumerate(tensors)
        }
        seed = _parameter(request.parameters["seed"]) if "seed" in request.parameters else None
        results = await oip_infer.infer(served, inputs, wanted, seed, self._max_batch)
        return _response(request, served, results)

    def _plain_actions(self, request: pb.ModelInferRequest, served: ServedModel) -> bytes | None:
        """The answer to a plain call, computed directly: one `observations` input of float32
        rows as raw contents, at most `_plain_rows` of them, that asks for `actions` (or for
        nothing, where that means `actions` alone). None for any other call, and for
        observations the bundle refuses (not finite): the general path answers those.

        The answer comes serialized, as the answer the general path builds would be: the
        cached head of every answer of this model version and shape (`_actions_head`), then a
        message with the call's id and actions. Protobuf reads two messages written one after
        the other as one message holding the fields of both."""
        tensors, raw, outputs = request.inputs, request.raw_input_contents, request.outputs
        if len(tensors) != 1 or len(raw) != 1 or len(outputs) > 1:
            return None
        tensor = tensors[0]
        if tensor.name != "observations" or tensor.datatype != "FP32":
            return None
        if outputs:
            if outputs[0].name != "actions":
                return None
        elif served.wants_ood(None, self._ood_default):
            return None
        manifest = served.bundle.manifest
        shape = tuple(tensor.shape)
        if (
            manifest.observation_dtype != "float32"
            or shape[1:] != manifest.observation_shape
            or not 0 < shape[0] <= self._plain_rows
            or len(raw[0]) != 4 * math.prod(shape)
            or tensor.HasField("contents")
        ):
            return None
        try:
            actions = served.predict_now(np.frombuffer(raw[0], "<f4").reshape(shape))
        except ValueError:
            return None
        tail = pb.ModelInferResponse(
            id=request.id, raw_output_contents=[oip_infer.output_bytes(actions)]
        )
        return _actions_head(served.name, served.version, actions.shape) + tail.SerializeToString()

    @staticmethod
    def _authenticate(context: Context, keys: list[str]) -> None:
        key = next(
            (v for k, v in context.invocation_metadata() or () if k == "x-api-key"),
            None,
        )
        problem = key_problem(key if isinstance(key, str) else None, keys)
        if problem is not None:
            raise Unauthenticated(problem)

    def _handler(
        self,
        method: str,
        run: Callable[[Req, Context, _Call], Awaitable[Resp]],
        request_type: type[Req],
    ) -> grpc.RpcMethodHandler[Req, Resp]:
        route = f"/{SERVICE}/{method}"
        latency = self._metrics.latency.labels(route)
        requests = self._metrics.requests
        counters: dict[grpc.StatusCode, Counter] = {}  # each status's series, looked up once
        log = self._log
        access_log = self._access_log
        busy_poll = self._busy_poll

        def record(code: grpc.StatusCode, elapsed: float, served: ServedModel | None) -> None:
            counter = counters.get(code)
            if counter is None:
                counter = counters[code] = requests.labels(route, "GRPC", code.name)
            counter.inc()
            latency.observe(elapsed)
            access_log.write(
                "request",
                {
                    "method": "GRPC",
                    "path": route,
                    "route": route,
                    "status": code.name,
                    "duration_ms": round(elapsed * 1000, 3),
                    "model": served and served.name,
                    "version": served and served.version,
                },
            )
            busy_poll.kick()

        async def handle(request: Req, context: Context) -> Resp:
            start = time.perf_counter()
            call = _Call()
            code = grpc.StatusCode.OK
            try:
                return await run(request, context, call)
            except ServiceError as exc:
                code = status_code(exc)
                await context.abort(code, exc.message)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("gRPC call failed", extra={"route": route})
                await context.abort(code, "internal error")
            finally:
                elapsed = time.perf_counter() - start
                asyncio.get_running_loop().call_soon(record, code, elapsed, call.served)

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=request_type.FromString,
            response_serializer=_serialized,
        )


def _serialized(response: Message | bytes) -> bytes:
    """A method's answer on the wire (the plain path's answers come serialized already)."""
    return response if isinstance(response, bytes) else response.SerializeToString()


@functools.lru_cache(maxsize=1024)
def _actions_head(model: str, version: str, shape: tuple[int, ...]) -> bytes:
    """The start of every plain answer of `model` `version` with actions of `shape`,
    serialized: the names and the `actions` output's description."""
    output = pb.ModelInferResponse.InferOutputTensor(name="actions", datatype="FP32", shape=shape)
    return pb.ModelInferResponse(
        model_name=model, model_version=version, outputs=[output]
    ).SerializeToString()


def _response(
    request: pb.ModelInferRequest, served: ServedModel, results: dict[str, np.ndarray]
) -> pb.ModelInferResponse:
    return pb.ModelInferResponse(
        model_name=served.name,
        model_version=served.version,
        id=request.id,
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(
                name=name, datatype=oip_infer.datatype(name), shape=array.shape
            )
            for name, array in results.items()
        ],
        raw_output_contents=[oip_infer.output_bytes(array) for array in results.values()],
    )


def _tensor(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> oip_infer.TensorIn:
    typed = CONTENTS.get(tensor.datatype)
    data = None
    if tensor.HasField("contents"):
        if typed is not None:
            data = getattr(tensor.contents, typed)
        elif tensor.datatype in oip_infer.DATATYPES:
            raise InvalidInput(
                f"inputs[{tensor.name}].contents: {tensor.datatype} has no typed contents; "
                "send raw_input_contents"
            )
    return oip_infer.TensorIn(
        tensor.name,
        tensor.datatype,
        tensor.shape,
        data,
        raw,
        f"contents.{typed}" if typed else "contents",
        "raw_input_contents",
    )


def _parameter(value: pb.InferParameter) -> object:
    choice = value.WhichOneof("parameter_choice")
    return None if choice is None else getattr(value, choice)


async def start_grpc_server(
    models: InferenceModels,
    settings: Settings,
    metrics: Metrics,
    logger: logging.Logger,
    access_log: AccessLog,
    busy_poll: BusyPoll,
    port: int,
) -> grpc.aio.Server:
    """The gRPC service listening on `settings.host`:`port`, started."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", settings.max_body_bytes)])
    service = InferenceService(models, settings, metrics, logger, access_log, busy_poll)
    handlers = service.handlers()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError:
        raise RuntimeError(f"BEAR_GRPC_PORT: cannot listen on {address}") from None
    await server.start()
    logger.info("serving gRPC", extra={"address": address})
    return server

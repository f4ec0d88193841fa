"""Open Inference Protocol v2 (KServe / Triton REST): server and model metadata, model
readiness and inference, answered by `oip_infer` (the inputs, outputs and checks the gRPC
service shares). Outputs are picked with `outputs` (default `actions`). Errors are
`{"error": message}`, with 400 for a bad request.

Bodies are JSON with or without a Content-Type (stock clients send none), or use the binary
tensor data extension (`binary_tensors`), which Triton's client does by default. Inputs may be
any numeric datatype (FP16/32/64, INT8..64, UINT8..64); values are converted to float32.
Outputs are FP32 (`ood`: BOOL), as JSON `data` or, when asked for, raw after the JSON header.
"""

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response

from service.core.api_schemas import error_responses
from service.core.deps import SettingsDep
from service.core.http_errors import InvalidInput
from service.core.security import require_inference_key
from service.core.settings import Settings
from service.inference import oip_infer
from service.inference.binary_tensors import (
    BinaryBodyRoute,
    binary_response,
    binary_tail,
    split_tail,
)
from service.inference.inference_schemas import (
    InferOutput,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelReadiness,
    ServerMetadata,
)
from service.inference.model_resolvers import ModelSourceDep, model_version, named_model
from service.inference.served_model import ServedModel

ERRORS = error_responses(400, 401, 403, 404, 413)

# OIP clients (Triton's among them) send JSON without a Content-Type; inference bodies may use
# the binary tensor data extension.
router = APIRouter(
    prefix="/v2",
    tags=["open inference protocol"],
    responses=ERRORS,
    route_class=BinaryBodyRoute,
    strict_content_type=False,
)


@router.get("", summary="server metadata")
async def server_metadata() -> ServerMetadata:
    return oip_infer.server_metadata()


def _binary_outputs(body: InferRequest, wanted: list[str]) -> list[bool]:
    """Which outputs go back raw: an output's `binary_data`, else the request's
    `binary_data_output`, else JSON."""
    default = (body.parameters or {}).get("binary_data_output", False)
    chosen = {o.name: (o.parameters or {}).get("binary_data", default) for o in body.outputs or []}
    flags = [chosen.get(name, default) for name in wanted]
    if not all(isinstance(flag, bool) for flag in flags):
        raise InvalidInput("parameters: binary_data and binary_data_output must be booleans")
    return [bool(flag) for flag in flags]


async def _infer(
    served: ServedModel, body: InferRequest, settings: Settings, tail: memoryview | None
) -> InferResponse | Response:
    wanted = oip_infer.check_names(
        [tensor.name for tensor in body.inputs],
        [o.name for o in body.outputs or []],
        served.wants_ood(None, settings.ood_default),
    )
    raw = split_tail(
        {
            tensor.name: tensor.parameters["binary_data_size"]
            for tensor in body.inputs
            if tensor.parameters and "binary_data_size" in tensor.parameters
        },
        tail,
    )
    binary = _binary_outputs(body, wanted)
    inputs = {
        tensor.name: oip_infer.TensorIn(
            tensor.name,
            tensor.datatype,
            tensor.shape,
            tensor.data,
            raw.get(tensor.name),
            "data",
            "parameters.binary_data_size",
        )
        for tensor in body.inputs
    }
    seed = (body.parameters or {}).get("seed")
    results = await oip_infer.infer(served, inputs, wanted, seed, settings.max_batch)
    raw_outputs = {
        name: oip_infer.output_bytes(results[name])
        for name, raw_out in zip(wanted, binary, strict=True)
        if raw_out
    }
    response = InferResponse(
        model_name=served.name,
        model_version=served.version,
        id=body.id,
        outputs=[
            InferOutput(
                name=name,
                shape=list(results[name].shape),
                datatype=oip_infer.datatype(name),
                parameters={"binary_data_size": len(raw_outputs[name])}
                if name in raw_outputs
                else None,
                data=None if name in raw_outputs else results[name].ravel().tolist(),
            )
            for name in wanted
        ],
    )
    if not raw_outputs:
        return response
    header = response.model_dump_json(exclude_none=True).encode()
    return binary_response(header, list(raw_outputs.values()))


def _add_model_routes(prefix: str, resolve: Any) -> None:
    Model = Annotated[ServedModel, Depends(resolve)]

    @router.get(prefix, summary="model metadata")
    async def model_metadata(served: Model, models: ModelSourceDep) -> ModelMetadata:
        versions = await anyio.to_thread.run_sync(models.versions, served.name)
        return oip_infer.model_metadata(served, versions)

    @router.get(f"{prefix}/ready", summary="model readiness")
    async def model_ready(served: Model) -> ModelReadiness:
        return ModelReadiness(name=served.name, ready=True)

    @router.post(
        f"{prefix}/infer",
        dependencies=[Depends(require_inference_key)],
        response_model=InferResponse,
        response_model_exclude_none=True,
        responses={200: {"content": {"application/octet-stream": {}}}},
        summary="inference",
    )
    async def infer(
        body: InferRequest, served: Model, settings: SettingsDep, request: Request
    ) -> InferResponse | Response:
        return await _infer(served, body, settings, binary_tail(request))


_add_model_routes("/models/{name}", named_model)
_add_model_routes("/models/{name}/versions/{version}", model_version)

"""Open Inference Protocol v2 (KServe / Triton REST): server and model metadata, model
readiness and inference.

Each model is one OIP model. Inputs: `observations` [-1, *obs] and, for the critic outputs,
`actions` [-1, A]. Outputs (pick with `outputs`; default `actions`): `actions` (greedy),
`sampled_actions` (request parameter `seed` makes them reproducible), `q_values` [-1, K] per
critic, `values` [-1] and `stds` [-1] (mean and std over the critic ensemble). Errors are
`{"error": message}`, with 400 for a bad request.

Bodies are JSON with or without a Content-Type (stock clients send none), or use the binary
tensor data extension (`binary_tensors`), which Triton's client does by default. Inputs may be
any numeric datatype (FP16/32/64, INT8..64, UINT8..64); values are converted to float32.
Outputs are FP32, as JSON `data` or, when asked for, raw after the JSON header.
"""

import math
from typing import Annotated, Any

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Depends, Request, Response

from bear_core.bundle.runtime import value_stats
from service import __version__
from service.core.api_schemas import error_responses
from service.core.deps import SettingsDep
from service.core.http_errors import InvalidInput
from service.core.security import require_inference_key
from service.inference.binary_tensors import (
    BinaryBodyRoute,
    binary_response,
    binary_tail,
    split_tail,
)
from service.inference.inference_schemas import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelReadiness,
    ServerMetadata,
    TensorMetadata,
)
from service.inference.model_resolvers import ModelSourceDep, model_version, named_model
from service.inference.request_arrays import as_batch
from service.inference.served_model import ServedModel

PLATFORM = "onnx_onnxv1"
# Input datatypes and their little-endian numpy types; values are converted to float32, the
# models' input type (the observations of a uint8 model: integers 0..255).
DATATYPES = {
    name: np.dtype(code)
    for name, code in [
        ("FP32", "<f4"),
        ("FP64", "<f8"),
        ("FP16", "<f2"),
        ("UINT8", "u1"),
        ("UINT16", "<u2"),
        ("UINT32", "<u4"),
        ("UINT64", "<u8"),
        ("INT8", "i1"),
        ("INT16", "<i2"),
        ("INT32", "<i4"),
        ("INT64", "<i8"),
    ]
}
OUTPUTS = ("actions", "sampled_actions", "q_values", "values", "stds")
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
    return ServerMetadata(name="bear-serve", version=__version__, extensions=["binary_tensor_data"])


def _metadata(served: ServedModel, versions: list[str]) -> ModelMetadata:
    obs = [-1, *served.bundle.observation_shape]
    actions = [-1, served.bundle.action_size]
    obs_type = "UINT8" if served.bundle.manifest.observation_dtype == "uint8" else "FP32"
    return ModelMetadata(
        name=served.name,
        versions=versions,
        platform=PLATFORM,
        inputs=[
            TensorMetadata(name="observations", datatype=obs_type, shape=obs),
            TensorMetadata(name="actions", datatype="FP32", shape=actions),
        ],
        outputs=[
            TensorMetadata(name="actions", datatype="FP32", shape=actions),
            TensorMetadata(name="sampled_actions", datatype="FP32", shape=actions),
            TensorMetadata(name="q_values", datatype="FP32", shape=[-1, served.bundle.n_critics]),
            TensorMetadata(name="values", datatype="FP32", shape=[-1]),
            TensorMetadata(name="stds", datatype="FP32", shape=[-1]),
        ],
    )


def _tensor(
    tensor: InferInput,
    raw: memoryview | None,
    row_shape: tuple[int, ...],
    dtype: str,
    max_rows: int,
    rows: int | None = None,
) -> np.ndarray:
    """The input as a validated batch, from its JSON `data` or its binary bytes (`raw`). Sizes
    are Python ints: a shape whose element count overflows int64 is refused, not wrapped."""
    field = f"inputs[{tensor.name}]"
    element = DATATYPES.get(tensor.datatype)
    if element is None:
        raise InvalidInput(f"{field}.datatype: must be one of {list(DATATYPES)}")
    shape = tensor.shape
    if len(shape) != 1 + len(row_shape) or any(d < 1 for d in shape):
        raise InvalidInput(f"{field}.shape: must be [N, {', '.join(map(str, row_shape))}]")
    if shape[0] > max_rows:
        raise InvalidInput(f"{field}.shape: at most {max_rows} rows per request, got {shape[0]}")
    count = math.prod(shape)
    if raw is not None:
        if tensor.data is not None:
            raise InvalidInput(f"{field}: give data or parameters.binary_data_size, not both")
        expected = count * element.itemsize
        if len(raw) != expected:
            raise InvalidInput(
                f"{field}.parameters.binary_data_size: {len(raw)} bytes, but shape {shape} of "
                f"{tensor.datatype} takes {expected}"
            )
        data = np.frombuffer(raw, dtype=element)
    else:
        if tensor.data is None:
            raise InvalidInput(f"{field}.data: required (or parameters.binary_data_size)")
        try:
            data = np.asarray(tensor.data)
        except ValueError:
            data = np.asarray([])  # ragged nesting: refused below
        if data.dtype.kind not in "iuf" or data.size != count:
            raise InvalidInput(f"{field}.data: must hold {count} numbers for shape {shape}")
    return as_batch(data.reshape(shape), f"{field}.data", row_shape, dtype, max_rows, rows)


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(f"{what}: {name!r} is given more than once")
        seen.add(name)


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
    served: ServedModel, body: InferRequest, max_batch: int, tail: memoryview | None
) -> InferResponse | Response:
    _unique([tensor.name for tensor in body.inputs], "inputs")
    inputs = {tensor.name: tensor for tensor in body.inputs}
    unknown = set(inputs) - {"observations", "actions"}
    if unknown or "observations" not in inputs:
        raise InvalidInput("inputs: expected 'observations' (and 'actions' for critic outputs)")
    raw = split_tail(
        {
            tensor.name: tensor.parameters["binary_data_size"]
            for tensor in body.inputs
            if tensor.parameters and "binary_data_size" in tensor.parameters
        },
        tail,
    )
    wanted = [o.name for o in body.outputs] if body.outputs else ["actions"]
    _unique(wanted, "outputs")
    for name in wanted:
        if name not in OUTPUTS:
            raise InvalidInput(f"outputs: unknown output {name!r}; this model has {list(OUTPUTS)}")
    binary = _binary_outputs(body, wanted)
    manifest = served.bundle.manifest
    obs = _tensor(
        inputs["observations"],
        raw.get("observations"),
        manifest.observation_shape,
        manifest.observation_dtype,
        max_batch,
    )
    results: dict[str, np.ndarray] = {}
    if "actions" in wanted:
        results["actions"] = await served.predict(obs)
    if "sampled_actions" in wanted:
        seed = (body.parameters or {}).get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise InvalidInput("parameters.seed: must be a non-negative integer")
        results["sampled_actions"] = await served.sample(obs, seed)
    if {"q_values", "values", "stds"} & set(wanted):
        if "actions" not in inputs:
            raise InvalidInput("inputs: 'actions' is required for q_values, values and stds")
        act = _tensor(
            inputs["actions"],
            raw.get("actions"),
            (manifest.action_size,),
            "float32",
            max_batch,
            len(obs),
        )
        q = await served.q_values(obs, act)
        values, stds = value_stats(q, with_std="stds" in wanted)
        results.update(q_values=q, values=values)
        if stds is not None:
            results["stds"] = stds
    response = InferResponse(
        model_name=served.name,
        model_version=served.version,
        id=body.id,
        outputs=[
            InferOutput(
                name=name,
                shape=list(results[name].shape),
                datatype="FP32",
                parameters={"binary_data_size": 4 * results[name].size} if raw_out else None,
                data=None if raw_out else results[name].ravel().tolist(),
            )
            for name, raw_out in zip(wanted, binary, strict=True)
        ],
    )
    if not any(binary):
        return response
    header = response.model_dump_json(exclude_none=True).encode()
    return binary_response(
        header, [results[n] for n, raw_out in zip(wanted, binary, strict=True) if raw_out]
    )


def _add_model_routes(prefix: str, resolve: Any) -> None:
    Model = Annotated[ServedModel, Depends(resolve)]

    @router.get(prefix, summary="model metadata")
    async def model_metadata(served: Model, models: ModelSourceDep) -> ModelMetadata:
        versions = await anyio.to_thread.run_sync(models.versions, served.name)
        return _metadata(served, versions)

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
        return await _infer(served, body, settings.max_batch, binary_tail(request))


_add_model_routes("/models/{name}", named_model)
_add_model_routes("/models/{name}/versions/{version}", model_version)

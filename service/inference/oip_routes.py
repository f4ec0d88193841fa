"""Open Inference Protocol v2 (KServe / Triton REST): server and model metadata, model
readiness and inference.

Each model is one OIP model. Inputs: `observations` [-1, *obs] and, for the critic outputs,
`actions` [-1, A]. Outputs (pick with `outputs`; default `actions`): `actions` (greedy),
`sampled_actions` (request parameter `seed` makes them reproducible), `q_values` [-1, K] per
critic, `values` [-1] and `stds` [-1] (mean and std over the critic ensemble). Errors are
`{"error": message}`, with 400 for a bad request.
"""

from typing import Annotated, Any

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Depends

from bear_core.bundle.runtime import value_stats
from service import __version__
from service.core.api_schemas import error_responses
from service.core.deps import SettingsDep
from service.core.http_errors import InvalidInput
from service.core.security import require_inference_key
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
ACCEPTED_DATATYPES = ("FP32", "FP64")
OUTPUTS = ("actions", "sampled_actions", "q_values", "values", "stds")
ERRORS = error_responses(400, 401, 403, 404, 413)

router = APIRouter(prefix="/v2", tags=["open inference protocol"], responses=ERRORS)


@router.get("", summary="server metadata")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="bear-serve", version=__version__, extensions=[])


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
    row_shape: tuple[int, ...],
    dtype: str,
    max_rows: int,
    rows: int | None = None,
) -> np.ndarray:
    field = f"inputs[{tensor.name}]"
    if tensor.datatype not in ACCEPTED_DATATYPES:
        raise InvalidInput(f"{field}.datatype: must be one of {list(ACCEPTED_DATATYPES)}")
    if len(tensor.shape) != 1 + len(row_shape) or any(d < 1 for d in tensor.shape):
        raise InvalidInput(f"{field}.shape: must be [N, {', '.join(map(str, row_shape))}]")
    try:
        data = np.asarray(tensor.data)
    except ValueError:
        data = np.asarray([])  # ragged nesting: refused below
    if data.dtype.kind not in "iuf" or data.size != int(np.prod(tensor.shape)):
        raise InvalidInput(
            f"{field}.data: must hold {int(np.prod(tensor.shape))} numbers for shape {tensor.shape}"
        )
    return as_batch(data.reshape(tensor.shape), f"{field}.data", row_shape, dtype, max_rows, rows)


async def _infer(served: ServedModel, body: InferRequest, max_batch: int) -> InferResponse:
    inputs = {tensor.name: tensor for tensor in body.inputs}
    unknown = set(inputs) - {"observations", "actions"}
    if unknown or "observations" not in inputs:
        raise InvalidInput("inputs: expected 'observations' (and 'actions' for critic outputs)")
    wanted = [o.name for o in body.outputs] if body.outputs else ["actions"]
    for name in wanted:
        if name not in OUTPUTS:
            raise InvalidInput(f"outputs: unknown output {name!r}; this model has {list(OUTPUTS)}")
    manifest = served.bundle.manifest
    obs = _tensor(
        inputs["observations"],
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
        act = _tensor(inputs["actions"], (manifest.action_size,), "float32", max_batch, len(obs))
        q = await served.q_values(obs, act)
        values, stds = value_stats(q, with_std="stds" in wanted)
        results.update(q_values=q, values=values)
        if stds is not None:
            results["stds"] = stds
    return InferResponse(
        model_name=served.name,
        model_version=served.version,
        id=body.id,
        outputs=[
            InferOutput(
                name=name,
                shape=list(results[name].shape),
                datatype="FP32",
                data=results[name].ravel().tolist(),
            )
            for name in wanted
        ],
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
        response_model_exclude_none=True,
        summary="inference",
    )
    async def infer(body: InferRequest, served: Model, settings: SettingsDep) -> InferResponse:
        return await _infer(served, body, settings.max_batch)


_add_model_routes("/models/{name}", named_model)
_add_model_routes("/models/{name}/versions/{version}", model_version)

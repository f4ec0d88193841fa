"""The Open Inference Protocol v2 independent of its transport: server and model metadata, and
inference from decoded request tensors to output arrays. The REST routes (`oip_routes`) and the
gRPC service (`grpc_server`) both answer through these functions, so they take the same inputs,
give the same outputs and refuse bad requests with the same messages.

Each model is one OIP model. Inputs: `observations` [-1, *obs] and, for the critic outputs,
`actions` [-1, A], in any numeric datatype (`DATATYPES`; values are converted to float32).
Outputs (default `actions`): `actions` (greedy), `sampled_actions` (request parameter `seed`
makes them reproducible), `q_values` [-1, K] per critic, `values` [-1] and `stds` [-1] (mean
and std over the critic ensemble), all FP32; and, for models with an out-of-distribution
detector, `ood` [-1] (BOOL: flagged) and `ood_score` [-1] (FP32: score over the threshold), of
the (observation, action) pairs when the request has an `actions` input, else of the
observations. With the server's BEAR_OOD_DEFAULT, a request that names no outputs gets `actions`,
`ood` and `ood_score`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bear_core.bundle.runtime import value_stats
from service import __version__
from service.core.http_errors import InvalidInput
from service.inference.inference_schemas import ModelMetadata, ServerMetadata, TensorMetadata
from service.inference.request_arrays import as_batch
from service.inference.served_model import ServedModel

SERVER_NAME = "bear-serve"
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
INPUTS = ("observations", "actions")
OUTPUTS = ("actions", "sampled_actions", "q_values", "values", "stds", "ood", "ood_score")
_CRITIC_OUTPUTS = frozenset(("q_values", "values", "stds"))
_OOD_OUTPUTS = frozenset(("ood", "ood_score"))


def datatype(output: str) -> str:
    """The output's OIP datatype: BOOL for `ood`, FP32 for every other one."""
    return "BOOL" if output == "ood" else "FP32"


def output_bytes(array: np.ndarray) -> bytes:
    """An output's raw little-endian contents: one byte per BOOL, four per FP32."""
    kind = np.bool_ if array.dtype == np.bool_ else np.dtype("<f4")
    return np.ascontiguousarray(array, dtype=kind).tobytes()


def server_metadata() -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=__version__, extensions=["binary_tensor_data"])


def model_metadata(served: ServedModel, versions: list[str]) -> ModelMetadata:
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
            *(
                [
                    TensorMetadata(name="ood", datatype="BOOL", shape=[-1]),
                    TensorMetadata(name="ood_score", datatype="FP32", shape=[-1]),
                ]
                if served.bundle.ood is not None
                else []
            ),
        ],
    )


@dataclass(frozen=True, slots=True)
class TensorIn:
    """One request input as the transport received it: typed values (`data`: nested or flat
    numbers) or little-endian bytes (`raw`). `data_field` and `raw_field` are the transport's
    names of the two, for error messages."""

    name: str
    datatype: str
    shape: Sequence[int]
    data: Any
    raw: bytes | memoryview | None
    data_field: str
    raw_field: str


def check_names(
    inputs: Sequence[str], outputs: Sequence[str], ood_default: bool = False
) -> list[str]:
    """The outputs to compute (default: `actions`, and with `ood_default` also `ood` and
    `ood_score`), once the input and output names are known and given once each."""
    _unique(inputs, "inputs")
    if set(inputs) - set(INPUTS) or "observations" not in inputs:
        raise InvalidInput("inputs: expected 'observations' (and 'actions' for critic outputs)")
    wanted = list(outputs) or ["actions", *(("ood", "ood_score") if ood_default else ())]
    _unique(wanted, "outputs")
    for name in wanted:
        if name not in OUTPUTS:
            raise InvalidInput(f"outputs: unknown output {name!r}; this model has {list(OUTPUTS)}")
    return wanted


async def infer(
    served: ServedModel,
    inputs: dict[str, TensorIn],
    wanted: list[str],
    seed: object,
    max_batch: int,
) -> dict[str, np.ndarray]:
    """The outputs `wanted` (checked by `check_names`), in that order, for the inputs."""
    manifest = served.bundle.manifest
    obs = _batch(
        inputs["observations"], manifest.observation_shape, manifest.observation_dtype, max_batch
    )
    results: dict[str, np.ndarray] = {}
    ood = not _OOD_OUTPUTS.isdisjoint(wanted) and served.wants_ood(True, False)
    act = None
    if "actions" in inputs and (ood or not _CRITIC_OUTPUTS.isdisjoint(wanted)):
        act = _batch(inputs["actions"], (manifest.action_size,), "float32", max_batch, len(obs))
    if "actions" in wanted:
        results["actions"] = await served.predict(obs)
    if "sampled_actions" in wanted:
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise InvalidInput("parameters.seed: must be a non-negative integer")
        results["sampled_actions"] = await served.sample(obs, seed)
    if not _CRITIC_OUTPUTS.isdisjoint(wanted):
        if act is None:
            raise InvalidInput("inputs: 'actions' is required for q_values, values and stds")
        q = await served.q_values(obs, act)
        values, stds = value_stats(q, with_std="stds" in wanted)
        results.update(q_values=q, values=values)
        if stds is not None:
            results["stds"] = stds
    if ood:
        results["ood"], results["ood_score"] = await served.ood(obs, act)
    return {name: results[name] for name in wanted}


def _batch(
    tensor: TensorIn,
    row_shape: tuple[int, ...],
    dtype: str,
    max_rows: int,
    rows: int | None = None,
) -> np.ndarray:
    """The input as a validated batch, from its values or its bytes. Sizes are Python ints: a
    shape whose element count overflows int64 is refused, not wrapped."""
    field = f"inputs[{tensor.name}]"
    element = DATATYPES.get(tensor.datatype)
    if element is None:
        raise InvalidInput(f"{field}.datatype: must be one of {list(DATATYPES)}")
    shape = [int(d) for d in tensor.shape]
    if tuple(shape[1:]) != row_shape or shape[0] < 1:
        raise InvalidInput(f"{field}.shape: must be [N, {', '.join(map(str, row_shape))}]")
    if shape[0] > max_rows:
        raise InvalidInput(f"{field}.shape: at most {max_rows} rows per request, got {shape[0]}")
    count = math.prod(shape)
    if tensor.raw is not None:
        if tensor.data is not None:
            raise InvalidInput(f"{field}: give {tensor.data_field} or {tensor.raw_field}, not both")
        expected = count * element.itemsize
        if len(tensor.raw) != expected:
            raise InvalidInput(
                f"{field}.{tensor.raw_field}: {len(tensor.raw)} bytes, but shape {shape} of "
                f"{tensor.datatype} takes {expected}"
            )
        data = np.frombuffer(tensor.raw, dtype=element)
        values = field
    else:
        if tensor.data is None:
            raise InvalidInput(f"{field}.{tensor.data_field}: required (or {tensor.raw_field})")
        try:
            data = np.asarray(tensor.data)
        except ValueError:
            data = np.asarray([])  # ragged nesting: refused below
        if data.dtype.kind not in "iuf" or data.size != count:
            raise InvalidInput(
                f"{field}.{tensor.data_field}: must hold {count} numbers for shape {shape}"
            )
        values = f"{field}.{tensor.data_field}"
    return as_batch(data.reshape(shape), values, row_shape, dtype, max_rows, rows)


def _unique(names: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(f"{what}: {name!r} is given more than once")
        seen.add(name)

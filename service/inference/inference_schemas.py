"""Request and response bodies of the task API and of the Open Inference Protocol v2."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from service.core.api_schemas import Request, Response

Row = Annotated[list[float], Field(min_length=1)]
Batch = Annotated[list[Row], Field(min_length=1, description="[N, width] rows, N >= 1")]
Scalar = str | int | float | bool
OOD_FIELD = Field(
    default=None,
    description="also return ood (flagged outside the training data's support) and ood_score "
    "(the detector's score over its threshold: above 1 is flagged) per row; default: the "
    "server's BEAR_OOD_DEFAULT",
)


class OipRequest(BaseModel):
    """Open Inference Protocol bodies: fields this server does not use are ignored, as other
    servers do, so existing clients work."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")


# --- task API ---------------------------------------------------------------------------------


class PredictRequest(Request):
    observations: Batch
    ood: bool | None = OOD_FIELD


class SampleActionRequest(Request):
    observations: Batch
    seed: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="makes the draw reproducible"
    )
    ood: bool | None = OOD_FIELD


class ValueRequest(Request):
    observations: Batch
    actions: Batch
    with_std: bool = Field(
        default=False, description="also return the std over the critic ensemble"
    )
    per_critic: bool = Field(default=False, description="also return every critic's value")
    ood: bool | None = Field(
        default=None,
        description="also return ood and ood_score per (observation, action) pair; default: "
        "the server's BEAR_OOD_DEFAULT",
    )


class ActionsResponse(Response):
    actions: list[list[float]]
    ood: list[bool] | None = Field(
        default=None, description="per row: outside the support of the model's training data"
    )
    ood_score: list[float] | None = Field(
        default=None, description="per row: detector score over its threshold (> 1: flagged)"
    )
    model: str
    version: str


class ValueResponse(Response):
    values: list[float] = Field(description="mean over the critic ensemble")
    stds: list[float] | None = Field(default=None, description="population std over the ensemble")
    per_critic: list[list[float]] | None = Field(default=None, description="[N, n_critics]")
    ood: list[bool] | None = Field(
        default=None, description="per pair: outside the support of the model's training data"
    )
    ood_score: list[float] | None = Field(
        default=None, description="per pair: detector score over its threshold (> 1: flagged)"
    )
    model: str
    version: str


# --- Open Inference Protocol v2 -----------------------------------------------------------------


class InferInput(OipRequest):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Scalar] | None = Field(
        default=None, description="'binary_data_size' with the binary tensor data extension"
    )
    data: list[Any] | None = Field(
        default=None, description="row-major, flat or nested; absent when the tensor is binary"
    )


class RequestedOutput(OipRequest):
    name: str
    parameters: dict[str, Scalar] | None = Field(
        default=None, description="'binary_data': true returns the tensor raw after the JSON"
    )


class InferRequest(OipRequest):
    id: str | None = None
    parameters: dict[str, Scalar] | None = Field(
        default=None,
        description="'seed' for sampled_actions; 'binary_data_output' for binary outputs",
    )
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = Field(default=None, description="default: actions")


class InferOutput(Response):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Scalar] | None = Field(
        default=None, description="'binary_data_size' of a binary output"
    )
    data: list[bool] | list[float] | None = Field(
        default=None, description="absent for a binary output"
    )


class InferResponse(Response):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


class TensorMetadata(Response):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(Response):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(Response):
    name: str
    version: str
    extensions: list[str]


class ModelReadiness(Response):
    name: str
    ready: bool

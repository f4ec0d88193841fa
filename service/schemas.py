"""Request and response bodies. Numbers are strict (no strings or booleans) and finite."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Row = Annotated[list[float], Field(min_length=1)]
Batch = Annotated[list[Row], Field(min_length=1, description="[N, width] rows, N >= 1")]
Scalar = str | int | float | bool


class Request(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")


class OipRequest(BaseModel):
    """Open Inference Protocol bodies: fields this server does not use are ignored, as other
    servers do, so existing clients work."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")


class Response(BaseModel):
    pass


# --- task API ---------------------------------------------------------------------------------


class PredictRequest(Request):
    observations: Batch


class SampleActionRequest(Request):
    observations: Batch
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="makes the draw reproducible")


class ValueRequest(Request):
    observations: Batch
    actions: Batch
    with_std: bool = Field(False, description="also return the std over the critic ensemble")
    per_critic: bool = Field(False, description="also return every critic's value")


class ActionsResponse(Response):
    actions: list[list[float]]
    model: str
    version: str


class ValueResponse(Response):
    values: list[float] = Field(description="mean over the critic ensemble")
    stds: list[float] | None = Field(None, description="population std over the ensemble")
    per_critic: list[list[float]] | None = Field(None, description="[N, n_critics]")
    model: str
    version: str


# --- model management ---------------------------------------------------------------------------


class ManifestSummary(Response):
    observation_shape: list[int]
    observation_dtype: str
    action_size: int
    action_low: list[float]
    action_high: list[float]
    n_critics: int
    q_func_type: str
    created: str
    provenance: dict[str, Any]


class VersionDetail(Response):
    version: str
    production: bool
    loaded: bool
    manifest: ManifestSummary | None = Field(None, description="null when unreadable")


class ModelSummary(Response):
    name: str
    production: str | None
    versions: list[str]


class ModelList(Response):
    models: list[ModelSummary]


class ModelDetail(Response):
    name: str
    production: str | None
    versions: list[VersionDetail]


class PublishedVersion(Response):
    name: str
    version: str
    production: bool


class PromotedVersion(Response):
    name: str
    version: str
    previous: str | None


class ErrorResponse(Response):
    error: str


# --- Open Inference Protocol v2 -----------------------------------------------------------------


class InferInput(OipRequest):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Scalar] | None = None
    data: list[Any] = Field(description="row-major, flat or nested")


class RequestedOutput(OipRequest):
    name: str
    parameters: dict[str, Scalar] | None = None


class InferRequest(OipRequest):
    id: str | None = None
    parameters: dict[str, Scalar] | None = Field(None, description="'seed' for sampled_actions")
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = Field(None, description="default: actions")


class InferOutput(Response):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


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


class Liveness(Response):
    live: bool


class Readiness(Response):
    ready: bool


class ModelReadiness(Response):
    name: str
    ready: bool

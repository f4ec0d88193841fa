"""Request and response bodies. Numbers are strict (no strings or booleans) and finite."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from service.datasets import ID_PATTERN as DATASET_ID_PATTERN
from service.jobdb import JobState
from service.store import NAME_PATTERN

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


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting these status codes with the error body."""
    return {code: {"model": ErrorResponse} for code in codes}


# --- datasets and training jobs -----------------------------------------------------------------


class DatasetResponse(Response):
    id: str = Field(description="the first 16 hex digits of sha256")
    sha256: str
    filename: str
    size_bytes: int
    n_transitions: int
    n_episodes: int
    observation_shape: list[int]
    action_size: int
    created: str


class DatasetList(Response):
    datasets: list[DatasetResponse]


class TrainRequest(Request):
    dataset_id: str = Field(pattern=DATASET_ID_PATTERN)
    model_name: str = Field(pattern=NAME_PATTERN, description="publish as its next version")
    params: dict[str, Any] = Field(
        default_factory=dict, description="BEAR constructor parameters, validated as BEAR() does"
    )
    n_steps: int | None = Field(
        None, ge=1, le=10**9, description="gradient steps (rounded up to whole epochs)"
    )
    n_epochs: int | None = Field(None, ge=1, le=10**6)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    eval_env: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_./:-]{1,100}$", description="gymnasium id scored every epoch"
    )
    eval_trials: int = Field(5, ge=1, le=100)
    promote: bool = Field(False, description="make the new version production")
    resume: bool = Field(
        False, description="after a service restart, run again from the last checkpoint"
    )


class JobResponse(Response):
    id: str
    state: JobState
    model_name: str
    dataset_id: str
    params: dict[str, Any]
    promote: bool
    resume: bool
    eval_env: str | None
    progress: float = Field(ge=0.0, le=1.0, description="steps done / total steps")
    epoch: int | None
    n_epochs: int | None
    step: int | None
    total_steps: int | None
    metrics: dict[str, float | None] | None = Field(description="the last finished epoch's")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    attempts: int
    cancel_requested: bool
    exit_code: int | None
    error: str | None
    model_version: str | None = Field(description="the version it published")
    checkpoint: bool = Field(description="a resumable checkpoint exists")


class JobList(Response):
    jobs: list[JobResponse]


class JobLog(Response):
    offset: int
    next_offset: int = Field(description="pass as ?offset= to read on")
    size: int = Field(description="the log's size now, in bytes")
    complete: bool = Field(description="the job has ended and this reaches the end of its log")
    text: str


class MetricSeries(Response):
    epoch: list[int]
    step: list[int]
    value: list[float | None]


class JobMetrics(Response):
    id: str
    series: dict[str, MetricSeries]


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

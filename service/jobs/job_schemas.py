"""Request and response bodies of the training-jobs API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from service.core.api_schemas import NAME_PATTERN, Request, Response
from service.datasets.dataset_store import ID_PATTERN as DATASET_ID_PATTERN
from service.jobs.job_db import JobState


class TrainRequest(Request):
    dataset_id: str = Field(pattern=DATASET_ID_PATTERN)
    model_name: str = Field(pattern=NAME_PATTERN, description="publish as its next version")
    params: dict[str, Any] = Field(
        default_factory=dict, description="BEAR constructor parameters, validated as BEAR() does"
    )
    n_steps: int | None = Field(
        default=None, ge=1, le=10**9, description="gradient steps (rounded up to whole epochs)"
    )
    n_epochs: int | None = Field(default=None, ge=1, le=10**6)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    eval_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_./:-]{1,100}$",
        description="gymnasium id scored every epoch",
    )
    eval_trials: int = Field(default=5, ge=1, le=100)
    promote: bool = Field(default=False, description="make the new version production")
    resume: bool = Field(
        default=False, description="after a service restart, run again from the last checkpoint"
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

"""Request and response bodies of the training-jobs API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from service.core.api_schemas import NAME_PATTERN, Request, Response
from service.datasets.dataset_store import ID_PATTERN as DATASET_ID_PATTERN
from service.jobs.job_db import ExecutorName, JobKind, JobState, PromoteMode, Select


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
    promote: PromoteMode = Field(
        default=False,
        description="make the new version production: true, false, or 'if_better' (only when "
        "the promotion gate finds it better than production: needs holdout > 0)",
    )
    resume: bool = Field(
        default=False, description="after a service restart, run again from the last checkpoint"
    )
    holdout: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="share of the episodes held out of training, to score checkpoints on by "
        "fitted Q evaluation (FQE); the published manifest carries the estimate",
    )
    select: Select = Field(
        default="last",
        description="the checkpoint published: the last epoch's, or ('ope', needs holdout > 0) "
        "the one of select_candidates epochs with the highest FQE estimate",
    )
    keep_checkpoints: int | None = Field(
        default=5, ge=1, le=10**6, description="model_<epoch>.pt files kept (the newest); null: all"
    )
    select_candidates: int = Field(
        default=5, ge=1, le=100, description="epochs scored with select 'ope', evenly spaced"
    )
    fqe_steps: int = Field(default=3000, ge=1, le=10**7, description="FQE steps per scored epoch")


class Candidate(Response):
    epoch: int
    estimate: float
    ci: list[float] = Field(description="[low, high]: the bootstrap interval over episodes")
    seconds: float = Field(description="what scoring it took")


class Selection(Response):
    """The trainer's selection.json: the held-out checkpoint scores and the choice."""

    select: Select
    method: str
    chosen_epoch: int | None
    reason: str = Field(description="why that epoch, in one sentence")
    candidates: list[Candidate]
    candidate_epochs: list[int] = Field(description="the epochs that are (or will be) scored")
    complete: bool = Field(description="the last epoch is scored: the choice is final")
    n_episodes: int = Field(description="held-out episodes")
    dataset_sha256: str
    n_steps_fqe: int


class JobResponse(Response):
    id: str
    kind: JobKind = Field(description="'train', or 'evaluate' (the promotion gate's estimates)")
    state: JobState
    model_name: str
    dataset_id: str
    params: dict[str, Any]
    promote: PromoteMode
    resume: bool
    eval_env: str | None
    holdout: float
    select: Select
    keep_checkpoints: int | None
    select_candidates: int
    fqe_steps: int
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
    executor: ExecutorName | None = Field(
        description="where its last run started: a local child process or the Ray cluster"
    )
    executor_id: str | None = Field(
        description="the executor's id for that run: the child's pid, or the Ray actor's name"
    )
    checkpoint: bool = Field(description="a resumable checkpoint exists")
    value_warning: str | None = Field(
        default=None,
        description="set when the last epoch's critics are above the value bound the rewards "
        "allow and rising (the metrics' value_mean, value_bound, value_excess)",
    )
    selection: Selection | None = Field(
        description="which checkpoint was chosen and why; null without a holdout, or before "
        "the first scored epoch"
    )
    evaluate: dict[str, Any] | None = Field(
        description="an evaluation job's candidate, production and scored versions"
    )
    publish: bool = Field(
        description="publishes its bundle when it succeeds; false for a sweep's trials (the "
        "sweep publishes the best one)"
    )
    holdout_seed: int | None = Field(
        description="seed of the held-out split and of FQE; null: the BEAR seed"
    )
    sweep_id: str | None = Field(description="the sweep this job is a trial of")
    trial_params: dict[str, Any] | None = Field(
        description="a sweep's trial: the searched parameter values and the seed it tries"
    )


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

"""Request and response bodies of the sweeps API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from service.core.api_schemas import NAME_PATTERN, Request, Response
from service.datasets.dataset_store import ID_PATTERN as DATASET_ID_PATTERN
from service.jobs.job_db import JobState, PromoteMode, Select
from service.jobs.sweep_db import SweepState


class SweepRequest(Request):
    dataset_id: str = Field(pattern=DATASET_ID_PATTERN)
    model_name: str = Field(
        pattern=NAME_PATTERN, description="the best trial is published as its next version"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="BEAR parameters every trial shares"
    )
    search: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="BEAR parameter -> the values to try: one trial per combination of values "
        "and seeds",
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0],
        min_length=1,
        max_length=1000,
        description="the seeds every combination is trained with; the first one also seeds the "
        "held-out split and FQE of every trial, so all are scored on the same episodes",
    )
    n_steps: int | None = Field(
        default=None, ge=1, le=10**9, description="gradient steps of each trial"
    )
    n_epochs: int | None = Field(default=None, ge=1, le=10**6)
    holdout: float = Field(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="share of the episodes held out of every trial's training; trials are "
        "ranked by their FQE estimate on them",
    )
    select: Select = Field(
        default="last",
        description="each trial's checkpoint: its last epoch's, or ('ope') the best of "
        "select_candidates epochs by FQE",
    )
    select_candidates: int = Field(default=5, ge=1, le=100)
    fqe_steps: int = Field(default=3000, ge=1, le=10**7, description="FQE steps per scored epoch")
    keep_checkpoints: int | None = Field(default=5, ge=1, le=10**6)
    eval_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_./:-]{1,100}$",
        description="gymnasium id each trial is scored on every epoch (shown, not used to rank)",
    )
    eval_trials: int = Field(default=5, ge=1, le=100)
    promote: PromoteMode = Field(
        default=False,
        description="make the published best trial production: true, false, or 'if_better' "
        "(through the promotion gate)",
    )


class TrialResponse(Response):
    trial: int
    job: str = Field(description="the trial's training job (GET /jobs/{id})")
    params: dict[str, Any] = Field(description="the searched values it tries, and its seed")
    state: JobState
    progress: float = Field(ge=0.0, le=1.0)
    epoch: int | None = Field(description="the epoch the estimate and the return are of")
    estimate: float | None = Field(
        description="FQE estimate on the held-out episodes (discounted return) of the epoch its "
        "bundle holds (while it runs: the best scored so far)"
    )
    ci: list[float] | None
    environment_return: float | None = Field(
        description="with eval_env: the environment return the trainer measured at that epoch"
    )
    error: str | None


class SweepBest(Response):
    trial: int
    job: str
    params: dict[str, Any]
    estimate: float
    ci: list[float] | None
    environment_return: float | None
    model_version: str | None = Field(description="the version it was published as")


class SweepResponse(Response):
    id: str
    state: SweepState
    model_name: str
    dataset_id: str
    params: dict[str, Any]
    search: dict[str, list[Any]]
    seeds: list[int]
    n_steps: int | None
    n_epochs: int | None
    holdout: float
    select: Select
    select_candidates: int
    fqe_steps: int
    keep_checkpoints: int | None
    eval_env: str | None
    promote: PromoteMode
    created_at: datetime
    finished_at: datetime | None
    cancel_requested: bool
    error: str | None
    trials: list[TrialResponse]
    best: SweepBest | None = Field(description="the trial chosen once every trial has ended")
    decision: dict[str, Any] | None = Field(
        description="why: the chosen trial, its estimate and every trial's, as decided"
    )
    model_version: str | None = Field(description="the version the sweep published")
    promotion: dict[str, Any] | None = Field(
        description="promote 'if_better': the promotion gate's decision about that version"
    )


class SweepList(Response):
    sweeps: list[SweepResponse]

"""Training jobs: POST /train queues one (202, Location: /jobs/{id}); list, describe, read the
log incrementally and the metric series, cancel. Reads are open; changes need an API key."""

from __future__ import annotations

import pathlib
import secrets
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import ValidationError

from service.core.api_schemas import error_responses
from service.core.deps import SettingsDep
from service.core.http_errors import InvalidInput
from service.core.security import require_admin_key
from service.datasets.dataset_deps import DatasetsDep
from service.jobs.job_db import Job, JobDB, JobSpec, JobState
from service.jobs.job_files import ID_PATTERN, JobFiles
from service.jobs.job_schemas import (
    JobList,
    JobLog,
    JobMetrics,
    JobResponse,
    MetricSeries,
    Selection,
    TrainRequest,
)
from service.jobs.job_specs import (
    check_eval_env,
    check_selection,
    run_options,
    training_params,
)

ERRORS = error_responses(401, 403, 404, 409, 422)
MAX_LOG_CHUNK = 1 << 20
TERMINAL: tuple[JobState, ...] = ("succeeded", "failed", "cancelled")

JobId = Annotated[str, Path(pattern=ID_PATTERN, description="job id")]


async def get_jobs(request: Request) -> JobDB:
    jobs: JobDB = request.state.jobs
    return jobs


JobsDep = Annotated[JobDB, Depends(get_jobs)]

router = APIRouter(tags=["training"], responses=ERRORS)


def _time(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None


def job_progress(job: Job) -> float:
    """Steps done over total steps (1 once it succeeded)."""
    p = job.progress
    if job.state == "succeeded":
        return 1.0
    if p.step is not None and p.total_steps:
        return min(1.0, p.step / p.total_steps)
    return 0.0


def _response(job: Job, root: pathlib.Path) -> JobResponse:
    p = job.progress
    files = JobFiles(root, job.id)
    sweep = job.spec.sweep
    return JobResponse(
        id=job.id,
        kind=job.spec.kind,
        state=job.state,
        model_name=job.model_name,
        dataset_id=job.dataset_id,
        params=job.spec.params,
        promote=job.spec.promote,
        resume=job.spec.resume,
        eval_env=job.spec.eval_env,
        holdout=job.spec.holdout,
        select=job.spec.select,
        keep_checkpoints=job.spec.keep_checkpoints,
        select_candidates=job.spec.select_candidates,
        fqe_steps=job.spec.fqe_steps,
        progress=job_progress(job),
        epoch=p.epoch,
        n_epochs=p.n_epochs,
        step=p.step,
        total_steps=p.total_steps,
        metrics=p.metrics,
        created_at=datetime.fromtimestamp(job.created_at, UTC),
        started_at=_time(job.started_at),
        finished_at=_time(job.finished_at),
        heartbeat_at=_time(job.heartbeat_at),
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        exit_code=job.exit_code,
        error=job.error,
        model_version=job.model_version,
        executor=job.executor,
        executor_id=job.executor_id,
        checkpoint=files.has_checkpoint(),
        selection=_selection(files),
        value_warning=files.value_warning(),
        evaluate=job.spec.evaluate,
        publish=job.spec.publish,
        holdout_seed=job.spec.holdout_seed,
        sweep_id=None if sweep is None else sweep["id"],
        trial_params=None if sweep is None else sweep["params"],
    )


def _selection(files: JobFiles) -> Selection | None:
    raw = files.selection()
    try:
        return Selection.model_validate(raw) if isinstance(raw, dict) else None
    except ValidationError:  # not what this service's trainer writes
        return None


# Every route below reads the job table and the jobs' files (logs, metrics, checkpoints): plain
# functions, which FastAPI runs on a worker thread.


@router.post(
    "/train",
    dependencies=[Depends(require_admin_key)],
    status_code=status.HTTP_202_ACCEPTED,
    summary="queue a BEAR training job on a stored dataset",
)
def train(
    body: TrainRequest,
    response: Response,
    settings: SettingsDep,
    datasets: DatasetsDep,
    jobs: JobsDep,
) -> JobResponse:
    params = training_params(
        body.params, body.n_steps, body.n_epochs, body.seed, allow_gpu=settings.allow_gpu
    )
    check_eval_env(body.eval_env, settings.eval_env_modules)
    if body.promote == "if_better" and body.holdout == 0.0:
        raise InvalidInput("promote: 'if_better' gates on held-out estimates: set holdout > 0")
    if datasets.exists(body.dataset_id):  # a missing one is refused when the job is queued
        check_selection(body.holdout, body.select, datasets.get(body.dataset_id).n_episodes)
    spec = JobSpec(params=params, promote=body.promote, resume=body.resume, **run_options(body))
    job = jobs.submit(body.model_name, body.dataset_id, spec, secrets.token_hex(8), datasets.exists)
    response.headers["Location"] = f"/jobs/{job.id}"
    return _response(job, settings.store)


@router.get("/jobs", summary="jobs, newest first")
def list_jobs(
    jobs: JobsDep,
    settings: SettingsDep,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobList:
    found = jobs.list(state, limit)
    return JobList(jobs=[_response(job, settings.store) for job in found])


@router.get("/jobs/{job_id}", summary="a job's state, progress, latest metrics and result")
def get_job(job_id: JobId, jobs: JobsDep, settings: SettingsDep) -> JobResponse:
    return _response(jobs.get(job_id), settings.store)


@router.get("/jobs/{job_id}/logs", summary="the job's log from a byte offset")
def get_logs(
    job_id: JobId,
    jobs: JobsDep,
    settings: SettingsDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_CHUNK)] = 64 * 1024,
) -> JobLog:
    job = jobs.get(job_id)
    chunk = JobFiles(settings.store, job_id).read_log(offset, limit)
    return JobLog(
        offset=chunk.offset,
        next_offset=chunk.next_offset,
        size=chunk.size,
        complete=job.state in TERMINAL and chunk.next_offset >= chunk.size,
        text=chunk.text,
    )


@router.get("/jobs/{job_id}/metrics", summary="the per-epoch metric series, for plots")
def get_metrics(job_id: JobId, jobs: JobsDep, settings: SettingsDep) -> JobMetrics:
    jobs.get(job_id)
    series: dict[str, MetricSeries] = {}
    for record in JobFiles(settings.store, job_id).metrics():
        for name, value in record["metrics"].items():
            line = series.setdefault(name, MetricSeries(epoch=[], step=[], value=[]))
            line.epoch.append(record["epoch"])
            line.step.append(record["step"])
            line.value.append(value)
    return JobMetrics(id=job_id, series=series)


@router.post(
    "/jobs/{job_id}/cancel",
    dependencies=[Depends(require_admin_key)],
    status_code=status.HTTP_202_ACCEPTED,
    summary="cancel: a queued job at once, a running one by SIGTERM (it checkpoints), then SIGKILL",
)
def cancel(job_id: JobId, jobs: JobsDep, settings: SettingsDep) -> JobResponse:
    return _response(jobs.cancel(job_id), settings.store)

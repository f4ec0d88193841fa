"""Sweeps: POST /sweeps queues one training job per combination of searched values and seeds
(202, Location: /sweeps/{id}); once they have all ended, the dispatcher's sweep supervisor
publishes the trial with the best held-out estimate. List, describe, cancel. Reads are open;
changes need an API key."""

from __future__ import annotations

import itertools
import math
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi import Path as PathParam

from service.core.api_schemas import error_responses
from service.core.deps import SettingsDep
from service.core.http_errors import InvalidInput
from service.core.security import require_admin_key
from service.datasets.dataset_deps import DatasetsDep
from service.jobs.job_db import JobSpec
from service.jobs.job_files import ID_PATTERN, JobFiles
from service.jobs.job_routes import job_progress
from service.jobs.job_specs import (
    KNOWN_PARAMS,
    check_eval_env,
    check_selection,
    run_options,
    training_params,
)
from service.jobs.sweep_db import Sweep, SweepDB, SweepState, Trial
from service.jobs.sweep_schemas import (
    SweepBest,
    SweepList,
    SweepRequest,
    SweepResponse,
    TrialResponse,
)
from service.jobs.sweep_supervisor import trial_result

SweepId = Annotated[str, PathParam(pattern=ID_PATTERN, description="sweep id")]


async def get_sweeps(request: Request) -> SweepDB:
    sweeps: SweepDB = request.state.sweeps
    return sweeps


SweepsDep = Annotated[SweepDB, Depends(get_sweeps)]

router = APIRouter(tags=["training"], responses=error_responses(401, 403, 404, 409, 422))


def trial_overrides(search: dict[str, list[Any]], seeds: list[int]) -> list[dict[str, Any]]:
    """Every combination of the searched values (in the order given), each with every seed."""
    names = list(search)
    return [
        {**dict(zip(names, values, strict=True)), "seed": seed}
        for values in itertools.product(*(search[name] for name in names))
        for seed in seeds
    ]


def _check_search(body: SweepRequest, max_trials: int) -> None:
    for name, values in body.search.items():
        if name == "seed":
            raise InvalidInput("search.seed: give the seeds in seeds")
        if name not in KNOWN_PARAMS:
            raise InvalidInput(f"search.{name}: not a BEAR parameter")
        if name in body.params:
            raise InvalidInput(f"search.{name}: also given in params")
        if not values:
            raise InvalidInput(f"search.{name}: give at least one value")
        if any(a == b for a, b in itertools.combinations(values, 2)):
            raise InvalidInput(f"search.{name}: a value is repeated")
    if "seed" in body.params:
        raise InvalidInput("params.seed: give the seeds in seeds")
    if len(set(body.seeds)) != len(body.seeds) or min(body.seeds) < 0:
        raise InvalidInput("seeds: distinct integers >= 0")
    count = math.prod(len(values) for values in body.search.values()) * len(body.seeds)
    if count > max_trials:
        raise InvalidInput(
            f"search: {count} trials (every combination of the values, times {len(body.seeds)} "
            f"seed(s)) are more than BEAR_MAX_SWEEP_TRIALS = {max_trials}"
        )


@router.post(
    "/sweeps",
    dependencies=[Depends(require_admin_key)],
    status_code=status.HTTP_202_ACCEPTED,
    summary="queue a sweep: one training job per combination of searched values and seeds; "
    "the one with the best held-out estimate is published",
)
def create_sweep(
    body: SweepRequest,
    response: Response,
    settings: SettingsDep,
    datasets: DatasetsDep,
    sweeps: SweepsDep,
) -> SweepResponse:
    _check_search(body, settings.max_sweep_trials)
    seed = body.seeds[0]
    training_params(body.params, body.n_steps, body.n_epochs, seed, settings.allow_gpu)
    check_eval_env(body.eval_env, settings.eval_env_modules)
    if datasets.exists(body.dataset_id):  # a missing one is refused when the sweep is queued
        check_selection(body.holdout, body.select, datasets.get(body.dataset_id).n_episodes)
    sweep_id = secrets.token_hex(8)
    trials = []
    for index, overrides in enumerate(trial_overrides(body.search, body.seeds)):
        searched = {name: value for name, value in overrides.items() if name != "seed"}
        try:
            params = training_params(
                {**body.params, **searched},
                body.n_steps,
                body.n_epochs,
                overrides["seed"],
                settings.allow_gpu,
            )
        except InvalidInput as exc:
            raise InvalidInput(f"search: trial {overrides}: {exc.message}") from None
        spec = JobSpec(
            params=params,
            resume=True,
            **run_options(body),
            publish=False,
            holdout_seed=seed,
            sweep={"id": sweep_id, "trial": index, "params": overrides},
        )
        trials.append((Trial(index, secrets.token_hex(8), overrides), spec))
    request = body.model_dump(exclude={"dataset_id", "model_name"})
    sweep = sweeps.submit_sweep(
        sweep_id, body.model_name, body.dataset_id, request, trials, datasets.exists
    )
    response.headers["Location"] = f"/sweeps/{sweep.id}"
    return _response(sweep, sweeps, settings.store)


@router.get("/sweeps", summary="sweeps, newest first")
def list_sweeps(
    sweeps: SweepsDep,
    settings: SettingsDep,
    state: SweepState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> SweepList:
    found = sweeps.list_sweeps(state, limit)
    return SweepList(sweeps=[_response(sweep, sweeps, settings.store) for sweep in found])


@router.get("/sweeps/{sweep_id}", summary="a sweep: its trials, their estimates, the best")
def get_sweep(sweep_id: SweepId, sweeps: SweepsDep, settings: SettingsDep) -> SweepResponse:
    return _response(sweeps.get_sweep(sweep_id), sweeps, settings.store)


@router.post(
    "/sweeps/{sweep_id}/cancel",
    dependencies=[Depends(require_admin_key)],
    status_code=status.HTTP_202_ACCEPTED,
    summary="cancel a sweep's unfinished trials; it ends cancelled and publishes nothing",
)
def cancel_sweep(sweep_id: SweepId, sweeps: SweepsDep, settings: SettingsDep) -> SweepResponse:
    return _response(sweeps.cancel_sweep(sweep_id), sweeps, settings.store)


def _response(sweep: Sweep, sweeps: SweepDB, root: Path) -> SweepResponse:
    trials = []
    for trial, job in zip(sweep.trials, sweeps.trial_jobs(sweep), strict=True):
        result = trial_result(JobFiles(root, job.id))
        trials.append(
            TrialResponse(
                trial=trial.index,
                job=job.id,
                params=trial.params,
                state=job.state,
                progress=job_progress(job),
                epoch=result.epoch,
                estimate=result.estimate,
                ci=result.ci,
                environment_return=result.environment_return,
                error=job.error,
            )
        )
    best = None
    if sweep.decision is not None:
        chosen = trials[sweep.decision["trial"]]
        best = SweepBest(
            trial=chosen.trial,
            job=chosen.job,
            params=chosen.params,
            estimate=sweep.decision["estimate"],
            ci=sweep.decision["ci"],
            environment_return=chosen.environment_return,
            model_version=sweep.model_version,
        )
    spec = sweep.spec
    return SweepResponse(
        id=sweep.id,
        state=sweep.state,
        model_name=sweep.model_name,
        dataset_id=sweep.dataset_id,
        params=spec["params"],
        search=spec["search"],
        seeds=spec["seeds"],
        n_steps=spec["n_steps"],
        n_epochs=spec["n_epochs"],
        holdout=spec["holdout"],
        select=spec["select"],
        select_candidates=spec["select_candidates"],
        fqe_steps=spec["fqe_steps"],
        keep_checkpoints=spec["keep_checkpoints"],
        eval_env=spec["eval_env"],
        promote=spec["promote"],
        created_at=datetime.fromtimestamp(sweep.created_at, UTC),
        finished_at=None
        if sweep.finished_at is None
        else datetime.fromtimestamp(sweep.finished_at, UTC),
        cancel_requested=sweep.cancel_requested,
        error=sweep.error,
        trials=trials,
        best=best,
        decision=sweep.decision,
        model_version=sweep.model_version,
        promotion=sweep.promotion,
    )

"""POST /models/{name}/versions/{v}/promote: make a version production, at once (gate=none) or
through the promotion gate (gate=ope, service.jobs.promotion_gate): 200 promoted, 409 refused
with both estimates, or 202 with `Location: /jobs/{id}` while an evaluation job computes a
missing estimate (repeat the request once it has finished). Needs an API key."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import JSONResponse

from service.core.api_schemas import VERSION_PATTERN, NameParam, VersionParam, error_responses
from service.core.deps import SettingsDep
from service.core.http_errors import InvalidInput
from service.core.json_logs import get_logger
from service.core.security import require_admin_key
from service.datasets.dataset_deps import DatasetsDep
from service.jobs.job_routes import JobsDep
from service.jobs.promotion_gate import PromotionGate, evaluation_job, refused_body
from service.models.model_routes import RegistryDep
from service.models.model_schemas import PromotedVersion, Promotion

router = APIRouter(
    prefix="/models",
    tags=["models"],
    responses={
        **error_responses(401, 403, 404, 409, 422),
        202: {"description": "gate=ope: an evaluation job is computing a missing estimate"},
    },
)


# A plain function: it reads manifests and records, and promotion loads the version (blocking),
# so FastAPI runs it on a worker thread.
@router.post(
    "/{name}/versions/{version}/promote",
    dependencies=[Depends(require_admin_key)],
    summary="make a version the production version (loaded and verified first); with "
    "?expect=, only while production is still that version; with ?gate=ope, only when its "
    "held-out estimate beats production's by the margin",
)
def promote(
    name: NameParam,
    version: VersionParam,
    registry: RegistryDep,
    datasets: DatasetsDep,
    jobs: JobsDep,
    settings: SettingsDep,
    expect: Annotated[
        str | None,
        Query(
            pattern=VERSION_PATTERN,
            description="promote only while this is still the production version (409 naming "
            "the current one otherwise)",
        ),
    ] = None,
    gate: Annotated[
        Literal["none", "ope"],
        Query(
            description="'ope': compare both versions' FQE estimates on the candidate's "
            "held-out episodes first"
        ),
    ] = "none",
    margin: Annotated[
        float | None,
        Query(
            allow_inf_nan=False,
            description="gate=ope: how much the candidate's estimate (discounted return) must "
            "exceed production's; default BEAR_PROMOTION_MARGIN",
        ),
    ] = None,
) -> Any:
    gates = PromotionGate(
        registry.store, datasets, registry.promote, get_logger(settings.log_level)
    )
    if gate == "none":
        if margin is not None:
            raise InvalidInput("margin: only with gate=ope")
        previous = registry.promote(name, version, expect)
        record = gates.ungated(name, version, previous)
        return PromotedVersion(
            name=name, version=version, previous=previous, promotion=Promotion(**record)
        )
    margin = settings.promotion_margin if margin is None else margin
    plan = gates.plan(name, version, expect)
    if plan.missing:
        gates.dataset_path(plan.held_out)  # 409 now when the episodes cannot be read
        job = evaluation_job(jobs, datasets.exists, plan)
        record = gates.pending(plan, margin, job.id)
        return JSONResponse(
            {"name": name, "version": version, "promotion": record, "job": job.id},
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/jobs/{job.id}"},
        )
    record = gates.decide(plan, margin)
    if record["decision"] == "refused":
        return JSONResponse(refused_body(record), status_code=status.HTTP_409_CONFLICT)
    return PromotedVersion(
        name=name, version=version, previous=plan.production, promotion=Promotion(**record)
    )

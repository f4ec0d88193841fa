"""Liveness and readiness (Open Inference Protocol paths): 200 when true, 503 when not ready."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from service.deps import RegistryDep
from service.schemas import Liveness, Readiness

router = APIRouter(prefix="/v2/health", tags=["health"])


@router.get("/live", summary="the process answers")
async def live() -> Liveness:
    return Liveness(live=True)


@router.get(
    "/ready",
    responses={503: {"model": Readiness}},
    summary="every production model is loaded",
)
async def ready(registry: RegistryDep, response: Response) -> Readiness:
    if not registry.ready():
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(ready=False)
    return Readiness(ready=True)

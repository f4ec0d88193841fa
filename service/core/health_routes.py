"""Liveness and readiness (Open Inference Protocol paths): 200 when true, 503 when not ready."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Request, Response, status

from service.core.api_schemas import Liveness, Readiness


class ReadinessSource(Protocol):
    """What readiness asks: whether every production model loaded (the app's model registry)."""

    def ready(self) -> bool: ...


async def get_readiness(request: Request) -> ReadinessSource:
    registry: ReadinessSource = request.state.registry
    return registry


ReadinessDep = Annotated[ReadinessSource, Depends(get_readiness)]

router = APIRouter(prefix="/v2/health", tags=["health"])


@router.get("/live", summary="the process answers")
async def live() -> Liveness:
    return Liveness(live=True)


@router.get(
    "/ready",
    responses={503: {"model": Readiness}},
    summary="every production model is loaded",
)
async def ready(registry: ReadinessDep, response: Response) -> Readiness:
    if not registry.ready():
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(ready=False)
    return Readiness(ready=True)

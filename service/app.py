"""The FastAPI application: `create_app(settings)` builds it; the lifespan opens the model store
and loads every production model before the first request, opens the dataset store and the job
table, starts the job dispatcher (unless BEAR_DISPATCHER=false: then `python -m service.worker`
runs it) and follows production versions that another process sets in the store.

Run with `python -m service`, or `uvicorn --factory service.app:create_app` (settings from the
BEAR_* environment).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service import __version__
from service.datasets import DatasetStore
from service.dispatcher import Dispatcher
from service.errors import InvalidInput, ServiceError
from service.jobdb import JobDB
from service.limits import BodyLimit
from service.logs import get_logger
from service.metrics import Metrics
from service.middleware import RequestContext
from service.model import Execution
from service.registry import Registry
from service.routers import datasets, health, inference, jobs, metrics, models, oip
from service.settings import Settings
from service.store import ModelStore

_UPLOAD_PATH = re.compile(r"/models/[^/]+/versions/?")
_DATASET_PATH = re.compile(r"/datasets/?")


class State(TypedDict):
    settings: Settings
    registry: Registry
    metrics: Metrics
    datasets: DatasetStore
    jobs: JobDB


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logger = get_logger(settings.log_level)
    app_metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        registry = Registry(
            ModelStore(settings.store).ensure(),
            app_metrics,
            Execution(
                offload_rows=settings.offload_rows,
                batching=settings.batching,
                batch_max_rows=settings.batch_max_rows,
                batch_max_delay_s=settings.batch_max_delay_ms / 1000,
            ),
            logger,
            ort_threads=settings.ort_threads,
            default_model=settings.default_model,
        )
        registry.load_production()
        logger.info(
            "serving",
            extra={"store": str(settings.store), "models": registry.production_versions()},
        )
        if not settings.api_keys:
            logger.warning("no API key configured: model management endpoints are disabled")
        job_db = JobDB(settings.store).ensure()
        dispatcher = (
            Dispatcher(settings, job_db, registry.publish, logger).start()
            if settings.dispatcher
            else None
        )
        follower = asyncio.create_task(_follow_store(registry, settings.sync_interval_s, logger))
        try:
            yield {
                "settings": settings,
                "registry": registry,
                "metrics": app_metrics,
                "datasets": DatasetStore(settings.store).ensure(),
                "jobs": job_db,
            }
        finally:
            follower.cancel()
            if dispatcher is not None:
                await anyio.to_thread.run_sync(dispatcher.stop)

    app = FastAPI(
        title="BEAR policy serving",
        version=__version__,
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit_for=_body_limit(settings))
    app.add_middleware(RequestContext, metrics=app_metrics, logger=logger)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(inference.router)
    app.include_router(models.router)
    app.include_router(oip.router)
    app.include_router(datasets.router)
    app.include_router(jobs.router)
    return app


async def _follow_store(registry: Registry, interval_s: float, logger: logging.Logger) -> None:
    while True:
        await anyio.sleep(interval_s)
        try:
            await anyio.to_thread.run_sync(registry.sync_production)
        except OSError:
            logger.exception("reading production versions from the store failed")


def _body_limit(settings: Settings) -> Callable[[str, str], int]:
    """Bundle uploads (POST /models/{name}/versions) and dataset uploads (POST /datasets) may
    be larger than other requests."""

    def limit_for(method: str, path: str) -> int:
        if method == "POST" and _UPLOAD_PATH.fullmatch(path):
            return settings.max_upload_bytes
        if method == "POST" and _DATASET_PATH.fullmatch(path):
            return settings.max_dataset_bytes
        return settings.max_body_bytes

    return limit_for


def _input_status(request: Request) -> int:
    """Bad input is 400 on the Open Inference Protocol paths (its convention), 422 elsewhere."""
    return 400 if request.url.path.startswith("/v2/") else 422


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    code = _input_status(request) if isinstance(exc, InvalidInput) else exc.status_code
    return JSONResponse({"error": exc.message}, status_code=code)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    message = "; ".join(_describe(e) for e in errors[:3])
    if len(errors) > 3:
        message += f" (and {len(errors) - 3} more)"
    return JSONResponse({"error": message}, status_code=_input_status(request))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _describe(error: dict[str, Any]) -> str:
    """'observations[0][2]: Input should be a finite number' from a pydantic error."""
    where, *loc = error.get("loc", ("body",))
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    if error.get("type") == "json_invalid":
        return f"body: invalid JSON ({error.get('ctx', {}).get('error', 'unparsable')})"
    if error.get("type") == "missing" and not loc:
        return f"{where}: required"
    return f"{field or where}: {error.get('msg', 'invalid')}"

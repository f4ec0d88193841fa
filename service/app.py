"""The FastAPI application: `create_app(settings)` builds it, wiring the core middleware and
error handlers and every domain's router; the lifespan opens the model store and loads every
production model before the first request, opens the dataset store and the job table, starts the
job dispatcher (unless BEAR_DISPATCHER=false: then `python -m service.worker` runs it), starts the
Open Inference Protocol's gRPC service on BEAR_GRPC_PORT (unless empty) and follows production
versions that another process sets in the store.

Run with `python -m service`, or `uvicorn --factory service.app:create_app` (settings from the
BEAR_* environment).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypedDict

import anyio
import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service import __version__
from service.core import health_routes, prometheus
from service.core.access_log import AccessLog
from service.core.body_limit import BodyLimit, IdleWatch
from service.core.busy_poll import BusyPoll
from service.core.error_handlers import add_error_handlers
from service.core.json_logs import get_logger
from service.core.middleware import RequestContext, RequestLog
from service.core.prometheus import Metrics
from service.core.settings import Settings
from service.dashboard import dashboard_routes
from service.datasets import dataset_routes
from service.datasets.dataset_store import DatasetStore
from service.inference import inference_routes, oip_routes
from service.inference.fast_predict import FastPredict
from service.inference.grpc_server import STOP_GRACE_S, start_grpc_server
from service.inference.served_model import Execution
from service.jobs import job_routes, promotion_routes, sweep_routes
from service.jobs.dispatcher import Dispatcher
from service.jobs.job_db import JobDB
from service.jobs.sweep_db import SweepDB
from service.models import model_routes
from service.models.model_store import ModelStore
from service.models.registry import CHANGES_POLL_S, Registry

_UPLOAD_PATH = re.compile(r"/models/[^/]+/versions/?")
_DATASET_PATH = re.compile(r"/datasets/?")


class State(TypedDict):
    settings: Settings
    registry: Registry
    metrics: Metrics
    datasets: DatasetStore
    jobs: JobDB
    sweeps: SweepDB


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logger = get_logger(settings.log_level)
    access_log = AccessLog(logger)
    app_metrics = Metrics()
    busy_poll = BusyPoll(settings.busy_poll_us / 1e6)

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
        swept = await anyio.to_thread.run_sync(
            registry.store.sweep_staging, settings.staging_max_age_s
        )
        if swept:
            logger.info("removed stale staging entries", extra={"entries": swept})
        registry.load_production()
        logger.info(
            "serving",
            extra={"store": str(settings.store), "models": registry.production_versions()},
        )
        if not settings.api_keys:
            logger.warning("no API key configured: model management endpoints are disabled")
        job_db = SweepDB(settings.store).ensure()  # the jobs table and the sweeps table
        dispatcher = (
            Dispatcher(settings, job_db, registry.publish, registry.promote, logger).start()
            if settings.dispatcher
            else None
        )
        grpc_server = (
            await start_grpc_server(
                registry, settings, app_metrics, logger, access_log, busy_poll, settings.grpc_port
            )
            if settings.grpc_port is not None
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
                "sweeps": job_db,
            }
        finally:
            follower.cancel()
            if grpc_server is not None:
                await grpc_server.stop(STOP_GRACE_S)
            if dispatcher is not None:
                await anyio.to_thread.run_sync(dispatcher.stop)
            access_log.flush()

    requests = RequestLog(app_metrics, access_log, busy_poll)
    idle = IdleWatch(settings.body_idle_timeout_s)
    hot_path = partial(FastPredict, requests=requests, idle=idle) if settings.fast_predict else None
    app = ServiceApp(
        hot_path,
        title="BEAR policy serving",
        version=__version__,
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit_for=_body_limit(settings), idle=idle)
    app.add_middleware(RequestContext, requests=requests)
    add_error_handlers(app)
    app.include_router(health_routes.router)
    app.include_router(prometheus.router)
    app.include_router(inference_routes.router)
    app.include_router(model_routes.router)
    app.include_router(oip_routes.router)
    app.include_router(dataset_routes.router)
    app.include_router(job_routes.router)
    app.include_router(promotion_routes.router)
    app.include_router(sweep_routes.router)
    app.include_router(dashboard_routes.router)
    return app


async def _follow_store(registry: Registry, interval_s: float, logger: logging.Logger) -> None:
    while True:
        await anyio.sleep(CHANGES_POLL_S)
        try:
            await anyio.to_thread.run_sync(registry.follow, interval_s)
        except OSError:
            logger.exception("reading production versions from the store failed")


class ServiceApp(FastAPI):
    """FastAPI with `front` (the predict hot path), when given, in front of everything FastAPI
    does with a request (its telemetry check and its whole middleware stack): `front` gets the
    requests first and hands on the ones it does not answer."""

    def __init__(self, front: Callable[[ASGIApp], ASGIApp] | None, **fastapi: Any) -> None:
        super().__init__(**fastapi)
        self.front = None if front is None else front(super().__call__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front(scope, receive, send)


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

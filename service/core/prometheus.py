"""Prometheus metrics of one app instance, in their own registry (so several apps can live in
one process, as in tests), and their exposition at GET /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bear_requests",
            "HTTP requests by route template, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bear_request_duration_seconds",
            "Time from request start to the end of the response, by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter(
            "bear_inference_rows",
            "Rows (observations) run through a graph",
            ["model", "version", "graph"],
            registry=self.registry,
        )
        self.ood_rows = Counter(
            "bear_ood_rows",
            "Rows scored by a model's out-of-distribution detector, by whether they were flagged",
            ["model", "version", "flagged"],
            registry=self.registry,
        )
        self.load_failures = Counter(
            "bear_model_load_failures",
            "Model versions that failed to load or verify",
            ["model"],
            registry=self.registry,
        )

    def watch_models(self, loaded: Callable[[], Iterable[tuple[str, str, bool]]]) -> None:
        """Export `bear_model_loaded{model,version,production}` from `loaded()` at scrape time."""
        self.registry.register(_LoadedModels(loaded))


class _LoadedModels(Collector):
    def __init__(self, loaded: Callable[[], Iterable[tuple[str, str, bool]]]) -> None:
        self._loaded = loaded

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "bear_model_loaded",
            "Model versions loaded in memory (1 each)",
            labels=["model", "version", "production"],
        )
        for name, version, production in self._loaded():
            family.add_metric([name, version, str(production).lower()], 1.0)
        yield family


router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

"""Request dependencies: the app's registry, settings, datasets and job table, and the model
version a path names."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Path, Request

from service.datasets import DatasetStore
from service.jobdb import JobDB
from service.model import ServedModel
from service.registry import Registry
from service.settings import Settings
from service.store import NAME_PATTERN, VERSION_PATTERN

NameParam = Annotated[str, Path(pattern=NAME_PATTERN, description="model name")]
VersionParam = Annotated[str, Path(pattern=VERSION_PATTERN, description="version, e.g. '2'")]


async def get_registry(request: Request) -> Registry:
    return request.state.registry


async def get_settings(request: Request) -> Settings:
    return request.state.settings


async def get_datasets(request: Request) -> DatasetStore:
    return request.state.datasets


async def get_jobs(request: Request) -> JobDB:
    return request.state.jobs


RegistryDep = Annotated[Registry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DatasetsDep = Annotated[DatasetStore, Depends(get_datasets)]
JobsDep = Annotated[JobDB, Depends(get_jobs)]


def _serving(request: Request, served: ServedModel) -> ServedModel:
    request.state.model = served.name
    request.state.version = served.version
    return served


# The resolvers below sit on the inference hot path: they read the registry from the request
# state rather than through another dependency, which would cost a dependency resolution each.


async def default_model(request: Request) -> ServedModel:
    """The production version of the default model."""
    return _serving(request, request.state.registry.production())


async def named_model(request: Request, name: NameParam) -> ServedModel:
    """The production version of the model in the path."""
    return _serving(request, request.state.registry.production(name))


async def model_version(request: Request, name: NameParam, version: VersionParam) -> ServedModel:
    """The version in the path, loaded (off the event loop) on first use."""
    registry: Registry = request.state.registry
    served = registry.cached(name, version)
    if served is None:
        served = await anyio.to_thread.run_sync(registry.load, name, version)
    return _serving(request, served)

"""The model version a request names: the default model's production version, a named model's,
or one version (loaded off the event loop on first use). Versions come from the app's model
registry, seen here only through the lookups inference needs (`ModelSource`); the resolved
model and version go into the request state for the access log."""

from __future__ import annotations

from typing import Annotated, Protocol

import anyio.to_thread
from fastapi import Depends, Request

from service.core.api_schemas import NameParam, VersionParam
from service.inference.served_model import ServedModel


class ModelSource(Protocol):
    def production(self, name: str | None = None) -> ServedModel:
        """The production version of `name`, or of the default model when name is None."""
        ...

    def cached(self, name: str, version: str) -> ServedModel | None: ...

    def load(self, name: str, version: str) -> ServedModel:
        """A version, loaded now when it is not in memory (blocking)."""
        ...

    def versions(self, name: str) -> list[str]:
        """The model's versions in the store, oldest first (blocking)."""
        ...


async def get_model_source(request: Request) -> ModelSource:
    source: ModelSource = request.state.registry
    return source


ModelSourceDep = Annotated[ModelSource, Depends(get_model_source)]


def _serving(request: Request, served: ServedModel) -> ServedModel:
    request.state.model = served.name
    request.state.version = served.version
    return served


# The resolvers below sit on the inference hot path: they read the registry from the request
# state rather than through another dependency, which would cost a dependency resolution each.


async def default_model(request: Request) -> ServedModel:
    """The production version of the default model."""
    source: ModelSource = request.state.registry
    return _serving(request, source.production())


async def named_model(request: Request, name: NameParam) -> ServedModel:
    """The production version of the model in the path."""
    source: ModelSource = request.state.registry
    return _serving(request, source.production(name))


async def model_version(request: Request, name: NameParam, version: VersionParam) -> ServedModel:
    """The version in the path, loaded (off the event loop) on first use."""
    return _serving(request, await find_model(request.state.registry, name, version))


async def find_model(source: ModelSource, name: str, version: str | None) -> ServedModel:
    """The production version of `name` (version None), or that version, loaded (off the
    event loop) on first use."""
    if version is None:
        return source.production(name)
    served = source.cached(name, version)
    if served is None:
        served = await anyio.to_thread.run_sync(source.load, name, version)
    return served

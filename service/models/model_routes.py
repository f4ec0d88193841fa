"""Model management: list, describe, publish, delete (promotion, which may need an evaluation
job, is service.jobs.promotion_routes). Reads are open; every change needs an API key."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import ValidationError

from bear_core.config import changed_params
from service.core.api_schemas import NameParam, VersionParam, error_responses
from service.core.deps import SettingsDep
from service.core.http_errors import InvalidBundle, ServiceError
from service.core.security import require_admin_key
from service.models.bundle_upload import extract_bundle, save_stream
from service.models.model_schemas import (
    Evaluation,
    ManifestSummary,
    ModelDetail,
    ModelList,
    ModelSummary,
    Promotion,
    PublishedVersion,
    VersionDetail,
)
from service.models.promotion_records import PromotionRecords
from service.models.registry import Registry

ERRORS = error_responses(401, 403, 404, 409, 413, 422)


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]

router = APIRouter(prefix="/models", tags=["models"], responses=ERRORS)


def _summary(registry: Registry, name: str) -> ModelSummary:
    return ModelSummary(
        name=name,
        production=registry.production_versions().get(name),
        versions=registry.store.versions(name),
    )


def _version_detail(registry: Registry, name: str, version: str) -> VersionDetail:
    try:
        m = registry.store.manifest(name, version)
        manifest = ManifestSummary(
            observation_shape=list(m.observation_shape),
            observation_dtype=m.observation_dtype,
            action_size=m.action_size,
            action_low=list(m.action_low),
            action_high=list(m.action_high),
            n_critics=m.n_critics,
            q_func_type=m.q_func_type,
            created=m.created,
            provenance=m.provenance,
            params_changed=changed_params(m.params),
            evaluation=None if m.evaluation is None else Evaluation(**m.evaluation),
        )
    except InvalidBundle:
        manifest = None
    return VersionDetail(
        version=version,
        production=registry.production_versions().get(name) == version,
        loaded=registry.cached(name, version) is not None,
        manifest=manifest,
        promotion=_promotion(registry, name, version),
    )


def _promotion(registry: Registry, name: str, version: str) -> Promotion | None:
    record = PromotionRecords(registry.store).decision(name, version)
    try:
        return None if record is None else Promotion.model_validate(record)
    except ValidationError:  # not what this service's gate writes
        return None


# The reads below list the store's directories and read manifests: plain functions, which
# FastAPI runs on a worker thread.


@router.get("", summary="every model with its versions and production version")
def list_models(registry: RegistryDep) -> ModelList:
    summaries = []
    for name in registry.store.models():
        try:
            summaries.append(_summary(registry, name))
        except ServiceError:
            continue  # a model directory without versions
    return ModelList(models=summaries)


@router.get("/{name}", summary="a model's versions, manifests and production version")
def get_model(name: NameParam, registry: RegistryDep) -> ModelDetail:
    versions = registry.store.versions(name)
    return ModelDetail(
        name=name,
        production=registry.production_versions().get(name),
        versions=[_version_detail(registry, name, v) for v in versions],
    )


@router.get("/{name}/versions/{version}", summary="one version's manifest")
def get_version(name: NameParam, version: VersionParam, registry: RegistryDep) -> VersionDetail:
    registry.store.bundle_path(name, version)
    return _version_detail(registry, name, version)


@router.delete(
    "/{name}/versions/{version}",
    dependencies=[Depends(require_admin_key)],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="delete a version that is not in production",
)
async def delete_version(name: NameParam, version: VersionParam, registry: RegistryDep) -> None:
    await anyio.to_thread.run_sync(registry.delete, name, version)


@router.post(
    "/{name}/versions",
    dependencies=[Depends(require_admin_key)],
    status_code=status.HTTP_201_CREATED,
    summary="publish a bundle (.tar.gz request body) as the next version",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def publish(
    name: NameParam,
    request: Request,
    response: Response,
    registry: RegistryDep,
    settings: SettingsDep,
    promote: bool = False,
) -> PublishedVersion:
    work = await anyio.to_thread.run_sync(_upload_dir, registry, name)
    try:
        archive = work / "bundle.tar.gz"
        if await save_stream(request.stream(), archive) == 0:
            raise InvalidBundle("body: empty; send the bundle as a .tar.gz archive")
        bundle = await anyio.to_thread.run_sync(
            extract_bundle, archive, work / "bundle", settings.max_upload_bytes
        )
        version = await anyio.to_thread.run_sync(registry.publish, name, bundle, promote)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                functools.partial(shutil.rmtree, work, ignore_errors=True)
            )
    response.headers["Location"] = f"/models/{name}/versions/{version}"
    return PublishedVersion(name=name, version=version, production=promote)


def _upload_dir(registry: Registry, name: str) -> Path:
    """A new work directory for an upload, in the store's staging area (the caller removes it)."""
    store = registry.store.ensure()
    return Path(tempfile.mkdtemp(prefix=f"{name}.", suffix=".upload", dir=store.tmp_dir))

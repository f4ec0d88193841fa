"""Datasets for training jobs: upload (multipart, streamed to disk, validated, stored under its
sha256), list, describe, delete. Reads are open; changes need an API key."""

from __future__ import annotations

import functools
import shutil
from dataclasses import asdict
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Request, Response, status

from service.core.api_schemas import error_responses
from service.core.deps import SettingsDep
from service.core.security import require_admin_key
from service.datasets.dataset_check import DatasetLimits
from service.datasets.dataset_deps import DatasetsDep, DatasetUsersDep
from service.datasets.dataset_schemas import DatasetList, DatasetResponse
from service.datasets.dataset_store import ID_PATTERN, DatasetInfo
from service.datasets.multipart import receive_file

ERRORS = error_responses(401, 403, 404, 409, 413, 422)
FILE_FIELD = "file"

DatasetId = Annotated[str, Path(pattern=ID_PATTERN, description="dataset id")]

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=ERRORS)


def _response(info: DatasetInfo) -> DatasetResponse:
    return DatasetResponse(**asdict(info))


@router.post(
    "",
    dependencies=[Depends(require_admin_key)],
    status_code=status.HTTP_201_CREATED,
    summary="upload a D4RL-format HDF5 file (multipart field 'file'); 200 when already stored",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {FILE_FIELD: {"type": "string", "format": "binary"}},
                        "required": [FILE_FIELD],
                    }
                }
            },
        }
    },
)
async def upload(
    request: Request, response: Response, datasets: DatasetsDep, settings: SettingsDep
) -> DatasetResponse:
    limits = DatasetLimits.from_settings(settings)
    staging = await anyio.to_thread.run_sync(datasets.staging)
    try:
        received = await receive_file(request, FILE_FIELD, staging / "upload.h5")
        info, created = await anyio.to_thread.run_sync(datasets.add, received, limits)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                functools.partial(shutil.rmtree, staging, ignore_errors=True)
            )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.headers["Location"] = f"/datasets/{info.id}"
    return _response(info)


# The reads below read dataset summaries from disk: plain functions, which FastAPI runs on a
# worker thread.


@router.get("", summary="every stored dataset, oldest first")
def list_datasets(datasets: DatasetsDep) -> DatasetList:
    return DatasetList(datasets=[_response(info) for info in datasets.list()])


@router.get("/{dataset_id}", summary="one dataset's summary")
def get_dataset(dataset_id: DatasetId, datasets: DatasetsDep) -> DatasetResponse:
    return _response(datasets.get(dataset_id))


@router.delete(
    "/{dataset_id}",
    dependencies=[Depends(require_admin_key)],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="delete a dataset no queued or running job uses",
)
async def delete_dataset(
    dataset_id: DatasetId, datasets: DatasetsDep, jobs: DatasetUsersDep
) -> None:
    await anyio.to_thread.run_sync(jobs.delete_dataset, dataset_id, datasets.remove)

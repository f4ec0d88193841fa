"""Request dependencies of the datasets: the app's dataset store, and what knows whether a job
uses a dataset (the app's job table, seen only through `DatasetUsers`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Protocol

from fastapi import Depends, Request

from service.datasets.dataset_store import DatasetStore


class DatasetUsers(Protocol):
    def delete_dataset(self, dataset_id: str, remove: Callable[[str], None]) -> None:
        """Call `remove(dataset_id)` unless a queued or running job uses the dataset
        (Conflict then); blocking."""
        ...


async def get_datasets(request: Request) -> DatasetStore:
    datasets: DatasetStore = request.state.datasets
    return datasets


async def get_dataset_users(request: Request) -> DatasetUsers:
    users: DatasetUsers = request.state.jobs
    return users


DatasetsDep = Annotated[DatasetStore, Depends(get_datasets)]
DatasetUsersDep = Annotated[DatasetUsers, Depends(get_dataset_users)]

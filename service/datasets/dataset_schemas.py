"""Response bodies of the datasets API."""

from __future__ import annotations

from pydantic import Field

from service.core.api_schemas import Response


class DatasetResponse(Response):
    id: str = Field(description="the first 16 hex digits of sha256")
    sha256: str
    filename: str
    size_bytes: int
    n_transitions: int
    n_episodes: int
    observation_shape: list[int]
    action_size: int
    created: str


class DatasetList(Response):
    datasets: list[DatasetResponse]

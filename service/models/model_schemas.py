"""Response bodies of the model management API."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from service.core.api_schemas import Response


class Evaluation(Response):
    """The policy's value estimated on episodes held out of its training."""

    method: str = Field(description="'fqe': fitted Q evaluation")
    estimate: float = Field(description="mean over the held-out episodes of Q^pi(s0, pi(s0))")
    ci: list[float] = Field(description="[low, high]: the bootstrap interval over episodes")
    n_episodes: int
    dataset_sha256: str


class ManifestSummary(Response):
    observation_shape: list[int]
    observation_dtype: str
    action_size: int
    action_low: list[float]
    action_high: list[float]
    n_critics: int
    q_func_type: str
    created: str
    provenance: dict[str, Any]
    params_changed: dict[str, Any] = Field(
        default_factory=dict, description="the BEAR parameters that differ from their defaults"
    )
    evaluation: Evaluation | None = Field(
        default=None, description="the held-out estimate of this policy; null when none"
    )


class VersionDetail(Response):
    version: str
    production: bool
    loaded: bool
    manifest: ManifestSummary | None = Field(default=None, description="null when unreadable")


class ModelSummary(Response):
    name: str
    production: str | None
    versions: list[str]


class ModelList(Response):
    models: list[ModelSummary]


class ModelDetail(Response):
    name: str
    production: str | None
    versions: list[VersionDetail]


class PublishedVersion(Response):
    name: str
    version: str
    production: bool


class PromotedVersion(Response):
    name: str
    version: str
    previous: str | None

"""Response bodies of the model management API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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


class GateEstimate(Response):
    """One version's value estimate on the held-out episodes the gate compared on."""

    version: str
    estimate: float | None = Field(description="discounted return; null while being computed")
    ci: list[float] | None = Field(description="[low, high]: the bootstrap interval over episodes")


class GateEpisodes(Response):
    """The held-out episodes both estimates are computed on: the candidate's."""

    n: int
    dataset_sha256: str = Field(description="sha256 of the stored dataset file they come from")
    dataset_id: str
    indices: list[int] = Field(description="their indices in the dataset file")
    episodes_sha256: str = Field(description="sha256 of their transitions")


class Promotion(Response):
    """A promotion decision about a version, and the numbers behind it."""

    decision: Literal["promoted", "refused", "pending"]
    gate: Literal["none", "ope"]
    margin: float | None = Field(
        description="how much the candidate's estimate had to exceed production's (gate 'ope')"
    )
    candidate: GateEstimate | None
    production: GateEstimate | None = Field(
        description="the production version it was compared with; null when there was none"
    )
    episodes: GateEpisodes | None
    reason: str
    job: str | None = Field(default=None, description="the evaluation job of a pending decision")
    at: datetime


class VersionDetail(Response):
    version: str
    production: bool
    loaded: bool
    manifest: ManifestSummary | None = Field(default=None, description="null when unreadable")
    promotion: Promotion | None = Field(
        default=None, description="the latest promotion decision about this version"
    )


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
    promotion: Promotion | None = Field(default=None, description="the decision, as recorded")

"""The promotion gate: promote a candidate version only when its estimated value on held-out
logged episodes exceeds the production version's by a margin.

Both estimates are computed on the same episodes, the candidate's held-out set as its manifest
records it (`provenance.holdout`: the source dataset file's sha256, the episodes' indices in it
and their sha256, the FQE steps and seed), and by one evaluator: `python -m bear_core
evaluate-bundle` (FQE of each bundle's policy with the same scalers, discount, steps and seed),
run in a job's child process, never in a serving process. Its estimates are kept with each
version (`PromotionRecords`, keyed by `HeldOutSet.key`), so a comparison that has them decides
at once, and one that lacks them waits for the evaluation job. The manifest's own `evaluation`
(computed on the torch model during training) proves the candidate has a held-out set; it is
not compared directly, because production's estimate could not be computed the same way.

Every decision (promoted, refused, pending) is logged as one structured line and recorded with
the candidate version; production changes only on a "promoted" decision, and then only while it
is still the version the candidate was compared with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from bear_core.bundle import Manifest
from bear_core.config import BEARConfig
from service.core.http_errors import Conflict
from service.datasets.dataset_store import DatasetStore
from service.jobs.job_db import Job, JobDB, JobSpec
from service.models.model_store import ModelStore
from service.models.promotion_records import PromotionRecords

EVALUATOR = "fqe-bundle-1"  # changes with the evaluator, so that older estimates are not reused
Promote = Callable[[str, str, str | None], str | None]  # (name, version, expect) -> previous
Decision = Literal["promoted", "refused", "pending"]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class HeldOutSet:
    """The held-out episodes of a candidate and the FQE settings of its estimates."""

    dataset_sha256: str  # of the stored dataset file
    indices: tuple[int, ...]  # in that file
    episodes_sha256: str
    fqe_steps: int
    fqe_seed: int
    gamma: float

    @property
    def dataset_id(self) -> str:
        return self.dataset_sha256[:16]

    @property
    def key(self) -> str:
        """What the estimates on this set are kept under: the set and the evaluator."""
        identity = {**asdict(self), "indices": list(self.indices), "evaluator": EVALUATOR}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "n": len(self.indices),
            "dataset_sha256": self.dataset_sha256,
            "dataset_id": self.dataset_id,
            "indices": list(self.indices),
            "episodes_sha256": self.episodes_sha256,
        }

    @classmethod
    def of(cls, manifest: Manifest, name: str, version: str) -> HeldOutSet:
        """The candidate's held-out set; Conflict saying why when it cannot be gated."""
        where = f"model {name!r} version {version!r} cannot be gated"
        if manifest.evaluation is None:
            raise Conflict(
                f"{where}: its manifest has no held-out evaluation (train it with holdout > 0)"
            )
        record = manifest.provenance.get("holdout")
        if not isinstance(record, dict) or not _valid_record(record):
            raise Conflict(
                f"{where}: its manifest does not record which stored dataset and episodes were "
                "held out (provenance.holdout, written by the trainer of this service)"
            )
        gamma: Any = manifest.params.get("gamma")
        return cls(
            dataset_sha256=record["source_sha256"],
            indices=tuple(record["episodes"]),
            episodes_sha256=record["episodes_sha256"],
            fqe_steps=record["fqe_steps"],
            fqe_seed=record["fqe_seed"],
            gamma=float(gamma) if _discount(gamma) else BEARConfig().gamma,
        )


@dataclass(frozen=True)
class GatePlan:
    """A candidate, the production version it is compared with (None: there is none) and the
    estimates on the candidate's held-out set recorded so far (None: not computed yet)."""

    name: str
    candidate: str
    production: str | None
    held_out: HeldOutSet
    estimates: dict[str, dict[str, Any] | None]

    @property
    def missing(self) -> list[str]:
        """The versions whose estimate a decision still needs."""
        if self.production in (None, self.candidate):
            return []
        return [version for version, estimate in self.estimates.items() if estimate is None]


class PromotionGate:
    def __init__(
        self,
        store: ModelStore,
        datasets: DatasetStore,
        promote: Promote,
        logger: logging.Logger,
    ) -> None:
        self.store = store
        self.records = PromotionRecords(store)
        self._datasets = datasets
        self._promote = promote
        self._log = logger

    # --- what a decision needs ------------------------------------------------------------------

    def plan(self, name: str, version: str, expect: str | None = None) -> GatePlan:
        """The candidate's held-out set, the production version and their recorded estimates.
        With `expect`, Conflict unless that is still the production version."""
        held_out = HeldOutSet.of(self.store.manifest(name, version), name, version)
        production = self.store.production(name)
        if expect is not None and production != expect:
            current = f"version {production!r}" if production else "no version"
            raise Conflict(
                f"model {name!r} has {current} in production, not the expected {expect!r}"
            )
        versions = [version] if production in (None, version) else [version, production]
        estimates = {v: self.records.estimate(name, v, held_out.key) for v in versions}
        return GatePlan(name, version, production, held_out, estimates)

    def dataset_path(self, held_out: HeldOutSet) -> Path:
        """The stored dataset file the held-out episodes come from; Conflict when it is gone."""
        dataset_id = held_out.dataset_id
        if (
            not self._datasets.exists(dataset_id)
            or self._datasets.get(dataset_id).sha256 != held_out.dataset_sha256
        ):
            raise Conflict(
                f"the held-out episodes come from dataset {dataset_id!r} (sha256 "
                f"{held_out.dataset_sha256}), which is no longer in the store: upload it again"
            )
        return self._datasets.data_path(dataset_id)

    def command(
        self, python: str, name: str, held_out: HeldOutSet, versions: list[str], output: Path
    ) -> list[str]:
        """The evaluator's command line: every version's bundle, scored into `output`."""
        command = [python, "-m", "bear_core", "evaluate-bundle"]
        for version in versions:
            command += ["--bundle", str(self.store.bundle_path(name, version))]
        command += ["--dataset", str(self.dataset_path(held_out))]
        command += ["--episodes", ",".join(map(str, held_out.indices))]
        command += ["--episodes-sha256", held_out.episodes_sha256]
        command += ["--fqe-steps", str(held_out.fqe_steps), "--seed", str(held_out.fqe_seed)]
        return [*command, "--gamma", repr(held_out.gamma), "--out", str(output)]

    def save_results(
        self, name: str, held_out: HeldOutSet, versions: list[str], output: dict[str, Any]
    ) -> None:
        """Keep the evaluator's estimates (its results in `versions` order) with each version,
        unless the version's bundle changed while it ran."""
        for version, result in zip(versions, output["results"], strict=True):
            if result["manifest_sha256"] != self.records.manifest_sha256(name, version):
                continue
            estimate = {
                "estimate": float(result["estimate"]),
                "ci": [float(result["ci"][0]), float(result["ci"][1])],
                "n_episodes": int(result["n_episodes"]),
                "n_steps": int(result["n_steps"]),
                "seconds": float(result["seconds"]),
                "at": _now(),
            }
            self.records.save_estimate(name, version, held_out.key, estimate)

    # --- decisions ------------------------------------------------------------------------------

    def decide(self, plan: GatePlan, margin: float) -> dict[str, Any]:
        """Promote the candidate when there is no production version, or when its estimate
        exceeds production's by more than `margin` (then only while production is unchanged:
        Conflict otherwise); record and log the decision and return it."""
        if plan.missing:
            raise ValueError(f"estimates of version(s) {plan.missing} are still missing")
        name, candidate, production = plan.name, plan.candidate, plan.production
        if production is None:
            self._promote(name, candidate, None)
            return self._record(plan, "promoted", margin, "no version was in production")
        if production == candidate:
            reason = f"version {candidate} is already the production version"
            return self._record(plan, "promoted", margin, reason)
        ours, theirs = _value(plan, candidate), _value(plan, production)
        difference = ours - theirs
        versus = (
            f"its estimate {ours:.4g} minus production version {production}'s {theirs:.4g} is "
            f"{difference:.4g}"
        )
        if not difference > margin:
            reason = f"refused: {versus}, not above the margin {margin:g}"
            return self._record(plan, "refused", margin, reason)
        self._promote(name, candidate, production)
        return self._record(plan, "promoted", margin, f"{versus}, above the margin {margin:g}")

    def pending(self, plan: GatePlan, margin: float, job_id: str) -> dict[str, Any]:
        reason = (
            f"waiting for evaluation job {job_id} (version(s) {', '.join(plan.missing)} on the "
            "candidate's held-out episodes); production is unchanged until a decision"
        )
        return self._record(plan, "pending", margin, reason, job_id)

    def refused(self, plan: GatePlan, margin: float, reason: str) -> dict[str, Any]:
        """A refusal for a reason of its own (the evaluation failed, production changed)."""
        return self._record(plan, "refused", margin, reason)

    def ungated(self, name: str, version: str, previous: str | None) -> dict[str, Any]:
        """Record a promotion made without a gate."""
        record = {
            "decision": "promoted",
            "gate": "none",
            "margin": None,
            "candidate": {"version": version, "estimate": None, "ci": None},
            "production": None
            if previous is None
            else {"version": previous, "estimate": None, "ci": None},
            "episodes": None,
            "reason": "promoted without a gate",
            "job": None,
            "at": _now(),
        }
        return self._save(name, version, record)

    def _record(
        self,
        plan: GatePlan,
        decision: Decision,
        margin: float,
        reason: str,
        job_id: str | None = None,
    ) -> dict[str, Any]:
        record = {
            "decision": decision,
            "gate": "ope",
            "margin": margin,
            "candidate": _estimate(plan, plan.candidate),
            "production": None if plan.production is None else _estimate(plan, plan.production),
            "episodes": plan.held_out.describe(),
            "reason": reason,
            "job": job_id,
            "at": _now(),
        }
        return self._save(plan.name, plan.candidate, record)

    def _save(self, name: str, version: str, record: dict[str, Any]) -> dict[str, Any]:
        self.records.save_decision(name, version, record)
        candidate, production = record["candidate"], record["production"] or {}
        episodes = record["episodes"] or {}
        self._log.info(
            "promotion decision",
            extra={
                "model": name,
                "version": version,
                "decision": record["decision"],
                "gate": record["gate"],
                "margin": record["margin"],
                "candidate_estimate": candidate["estimate"],
                "candidate_ci": candidate["ci"],
                "production_version": production.get("version"),
                "production_estimate": production.get("estimate"),
                "production_ci": production.get("ci"),
                "n_episodes": episodes.get("n"),
                "dataset_sha256": episodes.get("dataset_sha256"),
                "reason": record["reason"],
                "job": record["job"],
            },
        )
        return record


def evaluation_job(jobs: JobDB, dataset_exists: Callable[[str], bool], plan: GatePlan) -> Job:
    """The queued or running evaluation job computing the plan's missing estimates, or a new
    one."""
    target = {"candidate": plan.candidate, "production": plan.production, "versions": plan.missing}
    for job in [*jobs.list("queued", 1000), *jobs.list("running", 1000)]:
        if (
            job.spec.kind == "evaluate"
            and job.model_name == plan.name
            and job.spec.evaluate == target
        ):
            return job
    spec = JobSpec(params={}, kind="evaluate", evaluate=target)
    return jobs.submit(
        plan.name, plan.held_out.dataset_id, spec, secrets.token_hex(8), dataset_exists
    )


def refused_body(record: dict[str, Any]) -> dict[str, Any]:
    """The 409 body of a refused gated promotion."""
    return {
        "error": record["reason"],
        "candidate": record["candidate"],
        "production": record["production"],
        "margin": record["margin"],
        "episodes": record["episodes"],
    }


def _value(plan: GatePlan, version: str) -> float:
    estimate = plan.estimates[version]
    assert estimate is not None
    return float(estimate["estimate"])


def _estimate(plan: GatePlan, version: str) -> dict[str, Any]:
    estimate = plan.estimates.get(version)
    if estimate is None:
        return {"version": version, "estimate": None, "ci": None}
    return {"version": version, "estimate": estimate["estimate"], "ci": estimate["ci"]}


def _valid_record(record: dict[str, Any]) -> bool:
    episodes = record.get("episodes")
    return (
        isinstance(record.get("source_sha256"), str)
        and bool(_SHA256.fullmatch(record["source_sha256"]))
        and isinstance(record.get("episodes_sha256"), str)
        and bool(_SHA256.fullmatch(record["episodes_sha256"]))
        and isinstance(episodes, list)
        and bool(episodes)
        and all(_count(i, 0) for i in episodes)
        and _count(record.get("fqe_steps"), 1)
        and _count(record.get("fqe_seed"), 0)
    )


def _count(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _discount(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 1
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()

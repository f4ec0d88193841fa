"""The sweep supervisor: the dispatcher calls `step()` every poll. A running sweep whose trials
have all ended is decided: the trial with the highest held-out (FQE) estimate among those that
succeeded is published as the next version of the sweep's model, promoted when the sweep asked
for it (`promote: "if_better"`: through the promotion gate, waiting for its evaluation job when
an estimate is missing), and the other trials' bundles are removed unpublished. Each step is
recorded in the sweeps table before the next one starts (service.jobs.sweep_db), so a restarted
dispatcher takes the sweep up where it was; publishing is idempotent (a version already holding
the best trial's manifest is that trial's).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.core.http_errors import Conflict, NotFound, ServiceError
from service.datasets.dataset_store import DatasetStore
from service.jobs.job_db import ACTIVE, Job
from service.jobs.job_files import JobFiles
from service.jobs.promotion_gate import Promote, PromotionGate, evaluation_job
from service.jobs.sweep_db import Sweep, SweepDB, SweepState, Trial

ENVIRONMENT_METRIC = "environment"  # the trainer's eval_env scorer (bear_core.cli)
Publish = Callable[[str, Path, bool], str]  # (model name, bundle dir, promote) -> version


@dataclass(frozen=True)
class TrialResult:
    """A trial's held-out estimate (of the epoch its bundle holds, or of the best epoch scored
    so far while it runs) and the environment return the trainer measured at that epoch."""

    epoch: int | None
    estimate: float | None
    ci: list[float] | None
    environment_return: float | None


def trial_result(files: JobFiles) -> TrialResult:
    """From the trial's selection.json (chosen_epoch and its candidate) and metrics.jsonl."""
    selection = files.selection()
    epoch = estimate = ci = None
    if isinstance(selection, dict):
        epoch = selection.get("chosen_epoch")
        for candidate in selection.get("candidates") or []:
            if candidate.get("epoch") == epoch:
                estimate, ci = float(candidate["estimate"]), list(candidate["ci"])
    records = files.metrics()
    if epoch is None and records:
        epoch = records[-1]["epoch"]
    returns = [r["metrics"].get(ENVIRONMENT_METRIC) for r in records if r["epoch"] == epoch]
    environment = returns[-1] if returns else None
    return TrialResult(epoch, estimate, ci, None if environment is None else float(environment))


class SweepSupervisor:
    def __init__(
        self,
        db: SweepDB,
        root: Path,
        publish: Publish,
        promote: Promote,
        gate: PromotionGate,
        margin: float,
        logger: logging.Logger,
    ) -> None:
        self._db = db
        self._root = root
        self._publish = publish
        self._promote = promote
        self._gate = gate
        self._margin = margin
        self._datasets = DatasetStore(root)
        self._log = logger

    def step(self) -> None:
        """Take every running sweep whose trials have ended one step further."""
        for sweep in self._db.list_sweeps("running", limit=1_000_000):
            try:
                self._advance(sweep)
            except ServiceError as exc:
                self._close(sweep, "failed", exc.message)
            except (OSError, ValueError, KeyError) as exc:
                self._log.exception("sweep supervisor failed", extra={"sweep": sweep.id})
                self._close(sweep, "failed", f"sweep supervisor error: {exc!r}")

    def _advance(self, sweep: Sweep) -> None:
        jobs = self._db.trial_jobs(sweep)
        if any(job.state in ACTIVE for job in jobs):
            return
        if sweep.cancel_requested:
            self._close(sweep, "cancelled", "cancelled on request; nothing published")
            return
        decision = sweep.decision
        if decision is None:
            decision = self._decision(sweep, jobs)
            if decision is None:
                self._close(sweep, "failed", "no trial succeeded with a held-out estimate")
                return
            if not self._db.decide(sweep.id, decision):
                return  # cancelled meanwhile: the next step closes it
            self._log.info(
                "sweep decided",
                extra={"sweep": sweep.id, "trial": decision["trial"], "reason": decision["reason"]},
            )
        version = sweep.model_version
        if version is None:
            version = self._publish_best(sweep, decision["job"])
            self._db.set_published(sweep.id, version)
            self._remove_bundles(sweep)
        promotion = None
        if sweep.spec["promote"] == "if_better":
            promotion = self._gated(sweep, version)
            if promotion is None:
                return  # waiting for the gate's evaluation job
        self._db.finish_sweep(sweep.id, "succeeded", promotion=promotion)
        self._log.info(
            "sweep published its best trial",
            extra={"sweep": sweep.id, "model": sweep.model_name, "version": version},
        )

    def _decision(self, sweep: Sweep, jobs: list[Job]) -> dict[str, Any] | None:
        """The best trial by held-out estimate among those that succeeded (the first of equal
        ones), with every trial's estimate; None when no trial has one."""
        rows = []
        for trial, job in zip(sweep.trials, jobs, strict=True):
            result = trial_result(JobFiles(self._root, job.id))
            rows.append(_row(trial, job, result))
        scored = [r for r in rows if r["state"] == "succeeded" and r["estimate"] is not None]
        if not scored:
            return None
        best = max(scored, key=lambda r: r["estimate"])
        others = ", ".join(
            f"trial {r['trial']}: {r['estimate']:.4g}" for r in scored if r is not best
        )
        failed = len(rows) - len(scored)
        reason = (
            f"trial {best['trial']} ({_describe(best['params'])}) has the highest held-out "
            f"estimate, {best['estimate']:.4g}, of {len(scored)} trial(s) that succeeded"
            + (f" ({others})" if others else "")
            + (f"; {failed} trial(s) without an estimate" if failed else "")
        )
        return {
            "trial": best["trial"],
            "job": best["job"],
            "params": best["params"],
            "estimate": best["estimate"],
            "ci": best["ci"],
            "reason": reason,
            "trials": rows,
            "at": datetime.now(UTC).isoformat(),
        }

    def _publish_best(self, sweep: Sweep, job_id: str) -> str:
        bundle = JobFiles(self._root, job_id).bundle_dir
        try:
            manifest = (bundle / "manifest.json").read_bytes()
        except FileNotFoundError:
            raise Conflict(f"the best trial's bundle {bundle} is gone; nothing published") from None
        promote = sweep.spec["promote"] is True
        store = self._gate.store
        try:
            published = store.versions(sweep.model_name)
        except NotFound:
            published = []
        for version in published:  # published before a restart: that version
            existing = store.bundle_path(sweep.model_name, version) / "manifest.json"
            if existing.read_bytes() == manifest:
                if promote:
                    self._promote(sweep.model_name, version, None)
                return version
        return self._publish(sweep.model_name, bundle, promote)

    def _remove_bundles(self, sweep: Sweep) -> None:
        for trial in sweep.trials:
            shutil.rmtree(JobFiles(self._root, trial.job).bundle_dir, ignore_errors=True)

    def _gated(self, sweep: Sweep, version: str) -> dict[str, Any] | None:
        """The promotion gate's decision about the published version; None while its
        evaluation job runs (queued here when an estimate is missing)."""
        name, margin = sweep.model_name, self._margin
        plan = self._gate.plan(name, version)
        try:
            if plan.missing:
                job = self._db.get(sweep.gate_job) if sweep.gate_job else None
                if job is not None and job.state in ACTIVE:
                    return None
                if job is not None and job.state != "succeeded":
                    why = f"refused: the evaluation job {job.id} {job.state}"
                    return self._gate.refused(plan, margin, why)
                self._gate.dataset_path(plan.held_out)  # Conflict when the episodes are gone
                job = evaluation_job(self._db, self._datasets.exists, plan)
                self._db.set_gate_job(sweep.id, job.id)
                self._gate.pending(plan, margin, job.id)
                return None
            return self._gate.decide(plan, margin)
        except ServiceError as exc:
            return self._gate.refused(plan, margin, f"refused: {exc.message}")

    def _close(self, sweep: Sweep, state: SweepState, error: str) -> None:
        self._remove_bundles(sweep)
        self._db.finish_sweep(sweep.id, state, error)
        self._log.info("sweep ended", extra={"sweep": sweep.id, "state": state, "error": error})


def _row(trial: Trial, job: Job, result: TrialResult) -> dict[str, Any]:
    return {
        "trial": trial.index,
        "job": job.id,
        "params": trial.params,
        "state": job.state,
        "estimate": result.estimate,
        "ci": result.ci,
        "environment_return": result.environment_return,
    }


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{name}={json.dumps(value)}" for name, value in params.items())

"""The sweeps table, in the jobs database (<store>/jobs.db) beside the jobs it creates.

A sweep is one request for many training jobs, its trials: one per combination of the searched
parameter values and seeds. Its row and its trials' job rows are inserted in one transaction;
the trials are ordinary jobs (spec.sweep names the sweep, spec.publish is false), which the
dispatcher runs like any other. States: running -> succeeded | failed | cancelled. While it runs,
the sweep supervisor (service.jobs.sweep_supervisor) records, in this order, the decision (which
trial is best), the version it published and the promotion gate's evaluation job when it waits
for one, so that a restarted dispatcher goes on from the last step recorded.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from service.core.http_errors import Conflict, InvalidInput, NotFound
from service.jobs.job_db import Job, JobDB, JobSpec

SweepState = Literal["running", "succeeded", "failed", "cancelled"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    state TEXT NOT NULL,
    model_name TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    trials TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    decision TEXT,
    model_version TEXT,
    gate_job TEXT,
    promotion TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS sweeps_by_state ON sweeps (state, seq);
"""


@dataclass(frozen=True)
class Trial:
    index: int
    job: str  # the job's id
    params: dict[str, Any]  # the searched values it tries, and its seed


@dataclass(frozen=True)
class Sweep:
    id: str
    state: SweepState
    model_name: str
    dataset_id: str
    spec: dict[str, Any]  # the request: params, search, seeds, budget, selection, promote
    trials: list[Trial]
    created_at: float
    finished_at: float | None
    cancel_requested: bool
    decision: dict[str, Any] | None  # the best trial, its estimate and every trial's
    model_version: str | None  # the version it published
    gate_job: str | None  # the promotion gate's evaluation job ("if_better")
    promotion: dict[str, Any] | None  # the gate's decision record ("if_better")
    error: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Sweep:
        return cls(
            id=row["id"],
            state=row["state"],
            model_name=row["model_name"],
            dataset_id=row["dataset_id"],
            spec=json.loads(row["spec"]),
            trials=[Trial(**trial) for trial in json.loads(row["trials"])],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            cancel_requested=bool(row["cancel_requested"]),
            decision=_loads(row["decision"]),
            model_version=row["model_version"],
            gate_job=row["gate_job"],
            promotion=_loads(row["promotion"]),
            error=row["error"],
        )


class SweepDB(JobDB):
    def ensure(self) -> SweepDB:
        super().ensure()
        with self._connect() as db:
            db.executescript(_SCHEMA)
        return self

    # --- the API's side -------------------------------------------------------------------------

    def submit_sweep(
        self,
        sweep_id: str,
        model_name: str,
        dataset_id: str,
        spec: dict[str, Any],
        trials: list[tuple[Trial, JobSpec]],
        dataset_exists: Callable[[str], bool],
    ) -> Sweep:
        """The sweep and its trials' jobs (queued), all or nothing."""
        with self._write() as db:
            if not dataset_exists(dataset_id):
                raise InvalidInput(f"dataset_id: dataset {dataset_id!r} not found")
            for trial, job_spec in trials:
                self._insert(db, trial.job, model_name, dataset_id, job_spec)
            db.execute(
                "INSERT INTO sweeps (id, state, model_name, dataset_id, spec, trials, created_at) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?)",
                (
                    sweep_id,
                    model_name,
                    dataset_id,
                    json.dumps(spec),
                    json.dumps([trial.__dict__ for trial, _ in trials]),
                    time.time(),
                ),
            )
        return self.get_sweep(sweep_id)

    def get_sweep(self, sweep_id: str) -> Sweep:
        with self._connect() as db:
            return self._get_sweep(db, sweep_id)

    def list_sweeps(self, state: SweepState | None = None, limit: int = 100) -> list[Sweep]:
        return [Sweep.from_row(row) for row in self._newest("sweeps", state, limit)]

    def trial_jobs(self, sweep: Sweep) -> list[Job]:
        """The trials' jobs, in trial order."""
        ids = [trial.job for trial in sweep.trials]
        with self._connect() as db:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE id IN ({', '.join('?' * len(ids))})", ids
            ).fetchall()
        jobs = {row["id"]: Job.from_row(row) for row in rows}
        return [jobs[job_id] for job_id in ids]

    def cancel_sweep(self, sweep_id: str) -> Sweep:
        """Cancel the queued trials at once and ask the dispatcher to stop the running ones;
        the sweep ends cancelled, publishing nothing, once they have all stopped."""
        with self._write() as db:
            sweep = self._get_sweep(db, sweep_id)
            if sweep.state != "running":
                raise Conflict(f"sweep {sweep_id!r} is already {sweep.state}; nothing to cancel")
            if sweep.decision is not None:
                raise Conflict(
                    f"sweep {sweep_id!r}: its trials have ended and trial "
                    f"{sweep.decision['trial']} was chosen; nothing to cancel"
                )
            ids = [trial.job for trial in sweep.trials]
            marks = ", ".join("?" * len(ids))
            db.execute("UPDATE sweeps SET cancel_requested = 1 WHERE id = ?", (sweep_id,))
            db.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?, "
                "error = 'cancelled with its sweep before it started' "
                f"WHERE id IN ({marks}) AND state = 'queued'",
                (time.time(), *ids),
            )
            db.execute(
                f"UPDATE jobs SET cancel_requested = 1 WHERE id IN ({marks}) AND state = 'running'",
                ids,
            )
        return self.get_sweep(sweep_id)

    # --- the supervisor's side ------------------------------------------------------------------

    def decide(self, sweep_id: str, decision: dict[str, Any]) -> bool:
        """Record the decision unless the sweep was cancelled meanwhile; whether it was."""
        with self._write() as db:
            row = db.execute(
                "UPDATE sweeps SET decision = ? WHERE id = ? AND state = 'running' "
                "AND decision IS NULL AND cancel_requested = 0 RETURNING id",
                (json.dumps(decision), sweep_id),
            ).fetchone()
        return row is not None

    def set_published(self, sweep_id: str, version: str) -> None:
        with self._write() as db:
            db.execute("UPDATE sweeps SET model_version = ? WHERE id = ?", (version, sweep_id))

    def set_gate_job(self, sweep_id: str, job_id: str) -> None:
        with self._write() as db:
            db.execute("UPDATE sweeps SET gate_job = ? WHERE id = ?", (job_id, sweep_id))

    def finish_sweep(
        self,
        sweep_id: str,
        state: SweepState,
        error: str | None = None,
        promotion: dict[str, Any] | None = None,
    ) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE sweeps SET state = ?, finished_at = ?, error = ?, promotion = ? "
                "WHERE id = ? AND state = 'running'",
                (state, time.time(), error, _dumps(promotion), sweep_id),
            )

    # --- internals ------------------------------------------------------------------------------

    def _get_sweep(self, db: sqlite3.Connection, sweep_id: str) -> Sweep:
        row = db.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise NotFound(f"sweep {sweep_id!r} not found")
        return Sweep.from_row(row)


def _loads(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


def _dumps(value: dict[str, Any] | None) -> str | None:
    return json.dumps(value) if value is not None else None

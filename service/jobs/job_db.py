"""The training-job table: SQLite (stdlib, WAL mode) at <store>/jobs.db, shared by the API and
the dispatcher, whichever processes they run in.

States: queued -> running -> succeeded | failed | cancelled; a queued job can be cancelled
outright, and a running job that asked for resume goes back to queued when its dispatcher stops.
Terminal states never change. Every change is one transaction (BEGIN IMMEDIATE for writes), and
each call opens its own connection, so threads and processes share the file safely.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from service.core.http_errors import Conflict, InvalidInput, NotFound

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Select = Literal["last", "ope"]  # which checkpoint a job publishes
JobKind = Literal["train", "evaluate"]
PromoteMode = bool | Literal["if_better"]  # "if_better": through the promotion gate
ExecutorName = Literal["local", "ray"]  # where a job runs (service.jobs.executors)
ACTIVE: tuple[JobState, ...] = ("queued", "running")
DB_FILE = "jobs.db"
# columns added since the table's first version: added to an older table by ensure()
_ADDED_COLUMNS = {"executor": "TEXT", "executor_id": "TEXT"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    state TEXT NOT NULL,
    model_name TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL,
    pid INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    epoch INTEGER,
    n_epochs INTEGER,
    step INTEGER,
    total_steps INTEGER,
    metrics TEXT,
    exit_code INTEGER,
    error TEXT,
    model_version TEXT,
    executor TEXT,
    executor_id TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_by_dataset ON jobs (dataset_id, state);
"""


@dataclass(frozen=True)
class JobSpec:
    """What a job was asked to do (validated before it is queued). A "train" job trains and
    publishes (unless `publish` is false: a sweep's trial keeps its bundle in the job's directory
    and the sweep publishes the best one; `sweep` names the sweep, the trial's index and the
    parameters it tries); an "evaluate" job computes the promotion gate's estimates: `evaluate`
    holds its candidate, the production version and the versions to score. `holdout_seed`
    seeds the held-out split and FQE (None: the BEAR seed)."""

    params: dict[str, Any]
    promote: PromoteMode = False
    resume: bool = False
    eval_env: str | None = None
    eval_trials: int = 5
    holdout: float = 0.0
    select: Select = "last"
    keep_checkpoints: int | None = 5
    select_candidates: int = 5
    fqe_steps: int = 3000
    kind: JobKind = "train"
    evaluate: dict[str, Any] | None = None
    publish: bool = True
    holdout_seed: int | None = None
    sweep: dict[str, Any] | None = None


@dataclass(frozen=True)
class Progress:
    """What the dispatcher last read from the trainer's progress files."""

    epoch: int | None = None
    n_epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    metrics: dict[str, float | None] | None = None


@dataclass(frozen=True)
class Job:
    id: str
    state: JobState
    model_name: str
    dataset_id: str
    spec: JobSpec
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    pid: int | None = None
    attempts: int = 0
    cancel_requested: bool = False
    progress: Progress = field(default_factory=Progress)
    exit_code: int | None = None
    error: str | None = None
    model_version: str | None = None
    executor: ExecutorName | None = None  # where its last run started
    executor_id: str | None = None  # the executor's id for that run: a pid, a Ray actor name

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        spec = json.loads(row["spec"])
        return cls(
            id=row["id"],
            state=row["state"],
            model_name=row["model_name"],
            dataset_id=row["dataset_id"],
            spec=JobSpec(**spec),
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            heartbeat_at=row["heartbeat_at"],
            pid=row["pid"],
            attempts=row["attempts"],
            cancel_requested=bool(row["cancel_requested"]),
            progress=Progress(
                epoch=row["epoch"],
                n_epochs=row["n_epochs"],
                step=row["step"],
                total_steps=row["total_steps"],
                metrics=json.loads(row["metrics"]) if row["metrics"] else None,
            ),
            exit_code=row["exit_code"],
            error=row["error"],
            model_version=row["model_version"],
            executor=row["executor"],
            executor_id=row["executor_id"],
        )


class JobDB:
    def __init__(self, root: str | Path) -> None:
        self.path = Path(root) / DB_FILE

    def ensure(self) -> JobDB:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        with self._write() as db:  # one process at a time adds what a table lacks
            have = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            for name, kind in _ADDED_COLUMNS.items():
                if name not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        return self

    # --- the API's side -------------------------------------------------------------------------

    def submit(
        self,
        model_name: str,
        dataset_id: str,
        spec: JobSpec,
        job_id: str,
        dataset_exists: Callable[[str], bool],
    ) -> Job:
        """Queue a job. The dataset check runs inside the write transaction, so a concurrent
        dataset deletion (which takes the same lock) cannot slip in between."""
        with self._write() as db:
            if not dataset_exists(dataset_id):
                raise InvalidInput(f"dataset_id: dataset {dataset_id!r} not found")
            self._insert(db, job_id, model_name, dataset_id, spec)
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        with self._connect() as db:
            return self._get(db, job_id)

    def list(self, state: JobState | None = None, limit: int = 100) -> list[Job]:
        return [Job.from_row(row) for row in self._newest("jobs", state, limit)]

    def _newest(self, table: str, state: str | None, limit: int) -> Sequence[sqlite3.Row]:
        """The newest `limit` rows of `table` (optionally in `state`), newest first."""
        query = f"SELECT * FROM {table}" + (" WHERE state = ?" if state else "")
        with self._connect() as db:
            rows: Sequence[sqlite3.Row] = db.execute(
                query + " ORDER BY seq DESC LIMIT ?", (*([state] if state else []), limit)
            ).fetchall()
        return rows

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; ask the dispatcher to stop a running one."""
        with self._write() as db:
            job = self._get(db, job_id)
            if job.state == "queued":
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ?, "
                    "error = 'cancelled before it started' WHERE id = ?",
                    (time.time(), job_id),
                )
            elif job.state == "running":
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            else:
                raise Conflict(f"job {job_id!r} is already {job.state}; nothing to cancel")
        return self.get(job_id)

    def delete_dataset(self, dataset_id: str, remove: Callable[[str], None]) -> None:
        """Run `remove(dataset_id)` unless a queued or running job uses the dataset."""
        with self._write() as db:
            users = [
                row["id"]
                for row in db.execute(
                    "SELECT id FROM jobs WHERE dataset_id = ? AND state IN (?, ?)",
                    (dataset_id, *ACTIVE),
                )
            ]
            if users:
                raise Conflict(
                    f"dataset {dataset_id!r} is used by job(s) {', '.join(users)}; "
                    "cancel them or wait until they finish"
                )
            remove(dataset_id)

    # --- the dispatcher's side ------------------------------------------------------------------

    def claim(self) -> Job | None:
        """The oldest queued job, now running; None when nothing is queued."""
        now = time.time()
        with self._write() as db:
            row = db.execute(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?), "
                "heartbeat_at = ?, attempts = attempts + 1, pid = NULL, cancel_requested = 0 "
                "WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1) "
                "RETURNING *",
                (now, now),
            ).fetchone()
        return Job.from_row(row) if row is not None else None

    def running(self) -> builtins.list[Job]:
        return self.list("running", limit=1_000_000)

    def set_pid(self, job_id: str, pid: int | None) -> None:
        with self._write() as db:
            db.execute("UPDATE jobs SET pid = ? WHERE id = ?", (pid, job_id))

    def set_executor(
        self, job_id: str, executor: ExecutorName, executor_id: str, pid: int | None
    ) -> None:
        """Where the job's run started: the executor, its id for the run, a local pid."""
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET executor = ?, executor_id = ?, pid = ? WHERE id = ?",
                (executor, executor_id, pid, job_id),
            )

    def heartbeat(self, job_id: str, progress: Progress | None) -> bool:
        """Record the heartbeat (and progress, when read); returns whether cancel was asked."""
        with self._write() as db:
            if progress is None:
                row = db.execute(
                    "UPDATE jobs SET heartbeat_at = ? WHERE id = ? RETURNING cancel_requested",
                    (time.time(), job_id),
                ).fetchone()
            else:
                row = db.execute(
                    "UPDATE jobs SET heartbeat_at = ?, epoch = ?, n_epochs = ?, step = ?, "
                    "total_steps = ?, metrics = COALESCE(?, metrics) WHERE id = ? "
                    "RETURNING cancel_requested",
                    (
                        time.time(),
                        progress.epoch,
                        progress.n_epochs,
                        progress.step,
                        progress.total_steps,
                        json.dumps(progress.metrics) if progress.metrics is not None else None,
                        job_id,
                    ),
                ).fetchone()
        return bool(row and row["cancel_requested"])

    def finish(
        self,
        job_id: str,
        state: JobState,
        exit_code: int | None = None,
        error: str | None = None,
        model_version: str | None = None,
    ) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, exit_code = ?, error = ?, "
                "model_version = ?, pid = NULL, "
                "step = CASE WHEN ? = 'succeeded' THEN total_steps ELSE step END "
                "WHERE id = ? AND state = 'running'",
                (state, time.time(), exit_code, error, model_version, state, job_id),
            )

    def requeue(self, job_id: str, note: str) -> None:
        """Back to the queue (a resumable job whose run was interrupted)."""
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET state = 'queued', pid = NULL, error = ? "
                "WHERE id = ? AND state = 'running'",
                (note, job_id),
            )

    # --- internals ------------------------------------------------------------------------------

    def _insert(
        self, db: sqlite3.Connection, job_id: str, model_name: str, dataset_id: str, spec: JobSpec
    ) -> None:
        db.execute(
            "INSERT INTO jobs (id, state, model_name, dataset_id, spec, created_at) "
            "VALUES (?, 'queued', ?, ?, ?, ?)",
            (job_id, model_name, dataset_id, json.dumps(spec.__dict__), time.time()),
        )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 30000")
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _get(self, db: sqlite3.Connection, job_id: str) -> Job:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id!r} not found")
        return Job.from_row(row)

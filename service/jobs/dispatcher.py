"""The job dispatcher: claims queued jobs (up to max_concurrent_jobs at a time, oldest first) and
runs each as `python -m bear_core train --bundle` (training, then the bundle's export, in one
child process with its own process group); publishes the bundle as the next version of the
job's model. A job that asked `promote: "if_better"` then goes through the promotion gate
(service.jobs.promotion_gate), running the gate's evaluator as a second child when production's
estimate on the candidate's held-out episodes is missing. An "evaluate" job (queued by a gated
promote request) runs only the evaluator (`python -m bear_core evaluate-bundle`) and keeps its
estimates with the versions. Every poll it also takes the running sweeps whose trials have
ended a step further (service.jobs.sweep_supervisor: publish the best trial, gate it).

One dispatcher per store: it holds an flock on <store>/jobs/dispatcher.lock while it runs (a
second one waits for it) and rewrites <store>/jobs/dispatcher.heartbeat every poll (for health
checks), so on start-up every row still "running" was left by a dispatcher that
is gone. Such a job's leftover trainer is stopped, then the job goes back to the queue when it
asked for resume (the trainer resumes from its checkpoint) or is marked failed. A dispatcher
that is told to stop (service shutdown) stops its trainers the same way: SIGTERM, a grace period
in which they checkpoint, then SIGKILL.

While a child runs, its job row gets a heartbeat and the trainer's progress every poll, and the
row's cancel flag (set by POST /jobs/{id}/cancel, from any process) is honoured.

Where the child runs is the executor's business (service.jobs.executors): a local process, or
with BEAR_RAY_ADDRESS an actor on a Ray cluster (service.jobs.ray_executor, imported only
then). Ray runs are not stopped with the dispatcher: the next one re-attaches to them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import IO, Literal

from service.core.http_errors import Conflict, ServiceError
from service.core.settings import Settings
from service.datasets.dataset_store import DatasetStore
from service.jobs.executors import Executor, LocalExecutor, Run, RunLost, signal_group
from service.jobs.job_db import Job, JobDB, JobState
from service.jobs.job_files import JobFiles
from service.jobs.job_specs import train_command
from service.jobs.promotion_gate import GatePlan, Promote, PromotionGate
from service.jobs.sweep_db import SweepDB
from service.jobs.sweep_supervisor import Publish, SweepSupervisor
from service.models.model_store import ModelStore

LOCK_FILE = "dispatcher.lock"
HEARTBEAT_FILE = "dispatcher.heartbeat"
MAX_ATTEMPTS = 3  # runs of one resumable job, restarts included
LOCK_RETRY_S = 2.0

Stop = Literal["cancelled", "interrupted"]


class _Detached(Exception):
    """The dispatcher stops and leaves the job running on its executor (Ray)."""


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        db: JobDB,
        publish: Publish,
        promote: Promote,
        logger: logging.Logger,
    ) -> None:
        self.root = settings.store
        self._settings = settings
        self._db = db
        self._datasets = DatasetStore(settings.store)
        self._publish = publish
        self._gate = PromotionGate(ModelStore(settings.store), self._datasets, promote, logger)
        self._sweeps = SweepSupervisor(
            SweepDB(settings.store).ensure(),
            settings.store,
            publish,
            promote,
            self._gate,
            settings.promotion_margin,
            logger,
        )
        self._log = logger
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="job-dispatcher", daemon=True)
        self._runners: dict[str, threading.Thread] = {}
        self._attached: dict[str, Run] = {}  # runs re-attached at start-up, by job
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if settings.trainer_threads is not None:
            env["OMP_NUM_THREADS"] = str(settings.trainer_threads)
        self._executor: Executor = LocalExecutor(env, settings.max_concurrent_jobs)
        if settings.ray_address is not None:
            from service.jobs.ray_executor import RayExecutor  # Ray only where it is asked for

            self._executor = RayExecutor(settings, logger)

    def start(self) -> Dispatcher:
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Stop claiming and stop running trainers (they checkpoint); returns at once."""
        self._stopping.set()

    def stop(self) -> None:
        """request_stop(), then wait for the started dispatcher to finish."""
        self._stopping.set()
        self._thread.join(timeout=self._settings.cancel_grace_s + 30.0)

    def run_forever(self) -> None:
        """Dispatch in the calling thread until request_stop() (from a signal handler)."""
        self._main()

    # --- the loop -------------------------------------------------------------------------------

    def _main(self) -> None:
        lock = self._lock()
        if lock is None:
            return
        try:
            self._beat()
            while not self._executor.ready():
                self._beat()
                if self._stopping.wait(LOCK_RETRY_S):
                    return
            self._recover()
            while not self._stopping.is_set():
                try:
                    self._dispatch()
                    self._sweeps.step()
                except sqlite3.Error:
                    self._log.exception("claiming a job failed; trying again")
                self._beat()
                self._stopping.wait(self._settings.job_poll_s)
            for runner in list(self._runners.values()):
                runner.join(timeout=self._settings.cancel_grace_s + 20.0)
        finally:
            lock.close()

    def _lock(self) -> IO[bytes] | None:
        """The dispatcher lock, waiting while another dispatcher holds it; None on stop."""
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        lock = open(self.root / "jobs" / LOCK_FILE, "ab")  # noqa: SIM115 - held while running
        waiting = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._log.info("job dispatcher running", extra={"store": str(self.root)})
                return lock
            except BlockingIOError:
                if not waiting:
                    self._log.info("another job dispatcher holds the store; waiting")
                    waiting = True
            if self._stopping.wait(LOCK_RETRY_S):
                lock.close()
                return None

    def _beat(self) -> None:
        path = self.root / "jobs" / HEARTBEAT_FILE
        tmp = path.with_name(f".{HEARTBEAT_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps({"pid": os.getpid(), "time": time.time()}))
        os.replace(tmp, path)

    def _dispatch(self) -> None:
        for job_id, runner in list(self._runners.items()):
            if not runner.is_alive():
                del self._runners[job_id]
        limit = self._executor.max_concurrent
        while limit is None or len(self._runners) < limit:
            job = self._db.claim()
            if job is None:
                return
            self._spawn(job)

    def _spawn(self, job: Job) -> None:
        runner = threading.Thread(target=self._run, args=(job,), name=f"job-{job.id}", daemon=True)
        self._runners[job.id] = runner
        runner.start()

    # --- one job --------------------------------------------------------------------------------

    def _run(self, job: Job) -> None:
        files = JobFiles(self.root, job.id)
        files.directory.mkdir(parents=True, exist_ok=True)
        self._log.info("job started", extra={"job": job.id, "attempt": job.attempts})
        try:
            if job.spec.kind == "evaluate":
                self._evaluate(job, files)
            else:
                self._train(job, files)
        except _Detached:
            self._log.info("job left running on its executor", extra={"job": job.id})
            return
        except RunLost as exc:
            kept = "; its last checkpoint is kept" if files.has_checkpoint() else ""
            self._db.finish(job.id, "failed", error=f"{exc}{kept}")
        except Exception as exc:
            self._log.exception("job runner failed", extra={"job": job.id})
            self._db.finish(job.id, "failed", error=f"dispatcher error: {exc!r}")
        finished = self._db.get(job.id)
        self._log.info(
            "job finished",
            extra={"job": job.id, "state": finished.state, "error": finished.error},
        )

    def _train(self, job: Job, files: JobFiles) -> None:
        dataset = self._datasets.data_path(job.dataset_id)
        command = train_command(
            self._settings.trainer_python, dataset, files.run_dir, files.bundle_dir, job.spec
        )
        shutil.rmtree(files.bundle_dir, ignore_errors=True)
        files.append_log(f"[dispatcher] attempt {job.attempts}: {shlex.join(command)}")
        code, stop = self._supervise(job, files, command)
        if stop == "cancelled":
            note = "; checkpoint saved" if files.has_checkpoint() else ""
            self._db.finish(job.id, "cancelled", code, f"cancelled on request{note}")
            return
        if stop == "interrupted":
            self._interrupted(job, files, "the service stopped while it ran")
            return
        if code != 0:
            self._db.finish(job.id, "failed", code, _failure("trainer", code, files))
            return
        if not job.spec.publish:
            files.append_log("[dispatcher] bundle kept unpublished: its sweep publishes the best")
            self._db.finish(job.id, "succeeded", 0)
            return
        promote = job.spec.promote is True
        try:
            version = self._publish(job.model_name, files.bundle_dir, promote)
        except ServiceError as exc:
            self._db.finish(job.id, "failed", 0, f"publishing the bundle failed: {exc.message}")
            return
        finally:
            shutil.rmtree(files.bundle_dir, ignore_errors=True)
        promoted = " in production" if promote else ""
        files.append_log(f"[dispatcher] published {job.model_name} version {version}{promoted}")
        if job.spec.promote == "if_better":
            self._gated_promotion(job, files, version)
            return
        self._db.finish(job.id, "succeeded", 0, model_version=version)

    def _gated_promotion(self, job: Job, files: JobFiles, version: str) -> None:
        """The gate's decision about the version just published (evaluating first when an
        estimate is missing). The job succeeds whatever the decision: the version is
        published; a cancel or a stop during the evaluation ends it unpromoted."""
        margin = self._settings.promotion_margin
        try:
            plan = self._gate.plan(job.model_name, version)
        except ServiceError as exc:
            files.append_log(f"[dispatcher] promotion gate: not promoted: {exc.message}")
            self._db.finish(job.id, "succeeded", 0, model_version=version)
            return
        try:
            if plan.missing:
                code, stop = self._run_evaluation(job, files, plan)
                if stop is not None:
                    why = f"the evaluation was {stop}"
                    self._gate.refused(plan, margin, f"refused: {why}")
                    state: JobState = "cancelled" if stop == "cancelled" else "failed"
                    error = f"{why}; version {version} is published, not promoted"
                    self._db.finish(job.id, state, code, error, model_version=version)
                    return
                if code != 0:
                    raise Conflict(_failure("evaluator", code, files))
                plan = self._gate.plan(job.model_name, version)
            record = self._gate.decide(plan, margin)
        except ServiceError as exc:
            record = self._gate.refused(plan, margin, f"refused: {exc}")
        files.append_log(f"[dispatcher] promotion gate: {record['reason']}")
        self._db.finish(job.id, "succeeded", 0, model_version=version)

    def _evaluate(self, job: Job, files: JobFiles) -> None:
        """An evaluation job: the estimates its gated promote request is waiting for."""
        assert job.spec.evaluate is not None
        candidate = job.spec.evaluate["candidate"]
        try:
            plan = self._gate.plan(job.model_name, candidate)
            code, stop = self._run_evaluation(job, files, plan, job.spec.evaluate["versions"])
        except ServiceError as exc:
            self._db.finish(job.id, "failed", error=f"evaluation: {exc.message}")
            return
        if stop == "cancelled":
            self._db.finish(job.id, "cancelled", code, "cancelled on request")
        elif stop == "interrupted":
            self._interrupted(job, files, "the service stopped while it ran")
        elif code != 0:
            self._db.finish(job.id, "failed", code, _failure("evaluator", code, files))
        else:
            self._db.finish(job.id, "succeeded", 0, model_version=candidate)

    def _run_evaluation(
        self, job: Job, files: JobFiles, plan: GatePlan, versions: list[str] | None = None
    ) -> tuple[int, Stop | None]:
        """Run the gate's evaluator on the versions (default: those the plan misses) that have
        no estimate on the candidate's held-out set yet, and keep their estimates."""
        wanted = plan.missing if versions is None else versions
        records, key = self._gate.records, plan.held_out.key
        todo = [v for v in wanted if records.estimate(plan.name, v, key) is None]
        if not todo:
            return 0, None
        files.evaluation.unlink(missing_ok=True)
        command = self._gate.command(
            self._settings.trainer_python, plan.name, plan.held_out, todo, files.evaluation
        )
        files.append_log(f"[dispatcher] promotion gate evaluation: {shlex.join(command)}")
        code, stop = self._supervise(job, files, command)
        if code == 0 and stop is None:
            output = json.loads(files.evaluation.read_text())
            self._gate.save_results(plan.name, plan.held_out, todo, output)
        return code, stop

    def _supervise(self, job: Job, files: JobFiles, command: list[str]) -> tuple[int, Stop | None]:
        """Run `command` to its end, with heartbeats and progress; SIGTERM, grace, SIGKILL
        when the job is cancelled or the dispatcher stops (an executor whose runs survive it
        keeps them: _Detached). Returns (exit code, why stopped)."""
        run = self._attached.pop(job.id, None)
        if run is not None and run.command != command:  # it ran another step of the job
            files.append_log(f"[dispatcher] {run.executor_id} ran another step: stopping it")
            run.kill()
            return -signal.SIGKILL, "interrupted"
        if run is None:
            run = self._executor.start(job, files, command)
        self._db.set_executor(job.id, self._executor.name, run.executor_id, run.pid)
        stop: Stop | None = None
        kill_at: float | None = None
        while (code := run.wait(self._settings.job_poll_s)) is None:
            cancel = self._db.heartbeat(job.id, files.progress())
            stopping = self._stopping.is_set()
            if stop is None and stopping and not cancel and self._executor.survives_restart:
                files.append_log("[dispatcher] the service stopped; the job runs on")
                raise _Detached
            if stop is None and (cancel or stopping):
                stop = "cancelled" if cancel else "interrupted"
                files.append_log(f"[dispatcher] {stop}: SIGTERM to the trainer")
                run.terminate()
                kill_at = time.monotonic() + self._settings.cancel_grace_s
            elif kill_at is not None and time.monotonic() > kill_at:
                files.append_log("[dispatcher] grace period over: SIGKILL")
                run.kill()
                kill_at = None
        self._db.heartbeat(job.id, files.progress())
        self._db.set_pid(job.id, None)
        return code, stop

    def _interrupted(self, job: Job, files: JobFiles, why: str) -> None:
        if job.spec.resume and job.attempts < MAX_ATTEMPTS:
            note = f"interrupted ({why}); queued again to resume from its last checkpoint"
            files.append_log(f"[dispatcher] {note}")
            self._db.requeue(job.id, note)
            return
        kept = "; its last checkpoint is kept" if files.has_checkpoint() else ""
        retries = f" after {job.attempts} attempts" if job.spec.resume else ""
        self._db.finish(job.id, "failed", error=f"interrupted{retries}: {why}{kept}")

    # --- start-up recovery ----------------------------------------------------------------------

    def _recover(self) -> None:
        """Jobs left running by a dispatcher that is gone: stop what is left of their child,
        then requeue (resume) or fail them."""
        for job in self._db.running():
            files = JobFiles(self.root, job.id)
            run = self._executor.attach(job, files) if job.executor == "ray" else None
            if run is not None:
                self._log.info("re-attached to a running job", extra={"job": job.id})
                self._attached[job.id] = run
                self._spawn(job)
                continue
            if job.pid is not None and _is_our_child(job.pid, files.directory):
                self._log.warning("stopping a leftover trainer", extra={"job": job.id})
                _stop_leftover(job.pid, self._settings.cancel_grace_s)
            self._log.warning("job orphaned by a stopped dispatcher", extra={"job": job.id})
            self._interrupted(
                job, files, "orphaned: the service or worker running it stopped before it ended"
            )


def heartbeat_age(root: Path) -> float | None:
    """Seconds since the store's active dispatcher last went round its loop; None if never."""
    try:
        beat = json.loads((root / "jobs" / HEARTBEAT_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return time.time() - float(beat["time"])


def _failure(what: str, code: int, files: JobFiles) -> str:
    if code < 0:
        message = f"{what} killed by signal {signal.Signals(-code).name}"
    else:
        last = files.last_log_line("error:") or files.last_log_line()
        message = f"{what} exited with code {code}" + (f": {last}" if last else "")
    if files.has_checkpoint():
        message += "; its last checkpoint is kept"
    return message


def _is_our_child(pid: int, job_dir: Path) -> bool:
    """Whether `pid` runs a command inside `job_dir` (so a reused pid is never signalled)."""
    command = _live_command(pid)
    return command is not None and str(job_dir).encode() in command


def _stop_leftover(pid: int, grace_s: float) -> None:
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if _live_command(pid) is None:
            return
        time.sleep(0.1)
    signal_group(pid, signal.SIGKILL)


def _live_command(pid: int) -> bytes | None:
    """The command line of process `pid`; None when it is gone or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return None if state == "Z" else command

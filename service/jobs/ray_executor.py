"""Jobs on a Ray cluster (BEAR_RAY_ADDRESS set). Only the dispatcher imports this module, and
only then: the serving path never loads Ray.

Design: one detached, named Ray actor per run of a job (`bear-job-<id>-<attempt>`, in the
BEAR_RAY_NAMESPACE namespace), created with the job's resources (BEAR_RAY_NUM_CPUS, and one GPU
when its params ask for use_gpu). The actor makes a temporary directory on its node and runs
the same command line a local job runs (`python -m bear_core train ...` with the node's own
interpreter) as its child, in its own process group, with every store path in the command
rewritten to a mirror of the store inside that directory. Ray Core actors rather than Ray Jobs,
because one mechanism then carries everything both ways without a shared filesystem and
survives the dispatcher: Ray Jobs would still need an actor (or shared storage) to get the
checkpoints and the bundle back, and its working-dir upload is a cached package, not a
per-job input.

What travels, and how (nothing but Ray connects the dispatcher and the cluster):
- In: every file or folder of the store the command names (the dataset's HDF5 file, the run
  directory of a job resuming from its checkpoint, the bundles the promotion gate scores) goes
  into the object store in 64 MiB chunks (`ray.put`); the actor's `start` fetches them into its
  mirror before it starts the command.
- Back: the dispatcher calls the actor's `poll` every BEAR_JOB_POLL_S. It returns the log bytes
  past the offset already copied and every file of the job's directory (run/: progress.json,
  metrics.jsonl, the CSVs, checkpoint.pt, model_<epoch>.pt, selection.json; bundle/;
  evaluation.json) that changed since the last poll, with the list of files that exist, so
  deleted checkpoints disappear here too. They land in the job's directory in the store, each
  file written atomically, exactly where a local job writes them: GET /jobs/{id}, /logs,
  /metrics and publishing read them unchanged. A poll reports the exit code only with the
  files as they were after the exit, so the bundle is complete when the dispatcher publishes.
- <job dir>/ray_run.json keeps the actor's name, the command and the log offset copied so far,
  so a restarted dispatcher finds the actor again by name (`ray.get_actor`) and goes on where
  the last one stopped (the first poll after a re-attach sends every file again).

Cancel: SIGTERM to the trainer through the actor (it writes its checkpoint, which comes back
with the final poll), SIGKILL after BEAR_CANCEL_GRACE_S; a run still waiting for cluster
resources is killed (`ray.kill`) when the grace period ends. Once a run has ended and its files
are here, the actor removes its directory and is killed. A service that stops leaves its runs
going; the next one re-attaches. An actor that dies under a run (its node lost, its worker
killed) fails the job with RunLost.

The dispatcher is a Ray driver: `ray://<head>:10001` (Ray Client, from any machine that reaches
the head) or, on a machine that is itself a node of the cluster, `auto` or `<head>:6379`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import ray
from ray.exceptions import RayActorError

from bear_core.io_utils import atomic_write_bytes, atomic_write_json
from service.core.settings import Settings
from service.jobs.executors import RunLost, signal_group
from service.jobs.job_db import ExecutorName, Job
from service.jobs.job_files import JobFiles
from service.jobs.job_specs import on_cpu

STATE_FILE = "ray_run.json"
CHUNK_BYTES = 64 << 20  # dataset and checkpoint files travel to the worker in chunks this big
MAX_LOG_BYTES = 4 << 20  # log bytes one poll brings back
CLEANUP_S = 30.0
KILL_WAIT_S = 5.0  # time the actor gets to kill its command before the actor is killed

Arg = tuple[str, bool]  # (value, whether it is a path relative to the store)


class Report(TypedDict):
    where: str  # the node and the directory the command runs in
    exit_code: int | None
    log: bytes
    files: dict[str, bytes]
    listing: list[str]


# --- on the cluster -----------------------------------------------------------------------------


class JobActor:
    """One run of one job, on a cluster node (a Ray actor; see the module docstring)."""

    def __init__(self, args: list[Arg], job_dir: str) -> None:
        self._args = args
        self._work = Path(tempfile.mkdtemp(prefix="bear-job-"))
        self._mirror = self._work / "store"
        self._job_dir = self._mirror / job_dir
        self._log = self._work / "output.log"
        self._child: subprocess.Popen[bytes] | None = None
        self._failed: int | None = None  # exit code when the command could not start
        self._sent: dict[str, tuple[int, int]] = {}

    def start(self, inputs: list[tuple[str, list[Any]]], env: dict[str, str]) -> None:
        """Fetch the inputs (store-relative path, chunk refs) into the mirror, then start the
        command."""
        try:
            self._job_dir.mkdir(parents=True, exist_ok=True)
            for relative, chunks in inputs:
                target = self._mirror / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as f:
                    for chunk in chunks:
                        f.write(ray.get(chunk))
            self._sent = self._signatures()  # inputs in the job's directory are there already
            command = [sys.executable]
            command += [str(self._mirror / value) if path else value for value, path in self._args]
            with open(self._log, "ab") as log:
                self._child = subprocess.Popen(
                    command,
                    cwd=self._work,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, **env},
                )
        except Exception as exc:
            with open(self._log, "ab") as log:
                log.write(f"error: the job could not start on the Ray worker: {exc!r}\n".encode())
            self._failed = 1

    def poll(self, log_offset: int, resend: bool, wait_s: float) -> Report:
        """Wait up to `wait_s` for the command to end, then report: the log from `log_offset`,
        the files of the job's directory that changed (all of them with `resend`), the list of
        those that exist, and the exit code once the command has ended and all is reported."""
        if self._child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(timeout=wait_s)
        code = self._failed if self._child is None else self._child.poll()
        with open(self._log, "rb") as f:
            f.seek(log_offset)
            log = f.read(MAX_LOG_BYTES)
            more = bool(f.read(1))
        now = self._signatures()
        changed = [rel for rel, sig in now.items() if resend or self._sent.get(rel) != sig]
        files = {rel: (self._job_dir / rel).read_bytes() for rel in changed}
        self._sent.update({rel: now[rel] for rel in changed})
        return Report(
            where=f"{ray.util.get_node_ip_address()}:{self._work}",  # type: ignore[no-untyped-call]
            exit_code=None if more else code,
            log=log,
            files=files,
            listing=sorted(now),
        )

    def signal(self, signum: int) -> None:
        if self._child is not None and self._child.poll() is None:
            signal_group(self._child.pid, signal.Signals(signum))

    def cleanup(self) -> None:
        """Stop what is left of the command and remove the run's directory."""
        if self._child is not None and self._child.poll() is None:
            signal_group(self._child.pid, signal.SIGKILL)
            self._child.wait()
        shutil.rmtree(self._work, ignore_errors=True)

    def _signatures(self) -> dict[str, tuple[int, int]]:
        """(size, mtime) of every file in the job's directory, but the writers' temporaries."""
        found = {}
        for path in _files(self._job_dir):
            stat = path.stat()
            found[path.relative_to(self._job_dir).as_posix()] = (stat.st_size, stat.st_mtime_ns)
        return found


# --- in the dispatcher --------------------------------------------------------------------------


class RayExecutor:
    name: ExecutorName = "ray"
    max_concurrent: int | None = None  # the cluster's resources decide
    survives_restart = True

    def __init__(self, settings: Settings, logger: logging.Logger) -> None:
        assert settings.ray_address is not None
        self._settings = settings
        self._address = settings.ray_address
        self._root = settings.store
        self._log = logger
        self._told = False

    def ready(self) -> bool:
        if ray.is_initialized():
            return True
        try:
            ray.init(
                address=self._address,
                namespace=self._settings.ray_namespace,
                log_to_driver=False,
                configure_logging=False,  # the service's JSON logs stay as they are
            )
        except Exception as exc:
            if not self._told:
                self._log.warning(
                    "cannot reach the Ray cluster; jobs wait",
                    extra={"address": self._address, "error": repr(exc)},
                )
                self._told = True
            return False
        self._log.info("jobs run on the Ray cluster", extra={"address": self._address})
        return True

    def start(self, job: Job, files: JobFiles, command: list[str]) -> RayRun:
        name = _actor_name(job)
        args, inputs = self._mapped(command)
        num_cpus = self._settings.ray_num_cpus
        num_gpus = 0 if on_cpu(job.spec.params.get("use_gpu")) else 1
        threads = self._settings.trainer_threads or max(1, math.ceil(num_cpus))
        env = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
        refs = [(rel, [ray.put(chunk) for chunk in _chunks(path)]) for rel, path in inputs]
        actor: Any = (  # Ray's stubs do not know the actor's methods
            ray.remote(JobActor)
            .options(
                name=name,
                namespace=self._settings.ray_namespace,
                lifetime="detached",
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                max_restarts=0,
            )
            .remote(args, files.directory.relative_to(self._root).as_posix())
        )
        actor.start.remote(refs, env)
        total: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        files.append_log(
            f"[dispatcher] on the Ray cluster as actor {name}: {num_cpus:g} CPU, {num_gpus} GPU"
        )
        if total.get("CPU", 0.0) < num_cpus or total.get("GPU", 0.0) < num_gpus:
            files.append_log(
                f"[dispatcher] the cluster has {total.get('CPU', 0.0):g} CPU and "
                f"{total.get('GPU', 0.0):g} GPU now: the job waits until nodes that fit it join"
            )
        atomic_write_json(files.directory / STATE_FILE, _state(name, command, 0))
        return RayRun(files, actor, name, command, 0, refs, resend=False)

    def attach(self, job: Job, files: JobFiles) -> RayRun | None:
        """The job's actor, found by its name (the job's executor_id); an actor whose state
        file is missing (its dispatcher stopped while starting it) is stopped instead."""
        name = job.executor_id or _actor_name(job)
        try:
            actor = ray.get_actor(name, namespace=self._settings.ray_namespace)
        except ValueError:  # gone: it ended, or its cluster restarted
            return None
        try:
            saved = json.loads((files.directory / STATE_FILE).read_text())
        except FileNotFoundError:
            saved = None
        if saved is None or saved["actor"] != name:
            ray.kill(actor, no_restart=True)
            return None
        files.append_log(f"[dispatcher] re-attached to the Ray actor {name}")
        return RayRun(files, actor, name, saved["command"], saved["log_offset"], [], True)

    def _mapped(self, command: list[str]) -> tuple[list[Arg], list[tuple[str, Path]]]:
        """The command's arguments after the interpreter, store paths made store-relative, and
        the store's files they name (those that exist: inputs)."""
        root = str(self._root)
        args: list[Arg] = []
        inputs: list[tuple[str, Path]] = []
        for value in command[1:]:
            if not value.startswith(root + os.sep):
                args.append((value, False))
                continue
            path = Path(value)
            relative = path.relative_to(self._root)
            args.append((relative.as_posix(), True))
            if path.is_file():
                inputs.append((relative.as_posix(), path))
            elif path.is_dir():
                inputs += [(p.relative_to(self._root).as_posix(), p) for p in _files(path)]
        return args, inputs


class RayRun:
    """The dispatcher's side of one actor: polls it and writes what comes back."""

    pid: int | None = None

    def __init__(
        self,
        files: JobFiles,
        actor: Any,
        name: str,
        command: list[str],
        log_offset: int,
        inputs: list[Any],
        resend: bool,
    ) -> None:
        self.executor_id = name
        self.command = command
        self._files = files
        inside = str(files.directory) + os.sep
        self._outputs = [Path(arg) for arg in command if arg.startswith(inside)]
        self._actor = actor
        self._log_offset = log_offset
        self._inputs = inputs  # chunk refs, held until the actor has them
        self._resend = resend
        self._pending: Any = None
        self._reported = False  # a poll came back since start() or attach()
        self._killed = False

    def wait(self, timeout: float) -> int | None:
        if self._pending is None:
            self._pending = self._actor.poll.remote(self._log_offset, self._resend, timeout)
        ready, _ = ray.wait([self._pending], timeout=2 * timeout)
        if not ready:
            return None  # waiting for room on the cluster, or a large transfer: poll on
        ref, self._pending = self._pending, None
        try:
            report: Report = ray.get(ref)
        except RayActorError as exc:
            if self._killed:
                (self._files.directory / STATE_FILE).unlink(missing_ok=True)
                return -signal.SIGKILL
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunLost(
                f"the Ray actor {self.executor_id} running the job died (its node was lost or "
                f"its worker was killed): {first}"
            ) from None
        if not self._reported:
            self._files.append_log(f"[dispatcher] running on the Ray node {report['where']}")
        self._reported, self._resend, self._inputs = True, False, []
        self._apply(report)
        if report["exit_code"] is None:
            return None
        self._close()
        return report["exit_code"]

    def terminate(self) -> None:
        self._actor.signal.remote(int(signal.SIGTERM))

    def kill(self) -> None:
        """SIGKILL to the command (by the actor, when it runs), then the actor goes. An actor
        still waiting for room on the cluster ran nothing and just goes."""
        self._killed = True
        ray.wait([self._actor.cleanup.remote()], timeout=KILL_WAIT_S)
        ray.kill(self._actor, no_restart=True)

    def _apply(self, report: Report) -> None:
        directory = self._files.directory
        for relative, data in report["files"].items():
            path = directory / _safe(relative)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        listed = {directory / relative for relative in report["listing"]}
        for output in self._outputs:  # what the worker deleted (old checkpoints) goes here too
            for path in [output] if output.is_file() else _files(output):
                if path not in listed:
                    path.unlink(missing_ok=True)
        if report["log"]:
            with open(self._files.log, "ab") as log:
                log.write(report["log"])
            self._log_offset += len(report["log"])
            state = _state(self.executor_id, self.command, self._log_offset)
            atomic_write_json(directory / STATE_FILE, state)

    def _close(self) -> None:
        try:
            ray.get(self._actor.cleanup.remote(), timeout=CLEANUP_S)
        except Exception:  # its directory is temporary: the run's outcome is here already
            logging.getLogger(__name__).warning("cleaning up %s failed", self.executor_id)
        ray.kill(self._actor, no_restart=True)
        (self._files.directory / STATE_FILE).unlink(missing_ok=True)


def _files(directory: Path) -> Iterator[Path]:
    """The files under `directory`, but dot-files (writers' temporaries)."""
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            yield path


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


def _safe(relative: str) -> str:
    if relative.startswith("/") or ".." in Path(relative).parts:
        raise RunLost(f"the Ray worker sent a file outside the job's directory: {relative!r}")
    return relative


def _actor_name(job: Job) -> str:
    return f"bear-job-{job.id}-{job.attempts}"


def _state(actor: str, command: list[str], log_offset: int) -> dict[str, Any]:
    return {"actor": actor, "command": command, "log_offset": log_offset}

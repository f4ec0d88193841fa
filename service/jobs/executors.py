"""Where a job's command runs. The dispatcher hands an Executor a job and the command line it
would run (the trainer, or the promotion gate's evaluator) and supervises the Run it gets back:
wait with a timeout, SIGTERM, SIGKILL. Two executors:

- LocalExecutor (BEAR_RAY_ADDRESS unset): a child process of the dispatcher, in its own process
  group, writing straight into the job's directory in the store. At most
  BEAR_MAX_CONCURRENT_JOBS run at once; a service restart stops it (the dispatcher cannot
  supervise a child it did not start).
- RayExecutor (service.jobs.ray_executor, loaded only when BEAR_RAY_ADDRESS is set): the command
  runs on a Ray cluster and its files come back into the job's directory; as many jobs run as
  the cluster has room for, and a service restart re-attaches to them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Protocol

from service.jobs.job_db import ExecutorName, Job
from service.jobs.job_files import JobFiles


class RunLost(Exception):
    """The executor lost the work (a Ray worker node died): the job fails with this message."""


class Run(Protocol):
    """One running command of one job."""

    executor_id: str  # the executor's id for the work: a pid, a Ray actor's name
    pid: int | None  # the local process group, when there is one
    command: list[str]  # the command line the dispatcher asked for

    def wait(self, timeout: float) -> int | None:
        """The exit code once the command has ended and its outputs are in the job's
        directory; None when it still runs after `timeout` seconds. Raises RunLost."""

    def terminate(self) -> None:
        """SIGTERM: the trainer checkpoints and exits."""

    def kill(self) -> None:
        """SIGKILL."""


class Executor(Protocol):
    name: ExecutorName
    max_concurrent: int | None  # None: as many as the executor has room for
    survives_restart: bool  # runs go on without the dispatcher and are re-attached

    def ready(self) -> bool:
        """Whether runs can start now (Ray: connected to the cluster); logs why not."""

    def start(self, job: Job, files: JobFiles, command: list[str]) -> Run: ...

    def attach(self, job: Job, files: JobFiles) -> Run | None:
        """The run a previous dispatcher started for `job`, when it still runs and can be
        supervised again; None otherwise."""


class LocalExecutor:
    name: ExecutorName = "local"
    survives_restart = False

    def __init__(self, env: dict[str, str], max_concurrent: int) -> None:
        self._env = env
        self.max_concurrent: int | None = max_concurrent

    def ready(self) -> bool:
        return True

    def start(self, job: Job, files: JobFiles, command: list[str]) -> LocalRun:
        with open(files.log, "ab") as log:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self._env,
            )
        return LocalRun(child, command)

    def attach(self, job: Job, files: JobFiles) -> Run | None:
        return None  # the child's pipes and wait status went with the process that started it


class LocalRun:
    def __init__(self, child: subprocess.Popen[bytes], command: list[str]) -> None:
        self._child = child
        self.command = command
        self.pid: int | None = child.pid
        self.executor_id = str(child.pid)

    def wait(self, timeout: float) -> int | None:
        try:
            return self._child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> None:
        signal_group(self._child.pid, signal.SIGTERM)

    def kill(self) -> None:
        signal_group(self._child.pid, signal.SIGKILL)


def signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)

"""A Ray cluster of its own for the tests that run jobs on Ray: `ray start --head --block` (2
CPUs by default) on 127.0.0.1 in a temporary directory, and worker nodes joining it
(`ray start --address --block`), each stopped through its own process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.service.serving import free_port, wait_until

RAY_START = (sys.executable, "-m", "ray.scripts.scripts", "start", "--block")
NODE = ("--node-ip-address=127.0.0.1", "--num-gpus=0", "--disable-usage-stats")


@contextlib.contextmanager
def running_ray_head(num_cpus: int = 2) -> Iterator[str]:
    """The head's GCS address, '127.0.0.1:<port>', while it runs."""
    temp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    command = [
        *RAY_START, "--head", f"--port={port}", f"--ray-client-server-port={free_port()}",
        *NODE, f"--num-cpus={num_cpus}", "--include-dashboard=false", f"--temp-dir={temp}",
    ]  # fmt: skip
    try:
        with _ray_process(command, Path(temp) / "head.log", "the Ray head"):
            yield f"127.0.0.1:{port}"
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def running_ray_worker(address: str, num_cpus: int = 2) -> Iterator[subprocess.Popen[bytes]]:
    """A worker node joined to the head at `address`; the process leads its own group, so
    os.killpg(process.pid, SIGKILL) takes the node down as a lost machine would go."""
    log = Path(tempfile.mkdtemp(prefix="ray-node-")) / "node.log"
    command = [*RAY_START, f"--address={address}", *NODE, f"--num-cpus={num_cpus}"]
    try:
        with _ray_process(command, log, "the Ray worker node") as process:
            yield process
    finally:
        shutil.rmtree(log.parent, ignore_errors=True)


@contextlib.contextmanager
def _ray_process(
    command: list[str], log_path: Path, what: str
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(
            lambda: b"block forever" in log_path.read_bytes() or process.poll() is not None,
            120,
            what,
        )
        assert process.poll() is None, log_path.read_text()
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)  # stops every process it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # what it had not stopped yet
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

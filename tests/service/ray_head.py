"""A Ray head of its own for the tests that run jobs on Ray: `ray start --head --block` with 2
CPUs on 127.0.0.1 in a temporary directory, stopped through its own process group."""

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


@contextlib.contextmanager
def running_ray_head() -> Iterator[str]:
    """The head's GCS address, '127.0.0.1:<port>', while it runs."""
    temp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    command = [
        *(sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block"),
        *(f"--port={port}", f"--ray-client-server-port={free_port()}"),
        *("--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0"),
        *("--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"),
    ]
    with open(Path(temp) / "head.log", "wb") as log:
        head = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(
            lambda: (
                b"block forever" in (Path(temp) / "head.log").read_bytes()
                or head.poll() is not None
            ),
            120,
            "the Ray head",
        )
        assert head.poll() is None, (Path(temp) / "head.log").read_text()
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # stops every process it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # what it had not stopped yet
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)

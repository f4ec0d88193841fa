"""Runs `grpc_plain_path_checks.py` (gRPC's direct path, in process) in a pytest of its own: it
builds the service's protobuf messages, which cannot share a process with `tritonclient.grpc`'s."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CHECKS = Path(__file__).with_name("grpc_plain_path_checks.py")


def test_the_direct_path_checks_pass_in_their_own_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CHECKS)],
        cwd=CHECKS.parents[2],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"^12 passed", done.stdout, re.MULTILINE), done.stdout[-2000:]

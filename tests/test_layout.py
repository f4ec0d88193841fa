"""The layout's rules that tools do not check: every module has a name of its own, and the
import contracts (import-linter, in pyproject.toml) hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bear_core", "service")


def test_no_two_modules_share_a_name() -> None:
    paths: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name not in ("__init__.py", "__main__.py"):
                paths[path.stem].append(str(path.relative_to(ROOT)))
    alike = {name: where for name, where in paths.items() if len(where) > 1}
    assert not alike, f"modules named alike: {alike}"


def test_import_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        [lint_imports], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    n_contracts = (ROOT / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert f"Contracts: {n_contracts} kept, 0 broken." in result.stdout, result.stdout[-4000:]

"""What the promotion gate keeps with each version: its value estimates on held-out episode sets
(computed by evaluation jobs, read back by the gate) and the latest promotion decision.

Layout:
    <root>/models/<name>/gate/<version>/promotion.json      the latest decision about it
    <root>/models/<name>/gate/<version>/fqe-<key>.json      its estimate on one held-out set

`<key>` names the held-out set and the evaluator's settings (`HeldOutSet.key` in
service.jobs.promotion_gate). Every record carries the sha256 of the version's manifest.json
when it was written: a version deleted and published again under the same number has another
manifest, so its old records are ignored. Records are written atomically (a temporary file
renamed over the old one).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bear_core.bundle import MANIFEST_FILE, sha256_file
from bear_core.io_utils import atomic_write_json
from service.models.model_store import ModelStore, check_name, check_version

GATE_DIR = "gate"
DECISION_FILE = "promotion.json"
_KEY = re.compile(r"^[0-9a-f]{64}$")


class PromotionRecords:
    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def manifest_sha256(self, name: str, version: str) -> str:
        """The sha256 of the version's manifest.json (NotFound when there is no such version)."""
        return sha256_file(self.store.bundle_path(name, version) / MANIFEST_FILE)

    def estimate(self, name: str, version: str, key: str) -> dict[str, Any] | None:
        """The version's estimate on held-out set `key`; None when not computed (or computed for
        a bundle that is no longer this version)."""
        return self._read(name, version, self._estimate_file(key))

    def save_estimate(self, name: str, version: str, key: str, estimate: dict[str, Any]) -> None:
        self._write(name, version, self._estimate_file(key), estimate)

    def decision(self, name: str, version: str) -> dict[str, Any] | None:
        """The latest promotion decision about the version; None when there is none."""
        return self._read(name, version, DECISION_FILE)

    def save_decision(self, name: str, version: str, decision: dict[str, Any]) -> None:
        self._write(name, version, DECISION_FILE, decision)

    def _estimate_file(self, key: str) -> str:
        if not _KEY.fullmatch(key):
            raise ValueError(f"held-out set key {key!r} must be 64 hex digits")
        return f"fqe-{key}.json"

    def _directory(self, name: str, version: str) -> Path:
        return self.store.models_dir / check_name(name) / GATE_DIR / check_version(version)

    def _read(self, name: str, version: str, file: str) -> dict[str, Any] | None:
        try:
            raw = json.loads((self._directory(name, version) / file).read_text(encoding="utf-8"))
            current = self.manifest_sha256(name, version)
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(raw, dict) or raw.get("manifest_sha256") != current:
            return None
        record = raw.get("record")
        return record if isinstance(record, dict) else None

    def _write(self, name: str, version: str, file: str, record: dict[str, Any]) -> None:
        body = {"manifest_sha256": self.manifest_sha256(name, version), "record": record}
        atomic_write_json(self._directory(name, version) / file, body)

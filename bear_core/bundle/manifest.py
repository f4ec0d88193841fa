"""manifest.json of a policy bundle: its schema, parsing and checksum verification.

Layout of a bundle directory:
    manifest.json   this schema
    policy.onnx     observations [N, *obs] -> actions [N, A]              (= BEAR.predict)
    sampler.onnx    observations, noise [N, A] ~ N(0, I) -> actions [N, A] (= BEAR.sample_action)
    critics.onnx    observations, actions [N, A] -> q_values [N, K]       (per-critic Q)
    ood_reference.npy  the out-of-distribution detector's reference rows (optional, `ood`)
Scalers are baked into the graphs: inputs and outputs are in the data's own units.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bear_core.bundle.ood import OODSpec
from bear_core.errors import BundleError

BUNDLE_FORMAT = "bear-bundle"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
GRAPH_FILES = {"policy": "policy.onnx", "sampler": "sampler.onnx", "critics": "critics.onnx"}
Q_FUNC_TYPES = ("mean", "qr", "iqn", "fqf")
EVALUATION_KEYS = ("method", "estimate", "ci", "n_episodes", "dataset_sha256")


@dataclass(frozen=True)
class Manifest:
    format_version: int
    observation_shape: tuple[int, ...]
    observation_dtype: str
    action_size: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    n_critics: int
    q_func_type: str
    opset: int
    files: dict[str, str]  # file name -> sha256 hex
    params: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    # the exported policy's value estimated on episodes held out of training (EVALUATION_KEYS);
    # None (and absent from the JSON) when there is none
    evaluation: dict[str, Any] | None = None
    # the out-of-distribution detector (`bear_core.bundle.ood`); None (and absent from the JSON)
    # in bundles without one
    ood: OODSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, sealed with manifest_sha256 over everything else in it."""
        body = {
            "format": BUNDLE_FORMAT,
            "format_version": self.format_version,
            "observation_shape": list(self.observation_shape),
            "observation_dtype": self.observation_dtype,
            "action_size": self.action_size,
            "action_low": list(self.action_low),
            "action_high": list(self.action_high),
            "n_critics": self.n_critics,
            "q_func_type": self.q_func_type,
            "opset": self.opset,
            "graphs": graph_signatures(self.observation_shape, self.action_size, self.n_critics),
            "files": dict(self.files),
            "params": self.params,
            "provenance": self.provenance,
            "versions": self.versions,
            "created": self.created,
        }
        if self.evaluation is not None:
            body["evaluation"] = self.evaluation
        if self.ood is not None:
            body["ood"] = self.ood.to_dict()
        return {**body, "manifest_sha256": manifest_digest(body)}

    @classmethod
    def from_dict(cls, raw: Any) -> Manifest:
        """Parse and validate; every problem is a BundleError naming manifest.json and the key."""
        if not isinstance(raw, dict):
            raise BundleError(f"{MANIFEST_FILE}: expected a JSON object")
        if raw.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{MANIFEST_FILE}: 'format' must be {BUNDLE_FORMAT!r}")
        if raw.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"{MANIFEST_FILE}: unsupported 'format_version' {raw.get('format_version')!r} "
                f"(this runtime reads {FORMAT_VERSION})"
            )
        shape = _int_list(raw, "observation_shape")
        action_size = _positive_int(raw, "action_size")
        low, high = _float_list(raw, "action_low"), _float_list(raw, "action_high")
        if len(low) != action_size or len(high) != action_size:
            raise BundleError(
                f"{MANIFEST_FILE}: 'action_low'/'action_high' must have {action_size} values"
            )
        if any(lo > hi for lo, hi in zip(low, high, strict=True)):
            raise BundleError(f"{MANIFEST_FILE}: 'action_low' exceeds 'action_high'")
        if raw.get("observation_dtype") not in ("float32", "uint8"):
            raise BundleError(f"{MANIFEST_FILE}: 'observation_dtype' must be float32 or uint8")
        if raw.get("q_func_type") not in Q_FUNC_TYPES:
            raise BundleError(f"{MANIFEST_FILE}: unknown 'q_func_type' {raw.get('q_func_type')!r}")
        files = raw.get("files")
        if not isinstance(files, dict) or set(GRAPH_FILES.values()) - set(files):
            raise BundleError(f"{MANIFEST_FILE}: 'files' must list {sorted(GRAPH_FILES.values())}")
        for name, digest in files.items():
            if (
                not isinstance(digest, str)
                or len(digest) != 64
                or "/" in name
                or name.startswith(".")
            ):
                raise BundleError(f"{MANIFEST_FILE}: bad entry for {name!r} in 'files'")
        for key in ("params", "provenance", "versions"):
            if not isinstance(raw.get(key, {}), dict):
                raise BundleError(f"{MANIFEST_FILE}: '{key}' must be an object")
        return cls(
            format_version=FORMAT_VERSION,
            observation_shape=tuple(shape),
            observation_dtype=str(raw["observation_dtype"]),
            action_size=action_size,
            action_low=tuple(low),
            action_high=tuple(high),
            n_critics=_positive_int(raw, "n_critics"),
            q_func_type=str(raw["q_func_type"]),
            opset=_positive_int(raw, "opset"),
            files=dict(files),
            params=dict(raw.get("params", {})),
            provenance=dict(raw.get("provenance", {})),
            versions=dict(raw.get("versions", {})),
            created=str(raw.get("created", "")),
            evaluation=_evaluation(raw.get("evaluation")),
            ood=_ood(raw.get("ood"), math.prod(shape) + action_size, files),
        )


def manifest_digest(body: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no whitespace), seal excluded."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def graph_signatures(
    observation_shape: tuple[int, ...], action_size: int, n_critics: int
) -> dict[str, Any]:
    """Input/output names and shapes of the three graphs (-1 is the dynamic batch axis)."""
    obs = [-1, *observation_shape]
    return {
        "policy": {
            "file": GRAPH_FILES["policy"],
            "inputs": {"observations": obs},
            "outputs": {"actions": [-1, action_size]},
        },
        "sampler": {
            "file": GRAPH_FILES["sampler"],
            "inputs": {"observations": obs, "noise": [-1, action_size]},
            "outputs": {"actions": [-1, action_size]},
        },
        "critics": {
            "file": GRAPH_FILES["critics"],
            "inputs": {"observations": obs, "actions": [-1, action_size]},
            "outputs": {"q_values": [-1, n_critics]},
        },
    }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(directory: str | Path, verify: bool = True) -> Manifest:
    """Read directory/manifest.json; with verify, check every listed file's sha256."""
    root = Path(directory)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    path = root / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{MANIFEST_FILE}: missing from {root}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{MANIFEST_FILE}: unreadable ({exc})") from exc
    if isinstance(raw, dict):
        seal = raw.get("manifest_sha256")
        body = {k: v for k, v in raw.items() if k != "manifest_sha256"}
        if seal != manifest_digest(body):
            raise BundleError(f"{MANIFEST_FILE}: manifest_sha256 does not match its content")
    manifest = Manifest.from_dict(raw)
    if verify:
        for name, expected in manifest.files.items():
            file = root / name
            if not file.is_file():
                raise BundleError(f"{name}: listed in {MANIFEST_FILE} but missing")
            if sha256_file(file) != expected:
                raise BundleError(
                    f"{name}: sha256 does not match {MANIFEST_FILE} (corrupt or altered)"
                )
    return manifest


def _evaluation(value: Any) -> dict[str, Any] | None:
    """The optional 'evaluation' object: {method, estimate, ci [low, high], n_episodes,
    dataset_sha256}; null or absent in bundles without a held-out estimate."""
    if value is None:
        return None
    problem = f"{MANIFEST_FILE}: 'evaluation' must be null or an object of {list(EVALUATION_KEYS)}"
    if not isinstance(value, dict) or set(value) != set(EVALUATION_KEYS):
        raise BundleError(problem)
    ci = value["ci"]
    numbers = [value["estimate"], *(ci if isinstance(ci, list) else [])]
    if (
        not isinstance(value["method"], str)
        or not isinstance(ci, list)
        or len(ci) != 2
        or not all(_finite(v) for v in numbers)
        or not isinstance(value["n_episodes"], int)
        or isinstance(value["n_episodes"], bool)
        or value["n_episodes"] < 1
        or not isinstance(value["dataset_sha256"], str)
    ):
        raise BundleError(problem)
    return dict(value)


def _ood(value: Any, width: int, files: dict[str, Any]) -> OODSpec | None:
    """The optional 'ood' object (`OODSpec`); null or absent in bundles without a detector.
    Its reference file must be one of the sealed 'files'."""
    if value is None:
        return None
    try:
        spec = OODSpec.from_dict(value, width)
    except ValueError as exc:
        raise BundleError(f"{MANIFEST_FILE}: 'ood' {exc}") from None
    if spec.reference_file not in files:
        raise BundleError(f"{MANIFEST_FILE}: 'files' must list {spec.reference_file!r} ('ood')")
    return spec


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_list(raw: dict[str, Any], key: str) -> list[int]:
    value = raw.get(key)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise BundleError(f"{MANIFEST_FILE}: '{key}' must be a list of positive ints")
    return value


def _positive_int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BundleError(f"{MANIFEST_FILE}: '{key}' must be a positive int")
    return value


def _float_list(raw: dict[str, Any], key: str) -> list[float]:
    value = raw.get(key)
    if not isinstance(value, list) or not all(_finite(v) for v in value):
        raise BundleError(f"{MANIFEST_FILE}: '{key}' must be a list of finite numbers")
    return [float(v) for v in value]

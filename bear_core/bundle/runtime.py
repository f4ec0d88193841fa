"""Run a policy bundle with onnxruntime + numpy: the same meaning as BEAR.predict,
BEAR.sample_action and BEAR.predict_value(with_std), without torch.

One InferenceSession per graph, created once; `run` is thread-safe, so one PolicyBundle serves
concurrent callers. Sessions are tuned for small MLPs: one intra-op thread each (parallelism
comes from concurrent requests), sequential execution, full graph optimisation, and no spinning
threads unless asked for.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from bear_core.bundle.manifest import GRAPH_FILES, MANIFEST_FILE, Manifest, read_manifest
from bear_core.bundle.ood import OODDetector
from bear_core.errors import BundleError

FloatArray = npt.NDArray[np.float32]


def session_options(intra_op_threads: int = 1, spinning: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return options


class PolicyBundle:
    """A loaded, verified bundle. Build it with `load_bundle`. `ood` is its out-of-distribution
    detector, None in bundles exported without one."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        sessions: dict[str, ort.InferenceSession],
        ood: OODDetector | None = None,
    ):
        self.path = path
        self.manifest = manifest
        self.ood = ood
        self._policy = sessions["policy"]
        self._sampler = sessions["sampler"]
        self._critics = sessions["critics"]
        self._dtype = np.dtype(manifest.observation_dtype)
        self._rng = np.random.default_rng()  # unseeded draws; Generator calls are thread-safe
        self._row_shape = manifest.observation_shape

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return self.manifest.observation_shape

    @property
    def action_size(self) -> int:
        return self.manifest.action_size

    @property
    def n_critics(self) -> int:
        return self.manifest.n_critics

    # --- inference ------------------------------------------------------------------------------

    def predict(self, observations: Any) -> FloatArray:
        """Greedy actions [N, A] in the data's action range (= BEAR.predict)."""
        obs = self.check_observations(observations)
        return _first(self._policy.run(["actions"], {"observations": obs}))

    def sample_action(self, observations: Any, seed: int | None = None) -> FloatArray:
        """Actions [N, A] sampled from the policy; a seed makes the draw reproducible."""
        obs = self.check_observations(observations)
        noise = self.noise(len(obs), seed)
        return _first(self._sampler.run(["actions"], {"observations": obs, "noise": noise}))

    def sample_with_noise(self, observations: Any, noise: Any) -> FloatArray:
        """The sampler with explicit standard-normal noise [N, A] (parity checks, replays)."""
        obs = self.check_observations(observations)
        eps = check_batch(noise, "noise", (self.action_size,), np.float32, rows=len(obs))
        return _first(self._sampler.run(["actions"], {"observations": obs, "noise": eps}))

    def predict_q(self, observations: Any, actions: Any) -> FloatArray:
        """Per-critic Q values [N, K]."""
        obs = self.check_observations(observations)
        act = check_batch(actions, "actions", (self.action_size,), np.float32, rows=len(obs))
        return _first(self._critics.run(["q_values"], {"observations": obs, "actions": act}))

    def predict_value(
        self, observations: Any, actions: Any, with_std: bool = False
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        """Q(s, a) [N] as the ensemble mean; with_std also the ensemble's population std [N]."""
        values, stds = value_stats(self.predict_q(observations, actions), with_std)
        return values if stds is None else (values, stds)

    def ood_scores(self, observations: Any, actions: Any | None = None) -> FloatArray:
        """Out-of-distribution scores [N] of observations, or of (observation, action) pairs
        when actions are given, relative to the detector's threshold: above 1 is flagged.
        BundleError when the bundle has no detector."""
        if self.ood is None:
            raise BundleError(f"{self.path}: this bundle has no out-of-distribution detector")
        obs = self.check_observations(observations)
        if actions is None:
            return self.ood.score_observations(obs)
        act = check_batch(actions, "actions", (self.action_size,), np.float32, rows=len(obs))
        return self.ood.score_pairs(obs, act)

    # --- inputs ---------------------------------------------------------------------------------

    def check_observations(self, observations: Any) -> np.ndarray:
        return check_batch(observations, "observations", self._row_shape, self._dtype)

    def noise(self, n: int, seed: int | None) -> FloatArray:
        rng = self._rng if seed is None else np.random.default_rng(seed)
        return rng.standard_normal((n, self.action_size), dtype=np.float32)


def value_stats(
    q_values: FloatArray, with_std: bool = True
) -> tuple[FloatArray, FloatArray | None]:
    """Per-critic Q values [N, K] over the critic ensemble: the value, their mean [N], and with
    with_std their population std [N] (else None). The one place both are computed:
    predict_value and the HTTP service's value outputs use it."""
    values = q_values.mean(axis=1, dtype=np.float32)
    return values, q_values.std(axis=1, dtype=np.float32) if with_std else None


def check_batch(
    value: Any,
    name: str,
    row_shape: tuple[int, ...],
    dtype: np.dtype[Any] | type,
    rows: int | None = None,
) -> np.ndarray:
    """A C-contiguous batch [N, *row_shape] of finite numbers, or a ValueError naming `name`.
    Arrays already in the right dtype and layout pass through without a copy."""
    if isinstance(value, np.ndarray) and value.dtype == dtype and value.flags.c_contiguous:
        arr = value
    elif np.dtype(dtype) == np.uint8:
        arr = _as_pixels(value, name)
    else:
        try:
            arr = np.ascontiguousarray(value, dtype=dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{name} must be an array of numbers ({exc})") from None
    if arr.ndim != len(row_shape) + 1 or arr.shape[1:] != row_shape:
        expected = ", ".join(map(str, row_shape))
        raise ValueError(f"{name} must have shape [N, {expected}], got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one row")
    if rows is not None and arr.shape[0] != rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows but observations have {rows}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _as_pixels(value: Any, name: str) -> np.ndarray:
    """Whole numbers in [0, 255] as uint8, or a ValueError naming `name` (no silent wrap-around)."""
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of pixel values ({exc})") from None
    if raw.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be an array of pixel values, got {raw.dtype}")
    if raw.size and (
        not np.isfinite(raw).all() or raw.min() < 0 or raw.max() > 255 or (raw % 1 != 0).any()
    ):
        raise ValueError(f"{name} must hold whole pixel values in [0, 255]")
    return np.ascontiguousarray(raw, dtype=np.uint8)


def load_bundle(
    path: str | Path, intra_op_threads: int = 1, spinning: bool = False
) -> PolicyBundle:
    """Load and verify a bundle directory. Refuses (BundleError naming the file) a missing,
    corrupt, truncated or altered file, and a manifest that does not match its graphs."""
    root = Path(path)
    manifest = read_manifest(root, verify=False)
    options = session_options(intra_op_threads, spinning)
    sessions: dict[str, ort.InferenceSession] = {}
    for graph, file in GRAPH_FILES.items():
        data = _read_verified(root, file, manifest.files[file])
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several private exception types
            raise BundleError(f"{file}: onnxruntime cannot load it ({exc})") from None
        _check_signature(session, file, graph, manifest)
        sessions[graph] = session
    return PolicyBundle(root, manifest, sessions, _load_ood(root, manifest))


def _load_ood(root: Path, manifest: Manifest) -> OODDetector | None:
    """The detector's reference rows, verified against the manifest and loaded once."""
    spec = manifest.ood
    if spec is None:
        return None
    file = spec.reference_file
    data = _read_verified(root, file, manifest.files[file])
    try:
        reference = np.load(io.BytesIO(data), allow_pickle=False)
        return OODDetector(spec, reference, int(np.prod(manifest.observation_shape)))
    except (ValueError, OSError, EOFError) as exc:
        raise BundleError(
            f"{file}: not the reference rows {MANIFEST_FILE} describes ({exc})"
        ) from None


def _read_verified(root: Path, file: str, expected: str) -> bytes:
    try:
        data = (root / file).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{file}: listed in {MANIFEST_FILE} but missing") from None
    except OSError as exc:
        raise BundleError(f"{file}: unreadable ({exc})") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise BundleError(f"{file}: sha256 does not match {MANIFEST_FILE} (corrupt or altered)")
    return data


def _check_signature(
    session: ort.InferenceSession, file: str, graph: str, manifest: Manifest
) -> None:
    """The graph's inputs/outputs must be what the manifest says (names, widths, dtypes)."""
    obs = list(manifest.observation_shape)
    expected_inputs = {"observations": obs}
    if graph == "sampler":
        expected_inputs["noise"] = [manifest.action_size]
    if graph == "critics":
        expected_inputs["actions"] = [manifest.action_size]
    expected_outputs = {
        "q_values" if graph == "critics" else "actions": [
            manifest.n_critics if graph == "critics" else manifest.action_size
        ]
    }
    actual_inputs = {i.name: list(i.shape[1:]) for i in session.get_inputs()}
    actual_outputs = {o.name: list(o.shape[1:]) for o in session.get_outputs()}
    if actual_inputs != expected_inputs or actual_outputs != expected_outputs:
        raise BundleError(
            f"{file}: graph signature {actual_inputs} -> {actual_outputs} does not match "
            f"{MANIFEST_FILE} ({expected_inputs} -> {expected_outputs})"
        )
    obs_type = session.get_inputs()[0].type
    wanted = "tensor(uint8)" if manifest.observation_dtype == "uint8" else "tensor(float)"
    if obs_type != wanted:
        raise BundleError(f"{file}: observations are {obs_type}, {MANIFEST_FILE} says {wanted}")


def _first(outputs: list[Any]) -> FloatArray:
    """The one output an onnxruntime `run` was asked for."""
    first: FloatArray = outputs[0]
    return first

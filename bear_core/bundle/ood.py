"""The bundle's out-of-distribution detector: how far an observation (or an observation-action
pair) lies from the training data. Torch-free (numpy only).

Score: the mean Euclidean distance to the k nearest of `n_reference` training rows (a seeded
subsample stored in the bundle as `ood_reference.npy`), in standardised units (every feature
shifted and scaled by the training data's mean and std, so features are comparable whatever
scaler the policy uses). Observations are scored against the observation columns of the
reference rows, pairs against the joint (observation, action) rows.

Calibration: the threshold is the `quantile` (default 0.99) of the scores of sampled training
rows, each scored without the reference rows of its own episode, so that it matches what a new
episode of the training distribution scores (rows scored against themselves or their neighbours
in time would set it too low). Scores are reported divided by the threshold: a row is flagged
when its score exceeds 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

METHOD = "knn_mean_distance"
REFERENCE_FILE = "ood_reference.npy"
DEFAULT_K = 5
DEFAULT_QUANTILE = 0.99
MAX_REFERENCE_ROWS = 2000  # the per-call cost grows linearly with it
MAX_CALIBRATION_ROWS = 4000
MAX_REFERENCE_BYTES = 16 << 20  # wide observations get fewer reference rows
MIN_ROWS = 2 * DEFAULT_K  # fewer training rows give no detector
SPEC_KEYS = (
    "method",
    "k",
    "quantile",
    "n_reference",
    "reference_file",
    "shift",
    "scale",
    "threshold",
    "calibration",
)
_CHUNK_ROWS = 1024  # query rows per distance matrix (bounds memory for large batches)


@dataclass(frozen=True)
class OODSpec:
    """The manifest's `ood` object."""

    k: int
    quantile: float
    n_reference: int
    shift: tuple[float, ...]  # per feature of the joint (observation, action) row
    scale: tuple[float, ...]
    threshold_observations: float
    threshold_pairs: float
    calibration_rows: int
    calibration: str
    method: str = METHOD
    reference_file: str = REFERENCE_FILE

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "k": self.k,
            "quantile": self.quantile,
            "n_reference": self.n_reference,
            "reference_file": self.reference_file,
            "shift": list(self.shift),
            "scale": list(self.scale),
            "threshold": {
                "observations": self.threshold_observations,
                "pairs": self.threshold_pairs,
            },
            "calibration": {"rows": self.calibration_rows, "description": self.calibration},
        }

    @classmethod
    def from_dict(cls, raw: Any, width: int) -> OODSpec:
        """Parse the manifest's `ood` object for joint rows of `width` features; ValueError
        saying what is wrong otherwise."""
        if not isinstance(raw, dict) or set(raw) != set(SPEC_KEYS):
            raise ValueError(f"must be an object of {list(SPEC_KEYS)}")
        if raw["method"] != METHOD:
            raise ValueError(f"'method' must be {METHOD!r}")
        if raw["reference_file"] != REFERENCE_FILE:
            raise ValueError(f"'reference_file' must be {REFERENCE_FILE!r}")
        n_reference, k = raw["n_reference"], raw["k"]
        if not _int(n_reference) or not _int(k) or not 1 <= k < n_reference:
            raise ValueError("'k' and 'n_reference' must be ints with 1 <= k < n_reference")
        if not _number(raw["quantile"]) or not 0 < raw["quantile"] < 1:
            raise ValueError("'quantile' must be a number in (0, 1)")
        shift, scale = raw["shift"], raw["scale"]
        if not _numbers(shift, width) or not _numbers(scale, width) or min(scale) <= 0:
            raise ValueError(f"'shift' and 'scale' must be {width} numbers, scale > 0")
        threshold = raw["threshold"]
        if (
            not isinstance(threshold, dict)
            or set(threshold) != {"observations", "pairs"}
            or not all(_number(v) and v > 0 for v in threshold.values())
        ):
            raise ValueError("'threshold' must be {observations, pairs}, positive numbers")
        calibration = raw["calibration"]
        if (
            not isinstance(calibration, dict)
            or set(calibration) != {"rows", "description"}
            or not _int(calibration["rows"])
            or not isinstance(calibration["description"], str)
        ):
            raise ValueError("'calibration' must be {rows: int, description: str}")
        return cls(
            k=k,
            quantile=float(raw["quantile"]),
            n_reference=n_reference,
            shift=tuple(float(v) for v in shift),
            scale=tuple(float(v) for v in scale),
            threshold_observations=float(threshold["observations"]),
            threshold_pairs=float(threshold["pairs"]),
            calibration_rows=calibration["rows"],
            calibration=calibration["description"],
        )


class OODDetector:
    """A calibrated detector: the spec and its reference rows, with what each query needs
    (observation columns, squared norms) computed once."""

    def __init__(self, spec: OODSpec, reference: Any, observation_width: int) -> None:
        width = len(spec.shift)
        if (
            not isinstance(reference, np.ndarray)
            or reference.dtype != np.float32
            or reference.shape != (spec.n_reference, width)
            or not np.isfinite(reference).all()
        ):
            raise ValueError(
                f"must be a finite float32 array of shape [{spec.n_reference}, {width}]"
            )
        self.spec = spec
        self.observation_width = observation_width
        self._shift = np.asarray(spec.shift, np.float32)
        self._inv_scale = (1.0 / np.asarray(spec.scale, np.float64)).astype(np.float32)
        self._pairs = np.ascontiguousarray(reference)
        self._observations = np.ascontiguousarray(reference[:, :observation_width])
        self._norms_pairs = np.einsum("ij,ij->i", self._pairs, self._pairs)
        self._norms_observations = np.einsum("ij,ij->i", self._observations, self._observations)

    def score_observations(self, observations: FloatArray) -> FloatArray:
        """Scores [N] of observations [N, *obs] (finite float32), relative to the threshold."""
        flat = observations.reshape(len(observations), -1)
        w = self.observation_width
        x = (flat - self._shift[:w]) * self._inv_scale[:w]
        distances = _knn_distance(x, self._observations, self._norms_observations, self.spec.k)
        return (distances / self.spec.threshold_observations).astype(np.float32)

    def score_pairs(self, observations: FloatArray, actions: FloatArray) -> FloatArray:
        """Scores [N] of (observation, action) pairs, relative to the threshold."""
        joint = np.concatenate([observations.reshape(len(observations), -1), actions], axis=1)
        x = (joint - self._shift) * self._inv_scale
        distances = _knn_distance(x, self._pairs, self._norms_pairs, self.spec.k)
        return (distances / self.spec.threshold_pairs).astype(np.float32)


def flagged(scores: FloatArray) -> BoolArray:
    """Rows whose score exceeds the threshold (scores are relative to it)."""
    return scores > 1.0


def calibration_sample(
    observations: npt.ArrayLike,
    actions: npt.ArrayLike,
    episode_lengths: Sequence[int],
    seed: int,
    max_rows: int = MAX_REFERENCE_ROWS + MAX_CALIBRATION_ROWS,
) -> CalibrationSample | None:
    """A seeded subsample of training rows (observations flattened to [n, d], actions [n, A],
    the episode of each row) to calibrate a detector on at export; None for image observations
    or fewer than MIN_ROWS rows."""
    obs = np.asarray(observations)
    if obs.ndim != 2 or len(obs) < MIN_ROWS:
        return None
    episodes = np.repeat(np.arange(len(episode_lengths), dtype=np.int32), episode_lengths)
    if len(episodes) != len(obs):
        raise ValueError("episode_lengths must add up to the number of rows")
    rows = np.sort(np.random.default_rng(seed).permutation(len(obs))[:max_rows])
    return CalibrationSample(
        np.ascontiguousarray(obs[rows], np.float32),
        np.ascontiguousarray(np.asarray(actions, np.float32)[rows]),
        episodes[rows],
    )


@dataclass(frozen=True)
class CalibrationSample:
    """Training rows a detector is calibrated on: observations [n, d], actions [n, A] and the
    episode [n] each row comes from."""

    observations: FloatArray
    actions: FloatArray
    episodes: npt.NDArray[np.int32]


def calibrate(
    sample: CalibrationSample,
    seed: int = 0,
    k: int = DEFAULT_K,
    quantile: float = DEFAULT_QUANTILE,
    max_reference: int = MAX_REFERENCE_ROWS,
    max_calibration: int = MAX_CALIBRATION_ROWS,
) -> tuple[OODSpec, FloatArray]:
    """Build a detector from training rows: its spec and its reference rows (standardised).

    The reference is a seeded subsample of at most `max_reference` rows (fewer where wide rows
    would pass MAX_REFERENCE_BYTES). The thresholds are quantiles of the scores of up to
    `max_calibration` sampled rows, each scored without the reference rows of its own episode
    (leave-one-episode-out; leave-one-row-out when some episode leaves fewer than k): a row
    scores as one of an episode the detector has not seen, not against its own neighbours in
    time, which would bias the threshold low."""
    obs = np.asarray(sample.observations, np.float32)
    act = np.asarray(sample.actions, np.float32)
    obs = obs.reshape(len(obs), -1)
    groups = np.asarray(sample.episodes)
    if len(obs) <= k:
        raise ValueError(f"calibration needs more than k = {k} rows, got {len(obs)}")
    if act.ndim != 2 or len(act) != len(obs) or groups.shape != (len(obs),):
        raise ValueError("actions and episodes must have one row per observation")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    joint = np.concatenate([obs, act], axis=1).astype(np.float64)
    if not np.isfinite(joint).all():
        raise ValueError("calibration rows must be finite")
    shift = joint.mean(axis=0)
    std = joint.std(axis=0)
    scale = np.where(std > 1e-6, std, 1.0)
    scaled = ((joint - shift) / scale).astype(np.float32)
    cap = min(max_reference, max(k + 1, MAX_REFERENCE_BYTES // (4 * joint.shape[1])))
    rng = np.random.default_rng(seed)
    ref_rows = np.sort(rng.permutation(len(scaled))[:cap])
    cal_rows = np.sort(rng.permutation(len(scaled))[:max_calibration])
    reference = np.ascontiguousarray(scaled[ref_rows])
    held = scaled[cal_rows]
    excluded = groups[cal_rows][:, None] == groups[ref_rows][None, :]
    if int((~excluded).sum(axis=1).min()) < k:  # too few episodes: leave one row out
        excluded = cal_rows[:, None] == ref_rows[None, :]
    width = obs.shape[1]
    t_obs = _knn_distance(held[:, :width], reference[:, :width], None, k, excluded)
    t_pairs = _knn_distance(held, reference, None, k, excluded)
    spec = OODSpec(
        k=k,
        quantile=float(quantile),
        n_reference=len(reference),
        shift=tuple(float(v) for v in shift),
        scale=tuple(float(v) for v in scale),
        threshold_observations=_threshold(t_obs, quantile),
        threshold_pairs=_threshold(t_pairs, quantile),
        calibration_rows=len(held),
        calibration=(
            f"{len(held)} of {len(scaled)} sampled training rows, each scored against the "
            f"reference without the rows of its own episode (seed {seed})"
        ),
    )
    return spec, reference


def _threshold(scores: FloatArray, quantile: float) -> float:
    """The quantile of the calibration scores, kept above zero (duplicated rows score 0)."""
    return max(float(np.quantile(scores, quantile)), 1e-6)


def _knn_distance(
    x: FloatArray,
    reference: FloatArray,
    norms: FloatArray | None,
    k: int,
    excluded: BoolArray | None = None,
) -> FloatArray:
    """Mean distance [N] from each row of x to its k nearest reference rows: squared norms
    plus one matrix product, then a partial sort. `excluded` [N, n_reference] marks pairs left
    out (calibration only)."""
    if norms is None:
        norms = np.einsum("ij,ij->i", reference, reference)
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty(len(x), np.float32)
    for start in range(0, len(x), _CHUNK_ROWS):
        block = x[start : start + _CHUNK_ROWS]
        d2 = norms - 2.0 * (block @ reference.T)
        d2 += np.einsum("ij,ij->i", block, block)[:, None]
        if excluded is not None:
            d2[excluded[start : start + _CHUNK_ROWS]] = np.inf
        nearest = np.partition(d2, k - 1, axis=1)[:, :k]
        out[start : start + len(block)] = np.sqrt(np.maximum(nearest, 0.0)).mean(axis=1)
    return out


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(_number(v) for v in value)

"""Fitted Q evaluation of exported policy bundles, so that two bundles are scored alike.

A bundle carries its policy as an ONNX graph with its scalers baked in, not the torch model,
so the FQE critics cannot reuse the policy's own scalers. `BundlePolicy` gives FQE scalers
fitted on the evaluation episodes instead: observations standardised (pixels divided by 255)
and actions mapped from the data's action range to [-1, 1]. Every bundle evaluated on the same
episodes therefore meets the same critics' inputs, the same discount and the same seeds: the
one thing that differs between two estimates is the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bear_core.bundle import MANIFEST_FILE, PolicyBundle, load_bundle, sha256_file
from bear_core.config import BEARConfig
from bear_core.dataset import Episode
from bear_core.ope.fqe import PolicyValueEstimate, estimate_policy_value
from bear_core.preprocessing.scalers import ActionScaler, ObservationScaler


class _Scalers:
    """The `impl` FQE looks for: its observation and action scalers."""

    def __init__(self, observation_scaler: ObservationScaler, action_scaler: ActionScaler) -> None:
        self.observation_scaler = observation_scaler
        self.action_scaler = action_scaler


class BundlePolicy:
    """A bundle's greedy policy as FQE evaluates it: `predict`, `gamma` (the given one, else
    the bundle's own `params["gamma"]`, else BEAR's default) and scalers fitted on `episodes`
    (`action_bounds` (low, high): the data's declared action range, else its min and max)."""

    def __init__(
        self,
        bundle: PolicyBundle,
        episodes: Sequence[Episode],
        action_bounds: tuple[Any, Any] | None = None,
        gamma: float | None = None,
    ) -> None:
        manifest = bundle.manifest
        self.bundle = bundle
        self.gamma = float(gamma if gamma is not None else _bundle_gamma(manifest.params))
        pixels = manifest.observation_dtype == "uint8"
        observations = np.concatenate([e.observations for e in episodes])
        actions = np.concatenate([e.actions for e in episodes])
        observation_scaler = ObservationScaler(
            "pixel" if pixels else "standard", manifest.observation_shape
        )
        observation_scaler.fit(observations)
        action_scaler = ActionScaler("min_max", manifest.action_size)
        action_scaler.fit(actions, action_bounds)
        self.impl = _Scalers(observation_scaler, action_scaler)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.bundle.predict(x)


def estimate_bundle_value(
    bundle_dir: str | Path,
    episodes: Sequence[Episode],
    action_bounds: tuple[Any, Any] | None = None,
    gamma: float | None = None,
    n_steps: int = 3000,
    seed: int = 0,
    **fqe_kwargs: Any,
) -> tuple[str, PolicyValueEstimate]:
    """(sha256 of the bundle's manifest.json, `estimate_policy_value` of its policy on
    `episodes`). The bundle is verified before it runs (BundleError otherwise)."""
    bundle = load_bundle(bundle_dir)
    policy = BundlePolicy(bundle, episodes, action_bounds, gamma)
    estimate = estimate_policy_value(policy, episodes, n_steps=n_steps, seed=seed, **fqe_kwargs)
    return sha256_file(Path(bundle_dir) / MANIFEST_FILE), estimate


def _bundle_gamma(params: dict[str, Any]) -> float:
    gamma = params.get("gamma")
    if isinstance(gamma, int | float) and not isinstance(gamma, bool) and 0 <= gamma <= 1:
        return float(gamma)
    return BEARConfig().gamma

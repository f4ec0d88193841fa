"""Observation scalers and the action scaler, as torch modules with their statistics as buffers.

Being modules, they move with `.to(device)`, live in the checkpoint's state dict and are traced
into exported graphs (TorchScript, ONNX), so no consumer re-implements them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

PIXEL_MAX = 255.0
STANDARD_EPS = 1e-3  # (x - mean) / (std + eps), as the reference's standard scaler


class ObservationScaler(nn.Module):
    """x -> (x - shift) / scale. Identity until fitted ('none')."""

    kind: str

    def __init__(self, kind: str | None, observation_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.kind = kind or "none"
        pixel = self.kind == "pixel"  # x / 255, nothing to fit
        self.register_buffer("shift", torch.zeros(() if pixel else observation_shape))
        self.register_buffer(
            "scale", torch.full(() if pixel else observation_shape, PIXEL_MAX if pixel else 1.0)
        )
        self.fitted = self.kind in ("none", "pixel")

    def fit(self, observations: np.ndarray) -> None:
        x = observations.astype(np.float64)
        if self.kind == "min_max":
            minimum, maximum = x.min(axis=0), x.max(axis=0)
            shift, scale = minimum, np.where(maximum > minimum, maximum - minimum, 1.0)
        elif self.kind == "standard":
            shift, scale = x.mean(axis=0), x.std(axis=0) + STANDARD_EPS
        else:
            return
        self.shift.copy_(torch.as_tensor(shift, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        self.fitted = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale

    def to_dict(self) -> dict[str, Any] | None:
        """{'type', 'params'} as in the reference's params.json (None when there is no scaler)."""
        if self.kind == "none":
            return None
        if self.kind == "pixel":
            return {"type": "pixel", "params": {}}
        if self.kind == "min_max":
            params = {"minimum": self.shift, "maximum": self.shift + self.scale}
        else:
            params = {"mean": self.shift, "std": self.scale - STANDARD_EPS}
        spec: dict[str, Any] = {k: _to_list(v) for k, v in params.items()}
        if self.kind == "standard":
            spec["eps"] = STANDARD_EPS
        return {"type": self.kind, "params": spec}

    def load_dict(self, spec: Mapping[str, Any]) -> None:
        params = spec.get("params") or {}
        if not params or self.kind == "pixel":
            return
        if self.kind == "min_max":
            minimum = torch.as_tensor(params["minimum"], dtype=torch.float32)
            maximum = torch.as_tensor(params["maximum"], dtype=torch.float32)
            shift, scale = minimum, maximum - minimum
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        else:
            shift = torch.as_tensor(params["mean"], dtype=torch.float32)
            eps = params.get("eps", STANDARD_EPS)
            scale = torch.as_tensor(params["std"], dtype=torch.float32) + eps
        self.shift.copy_(shift.reshape(self.shift.shape))
        self.scale.copy_(scale.reshape(self.scale.shape))
        self.fitted = True


class ActionScaler(nn.Module):
    """Maps the data's action box [low, high] to tanh's [-1, 1] (`forward`) and back (`reverse`).

    Identity when the algorithm runs without an action scaler.
    """

    def __init__(self, kind: str | None, action_size: int) -> None:
        super().__init__()
        self.kind = kind or "none"
        self.register_buffer("low", -torch.ones(action_size))
        self.register_buffer("high", torch.ones(action_size))
        self.fitted = self.kind == "none"

    def fit(self, actions: np.ndarray, bounds: tuple[np.ndarray, np.ndarray] | None) -> None:
        if self.kind == "none":
            return
        if bounds is not None:
            low, high = (np.asarray(b, dtype=np.float64) for b in bounds)
        else:
            low, high = actions.min(axis=0), actions.max(axis=0)
        high = np.where(high > low, high, low + 1e-6)
        self.low.copy_(torch.as_tensor(low, dtype=torch.float32))
        self.high.copy_(torch.as_tensor(high, dtype=torch.float32))
        self.fitted = True

    def forward(self, action: torch.Tensor) -> torch.Tensor:
        return ((action - self.low) / (self.high - self.low) * 2.0 - 1.0).clamp(-1.0, 1.0)

    def reverse(self, action: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> [low, high], clamped: tanh implementations may overshoot 1 by an ulp."""
        scaled = self.low + (action + 1.0) * 0.5 * (self.high - self.low)
        return torch.minimum(torch.maximum(scaled, self.low), self.high)

    def to_dict(self) -> dict[str, Any] | None:
        if self.kind == "none":
            return None
        return {
            "type": self.kind,
            "params": {"minimum": _to_list(self.low), "maximum": _to_list(self.high)},
        }

    def load_dict(self, spec: Mapping[str, Any]) -> None:
        params = spec.get("params") or {}
        if params:
            self.low.copy_(torch.as_tensor(params["minimum"], dtype=torch.float32))
            self.high.copy_(torch.as_tensor(params["maximum"], dtype=torch.float32))
            self.fitted = True


def _to_list(t: torch.Tensor) -> list[Any]:
    return t.detach().cpu().tolist()

"""Observation augmentations: the reference's `augmentation` / `n_augmentations` feature.

Observations are scaled first and augmented after, inside the update; a loss that sees
augmented observations is averaged over `n_augmentations` independent draws (`augmented_mean`).
Every augmentation is a frozen dataclass whose fields are its parameters (the reference's names
and defaults); `to_dict()` gives the `{"type", "params"}` entry of params.json.

Randomness comes only from the `generator` argument (a `torch.Generator` on the observations'
device, or None for torch's default one), so a seeded generator reproduces a run. Inputs are
float tensors: vector observations [B, D], image observations [B, C, H, W].
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Kind = Literal["vector", "image"]
_LAYOUT: dict[Kind, tuple[int, str]] = {"vector": (1, "(D,)"), "image": (3, "(C, H, W)")}


def _rand(shape: tuple[int, ...], x: Tensor, generator: torch.Generator | None) -> Tensor:
    """U[0, 1) draws in float32 on x's device."""
    return torch.rand(shape, generator=generator, device=x.device, dtype=torch.float32)


def _stretch(u: Tensor, bounds: tuple[float, float]) -> Tensor:
    """Maps U[0, 1) draws u onto U[low, high): low + (high - low) * u."""
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _uniform(
    shape: tuple[int, ...],
    bounds: tuple[float, float],
    x: Tensor,
    generator: torch.Generator | None,
) -> Tensor:
    """U[low, high) draws in float32 on x's device."""
    return _stretch(_rand(shape, x, generator), bounds)


@dataclass(frozen=True)
class Augmentation(ABC):
    """A random transformation of a batch of observations; fields are its parameters."""

    name: ClassVar[str]
    kind: ClassVar[Kind]

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Returns an augmented copy of the batch x (same shape, dtype and device)."""
        self.check_observation_shape(tuple(x.shape[1:]))
        if not x.is_floating_point():
            raise TypeError(f"augmentation {self.name!r} needs a float tensor, got {x.dtype}")
        return self._apply(x, generator)

    @abstractmethod
    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor: ...

    def check_observation_shape(self, shape: Sequence[int]) -> None:
        """Raises ValueError when observations of this shape are not of this augmentation's kind."""
        ndim, layout = _LAYOUT[self.kind]
        if len(shape) != ndim:
            raise ValueError(
                f"augmentation {self.name!r} works on {self.kind} observations {layout}, "
                f"got observation shape {tuple(shape)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """{"type": name, "params": {field: value}} with JSON types (tuples become lists)."""
        params = {f.name: getattr(self, f.name) for f in fields(self)}
        return {
            "type": self.name,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
        }

    def _number(self, field: str, low: float = -math.inf, high: float = math.inf) -> float:
        """Validates the finite number field in [low, high] and stores it as a float."""
        value = getattr(self, field)
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (ok and math.isfinite(value) and low <= value <= high):
            raise ValueError(
                f"augmentation {self.name!r}: {field} must be a finite number in "
                f"[{low}, {high}], got {value!r}"
            )
        object.__setattr__(self, field, float(value))
        return float(value)

    def _range(self, field: str, low: float | None = None) -> None:
        """Validates the (minimum, maximum) field, minimum >= low, and stores it as a tuple."""
        value = getattr(self, field)
        pair = tuple(value) if isinstance(value, list | tuple) else ()
        ok = len(pair) == 2 and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            for v in pair
        )
        if not (ok and pair[0] <= pair[1] and (low is None or pair[0] >= low)):
            bound = "" if low is None else f" and minimum >= {low}"
            raise ValueError(
                f"augmentation {self.name!r}: {field} must be a pair (minimum, maximum) of finite "
                f"numbers with minimum <= maximum{bound}, got {value!r}"
            )
        object.__setattr__(self, field, (float(pair[0]), float(pair[1])))


# --- vector observations [B, D] ---


@dataclass(frozen=True)
class SingleAmplitudeScaling(Augmentation):
    """x' = x * z, one z ~ U(minimum, maximum) per sample."""

    name: ClassVar[str] = "single_amplitude_scaling"
    kind: ClassVar[Kind] = "vector"
    minimum: float = 0.8
    maximum: float = 1.2

    def __post_init__(self) -> None:
        low, high = self._number("minimum"), self._number("maximum")
        if low > high:
            raise ValueError(
                f"augmentation {self.name!r}: minimum ({low}) must not exceed maximum ({high})"
            )

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        z = _uniform((x.shape[0], 1), (self.minimum, self.maximum), x, generator)
        return x * z.to(x.dtype)


@dataclass(frozen=True)
class MultipleAmplitudeScaling(SingleAmplitudeScaling):
    """x' = x * z, an independent z ~ U(minimum, maximum) per element."""

    name: ClassVar[str] = "multiple_amplitude_scaling"

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        z = _uniform(tuple(x.shape), (self.minimum, self.maximum), x, generator)
        return x * z.to(x.dtype)


# --- image observations [B, C, H, W] ---


@dataclass(frozen=True)
class RandomShift(Augmentation):
    """x'[i, j] = x[clamp(i + dy), clamp(j + dx)], dy, dx ~ U{-shift_size, ..., shift_size}.

    Per sample; the same as replicate-padding by shift_size and cropping H x W at random.
    """

    name: ClassVar[str] = "random_shift"
    kind: ClassVar[Kind] = "image"
    shift_size: int = 4

    def __post_init__(self) -> None:
        value = self.shift_size
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(
                f"augmentation {self.name!r}: shift_size must be an integer >= 0, got {value!r}"
            )
        object.__setattr__(self, "shift_size", int(value))

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        batch, _, height, width = x.shape
        shift = torch.randint(
            -self.shift_size,
            self.shift_size + 1,
            (2, batch, 1),
            generator=generator,
            device=x.device,
        )
        rows = (torch.arange(height, device=x.device) + shift[0]).clamp(0, height - 1)
        cols = (torch.arange(width, device=x.device) + shift[1]).clamp(0, width - 1)
        x = x.gather(2, rows[:, None, :, None].expand(x.shape))
        return x.gather(3, cols[:, None, None, :].expand(x.shape))


@dataclass(frozen=True)
class Cutout(Augmentation):
    """With the given probability per sample, sets one random rectangle (all channels) to 0.

    Rectangle as the reference's random erasing: area a ~ U(0.02, 0.33) * H * W, aspect ratio
    r ~ U(0.3, 1) or U(1, 3.3) with equal odds, height round(sqrt(a r)) and width
    round(sqrt(a / r)) clamped to the image, position uniform inside the image.
    """

    name: ClassVar[str] = "cutout"
    kind: ClassVar[Kind] = "image"
    area_range: ClassVar[tuple[float, float]] = (0.02, 0.33)
    aspect_range: ClassVar[tuple[float, float]] = (0.3, 3.3)
    probability: float = 0.5

    def __post_init__(self) -> None:
        self._number("probability", 0.0, 1.0)

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        batch, _, height, width = x.shape
        u = _rand((7, batch), x, generator)
        area = _stretch(u[0], self.area_range) * (height * width)
        narrow, wide = self.aspect_range
        ratio = torch.where(u[1] < 0.5, _stretch(u[2], (narrow, 1.0)), _stretch(u[3], (1.0, wide)))
        rect_h = (area * ratio).sqrt().round().clamp(1, height)
        rect_w = (area / ratio).sqrt().round().clamp(1, width)
        top = torch.minimum((u[4] * (height - rect_h + 1)).floor(), height - rect_h)
        left = torch.minimum((u[5] * (width - rect_w + 1)).floor(), width - rect_w)
        rows = torch.arange(height, device=x.device)
        cols = torch.arange(width, device=x.device)
        in_rows = (rows >= top[:, None]) & (rows < (top + rect_h)[:, None])
        in_cols = (cols >= left[:, None]) & (cols < (left + rect_w)[:, None])
        hit = u[6] < self.probability
        mask = hit[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]
        return x.masked_fill(mask[:, None], 0.0)


@dataclass(frozen=True)
class _Flip(Augmentation):
    """x' = flip(x) with the given probability per sample."""

    kind: ClassVar[Kind] = "image"
    dim: ClassVar[int]
    probability: float = 0.1

    def __post_init__(self) -> None:
        self._number("probability", 0.0, 1.0)

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        flip = _rand((x.shape[0], 1, 1, 1), x, generator) < self.probability
        return torch.where(flip, x.flip(self.dim), x)


@dataclass(frozen=True)
class HorizontalFlip(_Flip):
    """x'[:, :, i, j] = x[:, :, i, W - 1 - j] with the given probability per sample."""

    name: ClassVar[str] = "horizontal_flip"
    dim: ClassVar[int] = -1


@dataclass(frozen=True)
class VerticalFlip(_Flip):
    """x'[:, :, i, j] = x[:, :, H - 1 - i, j] with the given probability per sample."""

    name: ClassVar[str] = "vertical_flip"
    dim: ClassVar[int] = -2


@dataclass(frozen=True)
class RandomRotation(Augmentation):
    """Rotates each sample about the image centre by theta ~ U(-degree, degree) degrees.

    Bilinear sampling, zeros outside the image; the sampling grid is built in pixel units, so
    non-square images are rotated without shear.
    """

    name: ClassVar[str] = "random_rotation"
    kind: ClassVar[Kind] = "image"
    degree: float = 5.0

    def __post_init__(self) -> None:
        self._number("degree", 0.0, 180.0)

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        batch, _, height, width = x.shape
        angle = torch.deg2rad(_uniform((batch,), (-self.degree, self.degree), x, generator))
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        theta = torch.stack(
            [
                torch.stack([cos, -sin * (height / width), zero], dim=-1),
                torch.stack([sin * (width / height), cos, zero], dim=-1),
            ],
            dim=1,
        ).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class Intensity(Augmentation):
    """x' = x * (1 + scale * clip(n, -2, 2)), one n ~ N(0, 1) per sample."""

    name: ClassVar[str] = "intensity"
    kind: ClassVar[Kind] = "image"
    scale: float = 0.1

    def __post_init__(self) -> None:
        self._number("scale", 0.0)

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        noise = torch.randn(
            (x.shape[0], 1, 1, 1), generator=generator, device=x.device, dtype=torch.float32
        )
        return x * (1.0 + self.scale * noise.clamp(-2.0, 2.0)).to(x.dtype)


@dataclass(frozen=True)
class ColorJitter(Augmentation):
    """Random contrast and HSV jitter of stacked RGB frames in [0, 1] (C = 3 * n_frames).

    Per sample, one draw of each factor shared by its frames:
    contrast  x' = clip((x - mean_hw(x)) * c + mean_hw(x), 0, 1), c ~ U(contrast), applied
              before or after the HSV steps with equal odds;
    hue       h' = (h + u * 255 / 360) mod 1, u ~ U(hue) (the reference's hue units);
    saturation s' = clip(s * f, 0, 1), f ~ U(saturation);
    brightness v' = clip(v * b, 0, 1), b ~ U(brightness).
    """

    name: ClassVar[str] = "color_jitter"
    kind: ClassVar[Kind] = "image"
    hue_units: ClassVar[float] = 255.0 / 360.0
    brightness: tuple[float, float] = (0.6, 1.4)
    contrast: tuple[float, float] = (0.6, 1.4)
    saturation: tuple[float, float] = (0.6, 1.4)
    hue: tuple[float, float] = (-0.5, 0.5)

    def __post_init__(self) -> None:
        for field in ("brightness", "contrast", "saturation"):
            self._range(field, 0.0)
        self._range("hue")

    def check_observation_shape(self, shape: Sequence[int]) -> None:
        """Also needs the channel count to be a multiple of 3 (stacked RGB frames)."""
        super().check_observation_shape(shape)
        if shape[0] % 3:
            raise ValueError(
                f"augmentation {self.name!r} needs stacked RGB frames (channels a multiple "
                f"of 3), got observation shape {tuple(shape)}"
            )

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        batch, channels, height, width = x.shape
        rgb = x.reshape(batch, channels // 3, 3, height, width)
        per_sample = (batch, 1, 1, 1)
        contrast = _uniform((*per_sample, 1), self.contrast, x, generator).to(x.dtype)
        contrast_first = _rand((*per_sample, 1), x, generator) < 0.5
        rgb = torch.where(contrast_first, _adjust_contrast(rgb, contrast), rgb)
        hue, saturation, value = _rgb_to_hsv(rgb)
        hue_shift = _uniform(per_sample, self.hue, x, generator) * self.hue_units
        hue = torch.remainder(hue + hue_shift.to(x.dtype), 1.0)
        saturation = saturation * _uniform(per_sample, self.saturation, x, generator).to(x.dtype)
        value = value * _uniform(per_sample, self.brightness, x, generator).to(x.dtype)
        rgb = _hsv_to_rgb(hue, saturation.clamp(0.0, 1.0), value.clamp(0.0, 1.0))
        rgb = torch.where(contrast_first, rgb, _adjust_contrast(rgb, contrast))
        return rgb.reshape(x.shape)


def _adjust_contrast(rgb: Tensor, factor: Tensor) -> Tensor:
    """clip((x - m) * factor + m, 0, 1), m the per-channel spatial mean."""
    mean = rgb.mean(dim=(-2, -1), keepdim=True)
    return ((rgb - mean) * factor + mean).clamp(0.0, 1.0)


def _rgb_to_hsv(rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """[..., 3, H, W] RGB -> hue in [0, 1), saturation, value, each [..., H, W]."""
    red, green, blue = rgb.unbind(dim=-3)
    value, argmax = rgb.max(dim=-3)
    delta = value - rgb.min(dim=-3).values
    safe_delta = torch.where(delta > 0, delta, 1.0)
    sector = torch.where(
        argmax == 0,
        torch.remainder((green - blue) / safe_delta, 6.0),
        torch.where(argmax == 1, (blue - red) / safe_delta + 2.0, (red - green) / safe_delta + 4.0),
    )
    hue = torch.where(delta > 0, sector / 6.0, 0.0)
    saturation = torch.where(value > 0, delta / torch.where(value > 0, value, 1.0), 0.0)
    return hue, saturation, value


def _hsv_to_rgb(hue: Tensor, saturation: Tensor, value: Tensor) -> Tensor:
    """channel_n = v - v s clip(min(k, 4 - k), 0, 1), k = (n + 6 h) mod 6, n = 5, 3, 1 (R, G, B)."""
    n = torch.tensor([5.0, 3.0, 1.0], device=hue.device, dtype=hue.dtype)[:, None, None]
    k = torch.remainder(n + 6.0 * hue.unsqueeze(-3), 6.0)
    weight = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    value, saturation = value.unsqueeze(-3), saturation.unsqueeze(-3)
    return value - value * saturation * weight


AUGMENTATIONS: dict[str, type[Augmentation]] = {
    cls.name: cls
    for cls in (
        SingleAmplitudeScaling,
        MultipleAmplitudeScaling,
        RandomShift,
        Cutout,
        HorizontalFlip,
        VerticalFlip,
        RandomRotation,
        Intensity,
        ColorJitter,
    )
}

AugmentationSpec = str | Mapping[str, Any] | Augmentation


def create_augmentation(spec: AugmentationSpec) -> Augmentation:
    """An augmentation from its name (default parameters), a {"type", "params"} dict or itself."""
    if isinstance(spec, Augmentation):
        return spec
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping) and "type" in spec and set(spec) <= {"type", "params"}:
        name, params = spec["type"], spec.get("params") or {}
    else:
        raise ValueError(
            "augmentation entries are names, {'type', 'params'} dicts or Augmentation objects, "
            f"got {spec!r}"
        )
    cls = AUGMENTATIONS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown augmentation {name!r}; known: {sorted(AUGMENTATIONS)}")
    if not isinstance(params, Mapping):
        raise ValueError(f"augmentation {name!r}: params must be a dict, got {params!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(map(str, set(params) - known))
    if unknown:
        raise ValueError(
            f"augmentation {name!r} has no parameter {', '.join(unknown)}; "
            f"its parameters: {sorted(known)}"
        )
    return cls(**params)


@dataclass(frozen=True)
class AugmentationPipeline:
    """Applies its augmentations in order; an empty pipeline is falsy and the identity."""

    augmentations: Sequence[Augmentation] = ()

    def __post_init__(self) -> None:
        augmentations = tuple(self.augmentations)
        for augmentation in augmentations:
            if not isinstance(augmentation, Augmentation):
                raise ValueError(
                    "augmentation pipeline entries must be Augmentation objects, "
                    f"got {augmentation!r}"
                )
        object.__setattr__(self, "augmentations", augmentations)

    @classmethod
    def from_spec(
        cls, spec: AugmentationSpec | Iterable[AugmentationSpec] | None
    ) -> AugmentationPipeline:
        """From names, {"type", "params"} dicts and Augmentation objects (mixed; None: empty)."""
        if spec is None:
            return cls()
        if isinstance(spec, str | Mapping | Augmentation):
            spec = [spec]
        return cls(tuple(create_augmentation(entry) for entry in spec))

    def to_list(self) -> list[dict[str, Any]]:
        """The params.json form: [{"type", "params"}, ...]; from_spec(p.to_list()) == p."""
        return [augmentation.to_dict() for augmentation in self.augmentations]

    def check_observation_shape(self, shape: Sequence[int]) -> None:
        """Raises ValueError naming the augmentation that cannot handle this observation shape."""
        for augmentation in self.augmentations:
            augmentation.check_observation_shape(shape)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for augmentation in self.augmentations:
            x = augmentation(x, generator)
        return x

    def __bool__(self) -> bool:
        return bool(self.augmentations)


def augmented_mean(
    loss_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    pipeline: AugmentationPipeline,
    n_augmentations: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(1 / n) * sum_k loss_fn(pipeline(x)) over n independent draws; loss_fn(x) if no pipeline.

    loss_fn may return any shape (a scalar or per-sample losses); the mean is elementwise.
    """
    if (
        isinstance(n_augmentations, bool)
        or not isinstance(n_augmentations, int)
        or n_augmentations < 1
    ):
        raise ValueError(f"n_augmentations must be an integer >= 1, got {n_augmentations!r}")
    if not pipeline:
        return loss_fn(x)
    losses = [loss_fn(pipeline(x, generator)) for _ in range(n_augmentations)]
    return torch.stack(losses).mean(dim=0)

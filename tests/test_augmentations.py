"""Augmentations: shapes, reproducibility, the formulas, the pipeline and augmented_mean."""

from __future__ import annotations

import colorsys
import json
import math

import pytest
import torch
import torch.nn.functional as F

from bear_core.augmentations import (
    AUGMENTATIONS,
    Augmentation,
    AugmentationPipeline,
    ColorJitter,
    Cutout,
    HorizontalFlip,
    Intensity,
    MultipleAmplitudeScaling,
    RandomRotation,
    RandomShift,
    SingleAmplitudeScaling,
    VerticalFlip,
    augmented_mean,
    create_augmentation,
)

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
IDENTITY_JITTER = ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(1, 1), hue=(0, 0))


def gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def batch_for(
    augmentation: Augmentation,
    batch: int = 16,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> torch.Tensor:
    """Vector [B, 7] or RGB-stack image [B, 6, 12, 10] observations in (0, 1]."""
    shape = (batch, 7) if augmentation.kind == "vector" else (batch, 6, 12, 10)
    return torch.rand(shape, generator=gen(123), dtype=dtype).add(1e-3).clamp(max=1).to(device)


def jitter_reference(pixel: tuple[float, ...], hue: float, sat: float, val: float) -> list[float]:
    """One RGB pixel through colorsys with the given hue shift and factors."""
    h, s, v = colorsys.rgb_to_hsv(*pixel)
    h = (h + hue * 255.0 / 360.0) % 1.0
    return list(colorsys.hsv_to_rgb(h, min(s * sat, 1.0), min(v * val, 1.0)))


# --- every augmentation ---


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_keeps_shape_dtype_device(name: str, dtype: torch.dtype, device: str) -> None:
    augmentation = AUGMENTATIONS[name]()
    x = batch_for(augmentation, dtype=dtype, device=device)
    y = augmentation(x, gen(0, device))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_reproducible_for_a_seed_and_seed_dependent(name: str, device: str) -> None:
    augmentation = AUGMENTATIONS[name]()
    x = batch_for(augmentation, batch=64, device=device)
    first = augmentation(x, gen(1, device))
    assert torch.equal(first, augmentation(x, gen(1, device)))
    assert not torch.equal(first, augmentation(x, gen(2, device)))
    assert not torch.equal(first, x)


def test_registry_names_kinds_and_to_dict() -> None:
    assert sorted(AUGMENTATIONS) == [
        "color_jitter",
        "cutout",
        "horizontal_flip",
        "intensity",
        "multiple_amplitude_scaling",
        "random_rotation",
        "random_shift",
        "single_amplitude_scaling",
        "vertical_flip",
    ]
    for name, cls in AUGMENTATIONS.items():
        assert cls.name == name
        assert cls.kind == ("vector" if name.endswith("amplitude_scaling") else "image")
    assert RandomShift().to_dict() == {"type": "random_shift", "params": {"shift_size": 4}}
    assert Cutout().to_dict() == {"type": "cutout", "params": {"probability": 0.5}}
    assert ColorJitter().to_dict()["params"] == {
        "brightness": [0.6, 1.4],
        "contrast": [0.6, 1.4],
        "saturation": [0.6, 1.4],
        "hue": [-0.5, 0.5],
    }
    with pytest.raises(AttributeError):
        Cutout().probability = 1.0  # type: ignore[misc]


# --- vector observations ---


def test_single_amplitude_scaling_one_factor_per_row() -> None:
    x = torch.rand(4000, 6) + 0.5
    ratio = SingleAmplitudeScaling()(x, gen(0)) / x
    row = ratio[:, :1]
    torch.testing.assert_close(ratio, row.expand_as(ratio))
    assert row.min() >= 0.8 - 1e-6 and row.max() <= 1.2 + 1e-6
    assert row.min() < 0.81 and row.max() > 1.19
    assert abs(row.mean().item() - 1.0) < 0.01


def test_multiple_amplitude_scaling_one_factor_per_element() -> None:
    x = torch.rand(4000, 6) + 0.5
    ratio = MultipleAmplitudeScaling(minimum=0.5, maximum=2.0)(x, gen(0)) / x
    assert ratio.min() >= 0.5 - 1e-6 and ratio.max() <= 2.0 + 1e-6
    assert (ratio.std(dim=1) > 1e-3).all()
    assert abs(ratio.mean().item() - 1.25) < 0.01
    assert abs(ratio.var().item() - 1.5**2 / 12) < 0.01


# --- image observations ---


def test_random_shift_is_a_crop_of_the_replicate_padded_image() -> None:
    x = torch.rand(2000, 2, 8, 9)
    y = RandomShift(shift_size=4)(x, gen(0))
    padded = F.pad(x, (4, 4, 4, 4), mode="replicate")
    offset = torch.full((x.shape[0],), -1)
    for dy in range(9):
        for dx in range(9):
            window = padded[:, :, dy : dy + 8, dx : dx + 9]
            match = (y == window).flatten(1).all(dim=1) & (offset < 0)
            offset[match] = dy * 9 + dx
    assert (offset >= 0).all()
    assert set(offset.tolist()) == set(range(81))
    assert torch.equal(RandomShift(shift_size=0)(x, gen(0)), x)


def test_cutout_zeroes_one_rectangle_and_nothing_else() -> None:
    x = torch.rand(500, 3, 16, 12) + 0.5
    y = Cutout(probability=1.0)(x, gen(0))
    changed = y != x
    assert (y[changed] == 0).all()
    mask = changed[:, 0]
    assert torch.equal(changed, mask[:, None].expand_as(changed))
    areas = []
    for sample in mask:
        rows, cols = sample.any(dim=1), sample.any(dim=0)
        row_idx, col_idx = rows.nonzero().flatten(), cols.nonzero().flatten()
        assert row_idx.numel() == row_idx[-1] - row_idx[0] + 1
        assert col_idx.numel() == col_idx[-1] - col_idx[0] + 1
        assert torch.equal(sample, rows[:, None] & cols[None, :])
        areas.append(sample.sum().item() / sample.numel())
    assert min(areas) > 0 and max(areas) < 0.5
    assert 0.1 < sum(areas) / len(areas) < 0.25


def test_cutout_probability() -> None:
    x = torch.rand(2000, 1, 8, 8) + 0.5
    assert torch.equal(Cutout(probability=0.0)(x, gen(0)), x)
    hit = (Cutout(probability=0.5)(x, gen(0)) != x).flatten(1).any(dim=1).float().mean()
    assert abs(hit.item() - 0.5) < 0.05


@pytest.mark.parametrize(("cls", "dim"), [(HorizontalFlip, -1), (VerticalFlip, -2)])
def test_flips(cls: type[HorizontalFlip], dim: int) -> None:
    x = torch.rand(4000, 3, 5, 6)
    flipped = torch.flip(x, dims=[dim])
    assert torch.equal(cls(probability=1.0)(x, gen(0)), flipped)
    assert torch.equal(cls(probability=0.0)(x, gen(0)), x)
    y = cls()(x, gen(0))
    is_flipped = (y == flipped).flatten(1).all(dim=1)
    assert ((y == x).flatten(1).all(dim=1) ^ is_flipped).all()
    assert abs(is_flipped.float().mean().item() - 0.1) < 0.02


def test_rotation_with_zero_degree_is_identity() -> None:
    x = torch.rand(8, 3, 11, 17, dtype=torch.float64)
    torch.testing.assert_close(RandomRotation(degree=0.0)(x, gen(0)), x, atol=1e-5, rtol=0)
    x32 = x.float()
    torch.testing.assert_close(RandomRotation(degree=0.0)(x32, gen(0)), x32, atol=1e-5, rtol=0)


def test_rotation_turns_about_the_centre_without_shear() -> None:
    height, width, radius = 21, 31, 6.0
    rows = torch.arange(height, dtype=torch.float64)[:, None] - (height - 1) / 2
    cols = torch.arange(width, dtype=torch.float64)[None, :] - (width - 1) / 2
    blob = torch.exp(-((rows**2 + (cols - radius) ** 2) / (2 * 1.5**2)))
    x = blob.expand(256, 1, height, width).contiguous()
    y = RandomRotation(degree=45.0)(x, gen(0))[:, 0]
    mass = y.sum(dim=(1, 2))
    row_c = (y * rows).sum(dim=(1, 2)) / mass
    col_c = (y * cols).sum(dim=(1, 2)) / mass
    torch.testing.assert_close(
        torch.hypot(row_c, col_c), torch.full_like(mass, radius), atol=0.1, rtol=0
    )
    angle = torch.rad2deg(torch.atan2(row_c, col_c))
    assert angle.abs().max() <= 45.5
    assert angle.min() < -35 and angle.max() > 35
    centre = y[:, height // 2, width // 2]
    torch.testing.assert_close(centre, x[:, 0, height // 2, width // 2], atol=1e-6, rtol=0)


def test_rotation_fills_zeros_outside_the_image() -> None:
    x = torch.ones(64, 1, 20, 20)
    y = RandomRotation(degree=30.0)(x, gen(0))
    assert y.max() <= 1 + 1e-6 and y.min() >= 0
    assert (y[:, 0, 10, 10] > 1 - 1e-5).all()
    corners = y[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners.amax(dim=1) < 0.5).float().mean() > 0.5


def test_intensity_scales_each_sample_by_clipped_normal_noise() -> None:
    x = torch.rand(4000, 3, 4, 4) + 0.5
    ratio = Intensity(scale=0.1)(x, gen(0)) / x
    per_sample = ratio[:, :1, :1, :1]
    torch.testing.assert_close(ratio, per_sample.expand_as(ratio))
    noise = (per_sample.flatten() - 1) / 0.1
    assert noise.min() >= -2 - 1e-4 and noise.max() <= 2 + 1e-4
    assert (noise.abs() > 2 - 1e-4).float().mean() > 0.02
    assert abs(noise.mean().item()) < 0.06 and abs(noise.std().item() - 0.93) < 0.05
    assert torch.equal(Intensity(scale=0.0)(x, gen(0)), x)


def test_color_jitter_zero_ranges_is_identity() -> None:
    x = torch.rand(16, 6, 9, 7)
    x[:, :3, 0, 0] = 0.0
    x[:, :3, 0, 1] = 0.5
    x[:, :3, 0, 2] = 1.0
    x[:, 3, 1, :] = x[:, 4, 1, :]
    torch.testing.assert_close(IDENTITY_JITTER(x, gen(0)), x, atol=1e-5, rtol=0)


def test_color_jitter_hsv_steps_match_colorsys() -> None:
    x = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    x[0, :, 0, 0] = torch.tensor([0.3, 0.3, 0.3], dtype=torch.float64)
    x[0, :, 0, 1] = torch.tensor([0.9, 0.2, 0.2], dtype=torch.float64)
    hue, sat, val = 0.3, 0.5, 0.8
    jitter = ColorJitter(
        brightness=(val, val), contrast=(1, 1), saturation=(sat, sat), hue=(hue, hue)
    )
    y = jitter(x, gen(0))
    pixels = x[0].flatten(1).T.tolist()
    expected = torch.tensor([jitter_reference(tuple(p), hue, sat, val) for p in pixels])
    torch.testing.assert_close(y[0].flatten(1).T, expected.double(), atol=1e-6, rtol=0)


def test_color_jitter_single_steps() -> None:
    x = torch.rand(8, 3, 6, 6)
    darker = ColorJitter(brightness=(0.5, 0.5), contrast=(1, 1), saturation=(1, 1), hue=(0, 0))
    torch.testing.assert_close(darker(x, gen(0)), x * 0.5, atol=1e-5, rtol=0)
    grey = ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(0, 0), hue=(0, 0))
    torch.testing.assert_close(grey(x, gen(0)), x.amax(dim=1, keepdim=True).expand_as(x))
    flat = ColorJitter(brightness=(1, 1), contrast=(0.5, 0.5), saturation=(1, 1), hue=(0, 0))
    mean = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(flat(x, gen(0)), (x - mean) * 0.5 + mean, atol=1e-5, rtol=0)


def test_color_jitter_shares_parameters_across_stacked_frames() -> None:
    frame = torch.rand(32, 3, 8, 8)
    y = ColorJitter()(torch.cat([frame, frame], dim=1), gen(0))
    assert torch.equal(y[:, :3], y[:, 3:])
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    with pytest.raises(ValueError, match="augmentation 'color_jitter'"):
        ColorJitter()(torch.rand(2, 4, 8, 8), gen(0))


# --- construction, specs and errors ---


@pytest.mark.parametrize(
    "spec",
    [
        "random_crop",
        {"type": "cutout", "params": {"p": 0.2}},
        {"type": "cutout", "params": {"probability": 1.5}},
        {"type": "horizontal_flip", "params": {"probability": "high"}},
        {"type": "random_shift", "params": {"shift_size": 2.5}},
        {"type": "random_rotation", "params": {"degree": math.nan}},
        {"type": "single_amplitude_scaling", "params": {"minimum": 1.3}},
        {"type": "color_jitter", "params": {"hue": [0.5, -0.5]}},
        {"type": "color_jitter", "params": {"brightness": [-1.0, 1.0]}},
        {"type": "color_jitter", "params": {"contrast": 1.0}},
        {"type": "intensity", "params": [0.1]},
        {"params": {}},
        {"type": "intensity", "extra": 1},
        42,
    ],
)
def test_bad_specs_raise_value_error_naming_augmentation(spec: object) -> None:
    with pytest.raises(ValueError, match="augmentation"):
        AugmentationPipeline.from_spec([spec])  # type: ignore[list-item]


def test_direct_construction_validates_and_normalises() -> None:
    with pytest.raises(ValueError, match="augmentation 'vertical_flip'"):
        VerticalFlip(probability=-0.1)
    assert ColorJitter(hue=[-0.1, 0.1]).hue == (-0.1, 0.1)  # type: ignore[arg-type]
    assert Intensity(scale=1).to_dict()["params"]["scale"] == 1.0


def test_from_spec_to_list_round_trip() -> None:
    pipeline = AugmentationPipeline.from_spec(
        [
            "random_shift",
            {"type": "cutout", "params": {"probability": 0.3}},
            {"type": "intensity"},
            HorizontalFlip(probability=0.2),
            {"type": "color_jitter", "params": {"hue": [-0.1, 0.1]}},
        ]
    )
    assert pipeline.augmentations == (
        RandomShift(),
        Cutout(probability=0.3),
        Intensity(),
        HorizontalFlip(probability=0.2),
        ColorJitter(hue=(-0.1, 0.1)),
    )
    stored = json.loads(json.dumps(pipeline.to_list()))
    assert stored[1] == {"type": "cutout", "params": {"probability": 0.3}}
    assert AugmentationPipeline.from_spec(stored) == pipeline
    assert AugmentationPipeline.from_spec("intensity") == AugmentationPipeline([Intensity()])
    assert create_augmentation({"type": "cutout", "params": None}) == Cutout()


def test_pipeline_truthiness() -> None:
    assert not AugmentationPipeline()
    assert not AugmentationPipeline.from_spec(None)
    assert not AugmentationPipeline.from_spec([])
    assert AugmentationPipeline.from_spec(["intensity"])
    x = torch.rand(2, 3, 4, 4)
    assert AugmentationPipeline()(x, gen(0)) is x


def test_pipeline_applies_in_order_with_one_generator() -> None:
    shift, cutout = RandomShift(), Cutout(probability=1.0)
    x = torch.rand(32, 3, 12, 12) + 0.5
    y = AugmentationPipeline([shift, cutout])(x, gen(5))
    g = gen(5)
    assert torch.equal(y, cutout(shift(x, g), g))
    g = gen(5)
    assert not torch.equal(y, shift(cutout(x, g), g))


def test_observation_kind_mismatch() -> None:
    images = AugmentationPipeline.from_spec(["random_shift", "intensity"])
    vectors = AugmentationPipeline.from_spec(["single_amplitude_scaling"])
    images.check_observation_shape((3, 84, 84))
    vectors.check_observation_shape((17,))
    with pytest.raises(ValueError, match="augmentation 'random_shift'"):
        images.check_observation_shape((17,))
    with pytest.raises(ValueError, match="augmentation 'single_amplitude_scaling'"):
        vectors.check_observation_shape((3, 84, 84))
    with pytest.raises(ValueError, match="augmentation 'color_jitter'"):
        AugmentationPipeline.from_spec(["color_jitter"]).check_observation_shape((4, 84, 84))
    with pytest.raises(ValueError, match="augmentation 'intensity'"):
        Intensity()(torch.rand(8, 17), gen(0))
    with pytest.raises(TypeError, match="augmentation 'intensity'"):
        Intensity()(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), gen(0))


# --- augmented_mean ---


def test_augmented_mean_averages_n_draws() -> None:
    pipeline = AugmentationPipeline.from_spec(["random_shift", "intensity"])
    x = torch.rand(8, 3, 10, 10)
    seen: list[torch.Tensor] = []

    def loss_fn(obs: torch.Tensor) -> torch.Tensor:
        seen.append(obs)
        return (obs**2).mean(dim=(1, 2, 3))

    result = augmented_mean(loss_fn, x, pipeline, 3, gen(7))
    assert len(seen) == 3
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    g = gen(7)
    manual = sum((pipeline(x, g) ** 2).mean(dim=(1, 2, 3)) for _ in range(3)) / 3
    torch.testing.assert_close(result, manual)
    for draw in seen:
        assert not torch.equal(draw, x)


def test_augmented_mean_without_augmentation_calls_once_on_x() -> None:
    x = torch.rand(4, 5)
    seen: list[torch.Tensor] = []

    def loss_fn(obs: torch.Tensor) -> torch.Tensor:
        seen.append(obs)
        return obs.sum()

    result = augmented_mean(loss_fn, x, AugmentationPipeline(), 4, gen(0))
    assert len(seen) == 1 and seen[0] is x
    torch.testing.assert_close(result, x.sum())
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_augmentations"):
            augmented_mean(loss_fn, x, AugmentationPipeline(), bad, gen(0))  # type: ignore[arg-type]

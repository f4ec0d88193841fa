"""Export to artifacts that run without bear_core: the greedy policy as TorchScript or ONNX
(`save_policy`), and policy bundles (greedy policy, sampler and critic ensemble as ONNX plus a
manifest) for the torch-free runtime in `bear_core.bundle`. Scalers are baked into every graph."""

from __future__ import annotations

import copy
import os
import platform
import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bear_core.bear.modules import BEARModules
from bear_core.bundle.manifest import (
    FORMAT_VERSION,
    GRAPH_FILES,
    MANIFEST_FILE,
    Manifest,
    sha256_file,
)
from bear_core.bundle.ood import CalibrationSample, OODSpec, calibrate
from bear_core.io_utils import atomic_write_json, atomic_write_with

ONNX_OPSET = 18
EXPORT_PARITY_ATOL = 1e-4  # export refuses a bundle whose ONNX drifts further from torch


class _Graph(nn.Module):
    """Frozen CPU copies of the scalers and one network, for tracing."""

    def __init__(self, m: BEARModules, network: nn.Module) -> None:
        super().__init__()
        self.observation_scaler = copy.deepcopy(m.observation_scaler).cpu().eval()
        self.network = copy.deepcopy(network).cpu().eval()
        self.action_scaler = copy.deepcopy(m.action_scaler).cpu().eval()
        self.requires_grad_(False)
        self.eval()


class GreedyPolicy(_Graph):
    """observations (data units) -> scaler -> tanh(mu(s)) -> action in the data's range."""

    def __init__(self, m: BEARModules) -> None:
        super().__init__(m, m.policy)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        action = self.network.best_action(self.observation_scaler(observations.float()))
        return self.action_scaler.reverse(action)


class Sampler(_Graph):
    """(observations, noise ~ N(0, I) [N, A]) -> tanh(mu + sigma * noise) in the data's range."""

    def __init__(self, m: BEARModules) -> None:
        super().__init__(m, m.policy)

    def forward(self, observations: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        obs = self.observation_scaler(observations.float())
        _, action, _ = self.network.sample_n(obs, noise[:, None])
        return self.action_scaler.reverse(action[:, 0])


class Critics(_Graph):
    """(observations, actions in the data's range) -> per-critic Q values [N, K]."""

    def __init__(self, m: BEARModules) -> None:
        super().__init__(m, m.critics)

    def forward(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        obs = self.observation_scaler(observations.float())
        q = self.network(obs, self.action_scaler(actions))
        return q.transpose(0, 1)


def export_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
) -> None:
    """ONNX with a dynamic batch axis on every input and output, pinned opset, one file.

    TorchScript-based export (`dynamo=False`): tens of milliseconds a graph where torch.export's
    exporter takes seconds, which is most of the time from a job's last step to a served
    version. Every bundle's graphs are checked against torch before it is written
    (`_check_parity`)."""
    axes = {name: {0: "batch"} for name in (*input_names, *output_names)}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            # the exporter's own deprecation notices, and tracer notes on shapes that are
            # constants of the model (a batch-size constant would fail the parity check)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                module,
                args,
                str(tmp),
                input_names=input_names,
                output_names=output_names,
                opset_version=ONNX_OPSET,
                dynamic_axes=axes,
                dynamo=False,
            )

    atomic_write_with(path, write)


def save_greedy_policy(m: BEARModules, fname: str | Path, as_onnx: bool = False) -> None:
    path = Path(fname)
    graph = GreedyPolicy(m)
    example = torch.zeros(2, *m.observation_shape, dtype=observation_dtype(m))
    if as_onnx:
        export_onnx(graph, (example,), path, ["observations"], ["actions"])
        return
    traced = torch.jit.trace(graph, example, check_trace=False)
    atomic_write_with(path, lambda tmp: torch.jit.save(traced, str(tmp)))


def export_bundle(
    m: BEARModules,
    path: str | Path,
    params: dict[str, Any],
    provenance: dict[str, Any],
    evaluation: dict[str, Any] | None = None,
    ood_sample: CalibrationSample | None = None,
    ood_seed: int = 0,
) -> Path:
    """Write a bundle directory atomically: build it in a temporary sibling directory, load it
    back with the torch-free runtime, check it against torch, then rename it into place.
    `evaluation` (the policy's held-out value estimate) goes into the manifest as is. With
    `ood_sample` (training rows), an out-of-distribution detector is calibrated on it (seeded by
    `ood_seed`) and its reference rows written as a member file."""
    from bear_core.bundle.runtime import load_bundle

    target = Path(path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"path={str(target)!r} already exists and is not an empty directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        obs_shape, action_size = m.observation_shape, m.action_size
        obs = torch.zeros(2, *obs_shape, dtype=observation_dtype(m))
        noise = torch.zeros(2, action_size)
        graphs = {
            "policy": (GreedyPolicy(m), (obs,), ["observations"], ["actions"]),
            "sampler": (Sampler(m), (obs, noise), ["observations", "noise"], ["actions"]),
            "critics": (Critics(m), (obs, noise), ["observations", "actions"], ["q_values"]),
        }
        for name, (module, args, inputs, outputs) in graphs.items():
            export_onnx(module, args, tmp / GRAPH_FILES[name], inputs, outputs)
        files = list(GRAPH_FILES.values())
        ood = None if ood_sample is None else _write_ood(tmp, ood_sample, ood_seed)
        if ood is not None:
            files.append(ood.reference_file)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            observation_shape=obs_shape,
            observation_dtype=str(obs.dtype).removeprefix("torch."),
            action_size=action_size,
            action_low=tuple(_bounds(m)[0]),
            action_high=tuple(_bounds(m)[1]),
            n_critics=m.critics.n_critics,
            q_func_type=str(params.get("q_func_type", "mean")),
            opset=ONNX_OPSET,
            files={f: sha256_file(tmp / f) for f in files},
            params=params,
            provenance=provenance,
            versions=library_versions(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            evaluation=evaluation,
            ood=ood,
        )
        atomic_write_json(tmp / MANIFEST_FILE, manifest.to_dict())
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a bundle is shared
        _check_parity(m, load_bundle(tmp), graphs)
        os.replace(tmp, target)  # atomic, also over an empty directory
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _write_ood(directory: Path, sample: CalibrationSample, seed: int) -> OODSpec:
    """Calibrate the detector on the training rows and write its reference rows."""
    spec, reference = calibrate(sample, seed=seed)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a path
            np.save(f, reference, allow_pickle=False)

    atomic_write_with(directory / spec.reference_file, write)
    return spec


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def observation_dtype(m: BEARModules) -> torch.dtype:
    """Models with the pixel scaler take raw uint8 images; others float32."""
    return torch.uint8 if m.observation_scaler.kind == "pixel" else torch.float32


def _bounds(m: BEARModules) -> tuple[list[float], list[float]]:
    """The action range the bundle acts in (tanh's [-1, 1] without an action scaler)."""
    if m.action_scaler.kind == "none":
        size = int(m.action_scaler.low.shape[0])
        return [-1.0] * size, [1.0] * size
    return m.action_scaler.low.tolist(), m.action_scaler.high.tolist()


def _check_parity(m: BEARModules, bundle: Any, graphs: dict[str, Any]) -> None:
    """The exported graphs must reproduce torch on a random batch, or the export fails."""
    rng = np.random.default_rng(0)
    shape = (8, *m.observation_shape)
    if observation_dtype(m) == torch.uint8:
        obs = rng.integers(0, 256, size=shape, dtype=np.uint8)
    else:
        shift = m.observation_scaler.shift.cpu().numpy()
        scale = m.observation_scaler.scale.cpu().numpy()
        obs = (shift + scale * rng.standard_normal(shape)).astype(np.float32)
    noise = rng.standard_normal((8, bundle.action_size)).astype(np.float32)
    with torch.no_grad():
        actions = graphs["policy"][0](torch.from_numpy(obs)).numpy()
        expected = {
            "policy": actions,
            "sampler": graphs["sampler"][0](torch.from_numpy(obs), torch.from_numpy(noise)).numpy(),
            "critics": graphs["critics"][0](
                torch.from_numpy(obs), torch.from_numpy(actions)
            ).numpy(),
        }
    actual = {
        "policy": bundle.predict(obs),
        "sampler": bundle.sample_with_noise(obs, noise),
        "critics": bundle.predict_q(obs, actions),
    }
    for name, value in actual.items():
        error = float(np.abs(value - expected[name]).max())
        if not error <= EXPORT_PARITY_ATOL:
            raise RuntimeError(f"{GRAPH_FILES[name]}: ONNX differs from torch by {error:.3g}")


def library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    from bear_core import __version__

    return {
        "bear_core": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }

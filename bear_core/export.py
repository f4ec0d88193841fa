"""Export the greedy policy as TorchScript or ONNX, scalers baked in, runnable without bear_core."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from bear_core.io_utils import atomic_write_with
from bear_core.modules import BEARModules

ONNX_OPSET = 18


class GreedyPolicy(nn.Module):
    """observations (data units) -> scaler -> tanh(mu(s)) -> action in the data's range."""

    def __init__(self, m: BEARModules) -> None:
        super().__init__()
        self.observation_scaler = copy.deepcopy(m.observation_scaler).cpu().eval()
        self.policy = copy.deepcopy(m.policy).cpu().eval()
        self.action_scaler = copy.deepcopy(m.action_scaler).cpu().eval()

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        action = self.policy.best_action(self.observation_scaler(observations))
        return self.action_scaler.reverse(action)


def export_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
) -> None:
    """ONNX with a dynamic batch axis on every input, pinned opset, one self-contained file."""
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    dynamic_shapes = tuple({0: batch} for _ in args)
    program = torch.onnx.export(
        module,
        args,
        input_names=input_names,
        output_names=output_names,
        opset_version=ONNX_OPSET,
        dynamic_shapes=dynamic_shapes,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    assert program is not None
    atomic_write_with(path, lambda tmp: program.save(str(tmp)))


def save_greedy_policy(m: BEARModules, fname: str | Path, as_onnx: bool = False) -> None:
    path = Path(fname)
    graph = GreedyPolicy(m)
    for p in graph.parameters():
        p.requires_grad_(False)
    example = torch.zeros(2, *m.observation_scaler.shift.shape)
    if as_onnx:
        export_onnx(graph, (example,), path, ["observations"], ["actions"])
        return
    traced = torch.jit.trace(graph, example, check_trace=False)
    atomic_write_with(path, lambda tmp: torch.jit.save(traced, str(tmp)))

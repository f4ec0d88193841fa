"""Resolve the reference's `use_gpu` (bool, device id or device string) to a torch.device."""

from __future__ import annotations

import torch


def resolve_device(use_gpu: bool | int | str | None) -> torch.device:
    """False/None -> CPU; True -> cuda:0; an int -> that CUDA device; a string -> as given.

    Raises ValueError naming `use_gpu` when a CUDA device is asked for and none is present.
    """
    if use_gpu is None or use_gpu is False or use_gpu == "cpu":
        return torch.device("cpu")
    if use_gpu is True:
        device = torch.device("cuda", 0)
    elif isinstance(use_gpu, int):
        device = torch.device("cuda", use_gpu)
    else:
        device = torch.device(use_gpu)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"use_gpu={use_gpu!r} asks for CUDA, but no CUDA device is available")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"use_gpu={use_gpu!r}: CUDA device {index} does not exist "
                f"({torch.cuda.device_count()} present)"
            )
    return device

"""The CPU speed kernels the networks and optimizers run on, behind one switch.

`BEAR_KERNELS=fast|portable`, read here and nowhere else:

- `fast`: on the CPU, linear layers run on torch's oneDNN products with a hand-written backward,
  whole Linear/ReLU networks as one autograd node (`fused_linear`), and Adam steps call torch's
  fused Adam kernel directly (`fused_adam`).
- `portable`: torch's standard ops only: `F.linear`, `baddbmm`, `torch.optim`'s own `step()`.

The default is `fast` where it pays, an x86-64 CPU whose torch has the oneDNN entry point
`mkldnn._linear_pointwise`, and `portable` elsewhere. Any other value raises a ValueError naming
BEAR_KERNELS. Whatever the mode, CUDA tensors, tracing, scripting, compiling and export take the
portable path. `use(mode)` selects a mode in-process for a block (tests, benchmarks);
`portable()` is `use("portable")` (export, tracing, reference checks).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import platform
from collections.abc import Iterator
from typing import Literal

import torch

Mode = Literal["fast", "portable"]
ENV_VAR = "BEAR_KERNELS"
MODES: tuple[Mode, ...] = ("fast", "portable")

ONEDNN_AVAILABLE = (
    platform.machine().lower() in ("x86_64", "amd64")
    and torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)

_SELECTED: contextvars.ContextVar[Mode | None] = contextvars.ContextVar(
    "bear_kernels", default=None
)


def default_mode() -> Mode:
    """`fast` where the oneDNN products exist (x86-64 CPUs), `portable` elsewhere."""
    return "fast" if ONEDNN_AVAILABLE else "portable"


@functools.lru_cache(maxsize=8)
def _parse(value: str | None) -> Mode:
    if value is None or not value.strip():
        return default_mode()
    mode = value.strip().lower()
    if mode not in MODES:
        raise ValueError(f"{ENV_VAR}={value!r}: expected one of {', '.join(MODES)}")
    return mode  # type: ignore[return-value]


def mode() -> Mode:
    """The mode in force: the one `use` selected, else BEAR_KERNELS, else `default_mode()`."""
    selected = _SELECTED.get()
    return selected if selected is not None else _parse(os.environ.get(ENV_VAR))


def fast() -> bool:
    """Whether the fast kernels are selected."""
    return mode() == "fast"


@contextlib.contextmanager
def use(selected: str) -> Iterator[None]:
    """Run the block on `selected` ("fast" or "portable") whatever BEAR_KERNELS says."""
    if selected not in MODES:
        raise ValueError(f"kernels mode {selected!r}: expected one of {', '.join(MODES)}")
    token = _SELECTED.set(selected)  # type: ignore[arg-type]
    try:
        yield
    finally:
        _SELECTED.reset(token)


def portable() -> contextlib.AbstractContextManager[None]:
    """Standard torch ops only for the block (tracing, export, reference checks)."""
    return use("portable")


mode()  # an invalid BEAR_KERNELS fails on import, not at the first training step

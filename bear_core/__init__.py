"""bear_core: BEAR offline RL, trained in torch, exported for torch-free serving.

Public names load lazily so that torch-free parts (datasets, scorers, bundles) import without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "BEAR": "bear_core.bear.algo",
    "BEARConfig": "bear_core.config",
    "MDPDataset": "bear_core.dataset",
    "Episode": "bear_core.dataset",
    "Transition": "bear_core.dataset",
    "TransitionBatch": "bear_core.dataset.batch",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bear_core' has no attribute {name!r}")

"""A mini-batch of transitions as numpy arrays (what `BEAR.update` takes). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TransitionBatch:
    """N transitions (s, a, r, s', d). Shapes: obs [N, *obs_shape], actions [N, A], rewards [N, 1],
    next_observations like obs, terminals [N, 1] (1.0 where s' is terminal, no bootstrap)."""

    observations: FloatArray
    actions: FloatArray
    rewards: FloatArray
    next_observations: FloatArray
    terminals: FloatArray

    def __len__(self) -> int:
        return int(self.observations.shape[0])

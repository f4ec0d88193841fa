"""A loaded model version as the request handlers see it: a verified bundle plus how its graphs
are run (inline on the event loop for small batches, on a worker thread for large ones, or
through a micro-batcher)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
import numpy as np

from bear_core.bundle import PolicyBundle
from bear_core.bundle.ood import flagged
from service.core.http_errors import InvalidInput
from service.core.prometheus import Metrics
from service.inference.micro_batching import MicroBatcher


@dataclass(frozen=True)
class Execution:
    offload_rows: int = 256
    batching: bool = False
    batch_max_rows: int = 64
    batch_max_delay_s: float = 0.0


class ServedModel:
    def __init__(
        self,
        name: str,
        version: str,
        bundle: PolicyBundle,
        execution: Execution,
        metrics: Metrics,
    ) -> None:
        self.name = name
        self.version = version
        self.bundle = bundle
        self._offload_rows = execution.offload_rows
        self._graphs: dict[str, Callable[..., np.ndarray]] = {
            "policy": bundle.predict,
            "sampler": bundle.sample_with_noise,
            "critics": bundle.predict_q,
        }
        self._batchers = (
            {
                graph: MicroBatcher(run, execution.batch_max_rows, execution.batch_max_delay_s)
                for graph, run in self._graphs.items()
            }
            if execution.batching
            else {}
        )
        self._rows = {graph: metrics.rows.labels(name, version, graph) for graph in self._graphs}
        self._ood_rows = {
            flag: metrics.ood_rows.labels(name, version, str(flag).lower())
            for flag in (True, False)
        }

    @property
    def observation_width(self) -> int:
        return int(np.prod(self.bundle.observation_shape))

    async def predict(self, observations: np.ndarray) -> np.ndarray:
        """Greedy actions [N, A]."""
        return await self._call("policy", observations)

    def predict_now(self, observations: np.ndarray) -> np.ndarray:
        """Greedy actions [N, A] computed at once, past the micro-batcher (the gRPC hot path's
        small batches); a ValueError naming `observations` for rows the bundle refuses."""
        actions = self.bundle.predict(observations)
        self._rows["policy"].inc(len(observations))
        return actions

    async def sample(self, observations: np.ndarray, seed: int | None) -> np.ndarray:
        """Sampled actions [N, A]; the same draw as PolicyBundle.sample_action(obs, seed)."""
        noise = self.bundle.noise(len(observations), seed)
        return await self._call("sampler", observations, noise)

    async def q_values(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Per-critic Q values [N, K]."""
        return await self._call("critics", observations, actions)

    def wants_ood(self, requested: bool | None, default: bool) -> bool:
        """Whether to score a request: as it asks (refused, naming `ood`, when this version has
        no detector), else as `default` says where there is one."""
        if requested is None:
            return default and self.bundle.ood is not None
        if requested and self.bundle.ood is None:
            raise InvalidInput(
                f"ood: model {self.name!r} version {self.version!r} has no out-of-distribution "
                "detector (its bundle was exported without one)"
            )
        return requested

    async def ood(
        self, observations: np.ndarray, actions: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flags [N] and scores [N] (relative to the threshold) of observations, or of
        (observation, action) pairs when actions are given; counted per flag."""
        detector = self.bundle.ood
        assert detector is not None  # wants_ood said so
        if actions is None:
            score: Callable[..., np.ndarray] = detector.score_observations
            arrays: tuple[np.ndarray, ...] = (observations,)
        else:
            score, arrays = detector.score_pairs, (observations, actions)
        if len(observations) > self._offload_rows:
            scores = await anyio.to_thread.run_sync(score, *arrays)
        else:
            scores = score(*arrays)
        flags = flagged(scores)
        n_flagged = int(flags.sum())
        if n_flagged:
            self._ood_rows[True].inc(n_flagged)
        if n_flagged < len(flags):
            self._ood_rows[False].inc(len(flags) - n_flagged)
        return flags, scores

    async def _call(self, graph: str, *arrays: np.ndarray) -> np.ndarray:
        rows = len(arrays[0])
        self._rows[graph].inc(rows)
        batcher = self._batchers.get(graph)
        if batcher is not None and rows < batcher.max_rows:
            return await batcher.submit(*arrays)
        if rows > self._offload_rows:
            return await anyio.to_thread.run_sync(self._graphs[graph], *arrays)
        return self._graphs[graph](*arrays)

    def warm_up(self) -> None:
        """Run each graph once so the first request does not pay for allocations."""
        obs = np.zeros((1, *self.bundle.observation_shape), self.bundle.manifest.observation_dtype)
        act = np.zeros((1, self.bundle.action_size), np.float32)
        self.bundle.predict(obs)
        self.bundle.sample_with_noise(obs, act)
        self.bundle.predict_q(obs, act)
        if self.bundle.ood is not None:
            self.bundle.ood.score_observations(obs)
            self.bundle.ood.score_pairs(obs, act)

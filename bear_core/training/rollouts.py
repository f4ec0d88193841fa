"""Rollouts of a learned dynamics model under the current policy, mixed into the mini-batches
(the model-based part of training with BEAR's `dynamics=`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from bear_core.bear.modules import TorchBatch
from bear_core.dataset import Episode, TransitionBuffer

if TYPE_CHECKING:
    from bear_core.bear.algo import BEAR

DYNAMICS_FILE = "dynamics.pt"
DYNAMICS_LOGS = "dynamics"  # the run's subdirectory for the dynamics model's own fit logs


class ModelRollouts:
    """MOPO-style model data: every rollout_interval steps, short rollouts of the dynamics model
    from dataset states under the current policy replace the synthetic transitions, and each
    mini-batch takes real_ratio of its rows from the dataset and the rest from them.

    A dynamics model not fitted yet is fitted here on the same episodes, its logs in the run's
    `dynamics/` subdirectory (with BEAR's verbose, show_progress and tensorboard), and saved as
    `dynamics.pt`, where a resumed run finds it."""

    def __init__(
        self,
        algo: BEAR,
        buffer: TransitionBuffer,
        directory: Path,
        episodes: list[Episode],
        *,
        verbose: bool = False,
        show_progress: bool = False,
        tensorboard: bool = False,
    ) -> None:
        self.algo, self.buffer, self.dynamics = algo, buffer, algo.dynamics
        if len(buffer.observation_shape) != 1:
            raise ValueError("dynamics models vector observations only, not pixels")
        saved = directory / DYNAMICS_FILE
        if self.dynamics.observation_size is None and saved.exists():
            self.dynamics.load_model(saved)
        if self.dynamics.observation_size is None:  # not fitted yet: fit on the same data
            n_epochs = self.dynamics.config.n_epochs
            self.dynamics.fit(
                episodes,
                verbose=verbose,
                show_progress=show_progress,
                tensorboard=tensorboard,
                save_interval=n_epochs + 1,  # no model_<epoch>.pt: dynamics.pt is the model
                run_dir=directory / DYNAMICS_LOGS,
            )
            self.dynamics.save_model(saved)
        self.generator = torch.Generator(device=self.dynamics.device)
        self.generator.manual_seed(algo.config.seed + 1)
        self.synthetic: tuple[torch.Tensor, ...] | None = None

    def mixed_batch(self, data: tuple[torch.Tensor, ...], step: int) -> TorchBatch:
        cfg, m = self.algo.config, self.algo.impl
        assert m is not None
        if self.synthetic is None or step % cfg.rollout_interval == 0:
            self.synthetic = self._rollouts()
        n_real = max(1, round(cfg.batch_size * cfg.real_ratio))
        real = torch.randint(len(data[0]), (n_real,), generator=m.generator, device=m.device)
        fake = torch.randint(
            len(self.synthetic[0]), (cfg.batch_size - n_real,), generator=m.generator,
            device=m.device,
        )  # fmt: skip
        return TorchBatch(
            *(torch.cat([d[real], f[fake]]) for d, f in zip(data, self.synthetic, strict=True))
        )

    @torch.no_grad()
    def _rollouts(self) -> tuple[torch.Tensor, ...]:
        cfg, m = self.algo.config, self.algo.impl
        assert m is not None
        device = self.dynamics.device
        m.eval()  # update_on_device switches back to training mode
        rows = torch.randint(
            len(self.buffer), (cfg.rollout_batch_size,), generator=self.generator, device=device
        )
        starts = torch.as_tensor(self.buffer.observations[rows.cpu().numpy()], device=device)

        def policy(obs: torch.Tensor) -> torch.Tensor:  # data units in and out
            scaled = m.observation_scaler(obs.to(m.device))
            noise = m.noise(len(obs), 1, m.action_size)
            _, actions, _ = m.policy.sample_n(scaled, noise)
            return m.action_scaler.reverse(actions[:, 0]).to(device)

        out = self.dynamics.rollout(
            starts, policy, cfg.rollout_horizon, self.generator, cfg.reward_penalty
        )
        return (
            m.observation_scaler(out["observations"].to(m.device)),
            m.action_scaler(out["actions"].to(m.device)),
            out["rewards"].to(m.device).reshape(-1),
            m.observation_scaler(out["next_observations"].to(m.device)),
            out["terminals"].to(m.device).reshape(-1),
        )

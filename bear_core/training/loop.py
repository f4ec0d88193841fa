"""The training loop: `fitter` yields (epoch, metrics) after every epoch; `BEAR.fit` lists it.

Data lives on the training device, scaled once; mini-batches are drawn there with the model's own
generator. After each epoch: scorers, logs, every `save_interval` epochs `model_<epoch>.pt` (then
all but the newest `keep_checkpoints` of them are deleted), the held-out scoring of a candidate
epoch (`bear_core.training.selection`), and `checkpoint.pt` (the resume point), all written
atomically. `should_stop` is polled every step: when it answers True the loop saves a checkpoint
and returns. A run that scores held-out episodes ends with its selected checkpoint
(`model_best.pt`) loaded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bear_core.bear.modules import TorchBatch
from bear_core.bear.update import metrics_to_floats
from bear_core.bundle.ood import calibration_sample
from bear_core.dataset import Episode, MDPDataset, TransitionBuffer
from bear_core.training.rollouts import ModelRollouts
from bear_core.training.run_logger import RunLogger, progress_bar, run_directory
from bear_core.training.selection import (
    BEST,
    DEFAULT_FQE_STEPS,
    DEFAULT_KEEP_CHECKPOINTS,
    DEFAULT_SELECT_CANDIDATES,
    SELECTION,
    Estimator,
    Selection,
    SelectOptions,
    episodes_sha256,
    holdout_indices,
    holdout_split,
    prune_checkpoints,
)
from bear_core.training.value_check import ValueProbe, warn_if_diverging

if TYPE_CHECKING:
    from bear_core.bear.algo import BEAR

Scorer = Callable[[Any, Sequence[Episode]], float]
CHECKPOINT = "checkpoint.pt"
PROGRESS_INTERVAL_S = 1.0


def fitter(
    algo: BEAR,
    episodes: MDPDataset | Sequence[Episode],
    experiment_name: str | None = None,
    with_timestamp: bool = True,
    logdir: str | Path = "d3rlpy_logs",
    verbose: bool = True,
    show_progress: bool = True,
    tensorboard: bool = True,
    eval_episodes: Sequence[Episode] | None = None,
    save_interval: int = 1,
    scorers: Mapping[str, Scorer] | None = None,
    *,
    run_dir: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    action_bounds: tuple[Any, Any] | None = None,
    holdout: float = 0.0,
    select: str = "last",
    keep_checkpoints: int | None = DEFAULT_KEEP_CHECKPOINTS,
    select_candidates: int = DEFAULT_SELECT_CANDIDATES,
    fqe_steps: int = DEFAULT_FQE_STEPS,
    holdout_seed: int | None = None,
    estimator: Estimator | None = None,
    episode_ids: Sequence[int] | None = None,
    source_sha256: str | None = None,
) -> Iterator[tuple[int, dict[str, float]]]:
    """Train `algo` for its n_epochs. Extensions: `run_dir` names the output directory exactly
    and resumes from its checkpoint.pt when one is there; `should_stop` is polled every step;
    `action_bounds` (low, high) declares the action range when `episodes` is a plain list
    (an MDPDataset brings its own; otherwise the data's min and max are used).

    `holdout`: the share of the episodes never trained on (split by episode, seeded by
    `holdout_seed`, default the algo's seed; at least one on each side). The FQE estimates are
    seeded by the same seed, so runs of different seeds with one `holdout_seed` are scored alike
    on the same episodes. `select`: "last" keeps the last epoch; "ope" (needs
    holdout > 0) scores `select_candidates` epochs, evenly spaced and always including the last,
    by fitted Q evaluation (`fqe_steps` steps each) on the held-out episodes and ends with the
    best one loaded (`model_best.pt`, `selection.json`). With select="last" and a holdout, only
    the last epoch is scored. `keep_checkpoints`: how many model_<epoch>.pt files stay (the
    newest; None keeps all). `estimator` replaces `bear_core.ope.estimate_policy_value`.

    With a holdout, `provenance["holdout"]` records what rebuilds the held-out set: `fraction`,
    `seed`, `episodes` (their indices: `episode_ids[position]` when the caller gives each given
    episode's index in its source file, else their positions), `episodes_sha256`,
    `source_sha256` (the source file's sha256, when given) and the FQE `fqe_steps` and
    `fqe_seed` of the estimate."""
    if isinstance(save_interval, bool) or not isinstance(save_interval, int) or save_interval < 1:
        raise ValueError(f"save_interval must be an int >= 1, got {save_interval!r}")
    if scorers and not eval_episodes:
        raise ValueError("scorers need eval_episodes to score")
    options = SelectOptions(
        holdout, select, keep_checkpoints, select_candidates, fqe_steps, holdout_seed
    )
    split_seed = algo.config.seed if holdout_seed is None else holdout_seed
    given_episodes, bounds = _episodes(episodes, "episodes")
    train_episodes, held_out = holdout_split(given_episodes, holdout, split_seed)
    if episode_ids is not None and len(episode_ids) != len(given_episodes):
        raise ValueError(
            f"episode_ids must give one index per episode ({len(given_episodes)}), "
            f"got {len(episode_ids)}"
        )
    bounds = bounds if bounds is not None else action_bounds
    buffer = TransitionBuffer.from_episodes(train_episodes)
    directory = run_directory(run_dir, logdir, experiment_name, with_timestamp, "BEAR")

    if algo.impl is None:
        algo.create_impl(train_episodes[0].observation_shape, train_episodes[0].action_size)
    if (directory / CHECKPOINT).exists():
        algo.load_model(directory / CHECKPOINT)  # resume; this run's parameters stay in force
    m = algo.impl
    assert m is not None
    if (algo.observation_shape, algo.action_size) != (
        tuple(train_episodes[0].observation_shape),
        train_episodes[0].action_size,
    ):
        raise ValueError(
            f"episodes have observation_shape {train_episodes[0].observation_shape} and "
            f"action_size {train_episodes[0].action_size}, but the model was built for "
            f"{algo.observation_shape} and {algo.action_size}"
        )
    if not m.observation_scaler.fitted:
        m.observation_scaler.fit(buffer.observations)
    if not m.action_scaler.fitted:
        m.action_scaler.fit(buffer.actions, bounds)
    algo.ood_sample = calibration_sample(
        buffer.observations, buffer.actions, [len(e) for e in train_episodes], algo.config.seed
    )

    given = TransitionBuffer.from_episodes(given_episodes) if held_out else buffer
    for earlier in ("evaluation", "holdout"):  # of an earlier selection, not of what trains now
        algo.provenance.pop(earlier, None)
    algo.provenance.update(
        dataset_sha256=_checksum(episodes, given),
        n_transitions=len(buffer),
        n_episodes=len(train_episodes),
    )
    if held_out:
        algo.provenance["holdout_episodes"] = len(held_out)
        positions = holdout_indices(len(given_episodes), holdout, split_seed)
        algo.provenance["holdout"] = {
            "fraction": holdout,
            "seed": split_seed,
            "episodes": [i if episode_ids is None else int(episode_ids[i]) for i in positions],
            "episodes_sha256": episodes_sha256(held_out),
            "source_sha256": source_sha256,
            "fqe_steps": options.fqe_steps,
            "fqe_seed": split_seed,
        }
    cfg = algo.config
    selection = None
    if options.scores:
        selection = Selection(
            directory, options, held_out, algo.provenance["dataset_sha256"], cfg.n_epochs,
            split_seed, estimator,
        )  # fmt: skip
    steps_per_epoch = cfg.n_steps_per_epoch or max(1, len(buffer) // cfg.batch_size)
    data = _device_data(buffer, m)
    model_data = None
    if algo.dynamics:
        model_data = ModelRollouts(
            algo, buffer, directory, train_episodes,
            verbose=verbose, show_progress=show_progress, tensorboard=tensorboard,
        )  # fmt: skip
    logger = RunLogger(directory, tensorboard=tensorboard, verbose=verbose)
    logger.write_params(algo.params_json())
    n = len(buffer)
    probe = ValueProbe.from_episodes(train_episodes, cfg.gamma, cfg.seed)
    previous_value: float | None = None

    done_in_epoch = algo.total_step - algo.epoch * steps_per_epoch
    start = time.monotonic()
    last_progress = 0.0
    try:
        for epoch in range(algo.epoch + 1, cfg.n_epochs + 1):
            sums: dict[str, torch.Tensor] = {}
            steps = range(max(0, done_in_epoch), steps_per_epoch)
            done_in_epoch = 0
            bar = progress_bar(steps, f"epoch {epoch}", show_progress)
            for _ in bar:
                if should_stop is not None and should_stop():
                    algo.save_model(directory / CHECKPOINT)
                    return
                if model_data is None:
                    idx = torch.randint(
                        n, (cfg.batch_size,), generator=m.generator, device=m.device
                    )
                    batch = TorchBatch(*(t[idx] for t in data))
                else:
                    batch = model_data.mixed_batch(data, algo.total_step)
                metrics = algo.update_on_device(epoch - 1, algo.total_step, batch)
                algo.total_step += 1
                for name, value in metrics.items():
                    sums[name] = sums[name] + value if name in sums else value.clone()
                if time.monotonic() - last_progress > PROGRESS_INTERVAL_S:
                    last_progress = time.monotonic()
                    logger.write_progress(
                        state="running",
                        epoch=epoch,
                        n_epochs=cfg.n_epochs,
                        step=algo.total_step,
                        total_steps=cfg.n_epochs * steps_per_epoch,
                        elapsed_s=last_progress - start,
                    )
            epoch_metrics = {k: v / steps_per_epoch for k, v in sums.items()}
            results = metrics_to_floats(epoch_metrics)
            for name, scorer in (scorers or {}).items():
                results[name] = float(scorer(algo, eval_episodes or []))
            results.update(probe.measure(algo, temperature=float(m.log_temp.value.detach().exp())))
            value_warning = warn_if_diverging(epoch, results, previous_value)
            previous_value = results["value_mean"]
            algo.epoch = epoch
            algo.provenance["final_metrics"] = results
            logger.log_epoch(epoch, algo.total_step, results)
            if epoch % save_interval == 0:
                algo.save_model(directory / f"model_{epoch}.pt")
                prune_checkpoints(directory, keep_checkpoints)  # only once the new one is there
            if selection is not None and selection.wants(epoch):
                selection.score(algo)
            algo.save_model(directory / CHECKPOINT)
            logger.write_progress(
                state="running" if epoch < cfg.n_epochs else "finished",
                epoch=epoch,
                n_epochs=cfg.n_epochs,
                step=algo.total_step,
                total_steps=cfg.n_epochs * steps_per_epoch,
                elapsed_s=time.monotonic() - start,
                metrics=results,
                value_warning=value_warning,
            )
            yield epoch, results
        if selection is not None:
            algo.load_model(directory / BEST)
        else:  # a run that scored nothing keeps its last epoch; drop an earlier run's choice
            (directory / BEST).unlink(missing_ok=True)
            (directory / SELECTION).unlink(missing_ok=True)
    finally:
        logger.close()


def _episodes(episodes: MDPDataset | Sequence[Episode], name: str) -> tuple[list[Episode], Any]:
    if isinstance(episodes, MDPDataset):
        return list(episodes.episodes), episodes.action_bounds
    if isinstance(episodes, Episode):
        episodes = [episodes]
    if not isinstance(episodes, Sequence) or not all(isinstance(e, Episode) for e in episodes):
        raise ValueError(f"{name} must be an MDPDataset or a list of Episode")
    if not episodes:
        raise ValueError(f"{name} is empty")
    return list(episodes), None


def _checksum(episodes: MDPDataset | Sequence[Episode], buffer: TransitionBuffer) -> str:
    """sha256 of the training data: the dataset's own checksum, or of the transitions."""
    if isinstance(episodes, MDPDataset):
        return episodes.checksum()
    digest = hashlib.sha256()
    for array in (
        buffer.observations,
        buffer.actions,
        buffer.rewards,
        buffer.next_observations,
        buffer.terminals,
    ):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _device_data(buffer: TransitionBuffer, m: Any) -> tuple[torch.Tensor, ...]:
    """(obs, actions, rewards, next_obs, terminals) on the device, scaled once."""

    def tensor(x: Any) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=m.device)

    with torch.no_grad():
        return (
            m.observation_scaler(tensor(buffer.observations)).contiguous(),
            m.action_scaler(tensor(buffer.actions)).contiguous(),
            tensor(buffer.rewards).reshape(-1),
            m.observation_scaler(tensor(buffer.next_observations)).contiguous(),
            tensor(buffer.terminals).reshape(-1),
        )

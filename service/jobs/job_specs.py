"""What a training job runs: its BEAR parameters, checked with bear_core's own (torch-free)
validation before anything is queued, and the trainer command line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

from bear_core.config import BEARConfig
from service.core.http_errors import InvalidInput
from service.jobs.job_db import JobSpec

STEPS_PER_EPOCH = 1000  # epochs an `n_steps` budget is cut into, at most this long
HOLDOUT_MIN_EPISODES = 3
KNOWN_PARAMS = frozenset(BEARConfig.__dataclass_fields__)


def training_params(
    params: dict[str, Any],
    n_steps: int | None,
    n_epochs: int | None,
    seed: int | None,
    allow_gpu: bool,
) -> dict[str, Any]:
    """The parameters the trainer gets: `params` with the budget and seed folded in.

    `n_steps` becomes equal epochs of at most STEPS_PER_EPOCH steps (or of `n_steps_per_epoch`
    when params sets it), rounded up to whole epochs. InvalidInput names the parameter."""
    unknown = sorted(set(params) - KNOWN_PARAMS)
    if unknown:
        raise InvalidInput(f"params.{unknown[0]}: not a BEAR parameter (unknown: {unknown})")
    params = dict(params)
    for name, value in (("seed", seed), ("n_epochs", n_epochs)):
        if value is not None:
            if name in params:
                raise InvalidInput(f"{name}: given both as a field and in params")
            params[name] = value
    if n_steps is not None and "n_epochs" in params:
        raise InvalidInput("n_steps: give n_steps or n_epochs, not both")
    if n_steps is None and "n_epochs" not in params:
        raise InvalidInput("n_steps: required (the training budget), or n_epochs")
    if not allow_gpu and not on_cpu(params.get("use_gpu")):
        raise InvalidInput("params.use_gpu: training on a GPU is disabled (BEAR_ALLOW_GPU)")
    config = _validated(params)
    if n_steps is not None:
        per_epoch = config.n_steps_per_epoch
        if per_epoch is None:
            epochs = math.ceil(n_steps / STEPS_PER_EPOCH)
            params["n_steps_per_epoch"] = math.ceil(n_steps / epochs)
        else:
            epochs = math.ceil(n_steps / per_epoch)
        params["n_epochs"] = epochs
        _validated(params)
    return params


class RunOptions(Protocol):
    """The options a training request (POST /train, every trial of POST /sweeps) passes on to
    its trainer run as they are."""

    @property
    def eval_env(self) -> str | None: ...
    @property
    def eval_trials(self) -> int: ...
    @property
    def holdout(self) -> float: ...
    @property
    def select(self) -> str: ...
    @property
    def keep_checkpoints(self) -> int | None: ...
    @property
    def select_candidates(self) -> int: ...
    @property
    def fqe_steps(self) -> int: ...


def run_options(body: RunOptions) -> dict[str, Any]:
    """The JobSpec fields a request's run options fill in."""
    return {
        "eval_env": body.eval_env,
        "eval_trials": body.eval_trials,
        "holdout": body.holdout,
        "select": body.select,
        "keep_checkpoints": body.keep_checkpoints,
        "select_candidates": body.select_candidates,
        "fqe_steps": body.fqe_steps,
    }


def check_selection(holdout: float, select: str, n_episodes: int) -> None:
    """select 'ope' needs held-out episodes; a holdout needs episodes for it. The trainer keeps
    a share of the episodes (at least one) for its scorers and holds `holdout` of the rest out
    of training (at least one, leaving at least one to train on), so it needs 3."""
    if select == "ope" and holdout == 0.0:
        raise InvalidInput("select: 'ope' scores checkpoints on held-out episodes: set holdout > 0")
    if holdout > 0.0 and n_episodes < HOLDOUT_MIN_EPISODES:
        raise InvalidInput(
            f"holdout: the dataset has {n_episodes} episode(s); a holdout needs at least "
            f"{HOLDOUT_MIN_EPISODES} (scored, held out, trained on)"
        )


def check_eval_env(eval_env: str | None, allowed_modules: list[str]) -> None:
    """Refuse gymnasium's `module:Env-v0` form, which makes the trainer import `module`, unless
    the module is allowed (BEAR_EVAL_ENV_MODULES). The trainer checks again, and also that the id
    is registered, before it makes the environment."""
    if eval_env is None:
        return
    module, colon, _ = eval_env.rpartition(":")
    if colon and module not in allowed_modules:
        raise InvalidInput(
            f"eval_env: {eval_env!r} would import module {module!r} in the trainer; give a "
            "registered gymnasium id (like 'Pendulum-v1'), or allow the module in "
            "BEAR_EVAL_ENV_MODULES"
        )


def train_command(
    python: str, dataset: Path, run_dir: Path, bundle_dir: Path, spec: JobSpec
) -> list[str]:
    """The trainer, which also exports the bundle when training ends (one torch start-up)."""
    command = [python, "-m", "bear_core", "train", "--dataset", str(dataset), "--out", str(run_dir)]
    command += ["--bundle", str(bundle_dir)]
    for name, value in spec.params.items():
        command += ["--set", f"{name}={json.dumps(value)}"]
    if spec.eval_env is not None:
        command += ["--eval-env", spec.eval_env, "--eval-trials", str(spec.eval_trials)]
    keep = "all" if spec.keep_checkpoints is None else str(spec.keep_checkpoints)
    command += ["--holdout", repr(spec.holdout), "--select", spec.select]
    command += ["--keep-checkpoints", keep, "--select-candidates", str(spec.select_candidates)]
    command += ["--fqe-steps", str(spec.fqe_steps)]
    if spec.holdout_seed is not None:
        command += ["--holdout-seed", str(spec.holdout_seed)]
    return command


def on_cpu(use_gpu: Any) -> bool:
    return use_gpu is None or use_gpu is False or use_gpu == "cpu"


def _validated(params: dict[str, Any]) -> BEARConfig:
    try:
        return BEARConfig(**params)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise InvalidInput(f"params: {exc}") from None

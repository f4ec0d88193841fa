"""Quality of the bundles' out-of-distribution flag on Pendulum-v1 and MuJoCo Reacher-v5.

For each task a tiny BEAR (a few dozen gradient steps: the detector depends on the data, not on
the policy) is fitted on medium data (scripted controller plus noise) and exported; its bundle's
detector then flags rows of these sets (observations, and (observation, action) pairs where
marked "pairs"):

    held_out       episodes of the training distribution the model never saw (another seed):
                   the share flagged should be about 1% (the 0.99 quantile), at most 3%
    unvisited      states the behaviour never visits. Pendulum: near upright (|theta| < 0.5)
                   spinning at 5..8 rad/s (the data balances there, |theta_dot| < 2.3).
                   Reacher: the target 0.25..0.4 from the centre (the data's lie within 0.2),
                   fingertip-to-target vector to match
    fast_joints    Reacher: the first joint's velocity 1.5..2.5 times the data's largest
    scaled_10x     held-out observations times 10
    other_env      another environment's observations from a uniformly random policy, cut or
                   zero-padded to the width. Pendulum: MountainCarContinuous-v0 (2 wide, padded).
                   Reacher: Hopper-v5 (11 wide, first 10)

Each set is flagged at least 95% of the time if the flag does its job. Next to the bundle's
detector (kNN: mean distance to the 5 nearest reference rows, standardised) two density scores
are computed on the same calibration sample, thresholded at the same 0.99 quantile of the
training rows' scores: a diagonal Gaussian (sum of squared z-scores) and a full-covariance
Gaussian (Mahalanobis distance).

    .venv/bin/python benchmarks/ood_quality.py [--episodes 200] [--held-out 50]

Prints the table on stdout; diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bear_core import BEAR  # noqa: E402
from bear_core.bundle import PolicyBundle, load_bundle  # noqa: E402
from bear_core.bundle.ood import CalibrationSample, flagged  # noqa: E402
from bear_core.dataset import (  # noqa: E402
    MDPDataset,
    TransitionBuffer,
    generate_pendulum_dataset,
    generate_reacher_dataset,
)

SEED = 0
TINY = {
    "batch_size": 64,
    "encoder_params": {"hidden_units": [32, 32]},
    "n_epochs": 1,
    "n_steps_per_epoch": 30,
    "seed": SEED,
}
Rows = tuple[np.ndarray, np.ndarray | None]  # observations, actions (pairs) or None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[TextIO]:
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield saved
    finally:
        sys.stdout = saved


def random_policy_observations(env_id: str, n: int, width: int) -> np.ndarray:
    """n observations of `env_id` under uniformly random actions, cut or zero-padded."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(SEED)
    rows = []
    obs, _ = env.reset(seed=SEED)
    while len(rows) < n:
        rows.append(np.asarray(obs, np.float32).ravel())
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    out = np.zeros((n, width), np.float32)
    cut = min(width, len(rows[0]))
    out[:, :cut] = np.stack(rows)[:, :cut]
    return out


def pendulum_sets(held: TransitionBuffer, rng: np.random.Generator) -> dict[str, Rows]:
    n = 2000
    theta = rng.uniform(-0.5, 0.5, n)
    speed = rng.uniform(5.0, 8.0, n) * rng.choice([-1.0, 1.0], n)
    unvisited = np.stack([np.cos(theta), np.sin(theta), speed], axis=1).astype(np.float32)
    return {
        "unvisited": (unvisited, None),
        "other_env": (random_policy_observations("MountainCarContinuous-v0", n, 3), None),
    }


def reacher_sets(
    held: TransitionBuffer, train: TransitionBuffer, rng: np.random.Generator
) -> dict[str, Rows]:
    obs = held.observations.copy()
    n = len(obs)
    radius = rng.uniform(0.25, 0.4, n)
    angle = rng.uniform(-np.pi, np.pi, n)
    fingertip = obs[:, 4:6] + obs[:, 8:10]
    obs[:, 4] = radius * np.cos(angle)
    obs[:, 5] = radius * np.sin(angle)
    obs[:, 8:10] = fingertip - obs[:, 4:6]
    fast = held.observations.copy()
    top = np.abs(train.observations[:, 6]).max()
    fast[:, 6] = rng.uniform(1.5, 2.5, n) * top * rng.choice([-1.0, 1.0], n)
    return {
        "unvisited": (obs, None),
        "fast_joints": (fast, None),
        "other_env": (random_policy_observations("Hopper-v5", n, 10), None),
    }


def density_scores(
    sample: CalibrationSample, quantile: float
) -> dict[str, Callable[..., np.ndarray]]:
    """Diagonal and full-covariance Gaussian scores over the calibration sample, each over
    its `quantile` of the sample's own scores (> 1: flagged)."""
    candidates: dict[str, Callable[..., np.ndarray]] = {}
    for space in ("obs", "pairs"):
        x = (
            sample.observations
            if space == "obs"
            else np.hstack([sample.observations, sample.actions])
        )
        mean, std = x.mean(0), np.where(x.std(0) > 1e-6, x.std(0), 1.0)
        precision = np.linalg.pinv(np.cov(x, rowvar=False))

        def diag(rows: np.ndarray, mean: np.ndarray = mean, std: np.ndarray = std) -> np.ndarray:
            return np.sqrt((((rows - mean) / std) ** 2).sum(1))

        def full(
            rows: np.ndarray, mean: np.ndarray = mean, p: np.ndarray = precision
        ) -> np.ndarray:
            d = rows - mean
            return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, p, d), 0.0))

        for name, fn in (("diag_gauss", diag), ("mahalanobis", full)):
            threshold = np.quantile(fn(x), quantile)
            candidates[f"{name}_{space}"] = lambda rows, fn=fn, t=threshold: fn(rows) / t
    return candidates


def fit_and_export(dataset: MDPDataset, workdir: Path) -> PolicyBundle:
    algo = BEAR(**TINY)
    algo.fit(
        dataset, run_dir=workdir / "run", verbose=False, show_progress=False, tensorboard=False
    )
    return load_bundle(algo.export_bundle(workdir / "bundle"))


def evaluate(
    task: str, train: MDPDataset, held_out: MDPDataset, workdir: Path
) -> list[tuple[str, str, int, float, float, float]]:
    bundle = fit_and_export(train, workdir / task)
    ood = bundle.ood
    assert ood is not None
    train_rows = TransitionBuffer.from_episodes(train.episodes)
    held = TransitionBuffer.from_episodes(held_out.episodes)
    rng = np.random.default_rng(SEED)
    extra = pendulum_sets(held, rng) if task == "pendulum" else reacher_sets(held, train_rows, rng)
    sets: dict[str, Rows] = {
        "held_out": (held.observations, None),
        "held_out pairs": (held.observations, held.actions),
        **extra,
        "scaled_10x": (held.observations * 10, None),
        "scaled_10x pairs": (held.observations * 10, held.actions),
    }
    sample = CalibrationSample(
        train_rows.observations, train_rows.actions, np.zeros(len(train_rows), np.int32)
    )
    density = density_scores(sample, ood.spec.quantile)
    table = []
    for name, (obs, act) in sets.items():
        if act is None:
            knn = ood.score_observations(obs)
            rows = obs
            space = "obs"
        else:
            knn = ood.score_pairs(obs, act)
            rows = np.hstack([obs, act])
            space = "pairs"
        table.append(
            (
                task,
                name,
                len(obs),
                100 * float(flagged(knn).mean()),
                100 * float(flagged(density[f"diag_gauss_{space}"](rows)).mean()),
                100 * float(flagged(density[f"mahalanobis_{space}"](rows)).mean()),
            )
        )
    log(f"{task}: {ood.spec.n_reference} reference rows, {ood.spec.calibration}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200, help="training episodes per task")
    parser.add_argument("--held-out", type=int, default=50, help="held-out episodes per task")
    args = parser.parse_args()
    rows = []
    with stdout_to_stderr() as stdout, tempfile.TemporaryDirectory() as tmp:
        for task, generate in (
            ("pendulum", generate_pendulum_dataset),
            ("reacher", generate_reacher_dataset),
        ):
            log(f"{task}: generating {args.episodes} + {args.held_out} episodes ...")
            train = generate("medium", n_episodes=args.episodes, seed=SEED)
            held_out = generate("medium", n_episodes=args.held_out, seed=SEED + 1000)
            rows += evaluate(task, train, held_out, Path(tmp))
    header = (
        f"{'task':<9} {'set':<17} {'rows':>6} {'knn %':>7} {'diag_gauss %':>13} "
        f"{'mahalanobis %':>14}"
    )
    lines = [header, "-" * len(header)]
    lines += [
        f"{task:<9} {name:<17} {n:>6} {knn:>7.1f} {diag:>13.1f} {maha:>14.1f}"
        for task, name, n, knn, diag, maha in rows
    ]
    print("\n".join(lines), file=stdout, flush=True)


if __name__ == "__main__":
    main()

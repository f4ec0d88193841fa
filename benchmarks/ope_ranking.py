"""Does fitted Q evaluation rank policies as their true returns do?

For each environment (Pendulum-v1 and MuJoCo Reacher-v5, "medium" data from the scripted
controllers plus noise), five policies of different quality are trained on 80% of the episodes:

    bear_long     BEAR, `--long` gradient steps
    bear_short    BEAR, `--short` gradient steps
    bc            BEAR whose RL never starts (rl_start_epoch beyond the run): only the behaviour
                  model and the actor's MMD-to-behaviour term train, a behaviour-cloning policy
    bc_short      the same for `--short` steps
    untrained     BEAR after one gradient step (its scalers fitted, its networks as initialised)

The other 20% of the episodes (split by episode, seeded) are held out. Each policy is scored by
`bear_core.ope.estimate_policy_value` at the library's defaults (FQE on the held-out episodes;
`--fqe-steps` overrides its step count) and by its true mean undiscounted return over `--trials`
environment episodes (`bear_core.scorers.evaluate_on_environment`). The table gives both; below
it, the Spearman rank correlation of the two columns and whether FQE's top pick is among the two
truly best policies.

BEAR's networks are small ([64, 64]), FQE's critics are the library's default (256, 256), and
everything runs on one torch thread, so the whole script takes a few minutes on an idle
laptop-class CPU (most of them FQE's):

    .venv/bin/python benchmarks/ope_ranking.py [--envs pendulum reacher] [--fqe-steps 3000]

Prints one table per environment and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bear_core import BEAR  # noqa: E402
from bear_core.dataset import (  # noqa: E402
    MDPDataset,
    generate_pendulum_dataset,
    generate_reacher_dataset,
)
from bear_core.ope import FQE, estimate_policy_value  # noqa: E402
from bear_core.scorers import evaluate_on_environment  # noqa: E402

HIDDEN_UNITS = (64, 64)
BEAR_BATCH_SIZE = 128
HOLDOUT = 0.2
SEED = 0
EVAL_SEED = 10_000  # environment seeds of the true-return trials, apart from the data's
ENVIRONMENTS: dict[str, tuple[str, Callable[[int], MDPDataset]]] = {
    "pendulum": ("Pendulum-v1", lambda n: generate_pendulum_dataset("medium", n, seed=SEED)),
    "reacher": ("Reacher-v5", lambda n: generate_reacher_dataset("medium", n, seed=SEED)),
}
N_EPISODES = {"pendulum": 50, "reacher": 100}  # 10,000 and 5,000 transitions


def train_bear(dataset: MDPDataset, train: list[Any], steps: int, *, rl: bool) -> BEAR:
    bear = BEAR(
        batch_size=BEAR_BATCH_SIZE,
        n_epochs=1,
        rl_start_epoch=0 if rl else 1,  # epoch index 0 < 1: the whole run is warm-up
        scaler="standard",
        encoder_params={"hidden_units": list(HIDDEN_UNITS)},
        n_steps_per_epoch=steps,
        seed=SEED,
    )
    with tempfile.TemporaryDirectory() as logdir:
        bear.fit(
            train,
            logdir=logdir,
            verbose=False,
            show_progress=False,
            tensorboard=False,
            action_bounds=dataset.action_bounds,
        )
    return bear


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def run_environment(name: str, args: argparse.Namespace) -> dict[str, Any]:
    env_id, generate = ENVIRONMENTS[name]
    dataset = generate(N_EPISODES[name])
    train, held_out = dataset.split(test_size=HOLDOUT, seed=SEED)
    print(
        f"\n{env_id}: {len(train)} training and {len(held_out)} held-out episodes "
        f"({sum(len(e) for e in held_out)} held-out transitions)",
        flush=True,
    )
    budgets = {
        "bear_long": (args.long, True),
        "bear_short": (args.short, True),
        "bc": (args.long, False),
        "bc_short": (args.short, False),
        "untrained": (1, True),
    }
    env = gym.make(env_id)
    rows = []
    for policy, (steps, rl) in budgets.items():
        started = time.perf_counter()
        bear = train_bear(dataset, train, steps, rl=rl)
        train_s = time.perf_counter() - started
        estimate = estimate_policy_value(bear, held_out, n_steps=args.fqe_steps, seed=SEED)
        true_return = evaluate_on_environment(env, n_trials=args.trials, seed=EVAL_SEED)(bear)
        rows.append(
            {
                "policy": policy,
                "bear_steps": steps,
                "fqe_estimate": estimate.estimate,
                "fqe_ci": list(estimate.ci),
                "true_return": true_return,
                "train_s": train_s,
                "fqe_s": estimate.seconds,
            }
        )
        print(f"  {policy} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    env.close()

    fqe = np.array([row["fqe_estimate"] for row in rows])
    true = np.array([row["true_return"] for row in rows])
    rho = spearman(fqe, true)
    top_two = set(np.argsort(-true)[:2].tolist())
    top_pick_in_top_two = int(np.argmax(fqe)) in top_two
    print(
        f"{'policy':<11} {'BEAR steps':>10} {'FQE estimate [95% ci]':>30} {'true return':>12} "
        f"{'FQE s':>6}"
    )
    for row in rows:
        low, high = row["fqe_ci"]
        shown = f"{row['fqe_estimate']:.1f} [{low:.1f}, {high:.1f}]"
        print(
            f"{row['policy']:<11} {row['bear_steps']:>10} {shown:>30} "
            f"{row['true_return']:>12.1f} {row['fqe_s']:>6.1f}"
        )
    print(f"Spearman rank correlation (FQE vs true return): {rho:.2f}")
    print(f"FQE's top pick ({rows[int(np.argmax(fqe))]['policy']}) in the true top two: "
          f"{top_pick_in_top_two}")  # fmt: skip
    return {
        "env": env_id,
        "held_out_episodes": len(held_out),
        "rows": rows,
        "spearman": rho,
        "top_pick_in_true_top_two": top_pick_in_top_two,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--envs", nargs="+", choices=sorted(ENVIRONMENTS), default=list(ENVIRONMENTS)
    )
    parser.add_argument("--long", type=int, default=2000, help="BEAR steps of the long budget")
    parser.add_argument("--short", type=int, default=300, help="BEAR steps of the short budget")
    parser.add_argument(
        "--fqe-steps",
        type=int,
        default=_default(estimate_policy_value, "n_steps"),
        help="FQE steps (default: estimate_policy_value's)",
    )
    parser.add_argument("--trials", type=int, default=10, help="environment episodes per policy")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    results = [run_environment(name, args) for name in args.envs]
    summary = {
        "fqe": {
            "n_steps": args.fqe_steps,
            **{
                name: _default(FQE, name)
                for name in ("learning_rate", "target_update_interval", "hidden_units")
            },
        },
        "environments": results,
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(summary))


def _default(function: Callable[..., Any], name: str) -> Any:
    """The default of `function`'s parameter `name`, JSON-ready."""
    value = inspect.signature(function).parameters[name].default
    return list(value) if isinstance(value, tuple) else value


if __name__ == "__main__":
    main()

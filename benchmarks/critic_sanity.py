"""Do the critics stay sane and the greedy policy stay good over a long run?

Trains BEAR on "medium" data from the project's scripted controllers plus noise (Pendulum-v1,
or MuJoCo Reacher-v5), at the defaults plus `scaler="standard"`, on one torch thread, and every
`--eval-every` gradient steps records:

    return        mean undiscounted return of the greedy policy over `--trials` env episodes
    q_data        the critics' mean Q on a fixed sample of the data's (s, a) (the value probe)
    q_bound       the bound the rewards allow (max reward + the entropy share) / (1 - gamma)
    corr          correlation of those Q values with the data's Monte-Carlo discounted returns
    critic_loss, alpha, temp, mmd   the epoch means the training loop logs

`--reference` runs the reference implementation's defaults instead (SAC temperature with
temp_learning_rate=3e-4 from initial_temperature=1.0, and the Gaussian MMD kernel), for the
before/after comparison; `--set NAME=JSON` changes one parameter (repeatable), for the
experiments that rule a cause in or out. Per seed, the summary line gives the final and best
returns, final/best (returns are negative: the ratio is best/final, >= 0.95 means the final
policy keeps 95% of the best), and the behaviour data's mean return.

    .venv/bin/python benchmarks/critic_sanity.py --task pendulum --steps 30000 --eval-every 2000
    .venv/bin/python benchmarks/critic_sanity.py --task reacher --seeds 0 1 2 --steps 10000

Prints one line per evaluation, a summary per seed and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bear_core import BEAR
from bear_core.dataset import (
    MDPDataset,
    generate_pendulum_dataset,
    generate_reacher_dataset,
)
from bear_core.scorers import evaluate_on_environment

TASKS = {
    "pendulum": ("Pendulum-v1", generate_pendulum_dataset),
    "reacher": ("Reacher-v5", generate_reacher_dataset),
}
REFERENCE = {"temp_learning_rate": 3e-4, "initial_temperature": 1.0, "mmd_kernel": "gaussian"}
STEPS_PER_EPOCH = 1000


def run(task: str, data: MDPDataset, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    env_id, _ = TASKS[task]
    params: dict[str, Any] = {
        "scaler": "standard",
        "n_steps_per_epoch": STEPS_PER_EPOCH,
        "n_epochs": args.steps // STEPS_PER_EPOCH,
        "seed": seed,
    }
    if args.reference:
        params.update(REFERENCE)
    params.update(args.set)
    bear = BEAR(**params)
    greedy_return = evaluate_on_environment(gym.make(env_id), n_trials=args.trials, seed=10_000)
    rows = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as logdir:
        for epoch, metrics in bear.fitter(
            data, logdir=logdir, verbose=False, show_progress=False, tensorboard=False
        ):
            step = epoch * STEPS_PER_EPOCH
            if step % args.eval_every:
                continue
            row = {
                "step": step,
                "return": greedy_return(bear),
                "q_data": metrics["value_mean"],
                "q_bound": metrics["value_bound"],
                "corr": metrics["value_return_corr"],
                **{k: metrics[k] for k in ("critic_loss", "alpha", "temp", "mmd")},
                "seconds": time.monotonic() - start,
            }
            rows.append(row)
            print(
                f"{task} seed={seed} step={step} "
                + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "step"),
                flush=True,
            )
    returns = [r["return"] for r in rows]
    final, best = returns[-1], max(returns)
    return {
        "seed": seed,
        "rows": rows,
        "final_return": final,
        "best_return": best,
        "final_over_best": best / final if final < 0 else final / best,
    }


def _parameter(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=JSON, got {text!r}")
    return name, json.loads(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="pendulum")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=None, help="episodes of data")
    parser.add_argument("--reference", action="store_true", help="the reference's defaults")
    parser.add_argument(
        "--set",
        type=_parameter,
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a BEAR parameter, e.g. --set lam=1.0 --set scaler=null",
    )
    args = parser.parse_args()
    args.set = dict(args.set)
    if args.steps % STEPS_PER_EPOCH or args.eval_every % STEPS_PER_EPOCH:
        parser.error(f"--steps and --eval-every must be multiples of {STEPS_PER_EPOCH}")
    torch.set_num_threads(1)

    _, generate = TASKS[args.task]
    n_episodes = args.episodes or (100 if args.task == "pendulum" else 200)
    data = generate("medium", n_episodes, seed=123)
    behaviour = float(np.mean([e.rewards.sum() for e in data.episodes]))
    print(f"{args.task}: {n_episodes} episodes, behaviour return {behaviour:.4g}", flush=True)
    results = [run(args.task, data, seed, args) for seed in args.seeds]
    for r in results:
        print(
            f"seed={r['seed']} final={r['final_return']:.4g} best={r['best_return']:.4g} "
            f"final/best={r['final_over_best']:.3f} behaviour={behaviour:.4g}"
        )
    mean_final = float(np.mean([r["final_return"] for r in results]))
    print(f"mean final return {mean_final:.4g} vs behaviour {behaviour:.4g}")
    print(
        json.dumps(
            {
                "task": args.task,
                "reference_defaults": args.reference,
                "parameters": args.set,
                "threads": 1,
                "behaviour_return": behaviour,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Command line: `python -m bear_core {train,generate,evaluate,evaluate-bundle,export,demo}`.

`train` is what background training jobs run: it writes params.json, progress.json,
metrics.jsonl, one CSV per metric and checkpoints into --out as it goes (the newest
--keep-checkpoints model_<epoch>.pt; with --holdout selection.json and model_best.pt), resumes from
--out/checkpoint.pt when present, and on SIGTERM/SIGINT saves a checkpoint and exits 143; with
--bundle it exports the trained model's bundle when training ends.
`evaluate-bundle` is what the service's evaluation jobs run: the FQE estimates of bundles on
given episodes of a dataset file, written as JSON to --out.
Bad input exits 2 with a one-line message naming the argument.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

EXIT_BAD_INPUT = 2
EXIT_STOPPED = 143
# Extra modules the `module:Env-v0` form of --eval-env may import (trainers started by the service
# inherit its environment, so one BEAR_EVAL_ENV_MODULES serves both).
EVAL_ENV_MODULES_VAR = "BEAR_EVAL_ENV_MODULES"


class StopFlag:
    """Set by SIGTERM/SIGINT; polled by the training loop between gradient steps."""

    def __init__(self) -> None:
        self.stopped = False

    def __call__(self) -> bool:
        return self.stopped

    def install(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stopped = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """['n_epochs=5', 'scaler=standard', 'encoder_params={"hidden_units":[64]}'] -> dict."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r} must look like name=value")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def keep_count(value: str) -> int | None:
    """--keep-checkpoints: a count >= 1, or 'all' (None: keep every model_<epoch>.pt)."""
    if value == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1 or 'all', got {value!r}")
    return count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bear_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train BEAR on a D4RL-format HDF5 dataset")
    train.add_argument("--dataset", required=True, help="D4RL-format HDF5 file")
    train.add_argument(
        "--out", required=True, help="run directory (resumed when it holds a checkpoint)"
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a BEAR constructor parameter (JSON value or string); repeatable",
    )
    train.add_argument(
        "--test-size",
        type=float,
        default=0.1,
        help="share of episodes held out for the scorers (0 disables them)",
    )
    train.add_argument(
        "--scorers",
        default="td_error,average_value_estimation",
        help="comma-separated scorer names, evaluated on the held-out episodes",
    )
    train.add_argument("--eval-env", default=None, help="gymnasium id evaluated every epoch")
    train.add_argument("--eval-trials", type=int, default=5)
    train.add_argument("--save-interval", type=int, default=1)
    train.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        help="share of the training episodes held out of training and used to score "
        "checkpoints by fitted Q evaluation (0: none)",
    )
    train.add_argument(
        "--select",
        choices=["last", "ope"],
        default="last",
        help="the checkpoint kept: the last epoch's, or ('ope', needs --holdout) the best of "
        "--select-candidates epochs by their FQE estimate on the held-out episodes",
    )
    train.add_argument(
        "--select-candidates", type=int, default=5, help="epochs scored with --select ope"
    )
    train.add_argument("--fqe-steps", type=int, default=3000, help="FQE steps per scored epoch")
    train.add_argument(
        "--holdout-seed",
        type=int,
        default=None,
        help="seed of the held-out split and of FQE (default: the BEAR seed); runs of different "
        "seeds with one --holdout-seed are scored on the same episodes",
    )
    train.add_argument(
        "--keep-checkpoints",
        type=keep_count,
        default=5,
        metavar="K",
        help="model_<epoch>.pt files kept (the newest K), or 'all'",
    )
    train.add_argument("--tensorboard", action="store_true")
    train.add_argument(
        "--bundle",
        default=None,
        help="then export a policy bundle into this new directory, in this process (training "
        "jobs do: no second torch start-up); not when stopped early",
    )
    train.add_argument("--quiet", action="store_true")

    generate = sub.add_parser("generate", help="write a generated Pendulum-v1 dataset")
    generate.add_argument("--kind", choices=["medium", "random"], default="medium")
    generate.add_argument("--episodes", type=int, default=50)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--out", required=True)

    evaluate = sub.add_parser("evaluate", help="mean return of a trained model on an env")
    evaluate.add_argument("--model", required=True, help="run directory or model_<epoch>.pt")
    evaluate.add_argument("--env", default="Pendulum-v1")
    evaluate.add_argument("--trials", type=int, default=10)
    evaluate.add_argument("--seed", type=int, default=0)

    bundle_value = sub.add_parser(
        "evaluate-bundle",
        help="FQE estimates of policy bundles on given episodes of a dataset, scored alike",
    )
    bundle_value.add_argument(
        "--bundle", action="append", required=True, help="bundle directory; repeatable"
    )
    bundle_value.add_argument("--dataset", required=True, help="D4RL-format HDF5 file")
    bundle_value.add_argument(
        "--episodes", required=True, help="comma-separated episode indices in the dataset file"
    )
    bundle_value.add_argument(
        "--episodes-sha256", default=None, help="refuse the episodes unless this is their sha256"
    )
    bundle_value.add_argument("--fqe-steps", type=int, default=3000)
    bundle_value.add_argument("--seed", type=int, default=0)
    bundle_value.add_argument(
        "--gamma", type=float, default=None, help="discount of every estimate (default: each "
        "bundle's own)"
    )  # fmt: skip
    bundle_value.add_argument("--out", required=True, help="JSON file written with the results")

    export = sub.add_parser("export", help="write a torch-free policy bundle of a trained model")
    export.add_argument("--model", required=True, help="run directory or model_<epoch>.pt")
    export.add_argument("--out", required=True, help="bundle directory to create")

    demo = sub.add_parser("demo", help="generate Pendulum data, train, evaluate, print returns")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bear_core.errors import BearError

    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "generate":
            return cmd_generate(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "evaluate-bundle":
            return cmd_evaluate_bundle(args)
        if args.command == "export":
            return cmd_export(args)
        return cmd_demo(args)
    except (ValueError, NotImplementedError, BearError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def cmd_train(args: argparse.Namespace) -> int:
    from bear_core import scorers as scorer_lib
    from bear_core.bear.algo import BEAR, check_param_names
    from bear_core.bundle import sha256_file
    from bear_core.dataset import read_hdf5
    from bear_core.training.selection import SelectOptions

    params = parse_overrides(args.set)
    check_param_names(params)
    algo = BEAR(**params)  # validates the parameters before any data is read
    options = SelectOptions(
        args.holdout,
        args.select,
        args.keep_checkpoints,
        args.select_candidates,
        args.fqe_steps,
        args.holdout_seed,
    )
    dataset = read_hdf5(args.dataset)
    names = [s for s in args.scorers.split(",") if s] if args.test_size > 0 else []
    unknown = [s for s in names if s not in scorer_lib.SCORERS]
    if unknown:
        raise ValueError(
            f"--scorers: unknown scorer(s) {unknown}; known: {sorted(scorer_lib.SCORERS)}"
        )
    scorers = {name: scorer_lib.SCORERS[name] for name in names}
    train_episodes: Any = dataset
    episode_ids = None  # of the episodes trained on, in the file: all of them
    eval_episodes = None
    if scorers and len(dataset.episodes) > 1:
        train_episodes, eval_episodes = dataset.split(test_size=args.test_size, seed=0)
        index = {id(episode): i for i, episode in enumerate(dataset.episodes)}
        episode_ids = [index[id(episode)] for episode in train_episodes]
    else:
        scorers = {}
    if args.eval_env:
        scorers["environment"] = scorer_lib.evaluate_on_environment(
            _make_env(args.eval_env), n_trials=args.eval_trials
        )
        eval_episodes = eval_episodes or list(dataset.episodes[:1])

    stop = StopFlag()
    stop.install()
    out = Path(args.out)
    from bear_core.training.loop import fitter

    for _ in fitter(
        algo,
        train_episodes,
        verbose=not args.quiet,
        show_progress=False,
        tensorboard=args.tensorboard,
        eval_episodes=eval_episodes,
        save_interval=args.save_interval,
        scorers=scorers,
        run_dir=out,
        should_stop=stop,
        action_bounds=dataset.action_bounds,
        holdout=options.holdout,
        select=options.select,
        keep_checkpoints=options.keep_checkpoints,
        select_candidates=options.select_candidates,
        fqe_steps=options.fqe_steps,
        holdout_seed=options.holdout_seed,
        episode_ids=episode_ids,
        source_sha256=sha256_file(Path(args.dataset)),
    ):
        pass
    if stop.stopped:
        print(f"stopped: checkpoint saved in {out / 'checkpoint.pt'}", file=sys.stderr)
        return EXIT_STOPPED
    if args.bundle is not None:
        return _export(load_trained(out), args.bundle)  # the model `export --model <out>` takes
    return 0


def _make_env(env_id: str) -> Any:
    """A registered gymnasium environment. gymnasium's `module:Env-v0` form imports `module`
    first, so it is refused unless EVAL_ENV_MODULES_VAR names that module."""
    import importlib

    import gymnasium

    module, colon, name = env_id.rpartition(":")
    if colon:
        allowed = eval_env_modules()
        if module not in allowed:
            raise ValueError(
                f"--eval-env {env_id!r}: the 'module:id' form would import {module!r}; only "
                f"registered gymnasium ids are accepted unless {EVAL_ENV_MODULES_VAR} names the "
                f"module (allowed: {sorted(allowed)})"
            )
        importlib.import_module(module)
    if name not in gymnasium.registry:
        raise ValueError(f"--eval-env {env_id!r}: {name!r} is not a registered gymnasium id")
    try:
        return gymnasium.make(env_id)
    except gymnasium.error.Error as exc:
        raise ValueError(f"--eval-env {env_id!r}: {exc}") from exc


def eval_env_modules() -> set[str]:
    """Modules an `--eval-env module:Env-v0` may import: EVAL_ENV_MODULES_VAR, comma-separated."""
    value = os.environ.get(EVAL_ENV_MODULES_VAR, "")
    return {module.strip() for module in value.split(",") if module.strip()}


def cmd_generate(args: argparse.Namespace) -> int:
    from bear_core.dataset import generate_pendulum_dataset

    dataset = generate_pendulum_dataset(args.kind, n_episodes=args.episodes, seed=args.seed)
    dataset.to_hdf5(args.out)
    print(
        f"wrote {args.out}: {len(dataset.episodes)} episodes, {dataset.n_transitions} transitions"
    )
    return 0


def load_trained(model: str | Path) -> Any:
    """A BEAR from a run directory (its selected model_best.pt when it has one, else its
    checkpoint.pt) or from a model_<epoch>.pt file."""
    from bear_core.bear.algo import BEAR
    from bear_core.training.selection import BEST

    path = Path(model)
    if path.is_dir():
        path = path / BEST if (path / BEST).is_file() else path / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"--model: {path} does not exist")
    algo = BEAR()
    algo.load_model(path)
    return algo


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bear_core.scorers import evaluate_on_environment

    algo = load_trained(args.model)
    score = evaluate_on_environment(_make_env(args.env), n_trials=args.trials, seed=args.seed)
    print(json.dumps({"env": args.env, "trials": args.trials, "mean_return": score(algo)}))
    return 0


def cmd_evaluate_bundle(args: argparse.Namespace) -> int:
    """Every --bundle's FQE estimate on the --episodes of --dataset, one evaluator for all: the
    same scalers (fitted on those episodes), discount, steps and seed."""
    from bear_core.dataset import read_hdf5
    from bear_core.io_utils import atomic_write_json
    from bear_core.ope.bundle_value import estimate_bundle_value
    from bear_core.training.selection import episodes_sha256

    if args.fqe_steps < 1:
        raise ValueError(f"--fqe-steps must be >= 1, got {args.fqe_steps}")
    dataset = read_hdf5(args.dataset)
    try:
        indices = [int(i) for i in args.episodes.split(",")]
    except ValueError:
        indices = []
    n = len(dataset.episodes)
    if not indices or len(set(indices)) != len(indices) or not all(0 <= i < n for i in indices):
        raise ValueError(
            f"--episodes must be comma-separated distinct indices in [0, {n}), got "
            f"{args.episodes!r}"
        )
    episodes = [dataset.episodes[i] for i in indices]
    digest = episodes_sha256(episodes)
    if args.episodes_sha256 is not None and digest != args.episodes_sha256:
        raise ValueError(
            f"--episodes-sha256: episodes {args.episodes!r} of {args.dataset} hash to {digest}, "
            f"not {args.episodes_sha256} (another file, or other episodes)"
        )
    results = []
    for bundle in args.bundle:
        manifest_sha256, estimate = estimate_bundle_value(
            bundle, episodes, dataset.action_bounds, args.gamma, args.fqe_steps, args.seed
        )
        results.append(
            {
                "bundle": bundle,
                "manifest_sha256": manifest_sha256,
                "method": estimate.method,
                "estimate": estimate.estimate,
                "ci": list(estimate.ci),
                "n_episodes": estimate.n_episodes,
                "n_steps": estimate.n_steps,
                "seconds": estimate.seconds,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    atomic_write_json(Path(args.out), {"episodes_sha256": digest, "results": results})
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    return _export(load_trained(args.model), args.out)


def _export(algo: Any, out: str) -> int:
    path = algo.export_bundle(out)
    print(json.dumps({"bundle": str(path), "epochs": algo.epoch, "total_steps": algo.total_step}))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded default: data, training and evaluation, all local files."""
    from bear_core.bear.algo import BEAR, check_param_names
    from bear_core.dataset import generate_pendulum_dataset
    from bear_core.scorers import evaluate_on_environment

    out = Path(args.out)
    data_path = out / "pendulum-medium.h5"
    dataset = generate_pendulum_dataset("medium", n_episodes=50, seed=0)
    dataset.to_hdf5(data_path)
    print(f"dataset: {data_path} ({dataset.n_transitions} transitions)", flush=True)
    params = {**DEMO_PARAMS, **parse_overrides(args.set)}
    check_param_names(params)
    algo = BEAR(**params)
    from bear_core.training.loop import fitter

    for _ in fitter(algo, dataset, show_progress=False, tensorboard=False, run_dir=out / "run"):
        pass
    env = _make_env("Pendulum-v1")
    trained = evaluate_on_environment(env, n_trials=10, seed=0)(algo)
    behaviour = float(sum(e.compute_return() for e in dataset.episodes) / len(dataset.episodes))
    print(
        json.dumps(
            {
                "mean_return": trained,
                "behaviour_data_return": behaviour,
                "run_dir": str(out / "run"),
            }
        )
    )
    return 0


DEMO_PARAMS: dict[str, Any] = {
    "n_epochs": 10,
    "n_steps_per_epoch": 500,
    "batch_size": 256,
    "scaler": "standard",
    "encoder_params": {"hidden_units": [256, 256]},
}

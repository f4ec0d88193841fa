"""Training throughput: gradient updates per second of bear_core's BEAR beside d3rlpy 2.8.1's BEAR.

Every side runs on the CPU with one torch thread, mini-batches of 256 transitions (observation
size 17, action size 6), [256, 256] hidden units in every network and 2 critics. Batches are
built before timing; each timed step is one call of the public per-minibatch update (numpy batch
in, metrics out), so the numpy-to-tensor conversion is included on every side and data sampling
is not.

d3rlpy runs twice: at its defaults (10 target samples, 4 MMD samples) and at our sample counts
(`n_target_samples` and `n_mmd_action_samples` both our `n_action_samples`, 4 by default), so
that the comparison at equal work is measured too. d3rlpy is a benchmark-only tool and never a
project dependency: each of its runs is a worker process under a separate interpreter (by default
`.bench-venv/bin/python`, made with `python3 -m venv .bench-venv && .bench-venv/bin/pip install
torch==2.13.0 d3rlpy==2.8.1`). All sides take turns, one timed block each per round, so that they
see the same machine conditions; each ratio, `ours_vs_d3rlpy_default` and
`ours_vs_d3rlpy_equal_samples`, is the median of the per-round ratios. Without that interpreter
the JSON says so and reports our side alone.

    .venv/bin/python benchmarks/train_throughput.py [--steps 200] [--repeats 5]
        [--set imitator_type=vae]

Prints exactly one JSON line on stdout; diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_D3RLPY_PYTHON = REPO_ROOT / ".bench-venv" / "bin" / "python"

THREADS = 1
BATCH_SIZE = 256
HIDDEN_UNITS = [256, 256]
N_CRITICS = 2
OBSERVATION_SIZE = 17
ACTION_SIZE = 6
N_PREBUILT_BATCHES = 8
SEED = 0


# --- shared helpers -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RandomBatch:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray


def random_batches(n: int, batch_size: int, seed: int) -> list[RandomBatch]:
    """Transitions of the benchmark's shapes: actions in [-1, 1], about 1% terminal."""
    rng = np.random.default_rng(seed)

    def floats(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return [
        RandomBatch(
            observations=floats(batch_size, OBSERVATION_SIZE),
            actions=rng.uniform(-1.0, 1.0, (batch_size, ACTION_SIZE)).astype(np.float32),
            rewards=floats(batch_size, 1),
            next_observations=floats(batch_size, OBSERVATION_SIZE),
            terminals=(rng.random((batch_size, 1)) < 0.01).astype(np.float32),
        )
        for _ in range(n)
    ]


class BlockTimer:
    """Times blocks of consecutive updates; `update(i)` performs gradient step number i."""

    def __init__(self, update: Callable[[int], object]) -> None:
        self.update = update
        self.step = 0

    def run(self, n: int) -> float:
        """Perform n updates; returns their rate in updates per second."""
        start = time.perf_counter()
        for _ in range(n):
            self.update(self.step)
            self.step += 1
        return n / (time.perf_counter() - start)


def jsonable(value: Any) -> Any:
    """Plain JSON data for config values (tuples, mappings, enums, other objects by repr)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return repr(value)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[TextIO]:
    """Send everything written to stdout (libraries' logs included) to stderr; yield a stream on
    the real stdout for the result line."""
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(os.dup(real_stdout), "w") as result_stream:
            yield result_stream
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- our BEAR -----------------------------------------------------------------------------------


def build_ours(
    overrides: dict[str, Any],
) -> tuple[Callable[[int], float], Callable[[], dict[str, Any]]]:
    """Our BEAR on prebuilt batches: a function timing a block of n updates (-> updates/s) and a
    function describing the run."""
    import torch

    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from bear_core import BEAR
    from bear_core.dataset.batch import TransitionBatch

    params: dict[str, Any] = {
        "batch_size": BATCH_SIZE,
        "encoder_params": {"hidden_units": HIDDEN_UNITS},
        "n_critics": N_CRITICS,
        "use_gpu": False,
        "seed": SEED,
    }
    params.update(overrides)
    bear = BEAR(**params)
    bear.create_impl((OBSERVATION_SIZE,), ACTION_SIZE)
    batches = [
        TransitionBatch(**dataclasses.asdict(b))
        for b in random_batches(N_PREBUILT_BATCHES, bear.config.batch_size, SEED)
    ]
    metrics: dict[str, float] = {}

    def update(step: int) -> None:
        nonlocal metrics
        metrics = bear.update(0, step, batches[step % len(batches)])

    def describe() -> dict[str, Any]:
        return {
            "torch": torch.__version__,
            "python": sys.executable,
            "config": jsonable(bear.config.to_dict()),
            "metric_names": sorted(metrics),
        }

    return BlockTimer(update).run, describe


def our_n_action_samples(overrides: dict[str, Any]) -> int:
    """Our samples per state for the target and the MMD (the default unless overridden)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from bear_core.config import BEARConfig

    return int(overrides.get("n_action_samples", BEARConfig().n_action_samples))


# --- d3rlpy's BEAR (runs under the benchmark interpreter) ---------------------------------------


def build_d3rlpy(samples: int | None) -> tuple[BlockTimer, Callable[[], dict[str, Any]]]:
    """d3rlpy's BEAR at its defaults, or with `samples` target and MMD action samples."""
    import d3rlpy
    import torch
    from d3rlpy.models.encoders import VectorEncoderFactory

    torch.set_num_threads(THREADS)
    d3rlpy.seed(SEED)
    sample_counts = {}
    if samples is not None:
        sample_counts = {"n_target_samples": samples, "n_mmd_action_samples": samples}
    config = d3rlpy.algos.BEARConfig(
        **sample_counts,
        batch_size=BATCH_SIZE,
        actor_encoder_factory=VectorEncoderFactory(HIDDEN_UNITS),
        critic_encoder_factory=VectorEncoderFactory(HIDDEN_UNITS),
        imitator_encoder_factory=VectorEncoderFactory(HIDDEN_UNITS),
        n_critics=N_CRITICS,
        warmup_steps=0,  # the full SAC + MMD actor update from the first step
    )
    algo = config.create(device=False)

    rng = np.random.default_rng(SEED)
    n_transitions = 10 * BATCH_SIZE
    terminals = np.zeros(n_transitions, dtype=np.float32)
    terminals[BATCH_SIZE - 1 :: BATCH_SIZE] = 1.0
    dataset = d3rlpy.dataset.MDPDataset(
        observations=rng.standard_normal((n_transitions, OBSERVATION_SIZE)).astype(np.float32),
        actions=rng.uniform(-1.0, 1.0, (n_transitions, ACTION_SIZE)).astype(np.float32),
        rewards=rng.standard_normal(n_transitions).astype(np.float32),
        terminals=terminals,
        action_space=d3rlpy.ActionSpace.CONTINUOUS,
        action_size=ACTION_SIZE,
    )
    algo.build_with_dataset(dataset)
    batches = [dataset.sample_transition_batch(BATCH_SIZE) for _ in range(N_PREBUILT_BATCHES)]
    metrics: dict[str, float] = {}

    def update(step: int) -> None:
        nonlocal metrics
        metrics = algo.update(batches[step % len(batches)])

    def describe() -> dict[str, Any]:
        return {
            "version": d3rlpy.__version__,
            "torch": torch.__version__,
            "python": sys.executable,
            "config": describe_d3rlpy_config(config),
            "metric_names": sorted(metrics),
        }

    return BlockTimer(update), describe


def serve_d3rlpy_worker(result_stream: TextIO, samples: int | None) -> None:
    """Worker loop: each stdin line "run N" times N updates and answers {"rate": ...};
    "describe" answers the run's description; end of input stops."""
    timer, describe = build_d3rlpy(samples)
    result_stream.write(json.dumps({"ready": True}) + "\n")
    result_stream.flush()
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        answer = {"rate": timer.run(int(arg))} if command == "run" else describe()
        result_stream.write(json.dumps(answer) + "\n")
        result_stream.flush()


class D3rlpyWorker:
    """d3rlpy's BEAR in its own interpreter, driven block by block."""

    def __init__(self, python: Path, samples: int | None) -> None:
        command = [str(python), str(Path(__file__).resolve()), "--d3rlpy-worker"]
        if samples is not None:
            command += ["--d3rlpy-samples", str(samples)]
        log("d3rlpy: " + " ".join(command))
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
        )
        self._answer()  # {"ready": true} once d3rlpy is built

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"d3rlpy worker exited with status {self.process.wait()}")

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer()

    def run(self, n: int) -> float:
        return float(self.ask(f"run {n}")["rate"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def describe_d3rlpy_config(config: Any) -> dict[str, Any]:
    """Every field of d3rlpy's config, factories as their type name and their own fields."""
    described = describe_dataclass(config)
    described["imitator"] = "conditional VAE, latent size 2 * action_size"
    return described


def describe_dataclass(value: Any) -> Any:
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return jsonable(value)
    return {
        "type": type(value).__name__,
        **{f.name: describe_dataclass(getattr(value, f.name)) for f in dataclasses.fields(value)},
    }


# --- command line -------------------------------------------------------------------------------


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """key=value pairs; values are JSON where they parse as JSON, strings otherwise."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed updates per block")
    parser.add_argument("--warmup", type=int, default=30, help="untimed updates first")
    parser.add_argument(
        "--repeats", type=int, default=5, help="rounds of one timed block per side (medians)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="our BEAR constructor parameter (value parsed as JSON when possible); repeatable",
    )
    parser.add_argument(
        "--d3rlpy-python",
        type=Path,
        default=None,
        help=f"interpreter with d3rlpy installed (default {DEFAULT_D3RLPY_PYTHON} if present)",
    )
    parser.add_argument("--skip-d3rlpy", action="store_true", help="measure our BEAR only")
    parser.add_argument("--skip-ours", action="store_true", help="measure d3rlpy only")
    parser.add_argument("--d3rlpy-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--d3rlpy-samples", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


RATIOS = {  # name -> (numerator side, denominator side)
    "ours_vs_d3rlpy_default": ("ours", "d3rlpy_default"),
    "ours_vs_d3rlpy_equal_samples": ("ours", "d3rlpy_equal_samples"),
}


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    overrides = parse_overrides(args.overrides)
    report: dict[str, Any] = {
        "threads": THREADS,
        "batch_size": overrides.get("batch_size", BATCH_SIZE),
        "hidden_units": HIDDEN_UNITS,
        "n_critics": overrides.get("n_critics", N_CRITICS),
        "observation_size": OBSERVATION_SIZE,
        "action_size": ACTION_SIZE,
        "device": "cpu",
        "warmup_updates": args.warmup,
        "timed_updates": args.steps,
        "timed_blocks": args.repeats,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "overrides": overrides,
    }
    for side in ("ours", "d3rlpy_default", "d3rlpy_equal_samples"):
        report[f"{side}_updates_per_s"] = None
    report.update(dict.fromkeys(RATIOS))
    # name -> (run n updates -> rate, describe the run)
    sides: dict[str, tuple[Callable[[int], float], Callable[[], dict[str, Any]]]] = {}
    workers: list[D3rlpyWorker] = []

    if args.skip_ours:
        report["ours_not_measured"] = "--skip-ours"
    else:
        try:
            sides["ours"] = build_ours(overrides)
        except Exception as exc:
            log(traceback.format_exc())
            report["ours_not_measured"] = f"{type(exc).__name__}: {exc}"

    python = args.d3rlpy_python or DEFAULT_D3RLPY_PYTHON
    d3rlpy_runs = {
        "d3rlpy_default": None,
        "d3rlpy_equal_samples": our_n_action_samples(overrides),
    }
    for name, samples in d3rlpy_runs.items():
        if args.skip_d3rlpy:
            report[f"{name}_not_measured"] = "--skip-d3rlpy"
        elif not python.exists():
            report[f"{name}_not_measured"] = (
                f"no d3rlpy interpreter at {python} (create .bench-venv with "
                "`pip install torch==2.13.0 d3rlpy==2.8.1` or pass --d3rlpy-python)"
            )
        else:
            try:
                worker = D3rlpyWorker(python, samples)
                workers.append(worker)
                sides[name] = (worker.run, lambda worker=worker: worker.ask("describe"))
            except Exception as exc:
                log(traceback.format_exc())
                report[f"{name}_not_measured"] = f"{type(exc).__name__}: {exc}"

    rates: dict[str, list[float]] = {name: [] for name in sides}
    try:
        for name, (run, _) in sides.items():
            log(f"{name}: {args.warmup} warm-up updates")
            if args.warmup:
                run(args.warmup)
        for round_ in range(args.repeats):  # the sides take turns, one block each
            for name, (run, _) in sides.items():
                rates[name].append(run(args.steps))
            log(f"round {round_ + 1}: " + ", ".join(f"{n} {r[-1]:.1f}/s" for n, r in rates.items()))
        for name, (_, describe) in sides.items():
            report[f"{name}_updates_per_s"] = statistics.median(rates[name])
            report[f"{name}_block_rates"] = rates[name]
            report.update({f"{name}_{k}": v for k, v in describe().items()})
    finally:
        for worker in workers:
            worker.close()

    report["workload"] = summarize_workload(report)
    for ratio, (numerator, denominator) in RATIOS.items():
        if numerator in rates and denominator in rates:
            per_round = [a / b for a, b in zip(rates[numerator], rates[denominator], strict=True)]
            report[f"{ratio}_per_round"] = per_round
            report[ratio] = statistics.median(per_round)
    return report


def summarize_workload(report: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide the cost of one update, side by side."""
    summary: dict[str, Any] = {}
    ours = report.get("ours_config")
    if ours:
        summary["ours"] = {
            "imitator": ours["imitator_type"],
            "target_action_samples": ours["n_action_samples"],
            "mmd_action_samples": ours["n_action_samples"],
            "mmd_kernel": ours["mmd_kernel"],
            "update_actor_interval": ours["update_actor_interval"],
            "rl_start_epoch": ours["rl_start_epoch"],
        }
    for name in ("d3rlpy_default", "d3rlpy_equal_samples"):
        theirs = report.get(f"{name}_config")
        if theirs:
            summary[name] = {
                "imitator": "vae",
                "target_action_samples": theirs["n_target_samples"],
                "mmd_action_samples": theirs["n_mmd_action_samples"],
                "mmd_kernel": theirs["mmd_kernel"],
                "warmup_steps": theirs["warmup_steps"],
            }
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with stdout_to_stderr() as result_stream:
        if args.d3rlpy_worker:
            serve_d3rlpy_worker(result_stream, args.d3rlpy_samples)
            return 0
        result_stream.write(json.dumps(benchmark(args)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

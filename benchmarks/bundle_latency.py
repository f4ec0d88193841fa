"""Serving latency: the torch-free bundle runtime (onnxruntime) next to BEAR's torch methods.

A BEAR with [256, 256] hidden units and 2 critics (observation size 17, action size 6) is fitted
for a few gradient steps on random data, so that its scalers are fitted and baked into the
graphs, and exported to a bundle in a temporary directory. Then, in the same process, after a
warm-up, each call is timed alone with time.perf_counter:

    predict                     bundle.predict vs BEAR.predict, batches of 1 and 1024
    predict_value_with_std      bundle.predict_value(with_std=True) vs BEAR's, batch 1
    sample_action               bundle.sample_action vs BEAR.sample_action, batch 1
    ood_predict_batch_1         bundle.predict alone vs bundle.predict plus the bundle's
                                out-of-distribution flag (score and threshold), batch 1: the
                                cost `"ood": true` adds to a predict call (detector calibrated
                                on 8000 rows: 2000 reference rows)

Both sides use one thread (torch.set_num_threads(1); onnxruntime intra-op threads 1, the
runtime's default). Repetitions alternate between the two sides in rounds, so that drift on a
shared machine hits both alike. Inputs are float32 C-contiguous arrays, as a server passes them.

    .venv/bin/python benchmarks/bundle_latency.py [--reps-1 2000] [--reps-1024 200]

Prints exactly one JSON line on stdout (all latencies in microseconds); diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import onnx
import onnxruntime as ort
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import bear_core  # noqa: E402
from bear_core import BEAR  # noqa: E402
from bear_core.bundle import PolicyBundle, load_bundle  # noqa: E402
from bear_core.bundle.ood import flagged  # noqa: E402
from bear_core.dataset import MDPDataset  # noqa: E402

THREADS = 1
HIDDEN_UNITS = [256, 256]
N_CRITICS = 2
OBSERVATION_SIZE = 17
ACTION_SIZE = 6
ROUNDS = 5
PARITY_ATOL = 1e-5
SEED = 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[TextIO]:
    """Keep library chatter (export warnings, progress) off stdout, which holds the JSON line."""
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield saved
    finally:
        sys.stdout = saved


def random_dataset(n: int = 8000, episode_length: int = 200) -> MDPDataset:
    rng = np.random.default_rng(SEED)
    observations = rng.normal(size=(n, OBSERVATION_SIZE)).astype(np.float32)
    actions = rng.uniform(-1.0, 1.0, size=(n, ACTION_SIZE)).astype(np.float32)
    rewards = rng.normal(size=n).astype(np.float32)
    terminals = np.zeros(n, np.float32)
    timeouts = np.zeros(n, np.float32)
    timeouts[episode_length - 1 :: episode_length] = 1.0
    bounds = (np.full(ACTION_SIZE, -1.0, np.float32), np.full(ACTION_SIZE, 1.0, np.float32))
    return MDPDataset(observations, actions, rewards, terminals, timeouts, action_bounds=bounds)


def build(workdir: Path) -> tuple[BEAR, PolicyBundle, float]:
    algo = BEAR(
        batch_size=256,
        encoder_params={"hidden_units": HIDDEN_UNITS},
        n_critics=N_CRITICS,
        n_epochs=1,
        n_steps_per_epoch=5,
        scaler="standard",
        seed=SEED,
    )
    algo.fit(
        random_dataset(),
        run_dir=workdir / "run",
        verbose=False,
        show_progress=False,
        tensorboard=False,
    )
    start = time.perf_counter()
    path = algo.export_bundle(workdir / "bundle")
    export_s = time.perf_counter() - start
    return algo, load_bundle(path, intra_op_threads=THREADS), export_s


def check_parity(algo: BEAR, bundle: PolicyBundle, obs: np.ndarray, act: np.ndarray) -> None:
    """Time nothing that does not compute the same thing."""
    errors = {
        "predict": np.abs(bundle.predict(obs) - algo.predict(obs)).max(),
        "predict_value": max(
            np.abs(a - b).max()
            for a, b in zip(
                bundle.predict_value(obs, act, with_std=True),
                algo.predict_value(obs, act, with_std=True),
                strict=True,
            )
        ),
    }
    for name, error in errors.items():
        if not error <= PARITY_ATOL:
            raise SystemExit(f"{name}: bundle differs from torch by {error:.3g}")


def time_calls(fn: Callable[[], Any], reps: int) -> list[float]:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    us = np.asarray(samples) * 1e6
    return {
        "median": round(float(np.median(us)), 2),
        "p99": round(float(np.percentile(us, 99)), 2),
        "mean": round(float(us.mean()), 2),
        "n": len(samples),
    }


def compare(
    sides: dict[str, Callable[[], Any]], reps: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Warm every side up, then time `reps` calls of each in ROUNDS alternating rounds."""
    for fn in sides.values():
        time_calls(fn, warmup)
    samples: dict[str, list[float]] = {name: [] for name in sides}
    per_round = max(1, reps // ROUNDS)
    for _ in range(ROUNDS):
        for name, fn in sides.items():
            samples[name].extend(time_calls(fn, per_round))
    result = {name: summary(s) for name, s in samples.items()}
    result["speedup_median"] = {
        "torch_over_bundle": round(result["torch"]["median"] / result["bundle"]["median"], 2)
    }
    return result


def with_and_without_ood(
    bundle: PolicyBundle, obs: np.ndarray, reps: int, warmup: int
) -> dict[str, Any]:
    """predict vs predict plus the OOD flag, alternating in ROUNDS; the added cost is the
    difference of the medians (and of the p99s)."""
    detector = bundle.ood
    assert detector is not None

    def with_ood() -> None:
        bundle.predict(obs)
        flagged(detector.score_observations(obs))

    sides = {"predict": lambda: bundle.predict(obs), "predict_with_ood": with_ood}
    for fn in sides.values():
        time_calls(fn, warmup)
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, fn in sides.items():
            samples[name].extend(time_calls(fn, max(1, reps // ROUNDS)))
    result: dict[str, Any] = {name: summary(s) for name, s in samples.items()}
    result["added"] = {
        stat: round(result["predict_with_ood"][stat] - result["predict"][stat], 2)
        for stat in ("median", "p99")
    }
    result["n_reference"] = detector.spec.n_reference
    return result


def versions() -> dict[str, str]:
    return {
        "bear_core": bear_core.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps-1", type=int, default=2000, help="timed calls at batch 1")
    parser.add_argument("--reps-1024", type=int, default=200, help="timed calls at batch 1024")
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()

    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED + 1)
    obs_1024 = rng.normal(size=(1024, OBSERVATION_SIZE)).astype(np.float32)
    act_1024 = rng.uniform(-1.0, 1.0, size=(1024, ACTION_SIZE)).astype(np.float32)
    obs_1, act_1 = obs_1024[:1].copy(), act_1024[:1].copy()

    with stdout_to_stderr() as stdout, tempfile.TemporaryDirectory() as tmp:
        log("fitting and exporting ...")
        algo, bundle, export_s = build(Path(tmp))
        check_parity(algo, bundle, obs_1024, act_1024)
        log("timing ...")
        results = {
            "predict_batch_1": compare(
                {"bundle": lambda: bundle.predict(obs_1), "torch": lambda: algo.predict(obs_1)},
                args.reps_1,
                args.warmup,
            ),
            "predict_batch_1024": compare(
                {
                    "bundle": lambda: bundle.predict(obs_1024),
                    "torch": lambda: algo.predict(obs_1024),
                },
                args.reps_1024,
                max(5, args.warmup // 10),
            ),
            "predict_value_with_std_batch_1": compare(
                {
                    "bundle": lambda: bundle.predict_value(obs_1, act_1, with_std=True),
                    "torch": lambda: algo.predict_value(obs_1, act_1, with_std=True),
                },
                args.reps_1,
                args.warmup,
            ),
            "sample_action_batch_1": compare(
                {
                    "bundle": lambda: bundle.sample_action(obs_1),
                    "torch": lambda: algo.sample_action(obs_1),
                },
                args.reps_1,
                args.warmup,
            ),
            "ood_predict_batch_1": with_and_without_ood(bundle, obs_1, args.reps_1, args.warmup),
        }
    record = {
        "benchmark": "bundle_latency",
        "unit": "us",
        "model": {
            "observation_size": OBSERVATION_SIZE,
            "action_size": ACTION_SIZE,
            "hidden_units": HIDDEN_UNITS,
            "n_critics": N_CRITICS,
            "scaler": "standard",
        },
        "threads": {"torch": torch.get_num_threads(), "onnxruntime_intra_op": THREADS},
        "rounds": ROUNDS,
        "results": results,
        "export_s": round(export_s, 2),
        "versions": versions(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }
    print(json.dumps(record), file=stdout, flush=True)


if __name__ == "__main__":
    main()

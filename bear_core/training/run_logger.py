"""Run-directory logging: params.json, one CSV per metric (epoch,step,value), metrics.jsonl,
progress.json and optional TensorBoard events. Every file is rewritten atomically, so a reader
(or a killed trainer) never leaves half a file. The only place that writes training logs, for
BEAR's training loop and the dynamics model's `fit` alike; `run_directory` names and creates the
directory as the reference's `fit` arguments say, `progress_bar` draws the per-epoch bar."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from bear_core.io_utils import atomic_write_json, atomic_write_text

T = TypeVar("T")


def run_directory(
    run_dir: str | Path | None,
    logdir: str | Path,
    experiment_name: str | None,
    with_timestamp: bool,
    default_name: str,
) -> Path:
    """`run_dir` itself when given (created if missing, reused if there); otherwise a new
    `<logdir>/<experiment_name or default_name>[_<YYYYmmddHHMMSS>]`, waiting a second and
    retrying on a clash of timestamps. Without the timestamp an existing directory is refused."""
    if run_dir is not None:
        path = Path(run_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    name = experiment_name or default_name
    while True:
        suffix = f"_{datetime.now().strftime('%Y%m%d%H%M%S')}" if with_timestamp else ""
        path = Path(logdir) / f"{name}{suffix}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            if not with_timestamp:
                raise ValueError(
                    f"experiment_name={name!r}: {path} already exists (with_timestamp=False)"
                ) from None
            time.sleep(1.0)


def progress_bar(steps: Iterable[T], description: str, show: bool) -> Iterable[T]:
    """`steps` wrapped in a tqdm bar on stderr (cleared when done) when `show`, else as is."""
    if not show:
        return steps
    from tqdm.auto import tqdm  # type: ignore[import-untyped, unused-ignore]

    bar: Iterable[T] = tqdm(steps, desc=description, leave=False)
    return bar


class RunLogger:
    def __init__(self, run_dir: Path, tensorboard: bool, verbose: bool) -> None:
        self.run_dir = run_dir
        self.verbose = verbose
        self.series: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
        self.records: list[dict[str, Any]] = []
        self._load_existing()
        self._writer: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def _load_existing(self) -> None:
        """Continue the series of a resumed run instead of overwriting them."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            record = json.loads(line)
            self.records.append(record)
            for name, value in record["metrics"].items():
                self.series[name].append((record["epoch"], record["step"], value))

    def write_params(self, params: dict[str, Any]) -> None:
        atomic_write_json(self.run_dir / "params.json", params)

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        record = {"epoch": epoch, "step": step, "time": time.time(), "metrics": metrics}
        self.records.append(record)
        for name, value in metrics.items():
            self.series[name].append((epoch, step, value))
            rows = "".join(f"{e},{s},{v!r}\n" for e, s, v in self.series[name])
            atomic_write_text(self.run_dir / f"{name}.csv", rows)
            if self._writer is not None:
                self._writer.add_scalar(f"metrics/{name}", value, step)
        atomic_write_text(
            self.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.records)
        )
        if self._writer is not None:
            self._writer.flush()
        if self.verbose:
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            print(f"epoch={epoch} step={step} {shown}", flush=True)

    def write_progress(self, **progress: Any) -> None:
        atomic_write_json(self.run_dir / "progress.json", dict(progress, time=time.time()))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

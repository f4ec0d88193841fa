"""Which checkpoint a run keeps: the held-out split, checkpoint retention and the OPE selection.

- `holdout_split`: a seeded, episode-level split of the training episodes; the held-out ones are
  never trained on.
- `prune_checkpoints`: keeps the newest `keep` `model_<epoch>.pt` files of a run directory. The
  training loop calls it only after the new file has been written (atomically), so a kill at any
  point leaves at least `keep` good files.
- `Selection`: with `select="ope"`, the policy at each of `select_candidates` epochs, evenly
  spaced over the run and always including the last, is scored on the held-out episodes by
  fitted Q evaluation (`bear_core.ope.estimate_policy_value`); the best so far is
  `model_best.pt`, and `selection.json` records every candidate, the choice and why. With
  `select="last"` and a holdout, only the last epoch is scored: the estimate the bundle's
  manifest carries as `evaluation`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bear_core.dataset import Episode
from bear_core.io_utils import atomic_write_json
from bear_core.ope import estimate_policy_value

if TYPE_CHECKING:
    from bear_core.bear.algo import BEAR

BEST = "model_best.pt"
SELECTION = "selection.json"
SELECTS = ("last", "ope")
DEFAULT_KEEP_CHECKPOINTS = 5
DEFAULT_SELECT_CANDIDATES = 5
DEFAULT_FQE_STEPS = 3000
_MODEL_FILE = re.compile(r"^model_(\d+)\.pt$")

Estimator = Callable[..., Any]


@dataclass(frozen=True)
class SelectOptions:
    """fit's selection and retention arguments, validated (ValueError naming the argument)."""

    holdout: float = 0.0
    select: str = "last"
    keep_checkpoints: int | None = DEFAULT_KEEP_CHECKPOINTS
    select_candidates: int = DEFAULT_SELECT_CANDIDATES
    fqe_steps: int = DEFAULT_FQE_STEPS
    holdout_seed: int | None = None

    def __post_init__(self) -> None:
        holdout = self.holdout
        if isinstance(holdout, bool) or not isinstance(holdout, int | float):
            raise ValueError(f"holdout must be a number in [0, 1), got {holdout!r}")
        if not 0.0 <= holdout < 1.0:
            raise ValueError(f"holdout must lie in [0, 1), got {holdout!r}")
        if self.select not in SELECTS:
            raise ValueError(f"select must be one of {list(SELECTS)}, got {self.select!r}")
        if self.select == "ope" and holdout == 0.0:
            raise ValueError(
                "select='ope' needs held-out episodes to score the candidates on: set holdout > 0"
            )
        if self.keep_checkpoints is not None and not _is_count(self.keep_checkpoints):
            raise ValueError(
                f"keep_checkpoints must be an int >= 1 or None, got {self.keep_checkpoints!r}"
            )
        for name in ("select_candidates", "fqe_steps"):
            if not _is_count(getattr(self, name)):
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        seed = self.holdout_seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"holdout_seed must be an int >= 0 or None, got {seed!r}")

    @property
    def scores(self) -> bool:
        """Whether the run scores anything on held-out episodes."""
        return self.holdout > 0.0


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def holdout_split(
    episodes: Sequence[Episode], holdout: float, seed: int
) -> tuple[list[Episode], list[Episode]]:
    """(train, held_out): ceil(holdout * n) episodes held out, at least one on each side, drawn
    by a generator seeded with `seed`; both keep the data's order. holdout=0 holds out none."""
    episodes = list(episodes)
    if holdout == 0.0:
        return episodes, []
    n = len(episodes)
    if n < 2:
        raise ValueError(
            f"holdout={holdout} needs at least one held-out and one training episode, but "
            f"there are {n} episode(s)"
        )
    held = set(holdout_indices(n, holdout, seed))
    return (
        [e for i, e in enumerate(episodes) if i not in held],
        [e for i, e in enumerate(episodes) if i in held],
    )


def holdout_indices(n: int, holdout: float, seed: int) -> list[int]:
    """The positions, ascending, of the episodes `holdout_split` holds out of `n` (n >= 2)."""
    n_held = min(max(math.ceil(n * holdout), 1), n - 1)
    return sorted(np.random.default_rng(seed).permutation(n)[:n_held].tolist())


def episodes_sha256(episodes: Sequence[Episode]) -> str:
    """sha256 of the episodes' transitions, in order: what tells one held-out set from another
    (the same episodes read again from the same file give the same digest)."""
    digest = hashlib.sha256()
    for episode in episodes:
        digest.update(f"{len(episode)},{int(episode.timeout)};".encode())
        for array in (
            episode.observations,
            episode.actions,
            episode.rewards,
            episode.next_observations,
            episode.terminals,
        ):
            digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()


def prune_checkpoints(directory: Path, keep: int | None) -> list[Path]:
    """Delete all but the `keep` highest-numbered model_<epoch>.pt files (None keeps all);
    returns the deleted paths. model_best.pt and checkpoint.pt are never touched."""
    if keep is None:
        return []
    numbered = sorted(
        (int(match.group(1)), path)
        for path in directory.iterdir()
        if (match := _MODEL_FILE.match(path.name))
    )
    doomed = [path for _, path in numbered[:-keep]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def candidate_epochs(n_epochs: int, n_candidates: int) -> list[int]:
    """`n_candidates` epochs evenly spaced over 1..n_epochs, the last one always among them."""
    count = min(n_candidates, n_epochs)
    return sorted({math.ceil(n_epochs * i / count) for i in range(1, count + 1)})


class Selection:
    """The candidates scored so far, persisted in selection.json after each one, so a resumed
    run keeps them. `model_best.pt` always holds the best candidate so far."""

    def __init__(
        self,
        directory: Path,
        options: SelectOptions,
        held_out: Sequence[Episode],
        dataset_sha256: str,
        n_epochs: int,
        seed: int,
        estimator: Estimator | None = None,
    ) -> None:
        self.directory = directory
        self.options = options
        self.held_out = list(held_out)
        self.dataset_sha256 = dataset_sha256
        self.n_epochs = n_epochs
        self.seed = seed
        self.estimator = estimator or estimate_policy_value
        if options.select == "ope":
            self.epochs = candidate_epochs(n_epochs, options.select_candidates)
        else:
            self.epochs = [n_epochs]
        self.candidates = self._recorded()

    def _recorded(self) -> list[dict[str, Any]]:
        """Candidates of this run already scored (a resumed run), when the record matches."""
        try:
            raw = json.loads((self.directory / SELECTION).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return []
        same = (
            raw.get("select") == self.options.select
            and raw.get("dataset_sha256") == self.dataset_sha256
            and raw.get("n_steps_fqe") == self.options.fqe_steps
            and raw.get("n_episodes") == len(self.held_out)
        )
        if not same or not (self.directory / BEST).exists():
            return []
        return list(raw.get("candidates", []))

    def wants(self, epoch: int) -> bool:
        return epoch in self.epochs and all(c["epoch"] != epoch for c in self.candidates)

    def score(self, algo: BEAR) -> dict[str, Any]:
        """Score the algo's current policy on the held-out episodes; keep it as model_best.pt
        when it beats every earlier candidate; rewrite selection.json."""
        result = self.estimator(algo, self.held_out, n_steps=self.options.fqe_steps, seed=self.seed)
        candidate = {
            "epoch": algo.epoch,
            "estimate": float(result.estimate),
            "ci": [float(result.ci[0]), float(result.ci[1])],
            "seconds": float(result.seconds),
        }
        self.candidates.append(candidate)
        if self.best() is candidate:
            algo.provenance["evaluation"] = self.evaluation(candidate)
            try:
                algo.save_model(self.directory / BEST)
            finally:
                del algo.provenance["evaluation"]
        self.write()
        return candidate

    def best(self) -> dict[str, Any] | None:
        """The kept candidate: with select="ope" the highest estimate (the earlier epoch on a
        tie), with select="last" the latest."""
        if not self.candidates:
            return None
        if self.options.select == "last":
            return max(self.candidates, key=lambda c: c["epoch"])
        return max(self.candidates, key=lambda c: (c["estimate"], -c["epoch"]))

    def evaluation(self, candidate: dict[str, Any]) -> dict[str, Any]:
        """What the manifest's `evaluation` says about the candidate's policy."""
        return {
            "method": "fqe",
            "estimate": candidate["estimate"],
            "ci": list(candidate["ci"]),
            "n_episodes": len(self.held_out),
            "dataset_sha256": self.dataset_sha256,
        }

    def record(self) -> dict[str, Any]:
        best = self.best()
        return {
            "select": self.options.select,
            "method": "fqe",
            "chosen_epoch": None if best is None else best["epoch"],
            "reason": self.reason(),
            "candidates": sorted(self.candidates, key=lambda c: c["epoch"]),
            "candidate_epochs": self.epochs,
            "complete": any(c["epoch"] == self.n_epochs for c in self.candidates),
            "n_episodes": len(self.held_out),
            "dataset_sha256": self.dataset_sha256,
            "n_steps_fqe": self.options.fqe_steps,
        }

    def write(self) -> None:
        atomic_write_json(self.directory / SELECTION, self.record())

    def reason(self) -> str:
        """One sentence: which epoch is kept and why."""
        best = self.best()
        n = len(self.held_out)
        if best is None:
            return "no candidate scored yet"
        if self.options.select == "last":
            return (
                f"select='last' keeps the last epoch {best['epoch']}; its FQE estimate on {n} "
                f"held-out episodes is {_value(best)}"
            )
        last = max(self.candidates, key=lambda c: c["epoch"])
        scored = f"{len(self.candidates)} candidate epochs"
        if best is last:
            return (
                f"the last epoch {best['epoch']} has the highest FQE estimate on {n} held-out "
                f"episodes among {scored}: {_value(best)}"
            )
        return (
            f"epoch {best['epoch']} has the highest FQE estimate on {n} held-out episodes among "
            f"{scored}: {_value(best)} vs the latest epoch {last['epoch']}: {_value(last)}"
        )


def _value(candidate: dict[str, Any]) -> str:
    low, high = candidate["ci"]
    return f"{candidate['estimate']:.4g} [ci {low:.4g}, {high:.4g}]"

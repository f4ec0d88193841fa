"""Held-out split, checkpoint retention and checkpoint selection in `fit`, with a fake value
estimator (fitted Q evaluation itself is tested with bear_core.ope)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bear_core import BEAR
from bear_core.dataset import Episode, MDPDataset
from bear_core.training import selection as selection_module
from bear_core.training.loop import fitter
from bear_core.training.selection import (
    SelectOptions,
    candidate_epochs,
    holdout_indices,
    holdout_split,
    prune_checkpoints,
)
from tests.conftest import TINY, make_dataset

QUIET: dict[str, Any] = {"verbose": False, "show_progress": False, "tensorboard": False}
OBS = np.random.default_rng(7).normal(size=(16, 5)).astype(np.float32)


@dataclass(frozen=True)
class FakeEstimate:
    estimate: float
    ci: tuple[float, float]
    seconds: float = 0.0


class FakeEstimator:
    """A value per epoch; records what it was asked to score."""

    def __init__(self, values: dict[int, float]) -> None:
        self.values = values
        self.calls: list[tuple[int, int, int]] = []

    def __call__(
        self, algo: BEAR, episodes: Sequence[Episode], n_steps: int, seed: int
    ) -> FakeEstimate:
        self.calls.append((algo.epoch, len(episodes), n_steps))
        value = self.values[algo.epoch]
        return FakeEstimate(value, (value - 1.0, value + 1.0))


def fit(
    dataset: MDPDataset | list[Episode], run: Path, n_epochs: int, **kwargs: Any
) -> tuple[BEAR, list[int]]:
    algo = BEAR(**{**TINY, "n_epochs": n_epochs})
    epochs = [e for e, _ in fitter(algo, dataset, run_dir=run, **QUIET, **kwargs)]
    return algo, epochs


def model_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.glob("model_*.pt"))


# --- the split -----------------------------------------------------------------------------------


def test_holdout_split_is_by_episode_seeded_and_disjoint() -> None:
    episodes = list(make_dataset(n_episodes=10).episodes)
    train, held = holdout_split(episodes, 0.25, seed=3)
    assert (len(train), len(held)) == (7, 3)
    ids = [id(e) for e in episodes]
    assert sorted(ids.index(id(e)) for e in train + held) == list(range(10))  # whole episodes
    assert {id(e) for e in train}.isdisjoint(id(e) for e in held)
    assert [id(e) for e in holdout_split(episodes, 0.25, seed=3)[1]] == [id(e) for e in held]
    others = {tuple(id(e) for e in holdout_split(episodes, 0.25, seed=s)[1]) for s in range(8)}
    assert len(others) > 1  # the seed picks them
    assert holdout_split(episodes, 0.0, seed=3) == (episodes, [])
    assert [len(side) for side in holdout_split(episodes, 0.01, seed=0)] == [9, 1]
    assert [len(side) for side in holdout_split(episodes, 0.99, seed=0)] == [1, 9]


def test_holdout_needs_two_episodes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holdout"):
        holdout_split(list(make_dataset(n_episodes=1).episodes), 0.5, seed=0)
    with pytest.raises(ValueError, match="holdout"):
        fit(make_dataset(n_episodes=1), tmp_path / "run", 1, holdout=0.5)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"holdout": 1.0}, "holdout"),
        ({"holdout": -0.1}, "holdout"),
        ({"holdout": True}, "holdout"),
        ({"holdout": "0.1"}, "holdout"),
        ({"select": "best"}, "select"),
        ({"select": "ope"}, "select"),  # without a holdout
        ({"keep_checkpoints": 0}, "keep_checkpoints"),
        ({"keep_checkpoints": 2.0}, "keep_checkpoints"),
        ({"select_candidates": 0}, "select_candidates"),
        ({"fqe_steps": 0}, "fqe_steps"),
        ({"holdout_seed": -1}, "holdout_seed"),
        ({"holdout_seed": 1.0}, "holdout_seed"),
    ],
)
def test_bad_options_raise_value_error_naming_them(
    kwargs: dict[str, Any], name: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=name):
        SelectOptions(**kwargs)
    with pytest.raises(ValueError, match=name):
        BEAR(**TINY).fit(make_dataset(), run_dir=tmp_path / "run", **QUIET, **kwargs)
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_candidate_epochs_are_evenly_spaced_and_end_with_the_last() -> None:
    assert candidate_epochs(10, 5) == [2, 4, 6, 8, 10]
    assert candidate_epochs(1000, 5) == [200, 400, 600, 800, 1000]
    assert candidate_epochs(7, 3) == [3, 5, 7]
    assert candidate_epochs(3, 5) == [1, 2, 3]
    assert candidate_epochs(9, 1) == [9]


# --- retention -----------------------------------------------------------------------------------


def test_prune_keeps_the_newest_k_and_never_the_others(tmp_path: Path) -> None:
    for name in ("model_1.pt", "model_2.pt", "model_10.pt", "model_9.pt", "model_best.pt",
                 "checkpoint.pt", ".model_11.pt.abc.tmp", "model_x.pt"):  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    deleted = prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in deleted) == ["model_1.pt", "model_2.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".model_11.pt.abc.tmp", "checkpoint.pt", "model_10.pt", "model_9.pt", "model_best.pt",
        "model_x.pt",
    ]  # fmt: skip
    assert prune_checkpoints(tmp_path, None) == []


def test_fit_keeps_the_last_k_checkpoints(tmp_path: Path) -> None:
    _, epochs = fit(make_dataset(), tmp_path / "k2", 5, keep_checkpoints=2)
    assert epochs == [1, 2, 3, 4, 5]
    assert model_files(tmp_path / "k2") == ["model_4.pt", "model_5.pt"]
    fit(make_dataset(), tmp_path / "all", 3, keep_checkpoints=None)
    assert model_files(tmp_path / "all") == ["model_1.pt", "model_2.pt", "model_3.pt"]
    fit(make_dataset(), tmp_path / "interval", 6, keep_checkpoints=2, save_interval=2)
    assert model_files(tmp_path / "interval") == ["model_4.pt", "model_6.pt"]


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


@pytest.mark.parametrize("where", ["while writing", "after writing, before pruning"])
def test_a_kill_never_leaves_fewer_than_k_good_checkpoints(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    save_model = BEAR.save_model

    def save_then_maybe_die(self: BEAR, fname: str | Path) -> None:
        if Path(fname).name == "model_4.pt":
            if where == "while writing":
                Path(fname).with_name(".model_4.pt.half.tmp").write_bytes(b"half")
                raise Killed
            save_model(self, fname)
            raise Killed
        save_model(self, fname)

    monkeypatch.setattr(BEAR, "save_model", save_then_maybe_die)
    with pytest.raises(Killed):
        fit(make_dataset(), run, 5, keep_checkpoints=2)
    expected = ["model_2.pt", "model_3.pt"] + (["model_4.pt"] if where.startswith("after") else [])
    assert model_files(run) == expected
    for name in expected:
        loaded = BEAR()
        loaded.load_model(run / name)
        assert loaded.epoch == int(name[6:-3])


# --- selection -----------------------------------------------------------------------------------


def test_select_ope_keeps_the_candidate_with_the_highest_estimate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    estimator = FakeEstimator({2: -5.0, 4: -1.5, 6: -3.0, 8: -9.0})
    dataset = make_dataset(n_episodes=8)
    algo, epochs = fit(
        dataset, run, 8, holdout=0.25, select="ope", select_candidates=4,
        keep_checkpoints=None, fqe_steps=7, estimator=estimator,
    )  # fmt: skip
    assert epochs == list(range(1, 9))
    assert estimator.calls == [(2, 2, 7), (4, 2, 7), (6, 2, 7), (8, 2, 7)]
    record = json.loads((run / "selection.json").read_text())
    assert record["select"] == "ope" and record["method"] == "fqe"
    assert record["chosen_epoch"] == 4 and record["complete"] is True
    assert [c["epoch"] for c in record["candidates"]] == [2, 4, 6, 8]
    assert [c["estimate"] for c in record["candidates"]] == [-5.0, -1.5, -3.0, -9.0]
    assert record["candidates"][1]["ci"] == [-2.5, -0.5]
    assert (record["n_episodes"], record["n_steps_fqe"]) == (2, 7)
    assert record["dataset_sha256"] == dataset.checksum()
    assert record["reason"].startswith("epoch 4 has the highest FQE estimate on 2 held-out")
    assert "-1.5" in record["reason"] and "latest epoch 8: -9" in record["reason"]

    # the returned model is epoch 4's, as model_4.pt and model_best.pt hold it
    assert algo.epoch == 4
    reference = BEAR()
    reference.load_model(run / "model_4.pt")
    np.testing.assert_array_equal(algo.predict(OBS), reference.predict(OBS))
    assert algo.provenance["evaluation"] == {
        "method": "fqe", "estimate": -1.5, "ci": [-2.5, -0.5], "n_episodes": 2,
        "dataset_sha256": dataset.checksum(),
    }  # fmt: skip
    assert algo.provenance["holdout_episodes"] == 2 and algo.provenance["n_episodes"] == 6
    last = BEAR()
    last.load_model(run / "checkpoint.pt")  # the resume point stays the last epoch
    assert last.epoch == 8 and "evaluation" not in last.provenance


def test_select_ope_retention_keeps_k_plus_the_best(tmp_path: Path) -> None:
    run = tmp_path / "run"
    estimator = FakeEstimator({1: 0.0, 2: 5.0, 3: 1.0, 4: 2.0, 5: 3.0})
    algo, _ = fit(
        make_dataset(), run, 5, holdout=0.3, select="ope", keep_checkpoints=1, estimator=estimator
    )
    assert model_files(run) == ["model_5.pt", "model_best.pt"]
    best = BEAR()
    best.load_model(run / "model_best.pt")
    assert best.epoch == algo.epoch == 2
    np.testing.assert_array_equal(best.predict(OBS), algo.predict(OBS))


def test_select_last_with_a_holdout_trains_on_the_rest_and_scores_only_the_last(
    tmp_path: Path,
) -> None:
    dataset = make_dataset()
    estimator = FakeEstimator({3: -2.0})
    algo, _ = fit(dataset, tmp_path / "held", 3, holdout=0.3, estimator=estimator)
    assert estimator.calls == [(3, 2, selection_module.DEFAULT_FQE_STEPS)]
    record = json.loads((tmp_path / "held" / "selection.json").read_text())
    assert record["chosen_epoch"] == 3 and record["select"] == "last"
    assert record["reason"].startswith("select='last' keeps the last epoch 3")
    assert algo.epoch == 3 and algo.provenance["evaluation"]["estimate"] == -2.0

    train, _ = holdout_split(list(dataset.episodes), 0.3, seed=0)
    plain, _ = fit(train, tmp_path / "plain", 3, action_bounds=dataset.action_bounds)
    np.testing.assert_array_equal(algo.predict(OBS), plain.predict(OBS))  # the same training


def test_holdout_seed_holds_out_and_scores_alike_whatever_the_bear_seed(tmp_path: Path) -> None:
    dataset = make_dataset(n_episodes=10)
    held: dict[tuple[int, int | None], list[int]] = {}
    for seed in (0, 1):
        for holdout_seed in (None, 7):
            algo = BEAR(**{**TINY, "n_epochs": 1, "seed": seed})
            run = tmp_path / f"{seed}-{holdout_seed}"
            scored = fitter(algo, dataset, run_dir=run, holdout=0.3, holdout_seed=holdout_seed,
                            estimator=FakeEstimator({1: 0.0}), **QUIET)  # fmt: skip
            assert [epoch for epoch, _ in scored] == [1]
            record = algo.provenance["holdout"]
            assert record["seed"] == record["fqe_seed"] == (seed if holdout_seed is None else 7)
            held[seed, holdout_seed] = record["episodes"]
    assert held[0, None] != held[1, None]  # by default the BEAR seed picks them
    assert held[0, 7] == held[1, 7] == holdout_indices(10, 0.3, seed=7)


def test_select_last_without_holdout_scores_nothing_and_writes_no_selection(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "selection.json").write_text("{}")  # an earlier run's choice is dropped
    (run / "model_best.pt").write_bytes(b"old")
    algo, _ = fit(make_dataset(), run, 2, estimator=FakeEstimator({}))
    assert not (run / "selection.json").exists() and not (run / "model_best.pt").exists()
    assert "evaluation" not in algo.provenance and "holdout_episodes" not in algo.provenance
    again, _ = fit(make_dataset(), tmp_path / "all", 2, keep_checkpoints=None)
    np.testing.assert_array_equal(algo.predict(OBS), again.predict(OBS))


def test_a_resumed_run_keeps_the_candidates_it_scored(tmp_path: Path) -> None:
    run = tmp_path / "run"
    values = {2: 4.0, 4: 1.0, 6: 2.0}
    first = FakeEstimator(values)
    algo = BEAR(**{**TINY, "n_epochs": 6})
    options = {"holdout": 0.3, "select": "ope", "select_candidates": 3}
    for epoch, _ in fitter(algo, make_dataset(), run_dir=run, **QUIET, **options,
                           estimator=first):  # fmt: skip
        if epoch == 3:
            break  # the trainer stops after epoch 3
    assert [c[0] for c in first.calls] == [2]
    second = FakeEstimator(values)
    resumed, _ = fit(make_dataset(), run, 6, **options, estimator=second)
    assert [c[0] for c in second.calls] == [4, 6]
    record = json.loads((run / "selection.json").read_text())
    assert [c["epoch"] for c in record["candidates"]] == [2, 4, 6]
    assert record["chosen_epoch"] == resumed.epoch == 2

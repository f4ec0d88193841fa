"""POST /train validation: every bad request is a 422 naming the field or BEAR parameter, and
nothing is queued; the budget mapping; cancel and the job reads on queued jobs (the server runs
no dispatcher, so jobs stay queued)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.core.http_errors import InvalidInput
from service.jobs.job_db import JobSpec
from service.jobs.job_specs import check_eval_env, check_selection, train_command, training_params
from tests.service.serving import (
    ADMIN,
    API_KEY,
    TINY_PARAMS,
    Server,
    running_server,
    submit,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("validation") / "store"
    with running_server(store, BEAR_API_KEYS=API_KEY, BEAR_DISPATCHER="false") as running:
        yield running


BAD: list[tuple[dict[str, Any], str]] = [
    ({"params": {"n_epoch": 3}}, "params.n_epoch: not a BEAR parameter"),
    ({"params": {"batch_size": 0}}, "batch_size must be an int >= 1"),
    ({"params": {"q_func_type": "median"}}, "q_func_type must be one of"),
    ({"params": {"encoder_params": {"hidden": [8]}}}, "encoder_params has unknown keys"),
    ({"params": {"scaler": "zscore"}}, "scaler"),
    ({"params": {"gamma": 1.5}}, "gamma"),
    ({"params": {"augmentation": ["blur"]}}, "augmentation"),
    ({"params": {"dynamics": {"type": "gp"}}}, "dynamics"),
    ({"params": {"use_gpu": 0}}, "params.use_gpu: training on a GPU is disabled"),
    ({"params": {"use_gpu": True}}, "params.use_gpu"),
    ({"params": {"n_steps_per_epoch": -5}}, "n_steps_per_epoch"),
    ({"params": {"seed": 1}, "seed": 2}, "seed: given both"),
    ({"params": {"n_epochs": 1}, "n_steps": 10, "n_epochs": None}, "n_steps: give n_steps or"),
    ({"n_epochs": None}, "n_steps: required"),
    ({"n_epochs": 0}, "n_epochs"),
    ({"n_epochs": "3"}, "n_epochs"),
    ({"model_name": "../escape"}, "model_name"),
    ({"dataset_id": "0123456789abcdef"}, "dataset_id: dataset '0123456789abcdef' not found"),
    ({"dataset_id": "../../etc"}, "dataset_id"),
    ({"eval_env": "Pendulum v1; rm -rf"}, "eval_env"),
    ({"eval_env": "this:Pendulum-v1"}, "eval_env: 'this:Pendulum-v1' would import module 'this'"),
    ({"surprise": True}, "surprise"),
    ({"holdout": 1.0}, "holdout"),
    ({"holdout": True}, "holdout"),
    ({"select": "best"}, "select"),
    ({"select": "ope"}, "select: 'ope' scores checkpoints on held-out episodes"),
    ({"keep_checkpoints": 0}, "keep_checkpoints"),
    ({"select_candidates": 0}, "select_candidates"),
    ({"fqe_steps": 0}, "fqe_steps"),
]


@pytest.mark.parametrize(("change", "named"), BAD, ids=[named for _, named in BAD])
def test_bad_requests_are_422_naming_the_parameter(
    client: httpx.Client, dataset_id: str, change: dict[str, Any], named: str
) -> None:
    body = {"dataset_id": dataset_id, "model_name": "trained", "n_epochs": 1, **change}
    body = {key: value for key, value in body.items() if value is not None}
    response = client.post("/train", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]
    assert client.get("/jobs").json() == {"jobs": []}


def test_train_needs_a_key(client: httpx.Client, dataset_id: str) -> None:
    body = {"dataset_id": dataset_id, "model_name": "trained", "n_epochs": 1}
    assert client.post("/train", json=body).status_code == 401
    wrong = client.post("/train", json=body, headers={"X-API-Key": "nope-nope-nope"})
    assert wrong.status_code == 403


def test_every_reference_parameter_is_accepted(client: httpx.Client, dataset_id: str) -> None:
    params = {
        **TINY_PARAMS,
        "q_func_type": "iqn",
        "n_quantiles": 8,
        "embed_size": 16,
        "bootstrap": True,
        "share_encoder": True,
        "scaler": "standard",
        "augmentation": ["single_amplitude_scaling", {"type": "multiple_amplitude_scaling"}],
        "n_augmentations": 2,
        "dynamics": {"type": "probabilistic_ensemble", "params": {"n_ensembles": 2}},
        "imitator_type": "vae",
        "mmd_kernel": "laplacian",
        "use_gpu": False,
    }
    job = submit(client, dataset_id, params=params, n_steps=12, seed=3, promote=True, resume=True)
    assert job["params"] == {**params, "seed": 3, "n_epochs": 3, "n_steps_per_epoch": 5}
    assert (job["state"], job["progress"], job["promote"], job["resume"]) == (
        "queued",
        0.0,
        True,
        True,
    )
    client.post(f"/jobs/{job['id']}/cancel", headers=ADMIN)


def test_queued_job_reads_and_cancel(client: httpx.Client, dataset_id: str) -> None:
    job = submit(client, dataset_id, n_epochs=2, params=TINY_PARAMS)
    assert client.get(f"/jobs/{job['id']}").json() == job
    assert job["id"] in [j["id"] for j in client.get("/jobs?state=queued").json()["jobs"]]
    log = client.get(f"/jobs/{job['id']}/logs").json()
    assert log == {"offset": 0, "next_offset": 0, "size": 0, "complete": False, "text": ""}
    assert client.get(f"/jobs/{job['id']}/metrics").json() == {"id": job["id"], "series": {}}
    assert client.post(f"/jobs/{job['id']}/cancel").status_code == 401
    cancelled = client.post(f"/jobs/{job['id']}/cancel", headers=ADMIN)
    assert cancelled.status_code == 202
    assert cancelled.json()["state"] == "cancelled" and cancelled.json()["finished_at"]
    again = client.post(f"/jobs/{job['id']}/cancel", headers=ADMIN)
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]
    assert client.get("/jobs/00000000deadbeef").status_code == 404
    assert client.get("/jobs/not-a-job-id").status_code == 422
    assert client.get("/jobs?state=lost").status_code == 422


@pytest.mark.parametrize(
    ("n_steps", "params", "epochs", "per_epoch"),
    [
        (10, {}, 1, 10),
        (1000, {}, 1, 1000),
        (2500, {}, 3, 834),
        (5000, {}, 5, 1000),
        (12, {"n_steps_per_epoch": 5}, 3, 5),
    ],
)
def test_n_steps_become_whole_epochs(
    n_steps: int, params: dict[str, Any], epochs: int, per_epoch: int
) -> None:
    result = training_params(params, n_steps, None, None, allow_gpu=False)
    assert (result["n_epochs"], result["n_steps_per_epoch"]) == (epochs, per_epoch)


def test_gpu_only_when_allowed() -> None:
    with pytest.raises(InvalidInput, match="use_gpu"):
        training_params({"use_gpu": "cuda:0"}, None, 1, None, allow_gpu=False)
    assert training_params({"use_gpu": "cuda:0"}, None, 1, None, allow_gpu=True)["use_gpu"] == (
        "cuda:0"
    )
    assert training_params({"use_gpu": "cpu"}, None, 1, None, allow_gpu=False)["use_gpu"] == "cpu"


def test_eval_env_imports_only_allowed_modules() -> None:
    check_eval_env(None, [])
    check_eval_env("Pendulum-v1", [])
    with pytest.raises(InvalidInput, match="would import module 'this'"):
        check_eval_env("this:Pendulum-v1", [])
    with pytest.raises(InvalidInput, match="would import module 'gym_extra'"):
        check_eval_env("gym_extra:Maze-v0", ["other"])
    check_eval_env("gym_extra:Maze-v0", ["other", "gym_extra"])


def test_selection_options_reach_the_trainer_and_the_job(
    client: httpx.Client, dataset_id: str
) -> None:
    options = {"holdout": 0.4, "select": "ope", "keep_checkpoints": None, "select_candidates": 3,
               "fqe_steps": 50}  # fmt: skip
    job = submit(client, dataset_id, n_epochs=2, params=TINY_PARAMS, **options)
    assert {key: job[key] for key in options} == options and job["selection"] is None
    client.post(f"/jobs/{job['id']}/cancel", headers=ADMIN)
    command = train_command("python", Path("d.h5"), Path("run"), Path("bundle"), JobSpec(
        params={}, **options))  # fmt: skip
    flags = " ".join(command)
    assert "--holdout 0.4 --select ope --keep-checkpoints all --select-candidates 3" in flags
    assert "--fqe-steps 50" in flags
    default = " ".join(train_command("python", Path("d.h5"), Path("run"), Path("b"), JobSpec({})))
    assert "--holdout 0.0 --select last --keep-checkpoints 5" in default


def test_a_holdout_needs_three_episodes() -> None:
    check_selection(0.5, "ope", 3)
    check_selection(0.0, "last", 1)
    with pytest.raises(InvalidInput, match="holdout: the dataset has 2 episode"):
        check_selection(0.5, "last", 2)
    with pytest.raises(InvalidInput, match="select"):
        check_selection(0.0, "ope", 10)

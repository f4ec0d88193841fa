"""Sweeps over real HTTP with the server's dispatcher: a 3-trial sweep runs its trials in
parallel as training jobs, publishes only the trial with the best held-out estimate (promoted),
and records why; bad requests are refused naming the field, nothing queued; cancel stops every
trial and publishes nothing. The same sweep on a real local Ray cluster, promoted through the
gate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.ray_head import running_ray_head
from tests.service.serving import (
    ADMIN,
    API_KEY,
    LONG_PARAMS,
    Server,
    running_server,
    upload_dataset,
    wait_until,
)

pytestmark = pytest.mark.e2e

PARAMS: dict[str, Any] = {
    "batch_size": 32,
    "encoder_params": {"hidden_units": [16, 16]},
    "n_steps_per_epoch": 5,
}
SWEEP: dict[str, Any] = {
    "params": PARAMS,
    "search": {"actor_learning_rate": [1e-4, 1e-3, 3e-3]},
    "seeds": [3],
    "n_epochs": 2,
    "holdout": 0.5,
    "fqe_steps": 20,
    "eval_env": "Pendulum-v1",
    "eval_trials": 1,
}
ENDED = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("sweeps") / "store"
    env = {
        "BEAR_API_KEYS": API_KEY,
        "BEAR_MAX_CONCURRENT_JOBS": "3",
        "BEAR_TRAINER_THREADS": "1",
        "BEAR_MAX_SWEEP_TRIALS": "8",
        "BEAR_CANCEL_GRACE_S": "20",
    }
    with running_server(store, **env) as running:
        yield running


@pytest.fixture(scope="module")
def dataset(server: Server, pendulum_h5: Path) -> str:
    with server.client() as client:
        return str(upload_dataset(client, pendulum_h5)["id"])


def start_sweep(client: httpx.Client, dataset: str, model: str, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/sweeps", json={"dataset_id": dataset, "model_name": model, **body}, headers=ADMIN
    )
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/sweeps/{response.json()['id']}"
    return dict(response.json())


def wait_for_sweep(client: httpx.Client, sweep_id: str, timeout: float = 120.0) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        sweep = client.get(f"/sweeps/{sweep_id}").json()
        return sweep if sweep["state"] in ENDED else None

    return dict(wait_until(ended, timeout, f"sweep {sweep_id}"))


def check_only_the_best_is_published(
    client: httpx.Client, store: Path, sweep: dict[str, Any], model: str
) -> dict[str, Any]:
    """The sweep succeeded and published exactly its best trial; returns that version."""
    assert sweep["state"] == "succeeded", sweep
    trials = sweep["trials"]
    assert [t["state"] for t in trials] == ["succeeded"] * 3
    estimates = [t["estimate"] for t in trials]
    assert all(isinstance(e, float) for e in estimates), trials
    best = max(range(3), key=lambda i: estimates[i])
    assert sweep["best"]["trial"] == best and sweep["best"]["estimate"] == estimates[best]
    assert sweep["best"]["model_version"] == sweep["model_version"] == "1"
    decision = sweep["decision"]
    assert [t["estimate"] for t in decision["trials"]] == estimates
    assert decision["reason"].startswith(f"trial {best} (actor_learning_rate=")

    versions = client.get(f"/models/{model}").json()["versions"]
    assert [v["version"] for v in versions] == ["1"]  # the others were not published
    evaluation = versions[0]["manifest"]["evaluation"]
    assert evaluation["estimate"] == estimates[best]

    jobs = {j["id"]: j for j in client.get("/jobs").json()["jobs"]}
    for trial in trials:
        job = jobs[trial["job"]]
        assert (job["sweep_id"], job["trial_params"]) == (sweep["id"], trial["params"])
        assert job["publish"] is False and job["model_version"] is None
        assert job["holdout_seed"] == sweep["seeds"][0]
        assert job["params"]["actor_learning_rate"] == trial["params"]["actor_learning_rate"]
        assert not (store / "jobs" / trial["job"] / "bundle").exists()
    return dict(versions[0])


def test_a_sweep_publishes_only_its_best_trial(server: Server, dataset: str) -> None:
    with server.client() as client:
        sweep = start_sweep(client, dataset, "swept", promote=True, **SWEEP)
        assert sweep["state"] == "running" and sweep["best"] is None
        assert [t["params"] for t in sweep["trials"]] == [
            {"actor_learning_rate": value, "seed": 3}
            for value in SWEEP["search"]["actor_learning_rate"]
        ]
        done = wait_for_sweep(client, sweep["id"])
        check_only_the_best_is_published(client, server.store, done, "swept")
        assert client.get("/models/swept").json()["production"] == "1"
        assert all(t["environment_return"] is not None for t in done["trials"])
        jobs = [client.get(f"/jobs/{t['job']}").json() for t in done["trials"]]
        assert max(j["started_at"] for j in jobs) < min(j["finished_at"] for j in jobs)  # parallel
        listed = client.get("/sweeps").json()["sweeps"]
        assert [s["id"] for s in listed] == [sweep["id"]]
        refused = client.post(f"/sweeps/{sweep['id']}/cancel", headers=ADMIN)
        assert refused.status_code == 409 and "already succeeded" in refused.json()["error"]

        # promote "if_better" against that production: the gate's evaluation job, then its call
        gated = start_sweep(client, dataset, "swept", promote="if_better",
                            **{**SWEEP, "search": {}, "eval_env": None})  # fmt: skip
        done = wait_for_sweep(client, gated["id"])
        assert done["state"] == "succeeded" and done["model_version"] == "2", done
        promotion = done["promotion"]
        assert promotion["gate"] == "ope" and promotion["decision"] in ("promoted", "refused")
        assert (promotion["candidate"]["version"], promotion["production"]["version"]) == ("2", "1")
        assert None not in (promotion["candidate"]["estimate"], promotion["production"]["estimate"])
        production = client.get("/models/swept").json()["production"]
        assert production == ("2" if promotion["decision"] == "promoted" else "1")
        evaluations = [j for j in client.get("/jobs").json()["jobs"] if j["kind"] == "evaluate"]
        assert [j["state"] for j in evaluations] == ["succeeded"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"search": {"actor_learning_rates": [1e-3]}}, "search.actor_learning_rates"),
        ({"params": {**PARAMS, "n_critic": 2}}, "params.n_critic"),
        ({"search": {"actor_learning_rate": []}}, "search.actor_learning_rate"),
        ({"search": {"actor_learning_rate": [1e-3, 1e-3]}}, "search.actor_learning_rate"),
        ({"search": {"actor_learning_rate": [1e-3, -1.0]}}, "actor_learning_rate"),
        ({"search": {"seed": [1, 2]}}, "search.seed"),
        ({"search": {"gamma": [0.9, 0.99, 0.999]}, "seeds": [0, 1, 2]}, "BEAR_MAX_SWEEP_TRIALS"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"holdout": 0.0}, "holdout"),
        ({"n_epochs": None}, "n_steps"),
        ({"dataset_id": "0123456789abcdef"}, "dataset_id"),
    ],
)
def test_bad_sweeps_are_refused_naming_the_field(
    server: Server, dataset: str, change: dict[str, Any], field: str
) -> None:
    body = {"dataset_id": dataset, "model_name": "refused", **SWEEP, **change}
    with server.client() as client:
        before = len(client.get("/jobs").json()["jobs"])
        response = client.post("/sweeps", json=body, headers=ADMIN)
        assert response.status_code == 422, response.text
        assert field in response.json()["error"], response.text
        assert len(client.get("/jobs").json()["jobs"]) == before
        assert client.post("/sweeps", json=body).status_code == 401


def test_cancel_stops_every_trial_and_publishes_nothing(server: Server, dataset: str) -> None:
    body = {**SWEEP, "params": LONG_PARAMS, "n_epochs": 1000, "eval_env": None}
    body["search"] = {"actor_learning_rate": [1e-4, 1e-3]}
    with server.client() as client:
        sweep = start_sweep(client, dataset, "cancelled", **body)
        trial = sweep["trials"][0]["job"]
        wait_until(
            lambda: client.get(f"/jobs/{trial}").json()["checkpoint"], 60, "a trial's checkpoint"
        )
        accepted = client.post(f"/sweeps/{sweep['id']}/cancel", headers=ADMIN)
        assert accepted.status_code == 202 and accepted.json()["cancel_requested"] is True
        done = wait_for_sweep(client, sweep["id"], timeout=60)
        assert done["state"] == "cancelled" and done["best"] is None, done
        assert done["error"] == "cancelled on request; nothing published"
        assert {t["state"] for t in done["trials"]} == {"cancelled"}
        assert client.get("/models/cancelled").status_code == 404
        assert client.post(f"/sweeps/{sweep['id']}/cancel", headers=ADMIN).status_code == 409


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("ray", reason="ray is not installed (the `train` extra installs it)")
    store = tmp_path_factory.mktemp("ray-sweeps") / "store"
    with (
        running_ray_head() as address,
        running_server(store, BEAR_API_KEYS=API_KEY, BEAR_RAY_ADDRESS=address) as running,
    ):
        yield running


def test_the_same_sweep_on_ray_promotes_its_best_through_the_gate(
    ray_server: Server, pendulum_h5: Path
) -> None:
    with ray_server.client() as client:
        dataset = upload_dataset(client, pendulum_h5)["id"]
        sweep = start_sweep(client, dataset, "swept", promote="if_better", **SWEEP)
        done = wait_for_sweep(client, sweep["id"], timeout=150)
        check_only_the_best_is_published(client, ray_server.store, done, "swept")
        jobs = [client.get(f"/jobs/{t['job']}").json() for t in done["trials"]]
        assert {j["executor"] for j in jobs} == {"ray"}
        assert done["promotion"]["decision"] == "promoted", done["promotion"]
        assert done["promotion"]["reason"] == "no version was in production"
        assert client.get("/models/swept").json()["production"] == "1"

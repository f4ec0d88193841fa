"""Gated promotion over real HTTP, with the server's dispatcher: two versions trained on the
same data with a holdout (one trained a few hundred steps, one a few steps); the worse one is
refused over the better with both estimates, the better one is promoted over the worse, a job
with promote "if_better" goes through the gate, and production never moves while an
evaluation is pending."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bear_core.dataset import MDPDataset
from service.models.model_store import ModelStore
from tests.service.serving import (
    ADMIN,
    API_KEY,
    MODEL,
    Bundle,
    Server,
    fill_store,
    running_server,
    submit,
    upload_dataset,
    wait_for_job,
)

pytestmark = pytest.mark.e2e

GATED = "gated"
NET: dict[str, Any] = {"batch_size": 32, "encoder_params": {"hidden_units": [32, 32]}}
GOOD = {"n_epochs": 1, "params": {**NET, "n_steps_per_epoch": 250}}
BAD = {"n_epochs": 1, "params": {**NET, "n_steps_per_epoch": 5}}
HELD_OUT = {"holdout": 0.5, "fqe_steps": 200}


@pytest.fixture(scope="module")
def bandit_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 episodes of 10 steps whose reward -(a - 1)^2 depends on the action only: a policy
    that learned anything beats one that did not, and FQE sees it after a few steps."""
    rng = np.random.default_rng(0)
    n = 20 * 10
    observations = rng.normal(size=(n, 3)).astype(np.float32)
    actions = rng.uniform(-2.0, 2.0, size=(n, 1)).astype(np.float32)
    rewards = -((actions[:, 0] - 1.0) ** 2)
    timeouts = np.zeros(n, dtype=np.float32)
    timeouts[9::10] = 1.0
    bounds = (np.full(1, -2.0, np.float32), np.full(1, 2.0, np.float32))
    path = tmp_path_factory.mktemp("bandit") / "bandit.h5"
    MDPDataset(
        observations, actions, rewards, np.zeros(n, np.float32), timeouts, action_bounds=bounds
    ).to_hdf5(path)
    return path


@pytest.fixture(scope="module")
def server(bundles: list[Bundle], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("gate") / "store"
    fill_store(store, bundles)  # `pendulum` 1 and 2: bundles without a held-out evaluation
    env = {"BEAR_API_KEYS": API_KEY, "BEAR_MAX_CONCURRENT_JOBS": "2", "BEAR_TRAINER_THREADS": "1"}
    with running_server(store, **env) as running:
        yield running


@pytest.fixture(scope="module")
def dataset(server: Server, bandit_h5: Path) -> dict[str, Any]:
    with server.client() as client:
        return upload_dataset(client, bandit_h5)


@pytest.fixture(scope="module")
def trained(server: Server, dataset: dict[str, Any]) -> dict[str, str]:
    """`gated` versions trained at once: "good" (250 steps, in production) and "bad" (5)."""
    with server.client() as client:
        good = submit(client, dataset["id"], model_name=GATED, promote=True, **GOOD, **HELD_OUT)
        bad = submit(client, dataset["id"], model_name=GATED, **BAD, **HELD_OUT)
        jobs = {label: wait_for_job(client, job["id"], timeout=180.0)
                for label, job in (("good", good), ("bad", bad))}  # fmt: skip
        for job in jobs.values():
            assert job["state"] == "succeeded", job
        assert production(client) == jobs["good"]["model_version"]
    return {label: job["model_version"] for label, job in jobs.items()}


def production(client: httpx.Client) -> str:
    return str(client.get(f"/models/{GATED}").json()["production"])


def promote(client: httpx.Client, version: str, **params: Any) -> httpx.Response:
    return client.post(f"/models/{GATED}/versions/{version}/promote", params=params, headers=ADMIN)


def test_the_worse_is_refused_with_both_estimates_and_the_better_promoted(
    client: httpx.Client, trained: dict[str, str], dataset: dict[str, Any]
) -> None:
    good, bad = trained["good"], trained["bad"]
    pending = promote(client, bad, gate="ope")
    assert pending.status_code == 202, pending.text
    job_id = pending.json()["job"]
    assert pending.headers["location"] == f"/jobs/{job_id}"
    assert pending.json()["promotion"]["decision"] == "pending"
    assert production(client) == good  # nothing moves while the estimates are computed
    detail = client.get(f"/models/{GATED}/versions/{bad}").json()
    assert detail["promotion"]["decision"] == "pending" and detail["promotion"]["job"] == job_id

    job = wait_for_job(client, job_id)
    assert (job["kind"], job["state"]) == ("evaluate", "succeeded"), job
    assert job["evaluate"] == {"candidate": bad, "production": good, "versions": [bad, good]}

    refused = promote(client, bad, gate="ope")
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert set(body) == {"error", "candidate", "production", "margin", "episodes"}
    assert body["candidate"]["version"] == bad and body["production"]["version"] == good
    assert body["candidate"]["estimate"] < body["production"]["estimate"]
    for side in ("candidate", "production"):
        low, high = body[side]["ci"]
        assert low <= body[side]["estimate"] <= high
    assert body["margin"] == 0.0 and "not above the margin" in body["error"]
    assert body["episodes"]["n"] == 9  # half of the 18 episodes the scorers left
    assert body["episodes"]["dataset_sha256"] == dataset["sha256"]
    assert production(client) == good
    recorded = client.get(f"/models/{GATED}/versions/{bad}").json()["promotion"]
    assert recorded["decision"] == "refused" and recorded["gate"] == "ope"
    assert recorded["candidate"] == body["candidate"]
    assert recorded["production"] == body["production"]

    assert promote(client, bad).status_code == 200  # no gate: today's promotion
    assert production(client) == bad
    margin = 1000.0
    too_little = promote(client, good, gate="ope", margin=margin)
    assert too_little.status_code == 409 and too_little.json()["margin"] == margin
    assert production(client) == bad

    promoted = promote(client, good, gate="ope")  # the same held-out set: estimates are kept
    assert promoted.status_code == 200, promoted.text
    decision = promoted.json()["promotion"]
    assert promoted.json()["previous"] == bad and decision["decision"] == "promoted"
    assert decision["candidate"]["estimate"] == body["production"]["estimate"]
    assert decision["production"]["estimate"] == body["candidate"]["estimate"]
    assert production(client) == good


def test_a_job_promoted_if_better_goes_through_the_gate(
    client: httpx.Client, server: Server, trained: dict[str, str], dataset: dict[str, Any]
) -> None:
    promote(client, trained["good"])
    job = submit(client, dataset["id"], model_name=GATED, promote="if_better", **BAD, **HELD_OUT)
    done = wait_for_job(client, job["id"], timeout=120.0)
    assert done["state"] == "succeeded" and done["promote"] == "if_better", done
    version = done["model_version"]
    assert production(client) == trained["good"]
    decision = client.get(f"/models/{GATED}/versions/{version}").json()["promotion"]
    assert decision["decision"] == "refused", decision
    assert decision["candidate"]["estimate"] < decision["production"]["estimate"]
    assert "promotion gate: refused" in client.get(f"/jobs/{job['id']}/logs").json()["text"]


def test_what_the_gate_refuses_to_judge(
    client: httpx.Client, server: Server, trained: dict[str, str], dataset: dict[str, Any]
) -> None:
    ungated = client.post(f"/models/{MODEL}/versions/2/promote?gate=ope", headers=ADMIN)
    assert ungated.status_code == 409 and "cannot be gated" in ungated.json()["error"]
    assert "no held-out evaluation" in ungated.json()["error"]
    for query, field in (("margin=1", "margin"), ("gate=ope&margin=nan", "margin"),
                         ("gate=best", "gate")):  # fmt: skip
        bad = client.post(f"/models/{MODEL}/versions/2/promote?{query}", headers=ADMIN)
        assert bad.status_code == 422 and field in bad.json()["error"], (query, bad.text)
    assert client.get(f"/models/{MODEL}").json()["production"] == "1"

    store = ModelStore(server.store)
    fresh = store.publish("fresh", store.bundle_path(GATED, trained["bad"]))
    first = client.post(f"/models/fresh/versions/{fresh}/promote?gate=ope", headers=ADMIN)
    assert first.status_code == 200, first.text
    assert first.json()["promotion"]["reason"] == "no version was in production"
    assert client.get("/models/fresh").json()["production"] == fresh

    refused = client.post(
        "/train",
        json={"dataset_id": dataset["id"], "model_name": "x", "n_steps": 5, "promote": "if_better"},
        headers=ADMIN,
    )
    assert refused.status_code == 422 and refused.json()["error"].startswith("promote:")

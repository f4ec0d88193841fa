"""Training jobs against a real server with its dispatcher: upload -> train -> succeeded -> a new
version that serves; cancel of a running job (checkpointed) and of a finished one (409);
kill -9 of a trainer (failed, its checkpoint loads, serving goes on)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from bear_core import BEAR
from tests.conftest import OBS_SIZE
from tests.service.serving import (
    ADMIN,
    API_KEY,
    LONG_PARAMS,
    MODEL,
    TINY_PARAMS,
    Bundle,
    Server,
    alive,
    fill_store,
    running_server,
    submit,
    trainer_pid,
    wait_for_job,
)

pytestmark = pytest.mark.e2e

PENDULUM_OBS = [[1.0, 0.0, 0.5], [0.0, 1.0, -2.0]]


@pytest.fixture(scope="module")
def server(bundles: list[Bundle], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`pendulum` (from the bundles fixture) in production, and a dispatcher."""
    store = tmp_path_factory.mktemp("flow") / "store"
    fill_store(store, bundles)
    env = {"BEAR_API_KEYS": API_KEY, "BEAR_CANCEL_GRACE_S": "20"}
    with running_server(store, **env) as running:
        yield running


def serves_the_old_model(client: httpx.Client) -> bool:
    body = {"observations": [[0.1] * OBS_SIZE]}
    return client.post(f"/models/{MODEL}/predict", json=body).status_code == 200


def has_checkpoint(job: dict[str, object]) -> bool:
    return job["state"] == "running" and bool(job["checkpoint"])


def test_upload_train_publish_predict(client: httpx.Client, dataset_id: str) -> None:
    job = submit(client, dataset_id, n_epochs=2, params=TINY_PARAMS, seed=1, promote=True)
    assert job["state"] == "queued"
    done = wait_for_job(client, job["id"])
    assert done["state"] == "succeeded", done
    assert (done["progress"], done["step"], done["total_steps"]) == (1.0, 10, 10)
    assert (done["epoch"], done["n_epochs"], done["exit_code"], done["error"]) == (2, 2, 0, None)
    assert done["started_at"] <= done["finished_at"] and done["heartbeat_at"]
    assert set(done["metrics"]) >= {"critic_loss", "actor_loss", "alpha", "td_error"}
    version = done["model_version"]
    assert version == "1"

    model = client.get("/models/trained").json()
    assert (model["production"], [v["version"] for v in model["versions"]]) == ("1", ["1"])
    provenance = model["versions"][0]["manifest"]["provenance"]
    assert provenance["n_transitions"] <= 1000
    for path in ("/models/trained/predict", f"/models/trained/versions/{version}/predict"):
        predicted = client.post(path, json={"observations": PENDULUM_OBS})
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["version"] == version
        actions = np.asarray(predicted.json()["actions"])
        assert actions.shape == (2, 1) and np.all(np.abs(actions) <= 2.0)

    series = client.get(f"/jobs/{job['id']}/metrics").json()["series"]
    assert series["critic_loss"]["epoch"] == [1, 2] and series["critic_loss"]["step"] == [5, 10]
    assert len(series["critic_loss"]["value"]) == 2

    whole = client.get(f"/jobs/{job['id']}/logs").json()
    assert whole["complete"] and "epoch=2 step=10" in whole["text"]
    assert "published trained version 1 in production" in whole["text"]
    pieces, offset = [], 0
    while True:
        chunk = client.get(f"/jobs/{job['id']}/logs", params={"offset": offset, "limit": 100})
        body = chunk.json()
        pieces.append(body["text"])
        offset = body["next_offset"]
        if body["complete"]:
            break
    assert "".join(pieces) == whole["text"] and offset == whole["size"]

    refused = client.post(f"/jobs/{job['id']}/cancel", headers=ADMIN)
    assert refused.status_code == 409 and "already succeeded" in refused.json()["error"]

    second = submit(client, dataset_id, n_steps=5, params=TINY_PARAMS)
    assert wait_for_job(client, second["id"])["model_version"] == "2"
    assert client.get("/models/trained").json()["production"] == "1"  # promote was not asked


def test_cancel_a_running_job(client: httpx.Client, dataset_id: str) -> None:
    job = submit(client, dataset_id, n_epochs=1000, params=LONG_PARAMS)
    wait_for_job(client, job["id"], has_checkpoint)
    accepted = client.post(f"/jobs/{job['id']}/cancel", headers=ADMIN)
    assert accepted.status_code == 202 and accepted.json()["cancel_requested"] is True
    done = wait_for_job(client, job["id"], timeout=30)
    assert done["state"] == "cancelled", done
    assert done["exit_code"] == 143 and done["checkpoint"] is True
    assert done["error"] == "cancelled on request; checkpoint saved"
    assert 0.0 < done["progress"] < 1.0 and done["model_version"] is None
    assert "SIGTERM" in client.get(f"/jobs/{job['id']}/logs").json()["text"]
    assert client.post(f"/jobs/{job['id']}/cancel", headers=ADMIN).status_code == 409


def test_kill_9_of_the_trainer(client: httpx.Client, server: Server, dataset_id: str) -> None:
    job = submit(client, dataset_id, n_epochs=1000, params=LONG_PARAMS)
    wait_for_job(client, job["id"], has_checkpoint)
    pid = trainer_pid(server.store, job["id"])
    os.kill(pid, signal.SIGKILL)
    done = wait_for_job(client, job["id"], timeout=30)
    assert done["state"] == "failed" and done["exit_code"] == -9
    assert done["error"] == "trainer killed by signal SIGKILL; its last checkpoint is kept"
    assert not alive(pid)

    checkpoint = server.store / "jobs" / job["id"] / "run" / "checkpoint.pt"
    algo = BEAR()
    algo.load_model(checkpoint)
    assert algo.epoch >= 1 and algo.total_step == algo.epoch * LONG_PARAMS["n_steps_per_epoch"]
    assert algo.predict(np.asarray(PENDULUM_OBS, dtype=np.float32)).shape == (2, 1)

    assert serves_the_old_model(client)
    assert client.get("/v2/health/ready").status_code == 200


def test_a_select_ope_job_publishes_the_chosen_checkpoint_with_its_estimate(
    client: httpx.Client, dataset_id: str
) -> None:
    job = submit(
        client, dataset_id, model_name="selected", n_epochs=2, params=TINY_PARAMS,
        holdout=0.5, select="ope", select_candidates=2, fqe_steps=20, keep_checkpoints=1,
    )  # fmt: skip
    assert (job["holdout"], job["select"], job["keep_checkpoints"]) == (0.5, "ope", 1)
    assert job["selection"] is None
    done = wait_for_job(client, job["id"])
    assert done["state"] == "succeeded", done
    selection = done["selection"]
    assert selection["select"] == "ope" and selection["complete"] is True
    assert [c["epoch"] for c in selection["candidates"]] == [1, 2]
    best = max(selection["candidates"], key=lambda c: c["estimate"])
    assert selection["chosen_epoch"] == best["epoch"]
    assert f"epoch {best['epoch']} has the highest FQE estimate" in selection["reason"]

    version = client.get(f"/models/selected/versions/{done['model_version']}").json()
    manifest = version["manifest"]
    assert manifest["provenance"]["epochs"] == best["epoch"]
    assert manifest["evaluation"] == {
        "method": "fqe", "estimate": best["estimate"], "ci": best["ci"],
        "n_episodes": selection["n_episodes"], "dataset_sha256": selection["dataset_sha256"],
    }  # fmt: skip

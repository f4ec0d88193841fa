"""Dataset uploads over HTTP: stored once under their sha256, listed, deleted; every bad file is
refused with a message naming the problem, and nothing of it stays in the store."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest

from tests.service.serving import ADMIN, Server, running_server, submit, upload_dataset

pytestmark = pytest.mark.e2e

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No dispatcher (jobs stay queued) and a small dataset limit."""
    store = tmp_path_factory.mktemp("datasets") / "store"
    env = {"BEAR_DISPATCHER": "false", "BEAR_MAX_DATASET_BYTES": str(LIMIT)}
    with running_server(store, BEAR_API_KEYS="test-admin-key-0123", **env) as running:
        yield running


def stored(server: Server) -> tuple[list[str], list[str]]:
    """The dataset directories and the staging leftovers in the store."""
    return (
        sorted(p.name for p in (server.store / "datasets").iterdir()),
        sorted(p.name for p in (server.store / "tmp").iterdir()),
    )


def test_upload_list_get_delete(client: httpx.Client, server: Server, pendulum_h5: Path) -> None:
    data = pendulum_h5.read_bytes()
    first = client.post("/datasets", files={"file": ("mine.h5", data)}, headers=ADMIN)
    assert first.status_code == 201, first.text
    body = first.json()
    sha = hashlib.sha256(data).hexdigest()
    assert body["id"] == sha[:16] and body["sha256"] == sha
    assert first.headers["location"] == f"/datasets/{body['id']}"
    assert (body["n_transitions"], body["n_episodes"]) == (1000, 5)
    assert (body["observation_shape"], body["action_size"]) == ([3], 1)
    assert body["filename"] == "mine.h5" and body["size_bytes"] == len(data)
    stored_file = server.store / "datasets" / body["id"] / "data.h5"
    assert hashlib.sha256(stored_file.read_bytes()).hexdigest() == sha

    again = client.post("/datasets", files={"file": ("copy.h5", data)}, headers=ADMIN)
    assert again.status_code == 200 and again.json() == body
    assert client.get("/datasets").json() == {"datasets": [body]}
    assert client.get(f"/datasets/{body['id']}").json() == body

    assert client.delete(f"/datasets/{body['id']}").status_code == 401
    assert client.delete(f"/datasets/{body['id']}", headers=ADMIN).status_code == 204
    assert client.get(f"/datasets/{body['id']}").status_code == 404
    assert client.delete(f"/datasets/{body['id']}", headers=ADMIN).status_code == 404
    assert stored(server) == ([], [])


def test_upload_needs_a_key(client: httpx.Client, pendulum_h5: Path) -> None:
    response = client.post("/datasets", files={"file": ("d.h5", pendulum_h5.read_bytes())})
    assert response.status_code == 401


def _rewrite(source: Path, target: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    with h5py.File(source, "r") as f:
        arrays = {key: f[key][()] for key in f}
    change(arrays)
    with h5py.File(target, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)


def _drop_rewards(arrays: dict[str, np.ndarray]) -> None:
    del arrays["rewards"]


def _nan_observation(arrays: dict[str, np.ndarray]) -> None:
    arrays["observations"][7, 1] = np.nan


def _short_actions(arrays: dict[str, np.ndarray]) -> None:
    arrays["actions"] = arrays["actions"][:-3]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_drop_rewards, "missing key 'rewards'"),
        (_nan_observation, "observations"),
        (_short_actions, "actions"),
    ],
    ids=["missing-key", "nan", "mismatched-lengths"],
)
def test_bad_datasets_are_refused_naming_the_problem(
    client: httpx.Client,
    server: Server,
    pendulum_h5: Path,
    tmp_path: Path,
    change: Callable[[dict[str, np.ndarray]], None],
    named: str,
) -> None:
    bad = tmp_path / "bad.h5"
    _rewrite(pendulum_h5, bad, change)
    response = client.post("/datasets", files={"file": ("bad.h5", bad.read_bytes())}, headers=ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error.startswith("file 'bad.h5': ") and named in error, error
    assert str(server.store) not in error
    assert stored(server) == ([], [])


def test_not_hdf5_empty_and_not_multipart(client: httpx.Client, server: Server) -> None:
    text = client.post("/datasets", files={"file": ("notes.txt", b"hello " * 100)}, headers=ADMIN)
    assert text.status_code == 422 and "not an HDF5 file" in text.json()["error"]
    empty = client.post("/datasets", files={"file": ("e.h5", b"")}, headers=ADMIN)
    assert empty.status_code == 422 and "empty" in empty.json()["error"]
    other_field = client.post("/datasets", files={"data": ("d.h5", b"x")}, headers=ADMIN)
    assert other_field.status_code == 422 and other_field.json()["error"].startswith("file:")
    raw = client.post("/datasets", content=b"\x89HDF", headers=ADMIN)
    assert raw.status_code == 422 and "multipart/form-data" in raw.json()["error"]
    assert stored(server) == ([], [])


def test_over_the_size_limit(client: httpx.Client, server: Server) -> None:
    big = b"\0" * (LIMIT + 1)
    declared = client.post("/datasets", files={"file": ("big.h5", big)}, headers=ADMIN)
    assert declared.status_code == 413 and f"{LIMIT}-byte limit" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies as bytes arrive
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.h5"\r\n\r\n'
        for _ in range(2 * LIMIT // 8192):
            yield b"\0" * 8192
        yield b"\r\n--b--\r\n"

    streamed = client.post(
        "/datasets",
        content=chunks(),
        headers={**ADMIN, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert streamed.status_code == 413 and "limit" in streamed.json()["error"]
    assert stored(server) == ([], [])


def test_a_dataset_in_use_cannot_be_deleted(
    client: httpx.Client, server: Server, pendulum_h5: Path
) -> None:
    dataset = upload_dataset(client, pendulum_h5)["id"]
    job = submit(client, dataset, n_epochs=1, params={"batch_size": 32})
    assert job["state"] == "queued"  # this server runs no dispatcher
    refused = client.delete(f"/datasets/{dataset}", headers=ADMIN)
    assert refused.status_code == 409 and job["id"] in refused.json()["error"]
    cancelled = client.post(f"/jobs/{job['id']}/cancel", headers=ADMIN)
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
    assert client.delete(f"/datasets/{dataset}", headers=ADMIN).status_code == 204
    gone = client.post(
        "/train",
        json={"dataset_id": dataset, "model_name": "trained", "n_epochs": 1},
        headers=ADMIN,
    )
    assert gone.status_code == 422 and "dataset_id" in gone.json()["error"]

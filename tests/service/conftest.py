"""Fixtures of the serving tests: tiny bundles trained once per session, a shared server, and
a small real Pendulum dataset file for the job tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bear_core import BEAR
from bear_core.bundle import load_bundle
from bear_core.dataset import generate_pendulum_dataset
from service.models.model_store import ModelStore
from tests.conftest import TINY, make_dataset
from tests.service.serving import (
    API_KEY,
    MODEL,
    Bundle,
    Server,
    fill_store,
    running_server,
    upload_dataset,
)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> list[Bundle]:
    """Two bundles of the same tiny task whose outputs differ (different seeds)."""
    root = tmp_path_factory.mktemp("bundles")
    made = []
    for seed in (0, 1):
        algo = BEAR(**TINY, seed=seed)
        with tempfile.TemporaryDirectory() as logdir:
            algo.fit(
                make_dataset(), logdir=logdir, verbose=False, show_progress=False, tensorboard=False
            )
        path = algo.export_bundle(root / f"seed{seed}")
        made.append(Bundle(path, load_bundle(path)))
    return made


@pytest.fixture(scope="session")
def server(bundles: list[Bundle], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server for tests that do not change its store; management needs API_KEY."""
    store = tmp_path_factory.mktemp("shared") / "store"
    fill_store(store, bundles)
    with running_server(store, BEAR_API_KEYS=API_KEY, BEAR_MAX_BATCH="64") as running:
        yield running


@pytest.fixture()
def fresh_store(bundles: list[Bundle], tmp_path: Path) -> Path:
    store = tmp_path / "store"
    fill_store(store, bundles)
    return store


@pytest.fixture()
def corrupt_version(fresh_store: Path) -> str:
    """Version 3 of `pendulum` whose policy graph was altered after publishing."""
    version = ModelStore(fresh_store).publish(MODEL, fresh_store / "models" / MODEL / "1")
    policy = fresh_store / "models" / MODEL / version / "policy.onnx"
    policy.write_bytes(policy.read_bytes()[:-16])
    return version


@pytest.fixture(scope="session")
def pendulum_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 episodes (1000 transitions) of Pendulum-v1 medium data, D4RL format."""
    path = tmp_path_factory.mktemp("datasets") / "pendulum-medium.h5"
    generate_pendulum_dataset("medium", n_episodes=5, seed=0).to_hdf5(path)
    return path


@pytest.fixture()
def client(server: Server) -> Iterator[httpx.Client]:
    """A client of the module's `server` fixture."""
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def dataset_id(server: Server, pendulum_h5: Path) -> str:
    """The Pendulum dataset, uploaded once to the module's server."""
    with server.client() as client:
        return upload_dataset(client, pendulum_h5)["id"]

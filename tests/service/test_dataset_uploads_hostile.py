"""Hostile HDF5 uploads: refused with a 422 naming the key,
quickly, without the serving process's memory growing; and what passes the metadata checks is
read in a memory-limited child, not in the server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hostile_hdf5 import HOSTILE, no_usable_transitions, write_server_file, written_bomb
from tests.service.serving import ADMIN, Server, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that accepts up to 1000x expansion, so that a bomb within the row limit gets
    past the metadata checks and is read by the child."""
    store = tmp_path_factory.mktemp("hostile") / "store"
    env = {"BEAR_DISPATCHER": "false", "BEAR_DATASET_MAX_EXPANSION": "1000"}
    with running_server(store, BEAR_API_KEYS="test-admin-key-0123", **env) as running:
        yield running


@pytest.fixture()
def server_file(tmp_path: Path) -> Path:
    path = tmp_path / "server-secret.h5"
    write_server_file(path)
    return path


def _memory_mib(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def _upload(client: httpx.Client, path: Path) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = client.post(
        "/datasets", files={"file": (path.name, path.read_bytes())}, headers=ADMIN
    )
    return response, time.perf_counter() - started


def _stored(server: Server) -> list[str]:
    return sorted(p.name for p in (server.store / "datasets").iterdir())


def test_the_bomb_is_refused_fast_without_growing_the_server(
    client: httpx.Client, server: Server, server_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "bomb.h5"
    HOSTILE["bomb"][0](path, server_file)
    assert path.stat().st_size < 16 * 1024
    before = _memory_mib(server.process.pid)
    response, elapsed = _upload(client, path)
    after = _memory_mib(server.process.pid)
    assert response.status_code == 422, response.text
    assert "25000000 rows" in response.json()["error"]
    assert elapsed < 2.0, elapsed
    assert after["VmHWM"] - before["VmHWM"] < 100, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < 100, (before, after)
    assert _stored(server) == []


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_uploads_are_refused_naming_the_key(
    client: httpx.Client, server: Server, server_file: Path, tmp_path: Path, name: str
) -> None:
    writer, named = HOSTILE[name]
    path = tmp_path / f"{name}.h5"
    writer(path, server_file)
    before = _memory_mib(server.process.pid)
    response, elapsed = _upload(client, path)
    after = _memory_mib(server.process.pid)
    if name == "written-bomb":  # within 1000x: read by the child, see the test below
        assert response.status_code == 201, response.text
        assert client.delete(f"/datasets/{response.json()['id']}", headers=ADMIN).is_success
    else:
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error.startswith(f"file '{name}.h5': ") and named in error, error
        assert str(server_file) not in error or "external" in error
    assert elapsed < 5.0
    assert after["VmHWM"] - before["VmHWM"] < 100, (before, after)
    assert _stored(server) == []


def test_a_file_past_the_metadata_checks_is_read_outside_the_server(
    client: httpx.Client, server: Server, tmp_path: Path
) -> None:
    """4,000,000 rows of zeros (64 MB declared, ~200 KB of gzip): read in blocks by the child."""
    path = tmp_path / "zeros.h5"
    written_bomb(path, path)
    before = _memory_mib(server.process.pid)
    response, _ = _upload(client, path)
    after = _memory_mib(server.process.pid)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["n_transitions"], body["n_episodes"]) == (3_999_999, 1)
    assert after["VmHWM"] - before["VmHWM"] < 30, (before, after)
    assert client.delete(f"/datasets/{body['id']}", headers=ADMIN).status_code == 204


def test_a_dataset_without_usable_transitions_is_refused(
    client: httpx.Client, server: Server, server_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "none.h5"
    no_usable_transitions(path, server_file)
    response, _ = _upload(client, path)
    assert response.status_code == 422, response.text
    assert "no usable transitions in 20 rows" in response.json()["error"]
    assert _stored(server) == []

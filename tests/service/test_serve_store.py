"""The model store: verified publishing, numbered versions, the production pointer, deletion and
names that cannot leave the store. Also the `python -m service publish` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.core.http_errors import Conflict, InvalidBundle, InvalidInput, NotFound
from service.models.model_store import ModelStore
from tests.service.serving import MODEL, REPO, Bundle


def test_publish_numbers_versions_and_copies_only_the_bundle(
    tmp_path: Path, bundles: list[Bundle]
) -> None:
    source = tmp_path / "src"
    shutil.copytree(bundles[0].path, source)
    (source / "notes.txt").write_text("not part of the bundle")
    store = ModelStore(tmp_path / "store")
    assert store.models() == []
    assert store.publish(MODEL, source) == "1"
    assert store.publish(MODEL, bundles[1].path, promote=True) == "2"
    assert store.versions(MODEL) == ["1", "2"]
    assert store.production(MODEL) == "2"
    assert sorted(p.name for p in store.bundle_path(MODEL, "1").iterdir()) == [
        "critics.onnx", "manifest.json", "ood_reference.npy", "policy.onnx", "sampler.onnx",
    ]  # fmt: skip
    assert list(store.tmp_dir.iterdir()) == []


def test_concurrent_publishers_get_distinct_versions(tmp_path: Path, bundles: list[Bundle]) -> None:
    store = ModelStore(tmp_path / "store")
    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(lambda _: store.publish(MODEL, bundles[0].path), range(4)))
    assert sorted(versions, key=int) == ["1", "2", "3", "4"]


def test_publish_refuses_a_corrupt_bundle(tmp_path: Path, bundles: list[Bundle]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(bundles[0].path, broken)
    data = (broken / "critics.onnx").read_bytes()
    (broken / "critics.onnx").write_bytes(data[:100] + b"\0" + data[101:])
    store = ModelStore(tmp_path / "store")
    with pytest.raises(InvalidBundle, match=r"critics\.onnx"):
        store.publish(MODEL, broken)
    with pytest.raises(InvalidBundle, match="bundle rejected"):
        store.publish(MODEL, tmp_path / "missing")
    assert store.models() == []
    assert list(store.tmp_dir.iterdir()) == []


def test_delete_and_production_rules(tmp_path: Path, bundles: list[Bundle]) -> None:
    store = ModelStore(tmp_path / "store")
    store.publish(MODEL, bundles[0].path, promote=True)
    store.publish(MODEL, bundles[1].path)
    with pytest.raises(Conflict, match="production"):
        store.delete(MODEL, "1")
    store.delete(MODEL, "2")
    assert store.versions(MODEL) == ["1"]
    with pytest.raises(NotFound, match="'2'"):
        store.delete(MODEL, "2")
    with pytest.raises(NotFound, match="'2'"):
        store.set_production(MODEL, "2")
    with pytest.raises(NotFound, match="'other'"):
        store.versions("other")
    assert not any(p.name.startswith(".production") for p in (store.models_dir / MODEL).iterdir())


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a b", "x" * 65])
def test_names_are_checked_before_touching_paths(tmp_path: Path, name: str) -> None:
    store = ModelStore(tmp_path / "store").ensure()
    with pytest.raises(InvalidInput, match="name"):
        store.versions(name)
    with pytest.raises(InvalidInput, match="name"):
        store.publish(name, tmp_path)


@pytest.mark.parametrize("version", ["", "0", "01", "-1", "1.0", "../1", "1/..", "9" * 10])
def test_versions_are_checked_before_touching_paths(tmp_path: Path, version: str) -> None:
    with pytest.raises(InvalidInput, match="version"):
        ModelStore(tmp_path).bundle_path(MODEL, version)


def test_publish_command(tmp_path: Path, bundles: list[Bundle]) -> None:
    command = [sys.executable, "-m", "service", "publish", "--store", str(tmp_path / "store")]
    done = subprocess.run(
        [*command, "--name", MODEL, "--bundle", str(bundles[0].path), "--promote"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout) == {"name": MODEL, "version": "1", "production": True}
    refused = subprocess.run(
        [*command, "--name", "../up", "--bundle", str(bundles[0].path)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode == 2 and "name" in refused.stderr
    assert ModelStore(tmp_path / "store").production(MODEL) == "1"


def test_promotions_are_serialised_and_expect_is_checked(
    tmp_path: Path, bundles: list[Bundle]
) -> None:
    """Eight promoters expecting version 1 at once: exactly one wins, the others get a Conflict
    naming the winner; without expect, each promotion reports the one before it as previous."""
    store = ModelStore(tmp_path / "store")
    store.publish(MODEL, bundles[0].path, promote=True)
    for _ in range(8):
        store.publish(MODEL, bundles[1].path)
    targets = [str(v) for v in range(2, 10)]

    def promote(version: str) -> str | Conflict:
        try:
            store.set_production(MODEL, version, expect="1")
        except Conflict as exc:
            return exc
        return version

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(promote, targets))
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1 and store.production(MODEL) == winners[0]
    for refused in results:
        if isinstance(refused, Conflict):
            assert f"version '{winners[0]}' in production, not the expected '1'" in refused.message
    with pytest.raises(Conflict, match="not the expected '1'"):
        store.set_production(MODEL, "1", expect="1")

    with ThreadPoolExecutor(8) as pool:
        previous = list(pool.map(lambda v: store.set_production(MODEL, v), targets))
    # serialised, they form one chain: the first saw the winner above, each other one the
    # promotion before it, and the last is production
    final = store.production(MODEL)
    assert sorted(previous) == sorted([winners[0], *(v for v in targets if v != final)])

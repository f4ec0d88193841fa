"""Publishing, promotion, rollback and deletion through the API, each against its own server and
store; and a hot swap under load."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import OBS_SIZE
from tests.service.serving import API_KEY, MODEL, Bundle, running_server

pytestmark = pytest.mark.e2e

OBS = np.linspace(-1, 1, 3 * OBS_SIZE, dtype=np.float32).reshape(3, OBS_SIZE)
ADMIN = {"X-API-Key": API_KEY}


def archive(bundle: Path, top_level: bool) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(bundle, arcname="bundle" if top_level else ".")
    return buffer.getvalue()


def test_publish_promote_rollback_delete(fresh_store: Path, bundles: list[Bundle]) -> None:
    expected = {"1": bundles[0].runtime.predict(OBS), "2": bundles[1].runtime.predict(OBS)}
    with running_server(fresh_store, BEAR_API_KEYS=API_KEY) as server, server.client() as client:

        def served() -> tuple[str, np.ndarray]:
            body = client.post("/predict", json={"observations": OBS.tolist()}).json()
            return body["version"], np.asarray(body["actions"], dtype=np.float32)

        version, actions = served()
        assert version == "1"
        np.testing.assert_array_equal(actions, expected["1"])

        published = client.post(
            f"/models/{MODEL}/versions", content=archive(bundles[1].path, True), headers=ADMIN
        )
        assert published.status_code == 201, published.text
        assert published.json() == {"name": MODEL, "version": "3", "production": False}
        assert published.headers["location"] == f"/models/{MODEL}/versions/3"
        expected["3"] = expected["2"]
        assert served()[0] == "1"

        for target, previous in (("3", "1"), ("1", "3"), ("2", "1")):
            promoted = client.post(f"/models/{MODEL}/versions/{target}/promote", headers=ADMIN)
            body = promoted.json()
            assert (
                body["promotion"]["gate"] == "none" and body["promotion"]["decision"] == "promoted"
            )
            del body["promotion"]
            assert body == {"name": MODEL, "version": target, "previous": previous}
            version, actions = served()
            assert version == target
            np.testing.assert_array_equal(actions, expected[target])
            assert (fresh_store / "models" / MODEL / "production").read_text().strip() == target

        refused = client.delete(f"/models/{MODEL}/versions/2", headers=ADMIN)
        assert refused.status_code == 409 and "production" in refused.json()["error"]
        deleted = client.delete(f"/models/{MODEL}/versions/3", headers=ADMIN)
        assert deleted.status_code == 204
        assert client.get(f"/models/{MODEL}").json()["production"] == "2"
        assert [v["version"] for v in client.get(f"/models/{MODEL}").json()["versions"]] == [
            "1",
            "2",
        ]
        gone = client.post(f"/models/{MODEL}/versions/3/predict", json={"observations": [[0] * 5]})
        assert gone.status_code == 404
        again = client.delete(f"/models/{MODEL}/versions/3", headers=ADMIN)
        assert again.status_code == 404

        flat = client.post(
            "/models/other/versions?promote=true",
            content=archive(bundles[0].path, False),
            headers=ADMIN,
        )
        assert flat.status_code == 201 and flat.json()["production"] is True
        other = client.post("/models/other/predict", json={"observations": OBS.tolist()}).json()
        np.testing.assert_array_equal(np.float32(other["actions"]), expected["1"])
        ambiguous = client.post("/predict", json={"observations": OBS.tolist()})
        assert ambiguous.status_code == 404 and "BEAR_DEFAULT_MODEL" in ambiguous.json()["error"]

    with running_server(fresh_store) as server, server.client() as client:
        listing = {m["name"]: m["production"] for m in client.get("/models").json()["models"]}
        assert listing == {MODEL: "2", "other": "1"}
        named = client.post(f"/models/{MODEL}/predict", json={"observations": OBS.tolist()})
        assert named.json()["version"] == "2"


def test_a_broken_version_is_refused_and_the_old_one_keeps_serving(
    fresh_store: Path, corrupt_version: str
) -> None:
    with running_server(fresh_store, BEAR_API_KEYS=API_KEY) as server, server.client() as client:
        refused = client.post(f"/models/{MODEL}/versions/{corrupt_version}/promote", headers=ADMIN)
        assert refused.status_code == 422, refused.text
        assert "policy.onnx" in refused.json()["error"]
        direct = client.post(
            f"/models/{MODEL}/versions/{corrupt_version}/predict", json={"observations": [[0] * 5]}
        )
        assert direct.status_code == 422 and "policy.onnx" in direct.json()["error"]
        still = client.post("/predict", json={"observations": OBS.tolist()})
        assert still.status_code == 200 and still.json()["version"] == "1"
        assert client.get("/v2/health/ready").json() == {"ready": True}
    assert (fresh_store / "models" / MODEL / "production").read_text().strip() == "1"


def test_a_broken_production_version_makes_the_server_unready(
    fresh_store: Path, corrupt_version: str
) -> None:
    (fresh_store / "models" / MODEL / "production").write_text(corrupt_version)
    with running_server(fresh_store, BEAR_API_KEYS=API_KEY) as server, server.client() as client:
        assert client.get("/v2/health/live").status_code == 200
        unready = client.get("/v2/health/ready")
        assert unready.status_code == 503 and unready.json() == {"ready": False}
        assert client.post("/models/pendulum/versions/1/promote", headers=ADMIN).status_code == 200
        assert client.get("/v2/health/ready").status_code == 200


def test_management_is_refused_without_configured_keys(fresh_store: Path) -> None:
    with running_server(fresh_store) as server, server.client() as client:
        response = client.post(f"/models/{MODEL}/versions/2/promote", headers=ADMIN)
        assert response.status_code == 403
        assert "BEAR_API_KEYS" in response.json()["error"]
        assert client.post("/predict", json={"observations": OBS.tolist()}).status_code == 200


def test_inference_key_when_required(fresh_store: Path) -> None:
    env = {"BEAR_API_KEYS": API_KEY, "BEAR_REQUIRE_KEY_FOR_INFERENCE": "true"}
    with running_server(fresh_store, **env) as server, server.client() as client:
        body = {"observations": OBS.tolist()}
        assert client.post("/predict", json=body).status_code == 401
        assert (
            client.post("/predict", json=body, headers={"X-API-Key": "wrong-key-123"}).status_code
            == 403
        )
        assert client.post("/predict", json=body, headers=ADMIN).status_code == 200
        assert client.get("/v2/health/ready").status_code == 200


def test_hot_swap_under_load(fresh_store: Path, bundles: list[Bundle]) -> None:
    """8 threads post /predict continuously while version 2 is promoted and version 1 restored:
    no request fails, and each answer is exactly the output of the version it names."""
    expected = {"1": bundles[0].runtime.predict(OBS), "2": bundles[1].runtime.predict(OBS)}
    failures: list[str] = []
    seen: list[str] = []
    stop = threading.Event()
    with running_server(fresh_store, BEAR_API_KEYS=API_KEY) as server:

        def hammer() -> None:
            with server.client() as client:
                while not stop.is_set():
                    try:
                        response = client.post("/predict", json={"observations": OBS.tolist()})
                        body = response.json()
                        actions = np.asarray(body["actions"], dtype=np.float32)
                        if response.status_code != 200 or not np.array_equal(
                            actions, expected[body["version"]]
                        ):
                            failures.append(response.text)
                        seen.append(body["version"])
                    except Exception as exc:  # any failure counts, whatever its kind
                        failures.append(repr(exc))

        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for thread in threads:
            thread.start()
        with server.client(ADMIN) as admin:
            for version in ("2", "1"):
                time.sleep(0.7)
                assert admin.post(f"/models/{MODEL}/versions/{version}/promote").status_code == 200
            time.sleep(0.7)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures, failures[:3]
    assert len(seen) > 100
    assert {"1", "2"} <= set(seen)
    assert seen[-1] == "1"

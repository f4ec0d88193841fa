"""`service` never imports torch: the app builds, loads a bundle, answers, takes a dataset and
queues and dispatches a training job (the trainer is a child process) in a process where
importing torch fails; the worker module imports there too."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from service.models.model_store import ModelStore
from tests.service.serving import MODEL, REPO, Bundle

SCRIPT = textwrap.dedent(
    """
    import json, sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this process")
            return None

    sys.meta_path.insert(0, BlockTorch())
    from fastapi.testclient import TestClient

    import time

    import service.__main__
    import service.worker
    from service.app import create_app
    from service.core.settings import Settings

    key = {"X-API-Key": "test-admin-key-0123"}
    app = create_app(Settings(store=sys.argv[1], api_keys=[key["X-API-Key"]], job_poll_s=0.1))
    with TestClient(app) as client:
        predicted = client.post("/predict", json={"observations": [[0.0] * 5]})
        version = client.post("/models/pendulum/versions/1/value",
                              json={"observations": [[0.0] * 5], "actions": [[0.0, 0.0]]})
        with open(sys.argv[2], "rb") as f:
            dataset = client.post("/datasets", files={"file": ("d.h5", f.read())}, headers=key)
        job = client.post("/train", headers=key, json={
            "dataset_id": dataset.json()["id"], "model_name": "m", "n_epochs": 1})
        deadline = time.monotonic() + 30
        while client.get(job.headers["location"]).json()["state"] == "queued":
            assert time.monotonic() < deadline, "the job was not dispatched"
            time.sleep(0.1)
    print(json.dumps({
        "status": [predicted.status_code, version.status_code, dataset.status_code,
                   job.status_code],
        "torch": [m for m in sys.modules if m == "torch" or m.startswith("torch.")],
    }))
    """
)


def test_service_runs_without_torch(
    tmp_path: Path, bundles: list[Bundle], pendulum_h5: Path
) -> None:
    store = tmp_path / "store"
    ModelStore(store).publish(MODEL, bundles[0].path, promote=True)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(store), str(pendulum_h5)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"status": [200, 200, 201, 202], "torch": []}

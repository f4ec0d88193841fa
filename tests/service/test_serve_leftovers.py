"""Leftovers of interrupted uploads: stale staging entries are swept at start-up (and a fresh one,
an upload another process is still receiving, is kept), a client that disconnects mid-upload is
counted as 499 without a traceback, and a stalled body is cut off with 408."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from service.models.model_store import ModelStore
from tests.service.serving import API_KEY, MODEL, Server, running_server, wait_until

pytestmark = pytest.mark.e2e

UPLOAD = f"/models/{MODEL}/versions"


def test_stale_staging_is_swept_at_start_up(fresh_store: Path) -> None:
    tmp = ModelStore(fresh_store).ensure().tmp_dir
    stale_upload = tmp / "pendulum.abc.upload"
    stale_upload.mkdir()
    (stale_upload / "bundle.tar.gz").write_bytes(b"\x1f\x8b" + b"x" * 1000)
    stale_file = tmp / ".production.xyz"
    stale_file.write_bytes(b"1\n")
    live_upload = tmp / "pendulum.def.upload"
    live_upload.mkdir()
    (live_upload / "bundle.tar.gz").write_bytes(b"being received")
    two_hours_ago = time.time() - 7200
    for path in (stale_upload / "bundle.tar.gz", stale_upload, stale_file, live_upload):
        os.utime(path, (two_hours_ago, two_hours_ago))
    # live_upload's own mtime is old but its file is being written: it stays

    with running_server(fresh_store) as server:
        assert sorted(p.name for p in tmp.iterdir()) == ["pendulum.def.upload"]
        assert "removed stale staging entries" in server.logs()


def _raw_request(server: Server, declared: int, sent: bytes) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST {UPLOAD} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: application/gzip\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def _requests(client: httpx.Client, status: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if (
            line.startswith("bear_requests_total{")
            and 'route="/models/{name}/versions"' in line
            and f'status="{status}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_client_disconnecting_mid_upload_is_499_without_a_traceback(fresh_store: Path) -> None:
    with running_server(fresh_store, BEAR_API_KEYS=API_KEY) as server, server.client() as client:
        sock = _raw_request(server, 10_000_000, b"\x1f\x8b" + b"x" * 4096)
        time.sleep(0.5)
        sock.close()
        wait_until(lambda: _requests(client, "499") == 1, timeout=10, what="a 499 counted")
        assert _requests(client, "500") == 0
        logs = server.logs()
        assert "Traceback" not in logs and '"client disconnected"' in logs
        tmp = ModelStore(fresh_store).tmp_dir
        wait_until(lambda: not any(tmp.iterdir()), timeout=10, what="the upload's staging removed")


def test_a_stalled_body_is_cut_off_with_408(fresh_store: Path) -> None:
    env = {"BEAR_API_KEYS": API_KEY, "BEAR_BODY_IDLE_TIMEOUT_S": "1"}
    with running_server(fresh_store, **env) as server, server.client() as client:
        start = time.monotonic()
        sock = _raw_request(server, 100_000_000, b"\x1f\x8b" + b"x" * 1024)
        try:
            answer = sock.recv(4096).decode(errors="replace")
            # the server closes the connection after its answer
            while chunk := sock.recv(4096):
                answer += chunk.decode(errors="replace")
        finally:
            sock.close()
        assert time.monotonic() - start < 8
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "BEAR_BODY_IDLE_TIMEOUT_S" in answer and "connection: close" in answer.lower()
        assert _requests(client, "408") == 1
        # a JSON body that stalls too
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as json_sock:
            json_sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"observations": '
            )
            assert json_sock.recv(4096).startswith(b"HTTP/1.1 408")
        assert client.get("/v2/health/ready").status_code == 200
        assert not any(ModelStore(fresh_store).tmp_dir.iterdir())

"""Container health check (exit 0 healthy, 1 unhealthy), standard library only.

healthcheck.py           the API answers GET /v2/health/ready with 200
healthcheck.py --worker  the training-job worker's heartbeat is fresh
"""

from __future__ import annotations

import os
import sys
import urllib.request


def api_ready() -> bool:
    port = os.environ.get("BEAR_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=4) as r:
            return r.status == 200
    except OSError:
        return False


def worker_alive() -> bool:
    from service.worker import heartbeat_is_fresh

    return heartbeat_is_fresh()


if __name__ == "__main__":
    healthy = worker_alive() if "--worker" in sys.argv[1:] else api_ready()
    sys.exit(0 if healthy else 1)

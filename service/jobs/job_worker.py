"""`python -m service.worker`: the training-job dispatcher as its own process, beside an API
started with BEAR_DISPATCHER=false, both on the same store directory (a trainer container next to
a torch-free API container). It publishes into the store; the API loads new production versions
from there within BEAR_SYNC_INTERVAL_S. SIGTERM or SIGINT stops it: running trainers get SIGTERM
and write a checkpoint first. `heartbeat_is_fresh()` is the container health check.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from service.core.json_logs import get_logger
from service.core.settings import Settings
from service.jobs.dispatcher import Dispatcher, heartbeat_age
from service.jobs.job_db import JobDB
from service.models.model_store import ModelStore

STALE_POLLS = 20  # a heartbeat older than this many poll intervals (and 10 s) is stale


def heartbeat_is_fresh(settings: Settings | None = None) -> bool:
    """Whether a dispatcher is working this store (BEAR_* environment): its heartbeat file was
    rewritten recently. A dispatcher waiting for another one's lock does not beat."""
    settings = settings or Settings()
    age = heartbeat_age(settings.store)
    return age is not None and age < max(10.0, STALE_POLLS * settings.job_poll_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.worker", description=__doc__)
    parser.add_argument("--store", type=Path, help="store directory (BEAR_STORE)")
    args = parser.parse_args(argv)
    try:
        settings = Settings(**({"store": args.store} if args.store else {}))
    except ValidationError as exc:
        print(f"error: invalid settings (BEAR_* environment)\n{exc}", file=sys.stderr)
        return 2
    store = ModelStore(settings.store).ensure()
    dispatcher = Dispatcher(
        settings,
        JobDB(settings.store).ensure(),
        store.publish,
        store.set_production,
        get_logger(settings.log_level),
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        dispatcher.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    dispatcher.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

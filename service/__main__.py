"""`python -m service [serve]`: serve the model store over HTTP (training a demo model first
when the store is empty) with `--workers` processes on one port; each follows the store's
changes and exactly one runs the job dispatcher (the store's dispatcher lock). `python -m
service publish`: add a bundle directory to a store."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from service.core.http_errors import ServiceError
from service.core.json_logs import get_logger
from service.core.settings import Settings
from service.models.demo import bootstrap_demo
from service.models.model_store import ModelStore


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "publish":
        return _publish(args)
    return _serve(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve the store (the default command)")
    for p in (parser, serve):
        p.add_argument("--store", type=Path, help="model store directory (BEAR_STORE)")
        p.add_argument("--host", help="bind address (BEAR_HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (BEAR_PORT, default 8000)")
        p.add_argument(
            "--workers",
            type=int,
            help="server processes sharing the port and the store (BEAR_WORKERS, default 1)",
        )
        p.add_argument(
            "--no-demo", action="store_true", help="do not train a demo model into an empty store"
        )
    publish = commands.add_parser("publish", help="publish a bundle directory as a new version")
    publish.add_argument("--store", type=Path, required=True)
    publish.add_argument("--name", required=True)
    publish.add_argument("--bundle", type=Path, required=True)
    publish.add_argument("--promote", action="store_true", help="also make it production")
    return parser


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        key: value
        for key, value in {
            "store": args.store,
            "host": args.host,
            "port": args.port,
            "workers": args.workers,
        }.items()
        if value is not None
    }
    if args.no_demo:
        overrides["demo"] = False
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"error: invalid settings (BEAR_* environment)\n{exc}", file=sys.stderr)
        return 2
    logger = get_logger(settings.log_level)
    store = ModelStore(settings.store).ensure()
    if settings.demo and not store.models():
        try:
            bootstrap_demo(store, logger)
        except subprocess.CalledProcessError as exc:
            step = " ".join(exc.cmd[1:4])
            print(f"demo model: {step} failed (exit {exc.returncode})", file=sys.stderr)
            return 1
    # every worker process builds its app from the BEAR_* environment: pass the options on
    os.environ.update(
        BEAR_STORE=str(settings.store), BEAR_HOST=settings.host, BEAR_PORT=str(settings.port)
    )
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level=settings.log_level.lower(),
    )
    return 0


def _publish(args: argparse.Namespace) -> int:
    try:
        version = ModelStore(args.store).publish(args.name, args.bundle, promote=args.promote)
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps({"name": args.name, "version": version, "production": args.promote}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

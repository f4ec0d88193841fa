"""The access log: one JSON line per request in the service log's format, written in batches
(within FLUSH_S, at once when MAX_LINES wait, and on flush), nothing below INFO."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from service.core.access_log import FLUSH_S, MAX_LINES, AccessLog
from service.core.json_logs import JsonFormatter


def _logger(name: str, level: int = logging.INFO) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(level)
    return logger, stream


def test_lines_reach_the_stream_within_the_flush_interval() -> None:
    logger, stream = _logger("test.access.timer")
    log = AccessLog(logger)

    async def requests() -> list[str]:
        log.write("request", {"status": 200, "route": "/predict", "model": None})
        log.write("client disconnected", {"status": 499})
        before = stream.getvalue()
        await asyncio.sleep(FLUSH_S * 4)
        return [before, stream.getvalue()]

    before, after = asyncio.run(requests())
    assert before == ""
    first, second = (json.loads(line) for line in after.splitlines())
    assert first["message"] == "request" and first["status"] == 200 and first["model"] is None
    assert (first["level"], first["logger"]) == ("info", "test.access.timer")
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-01-01T00:00:00.000Z")
    assert second["message"] == "client disconnected" and second["status"] == 499


def test_a_full_batch_is_written_at_once_and_flush_writes_the_rest() -> None:
    logger, stream = _logger("test.access.full")
    log = AccessLog(logger)

    async def requests() -> tuple[int, int]:
        for i in range(MAX_LINES + 3):
            log.write("request", {"n": i})
        written = len(stream.getvalue().splitlines())
        log.flush()
        return written, len(stream.getvalue().splitlines())

    at_once, after_flush = asyncio.run(requests())
    assert at_once == MAX_LINES
    assert after_flush == MAX_LINES + 3
    numbers = [json.loads(line)["n"] for line in stream.getvalue().splitlines()]
    assert numbers == list(range(MAX_LINES + 3))


def test_outside_an_event_loop_a_line_is_written_at_once() -> None:
    logger, stream = _logger("test.access.sync")
    AccessLog(logger).write("request", {"status": 200})
    assert json.loads(stream.getvalue())["status"] == 200


def test_nothing_is_written_below_info() -> None:
    logger, stream = _logger("test.access.quiet", logging.WARNING)
    log = AccessLog(logger)
    log.write("request", {"status": 200})
    log.flush()
    assert stream.getvalue() == ""

"""The access log: one JSON line per HTTP request and gRPC call, in the service log's format
(`time`, `level`, `logger`, `message` and the request's fields), on the service logger's
streams.

Every request writes one, so it skips the logging module's per-record work (a LogRecord, the
caller's frame, the formatter's walk over its attributes: about 15 us a line, the price of a
whole policy forward pass) and writes in batches: a line reaches the stream within FLUSH_S, or
at once when MAX_LINES are waiting, as nginx's `access_log ... buffer= flush=` does. Lines still
waiting when the process is killed with SIGKILL are lost; the app flushes them at shutdown.
Nothing is written below the logger's INFO level.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, TextIO

from service.core.json_logs import LogClock

FLUSH_S = 0.05
MAX_LINES = 256


class AccessLog:
    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._encode = json.JSONEncoder(default=str).encode
        self._clock = LogClock()
        self._lines: list[str] = []
        self._flush_timer: asyncio.TimerHandle | None = None

    def write(self, message: str, fields: dict[str, Any]) -> None:
        """Log one request: `message` and its fields."""
        if not self._logger.isEnabledFor(logging.INFO):
            return
        entry = {
            "time": self._clock.text(time.time()),
            "level": "info",
            "logger": self._logger.name,
            "message": message,
            **fields,
        }
        self._lines.append(self._encode(entry))
        if len(self._lines) >= MAX_LINES:
            self.flush()
        elif self._flush_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop to wait on: write now
                self.flush()
                return
            self._flush_timer = loop.call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        """Write every waiting line."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines.clear()
        for handler in self._logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.level <= logging.INFO:
                _write(handler, text)


def _write(handler: logging.StreamHandler[TextIO], text: str) -> None:
    handler.acquire()  # the handler's lock: other threads' records never cut into a line
    try:
        handler.stream.write(text)
        handler.stream.flush()
    except (OSError, ValueError):  # a closed or broken stream loses lines, not requests
        pass
    finally:
        handler.release()

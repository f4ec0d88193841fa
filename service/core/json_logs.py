"""JSON log lines on the `bear.service` logger."""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGER_NAME = "bear.service"
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class LogClock:
    """A record's time as the log writes it (UTC, milliseconds); the text of the current second
    is built once a second, since every request writes a line."""

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def text(self, created: float) -> str:
        second = int(created)
        cached, text = self._second
        if cached != second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and every `extra` field."""

    def __init__(self) -> None:
        super().__init__()
        self._encode = json.JSONEncoder(default=str).encode
        self._clock = LogClock()

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self._clock.text(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self._encode(entry)


def get_logger(level: str = "INFO") -> logging.Logger:
    """The service logger, writing JSON lines to stderr (configured once per process)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())
    return logger

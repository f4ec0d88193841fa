"""Errors the service raises on purpose. Each carries the HTTP status it answers with and a
message that names the offending field, model or version."""

from __future__ import annotations

import re


class ServiceError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    """A request's content is malformed (shapes, widths, values, names)."""

    status_code = 422


def check_pattern(value: object, pattern: re.Pattern[str], message: str) -> str:
    """`value` when it fully matches `pattern` (names, versions, ids that become paths), else
    InvalidInput with `message`."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInput(message)
    return value


class InvalidBundle(ServiceError):
    """A bundle offered for publishing or promotion fails to load or verify."""

    status_code = 422


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    """The request clashes with the store's state (deleting the production version, ...)."""

    status_code = 409

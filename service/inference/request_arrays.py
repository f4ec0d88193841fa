"""Request payloads to validated numpy batches, with errors that name the field."""

from __future__ import annotations

from typing import Any

import numpy as np

from bear_core.bundle.runtime import check_batch
from service.core.http_errors import InvalidInput


def as_batch(
    value: Any,
    field: str,
    row_shape: tuple[int, ...],
    dtype: str,
    max_rows: int,
    rows: int | None = None,
) -> np.ndarray:
    """A C-contiguous [N, *row_shape] array of finite numbers from nested lists whose rows are
    flat (width = prod(row_shape)) or already shaped. InvalidInput names `field` otherwise."""
    if len(value) > max_rows:
        raise InvalidInput(f"{field}: at most {max_rows} rows per request, got {len(value)}")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"{field}: must be a rectangular array of numbers") from None
    if array.ndim == 2 and len(row_shape) > 1 and array.shape[1] == int(np.prod(row_shape)):
        array = array.reshape(len(array), *row_shape)
    try:
        array = check_batch(array, field, row_shape, np.float32, rows=rows)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if dtype == "uint8":
        if ((array < 0) | (array > 255) | (array != np.round(array))).any():
            raise InvalidInput(f"{field}: this model takes integers 0..255")
        array = array.astype(np.uint8)
    return array

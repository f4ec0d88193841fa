"""Opportunistic micro-batching of one graph: requests that arrive while the event loop is busy
are stacked into a single onnxruntime call.

A request never waits for company beyond `max_delay` (0 by default: the batch closes at the next
turn of the event loop), and a batch closes at once when it reaches `max_rows`. Runs on the event
loop only; the callable must be cheap enough to run inline (small batches of a small network).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np


class MicroBatcher:
    def __init__(
        self, run: Callable[..., np.ndarray], max_rows: int, max_delay_s: float = 0.0
    ) -> None:
        self.max_rows = max_rows
        self._run = run
        self._max_delay_s = max_delay_s
        self._pending: list[tuple[tuple[np.ndarray, ...], asyncio.Future[np.ndarray]]] = []
        self._rows = 0
        self._timer: asyncio.Handle | None = None

    async def submit(self, *arrays: np.ndarray) -> np.ndarray:
        """Rows of `arrays` (aligned along axis 0) through the graph; returns this request's
        slice of the batched output."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((arrays, future))
        self._rows += len(arrays[0])
        if self._rows >= self.max_rows:
            self._flush()
        elif self._timer is None:
            if self._max_delay_s > 0:
                self._timer = loop.call_later(self._max_delay_s, self._flush)
            else:
                self._timer = loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending, self._rows = self._pending, [], 0
        if not batch:
            return
        try:
            if len(batch) == 1:
                outputs = [self._run(*batch[0][0])]
            else:
                stacked = [
                    np.concatenate(parts) for parts in zip(*(a for a, _ in batch), strict=True)
                ]
                bounds = np.cumsum([len(a[0]) for a, _ in batch])[:-1]
                outputs = np.split(self._run(*stacked), bounds)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), out in zip(batch, outputs, strict=True):
            if not future.done():
                future.set_result(out)

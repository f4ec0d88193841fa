"""Busy polling: after each answered request, keep the event loop turning for a while instead of
letting it sleep until the next one arrives (BEAR_BUSY_POLL_US, off by default).

A control loop calls again within a millisecond or so. A worker whose loop sleeps in between
has to be woken for that call, and the wake-up (on a virtual machine, through the hypervisor)
costs more than the model's forward pass. Polling the sockets without blocking until the window
ends keeps the process running, so the next call is read as soon as it lands. The price is CPU:
up to one core per worker for as long as calls keep coming within the window, and one window's
worth after the last of them.

The loop is kept turning by a callback that reschedules itself with `call_soon` until the
window has passed: while a callback is ready, the loop polls its sockets with a zero timeout,
so requests are still read and answered as they come. Answers do not change; only when the
process sleeps does.
"""

from __future__ import annotations

import asyncio
import time


class BusyPoll:
    """`kick()` after each answer: the running loop then polls without sleeping until `window_s`
    seconds after the latest kick. A window of 0 turns it off (`kick` returns at once)."""

    def __init__(self, window_s: float) -> None:
        if window_s < 0:
            raise ValueError(f"window_s: {window_s} is negative")
        self.window_s = window_s
        self._until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop turning, while it does

    @property
    def polling(self) -> bool:
        return self._loop is not None

    def kick(self) -> None:
        if not self.window_s:
            return
        self._until = time.perf_counter() + self.window_s
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            loop.call_soon(self._turn, loop)

    def _turn(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop:
            return  # a kick from another loop took over
        if time.perf_counter() < self._until:
            loop.call_soon(self._turn, loop)
        else:
            self._loop = None

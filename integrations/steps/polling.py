"""The one bounded wait of the step backends: read until finished, within a time budget,
pausing ``interval`` between reads; a set ``stop`` event ends it at once."""
from __future__ import annotations

import threading
from typing import Any, Callable


class Overdue(Exception):
    """Not finished within the budget, or stopped: ``last`` is the last value read."""

    def __init__(self, stopped: bool, budget: float, last: Any):
        super().__init__("stopped" if stopped else f"not finished within {budget:g}s")
        self.stopped = stopped
        self.last = last


def follow(read: Callable[[], Any], finished: Callable[[Any], bool], *, budget: float, interval: float,
           clock: Callable[[], float], sleep: Callable[[float], Any],
           stop: threading.Event | None = None) -> Any:
    deadline = clock() + budget
    while True:
        value = read()
        if finished(value):
            return value
        stopped = stop is not None and stop.is_set()
        if stopped or clock() >= deadline:
            raise Overdue(stopped, budget, value)
        pause = max(0.0, min(interval, deadline - clock()))
        stop.wait(pause) if stop is not None else sleep(pause)

"""Where the Slack work runs after the ack, and how it keeps out of the acks' way.

drbot is one Python process: while status reports are rendered, the acks of the next
requests wait for the interpreter (the GIL), however many threads there are. Slack gives
an ack 3 seconds and a reply through response_url 30 minutes, so the work yields: each
task starts once no Slack request has arrived or been in hand for ``quiet`` seconds (a
burst of fifty ``/dr status`` is acked first, then answered), but never later than
``max_defer`` after it was handed in. A lone request's work starts ``quiet`` after its ack.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator

WORK_THREADS = 8
"""Threads doing the work after acks (commands, clicks, events): bounded, so a burst
queues work instead of starving the ack path and the runbook runner."""
QUIET = 0.005
MAX_DEFER = 2.0


class AckTraffic:
    """Slack requests in hand (arrived, not yet answered), and when the last one ended."""

    def __init__(self, quiet: float = QUIET, max_defer: float = MAX_DEFER):
        self.quiet, self.max_defer = quiet, max_defer
        self._cond = threading.Condition()
        self._in_hand = 0
        self._last = 0.0
        self.waiting = 0
        """Tasks waiting for the acks in hand now."""
        self.deferred = 0
        """Tasks that waited for acks since start (for tests and the benchmarks)."""

    @contextmanager
    def acking(self) -> Iterator[None]:
        with self._cond:
            self._in_hand += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_hand -= 1
                self._last = time.monotonic()
                if self._in_hand == 0:
                    self._cond.notify_all()

    def wait_quiet(self, handed_in: float) -> None:
        """Return once no request is in hand and none ended within ``quiet``, or at
        ``handed_in + max_defer``."""
        deadline = handed_in + self.max_defer
        with self._cond:
            if not self._busy(deadline):
                return
            self.waiting += 1
            self.deferred += 1
            try:
                while self._busy(deadline):
                    now = time.monotonic()
                    self._cond.wait(min(deadline - now, self.quiet if self._in_hand == 0 else self.max_defer))
            finally:
                self.waiting -= 1

    def _busy(self, deadline: float) -> bool:
        now = time.monotonic()
        return now < deadline and (self._in_hand > 0 or now - self._last < self.quiet)


class WorkPool(ThreadPoolExecutor):
    """A bounded pool whose tasks start after the acks in hand (``AckTraffic``)."""

    def __init__(self, traffic: AckTraffic, threads: int = WORK_THREADS):
        super().__init__(threads, thread_name_prefix="drbot-slack")
        self.traffic = traffic

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        return super().submit(self._after_acks, time.monotonic(), fn, *args, **kwargs)

    def _after_acks(self, handed_in: float, fn: Callable, *args, **kwargs):
        self.traffic.wait_quiet(handed_in)
        return fn(*args, **kwargs)

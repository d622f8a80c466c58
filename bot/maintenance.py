"""Background upkeep while the bot runs: expire pending requests that ran out of time
(so their messages stop offering buttons). The scheduler issue replaces this loop with
APScheduler jobs on the leader."""
from __future__ import annotations

import logging
import threading

from bot.changes import expire_due
from bot.services import Services

log = logging.getLogger(__name__)


def start(services: Services, interval: float = 15.0) -> threading.Event:
    """Start the loop in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                expire_due(services)
            except Exception:
                log.exception("expiring due requests failed; will retry in %.0fs", interval)

    threading.Thread(target=loop, name="drbot-maintenance", daemon=True).start()
    return stop

"""One deciding thread per region evacuation in a process (``bot.evacuation_run.advance``):
several of its services ending at once cost one decision, not a queue of them on the
evacuation's row lock."""
from __future__ import annotations

import threading

from bot.services import Services


class Gate:
    """One deciding thread per evacuation in this process: a thread that finds another
    deciding marks the evacuation dirty and returns at once; the deciding one decides again
    until nothing marked it (several children ending at once cost one decision, not a queue
    of them on the row lock). Other replicas are kept apart by the row lock itself."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.dirty: dict[int, bool] = {}
        """Evacuations being decided here -> whether something ended since the decision began."""

    def enter(self, evacuation_id: int) -> bool:
        with self.lock:
            if evacuation_id in self.dirty:
                self.dirty[evacuation_id] = True
                return False
            self.dirty[evacuation_id] = False
            return True

    def nudge(self, evacuation_id: int) -> bool:
        """True (and marked) when a thread here is deciding it now: it will decide again."""
        with self.lock:
            if evacuation_id in self.dirty:
                self.dirty[evacuation_id] = True
                return True
            return False

    def again(self, evacuation_id: int) -> bool:
        """After a decision: True (and cleared) when it must decide again, else it leaves."""
        with self.lock:
            if self.dirty.get(evacuation_id):
                self.dirty[evacuation_id] = False
                return True
            self.dirty.pop(evacuation_id, None)
            return False

    def leave(self, evacuation_id: int) -> None:
        with self.lock:
            self.dirty.pop(evacuation_id, None)


def gate_of(services: Services) -> Gate:
    return services.extras.setdefault("evacuation_gate", Gate())

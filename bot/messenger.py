"""How the core posts and updates messages without knowing the transport. The Slack
transport implements it with chat.postMessage / chat.update; the shell prints text."""
from __future__ import annotations

import threading
from typing import Protocol

from bot.render import Reply


class Messenger(Protocol):
    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str:
        """Post a message; returns its ts."""
        ...

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        ...

    def notify(self, channel: str, user: str, reply: Reply) -> None:
        """An ephemeral message only ``user`` sees."""
        ...


class RecordingMessenger:
    """Keeps messages in memory (CLI runs, tests of the core): ts are counters."""

    def __init__(self):
        self.messages: dict[str, Reply] = {}
        self.log: list[tuple[str, str, Reply]] = []
        self._n = 0
        self._lock = threading.Lock()

    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str:
        with self._lock:
            self._n += 1
            ts = f"{self._n}.000000"
            self.messages[ts] = reply
            self.log.append(("post", channel, reply))
            return ts

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        with self._lock:
            self.messages[ts] = reply
            self.log.append(("update", channel, reply))

    def notify(self, channel: str, user: str, reply: Reply) -> None:
        with self._lock:
            self.log.append(("notify", channel, reply))

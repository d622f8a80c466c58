"""How the outbox's handlers post and update messages without knowing the transport. The
Slack transport implements it with chat.postMessage / chat.update; the shell prints text.
Only outbox handlers call it (and they are called only by the outbox worker)."""
from __future__ import annotations

import threading
from typing import Protocol

from bot.render import Reply


class DeliveryFailed(Exception):
    """A message that could not be delivered. ``transient``: try again later (the chat
    service failed, rate limited, timed out); otherwise it never will be as it is (an
    unknown channel, blocks the service refuses), and the outbox gives it up."""

    def __init__(self, message: str, transient: bool, retry_after: float | None = None, code: str = ""):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.code = code
        """The service's own error code, e.g. Slack's ``channel_not_found``."""


class Messenger(Protocol):
    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str:
        """Post a message; returns its ts."""
        ...

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        ...

    def notify(self, channel: str, user: str, reply: Reply) -> None:
        """An ephemeral message only ``user`` sees."""
        ...

    def create_channel(self, name: str) -> tuple[str, str]:
        """Create a channel (a free variant of ``name`` if taken); returns (id, name)."""
        ...

    def invite(self, channel: str, users: list[str]) -> None:
        ...

    def pin(self, channel: str, ts: str) -> None:
        ...

    def upload(self, channel: str, filename: str, content: str, title: str) -> str:
        """Upload a text file to the channel; returns the file ID."""
        ...


class RecordingMessenger:
    """Keeps messages in memory (CLI runs, tests of the core): ts are counters."""

    def __init__(self):
        self.messages: dict[str, Reply] = {}
        self.log: list[tuple[str, str, Reply]] = []
        self.channels: dict[str, str] = {}
        self.invites: list[tuple[str, list[str]]] = []
        self.pins: list[tuple[str, str]] = []
        self.files: list[tuple[str, str, str]] = []
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

    def create_channel(self, name: str) -> tuple[str, str]:
        with self._lock:
            self._n += 1
            self.channels[f"C{self._n:06d}"] = name
            return f"C{self._n:06d}", name

    def invite(self, channel: str, users: list[str]) -> None:
        self.invites.append((channel, list(users)))

    def pin(self, channel: str, ts: str) -> None:
        self.pins.append((channel, ts))

    def upload(self, channel: str, filename: str, content: str, title: str) -> str:
        self.files.append((channel, filename, content))
        return f"F{len(self.files):06d}"

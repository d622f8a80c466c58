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

    def create_channel(self, name: str, private: bool = False) -> tuple[str, str]:
        """Create a channel (a free variant of ``name`` if taken), private if asked; returns (id, name)."""
        ...

    def invite(self, channel: str, users: list[str]) -> None:
        ...

    def pin(self, channel: str, ts: str) -> None:
        ...

    def set_topic(self, channel: str, topic: str) -> None:
        """The channel's topic (plain text, at most 250 characters)."""
        ...

    def upload(self, channel: str, filename: str, content: str, title: str) -> str:
        """Upload a text file to the channel; returns the file ID."""
        ...


class RecordingMessenger:
    """Keeps messages in memory (CLI runs, tests of the core): ts are counters. Bounded:
    beyond ``2 * keep`` entries, the oldest ``keep`` of the log, the messages and the files
    are forgotten (a CLI run through an alert storm must not hold every reply)."""

    keep = 1000

    def __init__(self):
        self.messages: dict[str, Reply] = {}
        self.log: list[tuple[str, str, Reply]] = []
        self.channels: dict[str, str] = {}
        self.invites: list[tuple[str, list[str]]] = []
        self.pins: list[tuple[str, str]] = []
        self.topics: dict[str, str] = {}
        self.files: list[tuple[str, str, str]] = []
        self._n = 0
        self._lock = threading.Lock()

    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str:
        with self._lock:
            self._n += 1
            ts = f"{self._n}.000000"
            self.messages[ts] = reply
            self._logged(("post", channel, reply))
            return ts

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        with self._lock:
            self.messages[ts] = reply
            self._logged(("update", channel, reply))

    def notify(self, channel: str, user: str, reply: Reply) -> None:
        with self._lock:
            self._logged(("notify", channel, reply))

    def _logged(self, entry: tuple[str, str, Reply]) -> None:
        self.log.append(entry)
        if len(self.log) > 2 * self.keep:
            del self.log[:self.keep]
        if len(self.messages) > 2 * self.keep:
            for ts in list(self.messages)[:self.keep]:
                del self.messages[ts]

    def create_channel(self, name: str, private: bool = False) -> tuple[str, str]:
        with self._lock:
            self._n += 1
            self.channels[f"C{self._n:06d}"] = name
            return f"C{self._n:06d}", name

    def invite(self, channel: str, users: list[str]) -> None:
        self.invites.append((channel, list(users)))

    def pin(self, channel: str, ts: str) -> None:
        self.pins.append((channel, ts))

    def set_topic(self, channel: str, topic: str) -> None:
        self.topics[channel] = topic

    def upload(self, channel: str, filename: str, content: str, title: str) -> str:
        with self._lock:
            self._n += 1
            self.files.append((channel, filename, content))
            if len(self.files) > 2 * self.keep:
                del self.files[:self.keep]
            return f"F{self._n:06d}"

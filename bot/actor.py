"""Who is asking, and from where. Transports build it; commands and the core receive it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    id: str
    """Slack user ID (U...) or, in the shell, the chosen name's ID."""
    name: str
    origin: str = "slack"
    """slack, shell, cli, scheduler, system"""
    channel: str | None = None
    tz: str | None = None
    """The person's time zone (IANA), when the transport knows it; else the config's."""

"""The base of every typed outbox event (see ``bot.events``)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    KIND: ClassVar[str] = ""

    def stream(self) -> str:
        raise NotImplementedError

    def pace(self) -> str | None:
        return None

    def coalesce(self) -> str | None:
        return None

    def key(self) -> str | None:
        return None


def slack_pace(channel: str) -> str:
    return f"slack:{channel}"

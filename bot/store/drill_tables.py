"""Tables of scheduled drills, the readiness watch and lag history."""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Optional

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.store.models import _at, utcnow


class OccurrenceState(str, enum.Enum):
    PLANNED = "planned"
    STARTED = "started"
    MISSED = "missed"
    SKIPPED = "skipped"


class DrillOccurrence(SQLModel, table=True):
    """One scheduled drill at one time. Its change request collects approvals ahead of
    time; the tick starts it at its time only if approved, else marks it missed."""

    __tablename__ = "drill_occurrence"
    __table_args__ = (UniqueConstraint("service", "schedule", "planned_for", name="uq_drill_occurrence"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    service: str = Field(index=True)
    schedule: str
    """The schedule's name, or 'adhoc' for /dr drill schedule."""
    planned_for: datetime = _at()
    """The time the schedule gave; with a postponement, ``starts_at`` moves, this does not."""
    starts_at: datetime = _at(index=True)
    state: OccurrenceState = Field(default=OccurrenceState.PLANNED, index=True)
    request_id: Optional[int] = Field(default=None, index=True)
    channel: str = ""
    thread_ts: str = ""
    announced: str = ""
    """Comma-separated lead times already announced, in seconds ('86400,3600,0')."""
    note: str = ""
    created_at: datetime = _at(default_factory=utcnow)


class WatchState(SQLModel, table=True):
    """The verdict the readiness watch last announced for a service."""

    __tablename__ = "watch_state"
    service: str = Field(primary_key=True)
    verdict: str
    since: datetime = _at(default_factory=utcnow)
    lag_band: str = ""
    """'ok', 'warning' or 'critical': where lag was, with hysteresis."""


class LagRecord(SQLModel, table=True):
    """Lag as the watch read it, for the weekly digest's percentiles."""

    __tablename__ = "lag_record"
    id: Optional[int] = Field(default=None, primary_key=True)
    service: str = Field(index=True)
    at: datetime = _at(index=True)
    seconds: float

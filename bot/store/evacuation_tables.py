"""Region evacuations (``/dr evacuate REGION``, ``/dr return REGION``): the evacuation's
settings and board, and one row per service it moves. Each service runs as a child change
request (``change_request.parent_id`` = the evacuation's request) through the ordinary
runbook engine; ``evacuation_member.child_id`` names it."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.store.models import _at

REGION_PREFIX = "region:"
"""An evacuation request's ``service``: ``region:us-east-1`` (never a real service's name,
so the one-open-change index of services never covers it)."""
DRILL_SCENARIO = "evacuate"
"""A region drill: the evacuation request's ``scenario``, and the drill scenario each of its
services runs when it has one (``runbooks.drill.evacuate``)."""


class Evacuation(SQLModel, table=True):
    """The settings an evacuation was approved with, and its live board's message."""

    __tablename__ = "evacuation"
    request_id: int = Field(primary_key=True, foreign_key="change_request.id")
    region: str
    """The region evacuated (``return``: the region services come back to)."""
    direction: str = "evacuate"
    """'evacuate' (failovers out of ``region``), 'return' (failbacks into it), 'rollback'
    (the undo of an evacuation's services, newest wave first) or 'drill' (a region drill:
    each service's drill scenario 'evacuate', or its failover on a sandbox estate)."""
    parallelism: int = 4
    on_failure: str = "stop"
    board_ts: str = ""
    """The board message in the request's thread (posted once, then updated)."""
    wave: int = 0
    """The newest wave started (0: none yet)."""
    aborted_by: str = ""
    """Who clicked Abort: no wave that has not started starts (running services finish)."""
    started_at: Optional[datetime] = _at(default=None, nullable=True)
    ended_at: Optional[datetime] = _at(default=None, nullable=True)


class EvacuationMember(SQLModel, table=True):
    """One service of an evacuation: its wave and the child request that moves it."""

    __tablename__ = "evacuation_member"
    __table_args__ = (UniqueConstraint("evacuation_id", "service", name="uq_evacuation_member"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    evacuation_id: int = Field(foreign_key="change_request.id", index=True)
    service: str
    wave: int
    """1 for the first wave."""
    position: int = 0
    """Order within the evacuation (config order inside a wave)."""
    from_region: str = ""
    to_region: str = ""
    child_id: Optional[int] = Field(default=None, index=True)
    """The child request that moves it (None: not started)."""
    state: str = "pending"
    """pending, running, succeeded, failed, interrupted, resume (its resume is due),
    skipped (never started: a failure stopped the waves, it depends on a failed service, or
    the evacuation was aborted), refused (would not move when asked: not part of it),
    rolled_back, aborted."""
    undoes: Optional[int] = None
    """A rollback of an evacuation: the child request (of the evacuation) this member undoes."""
    note: str = ""
    """Why it was skipped, refused or failed, in words."""
    preflight: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    """Its pre-flight when the evacuation was asked for (JSON of bot.preflight.Preflight),
    shown to the approvers; it runs again before the service's first step."""

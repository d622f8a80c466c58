"""The failback assistant's memory: per service failed over away from its home region, since
when, since when the home region has held healthy (with lag under the threshold), and
whether the failback was suggested for this failover."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlmodel import Field, SQLModel

from bot.store.models import _at


class FailbackWatch(SQLModel, table=True):
    """One row per service away from home. ``moved_at`` and ``moved_by_request`` are the
    ``service_state`` move it refers to: a later move (a new failover) re-arms it."""

    __tablename__ = "failback_watch"
    service: str = Field(primary_key=True)
    home_region: str
    """The region it failed over from: ``services[].active`` in the config."""
    away_region: str
    """Where drbot's record says it runs now."""
    moved_at: datetime = _at()
    """``service_state.updated_at`` of the move away: since when it is away."""
    moved_by_request: Optional[int] = None
    """``service_state.changed_by_request`` of that move."""
    healthy_since: Optional[datetime] = _at(default=None, nullable=True)
    """Since when the home region is healthy with lag under the threshold (None: not now)."""
    suggested_at: Optional[datetime] = _at(default=None, nullable=True)
    """When the failback was suggested for this move (None: not yet)."""

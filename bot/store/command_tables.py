"""Tables of incident command: who holds each role of an incident (one holder per role,
changed by a conditional upsert, ``bot.incident_command``) and the follow-ups agreed on
(``bot.incident_followups``)."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from bot.store.models import _at, utcnow


class IncidentRole(SQLModel, table=True):
    __tablename__ = "incident_role"
    incident_id: int = Field(foreign_key="incident.id", primary_key=True)
    role: str = Field(primary_key=True)
    user_id: str
    user_name: str = ""
    """As Slack last sent it (for the channel topic, which shows no mentions)."""
    assigned_by: str = ""
    assigned_at: datetime = _at(default_factory=utcnow)


class FollowUp(SQLModel, table=True):
    """Something to do after an incident, with an owner and a due date; in the postmortem
    draft, and in the tracker (Jira) when one is configured."""

    __tablename__ = "follow_up"
    id: Optional[int] = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    owner: str = ""
    """Slack user ID; '' when nobody owns it yet."""
    owner_name: str = ""
    due_at: Optional[datetime] = _at(default=None, nullable=True)
    state: str = Field(default="open", index=True)
    """'open' or 'done'."""
    created_by: str = ""
    created_at: datetime = _at(default_factory=utcnow)
    done_by: str = ""
    done_at: Optional[datetime] = _at(default=None, nullable=True)
    tracker_key: str = ""
    """The tracker's issue key (e.g. OPS-123) once created."""
    tracker_url: str = ""
    reminded_at: Optional[datetime] = _at(default=None, nullable=True)
    """When its owner was last reminded that it is overdue."""
